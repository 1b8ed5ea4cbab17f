"""A real edge server reports tail latency per branch and batch size (Describe, Status)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections import Counter

import grpc
import pytest

from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.profile import load_profile
from splitedge.mobile_client.server_profile import (
    ModelNotServedError,
    ServerUnreachableError,
    fetch_tail_profile,
)
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

BRANCH = "offload-jpeg90"
TAIL_DELAY_MS = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _send(address: str, frames: list, max_in_flight: int) -> list:
    async with Client(address, "echo", deadline_ms=5000) as client:
        return [o async for o in client.run(frames, BRANCH, max_in_flight=max_in_flight)]


async def test_describe_and_status_list_tail_latency_per_batch_size(edge_factory, tmp_path):
    config = tmp_path / "edge.toml"
    # Batches of up to 8; a frame waits up to 20 ms for companions.
    config.write_text("[batching]\nmax_batch_size = 8\nmax_queue_delay_ms = 20.0\n")
    edge = edge_factory("--config", str(config), "--model", f"echo:tail_delay_ms={TAIL_DELAY_MS}")
    frames = list(open_source("synthetic", max_frames=12, size=(32, 32)))

    # One frame at a time: every batch holds a single frame.
    outcomes = await _send(edge.address, frames[:3], max_in_flight=1)
    # Four clients with frames in flight at once: batches of several frames form.
    for burst in await asyncio.gather(*(_send(edge.address, frames, 6) for _ in range(4))):
        outcomes += burst
    assert all(o.source == "edge" for o in outcomes), Counter(o.source for o in outcomes)
    seen_sizes = Counter(o.timing.server.batch_size for o in outcomes)
    assert 1 in seen_sizes and max(seen_sizes) > 1, seen_sizes

    async with grpc.aio.insecure_channel(edge.address) as channel:
        stub = pb_grpc.EdgeInferenceStub(channel)
        info = await stub.Describe(pb.DescribeRequest(model="echo"))
        status = await stub.Status(pb.StatusRequest())
    profile = next(b.profile for b in info.branches if b.name == BRANCH)
    load = next(b for b in status.branches if b.branch == BRANCH)
    for entries in (profile.by_batch_size, load.by_batch_size):
        sizes = [e.batch_size for e in entries]
        assert sizes == sorted(sizes) and 1 in sizes and max(sizes) > 1, sizes
        # The batches the clients were told about are the ones the server counted.
        assert set(sizes) == set(seen_sizes)
        assert sum(e.batch_size * e.samples for e in entries) == len(outcomes) == load.frames
        for e in entries:
            assert e.samples > 0
            # Every tail run sleeps TAIL_DELAY_MS once, whatever the batch size.
            assert TAIL_DELAY_MS <= e.tail_latency_ms_p50 <= e.tail_latency_ms_p95 < 1000.0
    assert [(e.batch_size, e.samples) for e in profile.by_batch_size] == [
        (e.batch_size, e.samples) for e in load.by_batch_size
    ]
    # Branches that never ran list nothing.
    assert all(not b.profile.by_batch_size for b in info.branches if b.name != BRANCH)

    tail = await fetch_tail_profile(edge.address, "echo")
    assert tail == {BRANCH: {e.batch_size: e.tail_latency_ms_p95 for e in profile.by_batch_size}}

    # `splitedge-client profile --server` copies them into the device's profile.
    out = tmp_path / "profile.json"
    cmd = [
        sys.executable, "-m", "splitedge.mobile_client.cli", "profile", "--model", "echo",
        "--branches", BRANCH, "--frames", "2", "--levels", "0", "--size", "64x48",
        "--server", edge.address, "--output", str(out), "--no-progress",
    ]  # fmt: skip
    done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (entry,) = load_profile(out).entries
    assert entry.tail_latency_ms == pytest.approx(tail[BRANCH])


async def test_fetch_tail_profile_errors(edge_factory):
    edge = edge_factory("--model", "echo")
    with pytest.raises(
        ModelNotServedError,
        match=rf"^server {edge.address} does not serve model 'nosuch': "
        r"unknown model 'nosuch'; this server serves: echo$",
    ):
        await fetch_tail_profile(edge.address, "nosuch")
    # Served but never run: no measured batch size yet.
    assert await fetch_tail_profile(edge.address, "echo") == {}
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ServerUnreachableError, match=rf"^server {address} did not answer"):
        await fetch_tail_profile(address, "echo", timeout_s=1.0)
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        await fetch_tail_profile(edge.address, "echo", timeout_s=0)


def test_profile_cli_with_an_unreachable_server_is_one_line(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    cmd = [
        sys.executable, "-m", "splitedge.mobile_client.cli", "profile", "--model", "echo",
        "--frames", "1", "--levels", "0", "--server", address,
        "--output", str(tmp_path / "p.json"), "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"server {address} did not answer Describe" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.json").exists()
