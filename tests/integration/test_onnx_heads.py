"""Heads fetched from the edge (GetHead) and run with ONNX Runtime on a torch-free device.

A real edge (in-process grpc.aio server, or a ``splitedge-edge serve`` process) serves
the GHND student; the device's :class:`OnnxHeadBackend` downloads the heads, keeps them
by SHA-256, re-fetches a corrupted copy, and gives the same detections as the torch
head end to end, without importing torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from splitedge.edge.config import HeadsConfig, ModelConfig, load_config
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer
from splitedge.mobile_client.onnx_heads import OnnxHeadBackend
from splitedge.mobile_client.transport import EdgeRefused, EdgeTransport
from splitedge.proto.status import StatusCode

pytestmark = pytest.mark.integration
pytest.importorskip("onnxruntime")

MODEL = "zoo:ghnd-frcnn-small-c12"
BRANCH = "bottleneck-12-w0.5-8bit"


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    config = load_config(None, port=0, models=[ModelConfig(MODEL)])
    return ModelRegistry.from_config(config.models, config.limits.codec_limits(), device="cpu")


@contextlib.asynccontextmanager
async def _serving(registry: ModelRegistry, cache: Path) -> AsyncIterator[EdgeServer]:
    config = load_config(None, port=0, host="127.0.0.1", models=[ModelConfig(MODEL)])
    config = dataclasses.replace(config, heads=HeadsConfig(cache_dir=cache))
    async with EdgeServer(config, registry) as edge:
        yield edge


async def test_get_head_cache_hit_and_corrupted_copy(registry, tmp_path, caplog):
    device_cache = tmp_path / "device"
    async with (
        _serving(registry, tmp_path / "edge") as edge,
        EdgeTransport(f"127.0.0.1:{edge.port}") as transport,
    ):
        info = await transport.describe(MODEL, timeout_s=10)
        specs = [b.spec for b in info.branches]
        # The raw RPC: bytes whose SHA-256 is the one stated, and a spec naming it.
        reply = await transport.get_head(MODEL, BRANCH, timeout_s=60)
        assert hashlib.sha256(reply.onnx).hexdigest() == reply.sha256
        spec = json.loads(reply.spec_json)
        assert spec["onnx_sha256"] == reply.sha256 and BRANCH in spec["branches"]
        # The head's weights hash is the one Describe states for the branch (what a
        # device running torch heads compares with its own).
        described = {b.name: b.head_weights_sha256 for b in info.branches}
        assert len(spec["weights_sha256"]) == 64 and spec["weights_sha256"] == described[BRANCH]
        same = await transport.get_head(MODEL, BRANCH, known_sha256=reply.sha256, timeout_s=60)
        assert same.not_modified and same.onnx == b"" and same.sha256 == reply.sha256
        with pytest.raises(EdgeRefused) as info_:
            await transport.get_head(MODEL, "offload-png", timeout_s=10)
        assert info_.value.code is StatusCode.INVALID_ARGUMENT

        # First device run: one download, kept by hash.
        first = OnnxHeadBackend(threads=1, cache_dir=device_cache, branches=[BRANCH])
        await first.prepare(transport, MODEL, specs)
        assert first.downloads == 1 and first.can_run(registry.model(MODEL).branches[BRANCH])
        cached = device_cache / f"{reply.sha256}.onnx"
        assert cached.read_bytes() == reply.onnx
        mtime = cached.stat().st_mtime_ns
        # Second run (a restarted client): the cache answers, nothing is downloaded.
        second = OnnxHeadBackend(threads=1, cache_dir=device_cache, branches=[BRANCH])
        await second.prepare(transport, MODEL, specs)
        assert second.downloads == 0 and cached.stat().st_mtime_ns == mtime
        assert BRANCH in second._heads
        # A corrupted copy is refused in one line and fetched again, once.
        cached.write_bytes(reply.onnx[:-1] + bytes([reply.onnx[-1] ^ 1]))
        third = OnnxHeadBackend(threads=1, cache_dir=device_cache, branches=[BRANCH])
        with caplog.at_level(logging.WARNING, "splitedge.mobile_client.onnx_heads"):
            await third.prepare(transport, MODEL, specs)
        assert third.downloads == 1 and BRANCH in third._heads
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == reply.sha256
        lines = [r.getMessage() for r in caplog.records]
        assert any(
            "has sha256" in m and "expected" in m and "fetching it again" in m for m in lines
        ), lines
        # The head runs: the branch's width, stride 8 of the input padded to 256x320.
        image = np.zeros((240, 320, 3), np.uint8)
        out = third.head(registry.model(MODEL).branches[BRANCH], image)
        assert out.tensors["z"].shape == (1, 6, 32, 40) and out.input_size == (240, 320)


async def test_a_head_the_edge_lacks_leaves_that_branch_out_with_its_reason(registry, tmp_path):
    async with (
        _serving(registry, tmp_path / "edge") as edge,
        EdgeTransport(f"127.0.0.1:{edge.port}") as transport,
    ):
        info = await transport.describe(MODEL, timeout_s=10)
        spec = next(b.spec for b in info.branches if b.name == BRANCH)
        fake = dataclasses.replace(spec, name="bottleneck-12-w0.3-8bit")
        backend = OnnxHeadBackend(cache_dir=tmp_path / "device")
        await backend.prepare(transport, MODEL, [fake])  # never raises
    assert not backend.can_run(fake)
    why = backend.why_not(fake)
    assert why.startswith("no ONNX head: server 127.0.0.1:")
    assert "NOT_FOUND: unknown branch 'bottleneck-12-w0.3-8bit'" in why


# Blocks torch in the client process, as on a device without it.
_NO_TORCH = (
    "import sys\n"
    "for name in ('torch', 'torchvision', 'cv2'): sys.modules[name] = None\n"
    "from splitedge.mobile_client.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _client(args: list[str], *, block_torch: bool) -> subprocess.CompletedProcess[str]:
    if block_torch:
        command = [sys.executable, "-c", _NO_TORCH, *args]
    else:
        command = [sys.executable, "-m", "splitedge.mobile_client.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_onnx_backend_gives_the_torch_backend_detections_end_to_end(edge_factory, tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text(f'[heads]\ncache_dir = "{tmp_path / "edge-heads"}"\n')
    edge = edge_factory("--config", str(config), "--model", MODEL, "--device", "cpu")
    common = ["run", "--server", edge.address, "--model", MODEL, "--frames", "4"]
    common += ["--size", "320x240", "--deadline-ms", "0", "--threads", "1"]
    onnx_out, torch_out, local_out = (tmp_path / n for n in ("onnx", "torch", "local"))
    cache = tmp_path / "heads"
    onnx_args = ["--branch", BRANCH, "--backend", "onnx", "--head-cache", str(cache)]
    onnx = _client(
        [*common, *onnx_args, "--out", str(onnx_out)],
        block_torch=True,
    )
    assert onnx.returncode == 0, onnx.stderr
    assert "Traceback" not in onnx.stderr
    assert len(list(cache.glob("*.onnx"))) == 1  # only the branch asked for
    assert len(list((tmp_path / "edge-heads").rglob("*.onnx"))) == 1  # exported on demand
    reference = _client(
        [*common, "--branch", BRANCH, "--backend", "torch", "--out", str(torch_out)],
        block_torch=False,
    )
    assert reference.returncode == 0, reference.stderr
    got, want = _records(onnx_out), _records(torch_out)
    assert [r["source"] for r in got] == ["edge"] * 4 == [r["source"] for r in want]
    assert sum(len(r["detections"]["labels"]) for r in want) > 0
    for a, b in zip(got, want, strict=True):
        assert a["detections"]["labels"] == b["detections"]["labels"]
        np.testing.assert_allclose(a["detections"]["boxes"], b["detections"]["boxes"], atol=1.0)
        np.testing.assert_allclose(a["detections"]["scores"], b["detections"]["scores"], atol=0.01)
        assert a["payload_bytes"] == pytest.approx(b["payload_bytes"], rel=0.05)
    # No whole model on a torch-free device: the local branch's record says why.
    local_args = ["--branch", "local", "--backend", "onnx", "--head-cache", str(cache)]
    local = _client(
        [*common, "--frames", "1", *local_args, "--out", str(local_out)],
        block_torch=True,
    )
    assert local.returncode == 0, local.stderr
    (record,) = _records(local_out)
    assert record["source"] == "dropped"
    assert record["reason"] == "local: no local model on this device (backend onnx has heads only)"


def test_a_segmentation_code_from_an_onnx_head_gives_the_torch_heads_masks(edge_factory, tmp_path):
    seg_model = "zoo:ghnd-lraspp-small-c12"
    config = tmp_path / "edge.toml"
    config.write_text(f'[heads]\ncache_dir = "{tmp_path / "edge-heads"}"\n')
    edge = edge_factory("--config", str(config), "--model", seg_model, "--device", "cpu")
    common = ["run", "--server", edge.address, "--model", seg_model, "--frames", "3"]
    common += ["--size", "320x240", "--deadline-ms", "0", "--threads", "1"]
    common += ["--branch", "bottleneck-12-w0.5-8bit"]
    onnx_out, torch_out = tmp_path / "onnx", tmp_path / "torch"
    onnx = _client(
        [*common, "--backend", "onnx", "--head-cache", str(tmp_path / "heads"),
         "--out", str(onnx_out)],
        block_torch=True,
    )  # fmt: skip
    assert onnx.returncode == 0, onnx.stderr
    reference = _client([*common, "--backend", "torch", "--out", str(torch_out)], block_torch=False)
    assert reference.returncode == 0, reference.stderr
    got, want = _records(onnx_out), _records(torch_out)
    assert [r["source"] for r in got] == ["edge"] * 3 == [r["source"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert a["segmentation"]["shape"] == b["segmentation"]["shape"] == [240, 320]
        # Per class pixel counts: the same masks but for a few boundary pixels.
        pa, pb = a["segmentation"]["class_pixels"], b["segmentation"]["class_pixels"]
        differ = sum(abs(pa.get(c, 0) - pb.get(c, 0)) for c in set(pa) | set(pb))
        assert differ <= 0.001 * 240 * 320, (pa, pb)
