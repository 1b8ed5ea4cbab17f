"""The device client against a real edge server process over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from splitedge.mobile_client import Client, ClientError, open_source
from splitedge.mobile_client.heads import LocalUnavailable, TorchHeadBackend
from splitedge.models.types import Detections, HeadOutput
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.traces import constant

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_offload_and_split_frames_come_back_with_timing(edge_factory):
    edge = edge_factory("--model", "echo")
    frames = list(open_source("synthetic", max_frames=6, size=(64, 48)))
    async with Client(edge.address, "echo", backend=TorchHeadBackend("echo")) as client:
        assert {"split@x", "offload-jpeg90"} <= set(client.branches)
        offload = [o async for o in client.run(frames[:3], "offload-jpeg90")]
        split = [o async for o in client.run(frames[3:], "split@x")]
    for outcome in offload + split:
        assert outcome.source == "edge", outcome
        assert isinstance(outcome.prediction, Detections)
        assert outcome.payload_bytes > 0
        t = outcome.timing
        assert t.roundtrip_ms > 0 and t.server.server_total_ms > 0
        assert t.roundtrip_ms >= t.server.server_total_ms
        assert t.server.batch_size >= 1
    assert [o.frame_id for o in offload + split] == list(range(6))
    # The split branch ships the head's raw float32 tensor: 64*48*3 floats, 8-bit quantized.
    assert all(o.timing.head_ms > 0 for o in split)


class _ThreadRecordingHead(TorchHeadBackend):
    """The echo head, recording the thread it ran on; sleeps ``delay_s`` first."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__("echo")
        self.delay_s = delay_s
        self.threads: list[int] = []

    def head(self, branch, image):
        self.threads.append(threading.get_ident())
        if self.delay_s:
            time.sleep(self.delay_s)
        return super().head(branch, image)


async def test_a_cheap_head_runs_on_the_event_loop_and_a_slow_one_in_a_thread(edge_factory):
    edge = edge_factory("--model", "echo")
    frames = list(open_source("synthetic", max_frames=4, size=(16, 16)))
    loop_thread = threading.get_ident()
    cheap, slow = _ThreadRecordingHead(), _ThreadRecordingHead(delay_s=0.01)
    async with Client(edge.address, "echo", backend=cheap, inline_below_ms=1000) as client:
        cheap_out = [await client.submit(f, "split@x") for f in frames]
    async with Client(edge.address, "echo", backend=slow, inline_below_ms=5) as client:
        slow_out = [await client.submit(f, "split@x") for f in frames]
    assert [o.source for o in cheap_out + slow_out] == ["edge"] * 8
    # The first frame measures the branch in a thread; then the loop runs it.
    assert cheap.threads[0] != loop_thread
    assert cheap.threads[1:] == [loop_thread] * 3
    assert loop_thread not in slow.threads


class _NoiseHead:
    """A head that always answers the same float32 noise (like the overhead benchmark)."""

    name = "noise"
    has_local = False

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def can_run(self, branch):
        return True

    def head(self, branch, image):
        return HeadOutput({"x": self.values}, (1, 1), (1, 1))

    def local(self, image):
        raise LocalUnavailable("no local model")


async def test_auto_compression_sends_raw_what_zstd_cannot_shrink(edge_factory):
    edge = edge_factory("--model", "echo")
    rng = np.random.default_rng(0)
    random_bits = np.frombuffer(rng.bytes(40_000), np.float32)  # zstd cannot shrink these
    frames = list(open_source("synthetic", max_frames=8, size=(16, 16)))
    async with Client(edge.address, "echo", backend=_NoiseHead(random_bits), bits=0) as client:
        sizes = [(await client.submit(f, "split@x")).payload_bytes for f in frames]
    assert sizes[0] > 40_000  # unmeasured: compressed (zstd only adds its frame header)
    assert sizes[1:] == [40_000] * 7


async def test_auto_compression_squeezes_a_slow_link(edge_factory):
    edge = edge_factory("--model", "echo")
    host, _, port = edge.address.rpartition(":")
    # Gaussian float32 noise: zstd saves ~7% (3 kB), worth ~12 ms at 2 Mbit/s.
    noise = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    frames = list(open_source("synthetic", max_frames=6, size=(16, 16)))
    slow = constant(2.0, 60.0)
    async with (
        EmulatedLink((host, int(port)), slow, slow, delay_ms=2.0) as link,
        Client(f"127.0.0.1:{link.port}", "echo", backend=_NoiseHead(noise), bits=0) as client,
    ):
        outcomes = [await client.submit(f, "split@x") for f in frames]
        assert client.compression_chooser.pays("split@x") is True
        assert client.compression_chooser.uplink_floor_mbps < 2.0
    assert [o.source for o in outcomes] == ["edge"] * 6
    assert all(30_000 < o.payload_bytes < 40_000 for o in outcomes)


async def test_a_zstd_level_libzstd_lacks_is_refused_up_front():
    with pytest.raises(ValueError, match="zstd_level 23 outside"):
        Client("127.0.0.1:1", "echo", zstd_level=23)


async def test_negative_inline_threshold_is_refused():
    with pytest.raises(ValueError, match="inline_below_ms must not be negative"):
        Client("127.0.0.1:1", "echo", inline_below_ms=-1)


