"""A device install really works without torch: a fresh venv gets this checkout as
``splitedge[device]`` (pip, the constraints file), ``import torch`` fails there, and its
``splitedge-client`` streams an offload branch, and a GHND student's bottleneck branch
with the head fetched from the edge (``--backend auto`` picks onnx), to real edge
processes started from the main environment (which has torch). ~20-40 s: mostly pip."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks.device_footprint import build_device_venv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def device_python(tmp_path_factory):
    return build_device_venv(tmp_path_factory.mktemp("device"), "device")


def test_the_client_extra_installs_no_torch(device_python):
    done = subprocess.run(
        [str(device_python), "-c", "import torch"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "No module named 'torch'" in done.stderr


def test_an_offload_branch_streams_from_a_torch_free_venv(device_python, edge_factory, tmp_path):
    edge = edge_factory("--model", "echo")
    out = tmp_path / "r.jsonl"
    done = subprocess.run(
        [str(device_python.parent / "splitedge-client"), "run", "--server", edge.address,
         "--model", "echo", "--branch", "offload-jpeg90", "--frames", "3", "--size", "64x48",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"] for r in records] == ["edge"] * 3
    assert "3 frames (edge=3)" in done.stderr


def test_a_bottleneck_branch_from_a_torch_free_venv(device_python, edge_factory, tmp_path):
    edge = edge_factory("--model", "zoo:ghnd-frcnn-small-c12")
    out = tmp_path / "r.jsonl"
    done = subprocess.run(
        [str(device_python.parent / "splitedge-client"), "run", "--server", edge.address,
         "--model", "zoo:ghnd-frcnn-small-c12", "--branch", "bottleneck-12-w0.5-4bit",
         "--frames", "3", "--size", "320x240", "--threads", "1",
         "--head-cache", str(tmp_path / "heads"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source"] for r in records] == ["edge"] * 3, records
    # A code of a few kB crossed the link, not the frame: the head ran in the venv.
    assert all(0 < r["payload_bytes"] < 20_000 for r in records), records
    assert list((tmp_path / "heads").glob("*.onnx")), "the head was not cached"