async def test_server_killed_mid_stream_loses_no_frame(edge_factory):
    edge = edge_factory("--model", "echo:tail_delay_ms=20")
    frames = list(open_source("synthetic", max_frames=30, size=(32, 32)))
    outcomes = []
    async with Client(
        edge.address, "echo", backend=TorchHeadBackend("echo"), deadline_ms=2000
    ) as client:
        async for outcome in client.run(frames, "offload-jpeg90", max_in_flight=3, fps=40):
            outcomes.append(outcome)
            if len(outcomes) == 8:
                edge.kill()
    assert sorted(o.frame_id for o in outcomes) == list(range(30))
    sources = {o.source for o in outcomes}
    assert "edge" in sources and "local" in sources
    for o in outcomes:
        if o.source == "local":
            assert o.reason == "edge-unavailable"
            assert o.prediction is not None


async def test_without_local_model_frames_are_dropped_with_reason(edge_factory):
    edge = edge_factory("--model", "echo")
    frames = list(open_source("synthetic", max_frames=5, size=(32, 32)))
    async with Client(edge.address, "echo") as client:
        first = await client.submit(frames[0], "offload-jpeg90")
        edge.kill()
        rest = [await client.submit(f, "offload-jpeg90") for f in frames[1:]]
    assert first.source == "edge"
    assert [o.source for o in rest] == ["dropped"] * 4
    assert {o.reason for o in rest} == {"edge-unavailable"}


async def test_deadline_passes_then_local_fallback(edge_factory):
    edge = edge_factory("--model", "echo:tail_delay_ms=400")
    frame = next(open_source("synthetic", max_frames=1, size=(32, 32)))
    async with Client(
        edge.address, "echo", backend=TorchHeadBackend("echo"), deadline_ms=100
    ) as client:
        outcome = await client.submit(frame, "offload-jpeg90")
    assert outcome.source == "local"
    assert outcome.reason == "deadline"


async def test_unreachable_server_at_start():
    frames = list(open_source("synthetic", max_frames=3, size=(32, 32)))
    address = f"127.0.0.1:{_free_port()}"
    async with Client(
        address, "echo", backend=TorchHeadBackend("echo"), connect_timeout_s=0.5
    ) as client:
        assert client.model_info is None
        outcomes = [await client.submit(f, "offload-jpeg90") for f in frames]
    assert [o.source for o in outcomes] == ["local"] * 3
    assert {o.reason for o in outcomes} == {"edge-unavailable"}


async def test_unknown_model_and_branch_are_refused(edge_factory):
    edge = edge_factory("--model", "echo")
    with pytest.raises(ClientError, match="nosuchmodel"):
        async with Client(edge.address, "nosuchmodel"):
            pass
    frame = next(open_source("synthetic", max_frames=1, size=(32, 32)))
    async with Client(edge.address, "echo") as client:
        with pytest.raises(ClientError, match=r"unknown branch 'split@nowhere'.*offload-jpeg90"):
            await client.submit(frame, "split@nowhere")
        # With no head on this device, a split branch cannot be prepared.
        with pytest.raises(ClientError, match="runs its head on this device, but this client"):
            await client.submit(frame, "split@x")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splitedge.mobile_client.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_one_json_line_per_frame(edge_factory, tmp_path: Path):
    edge = edge_factory("--model", "echo")
    out = tmp_path / "results.jsonl"
    proc = _cli(
        "run",
        "--server",
        edge.address,
        "--model",
        "echo",
        "--branch",
        "offload-jpeg90",
        "--frames",
        "5",
        "--size",
        "48x32",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["frame_id"] for line in lines] == list(range(5))
    assert all(line["source"] == "edge" and "detections" in line for line in lines)
    assert all(line["timing_ms"]["roundtrip_ms"] > 0 for line in lines)
    assert "5 frames (edge=5)" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/no/such/dir"], "does not exist"),
        (["--branch", "split@nowhere"], "unknown branch 'split@nowhere'"),
        (["--model-option", "novalue"], "KEY=VALUE"),
        (["--zstd-level", "99"], "zstd_level 99 outside [-131072, 22]"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(edge_factory, args, message):
    edge = edge_factory("--model", "echo")
    base = {
        "--server": edge.address,
        "--model": "echo",
        "--branch": "offload-jpeg90",
        "--frames": "2",
        "--backend": "none",
    }
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    argv = ["run"] + [x for kv in base.items() for x in kv]
    proc = _cli(*argv)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_models_lists_branches(edge_factory):
    edge = edge_factory("--model", "echo")
    proc = _cli("models", "--server", edge.address)
    assert proc.returncode == 0, proc.stderr
    assert "echo" in proc.stdout and "offload-jpeg90" in proc.stdout and "split@x" in proc.stdout


def test_frames_stay_in_order_under_pipelining():
    # Pure client-side property: run() yields in frame order whatever completes first.
    async def main():
        async with Client(
            f"127.0.0.1:{_free_port()}",
            "echo",
            backend=TorchHeadBackend("echo"),
            connect_timeout_s=0.3,
        ) as client:
            frames = list(open_source("synthetic", max_frames=7, size=(16, 16)))
            return [o.frame_id async for o in client.run(frames, "local", max_in_flight=3)]

    assert asyncio.run(main()) == list(range(7))
