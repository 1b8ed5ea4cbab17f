"""``--engine ray`` end to end: a real edge server process whose tails run as a
two-replica Ray Serve deployment (a local Ray instance the server starts), real
clients over real sockets.

- a real model's split tail answers what the local engine answers, frame for frame;
- Status covers both replicas (replica count, frames, tail latency per batch size);
- a replica killed mid-load loses no frame: each is answered, or UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip(
    "ray.serve", reason="the ray engine needs Ray Serve: pip install 'splitedge[edge-ray]'"
)
torch = pytest.importorskip("torch", reason="the real model tail needs torch")

from splitedge.mobile_client import Client, open_source  # noqa: E402
from splitedge.mobile_client.heads import TorchHeadBackend  # noqa: E402
from splitedge.models.calibration import recalibrate_batchnorm  # noqa: E402
from splitedge.models.registry import create_model  # noqa: E402
from splitedge.proto import codec, wire  # noqa: E402
from splitedge.proto import splitedge_pb2 as pb  # noqa: E402
from splitedge.proto import splitedge_pb2_grpc as pb_grpc  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "lraspp_mobilenet_v3_large"
OPTIONS = {"min_size": 160, "max_size": 256}
TWO_REPLICAS = """
[engine]
kind = "ray"
local_num_cpus = 2
num_cpus = 0.5
min_replicas = 2
max_replicas = 2
retries = 3
"""


def _ray_config(tmp_path: Path) -> Path:
    path = tmp_path / "edge-ray.toml"
    path.write_text(TWO_REPLICAS)
    return path


def _calibrated_checkpoint(path: Path) -> Path:
    """Random weights with BatchNorm statistics from a few frames: input-driven masks."""
    model = create_model(NAME, **OPTIONS)
    frames = [f.image for f in open_source("synthetic", max_frames=3, size=(200, 150), seed=9)]
    recalibrate_batchnorm(model, frames)
    torch.save(model.torch_model.state_dict(), path)
    return path


async def _status(address: str) -> pb.StatusResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await pb_grpc.EdgeInferenceStub(channel).Status(pb.StatusRequest())


async def _until_status(address: str, ok, what: str) -> pb.StatusResponse:
    """Status once ``ok(status)`` (replicas report a few times a second)."""
    for _ in range(300):
        status = await _status(address)
        if ok(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}; last Status:\n{status}")


async def test_two_replicas_answer_as_the_local_engine_and_status_covers_both(
    edge_factory, tmp_path
):
    options = {**OPTIONS, "weights": str(_calibrated_checkpoint(tmp_path / "w.pt"))}
    spec = NAME + ":" + ",".join(f"{k}={v}" for k, v in options.items())
    local = edge_factory("--model", spec)
    on_ray = edge_factory("--config", str(_ray_config(tmp_path)), "--model", spec)
    backend = TorchHeadBackend(NAME, options)
    branch = next(b for b, s in backend.model.branches.items() if s.kind == "split")
    frames = list(open_source("synthetic", max_frames=12, size=(200, 150), seed=3))

    async def run(address: str) -> list:
        async with Client(address, NAME, backend=backend, deadline_ms=0) as client:
            # Many at once, so the replicas batch and both take frames.
            return list(await asyncio.gather(*(client.submit(f, branch, bits=8) for f in frames)))

    expected = await run(local.address)
    got = await run(on_ray.address)
    assert all(r.source == "edge" for r in expected + got), [r.reason for r in got]
    for want, have in zip(expected, got, strict=True):
        assert len(np.unique(want.prediction.mask)) >= 2  # input-driven, not constant
        np.testing.assert_array_equal(have.prediction.mask, want.prediction.mask)
        assert have.timing.server.tail_ms > 0 and have.timing.server.batch_size >= 1

    # Status: figures from both replicas, once their reports reached the front end.
    status = await _until_status(
        on_ray.address,
        lambda s: any(b.branch == branch and b.frames == len(frames) for b in s.branches),
        f"Status never counted the {len(frames)} frames",
    )
    load = next(b for b in status.branches if b.branch == branch)
    assert load.replicas == 2
    assert sum(b.batch_size * b.samples for b in load.by_batch_size) == len(frames)
    assert load.tail_latency_ms_p50 > 0 and load.tail_latency_ms_p95 >= load.tail_latency_ms_p50
    assert status.in_flight == 0 and status.queue_depth == 0
    assert status.device.startswith("ray serve")
    # The local engine says one replica.
    assert all(b.replicas == 1 for b in (await _status(local.address)).branches)


# ---------------------------------------------------------------- a replica dies


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _replica_pids(server_pid: int) -> list[int]:
    """The server's own Serve replicas (never another session's Ray)."""
    pids = []
    for pid in _descendants(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ServeReplica" in cmdline and b"tail-echo" in cmdline:
            pids.append(pid)
    return sorted(pids)


def _frame(i: int) -> pb.FrameRequest:
    tensor = wire.tensor_to_pb(codec.encode_tensor(np.arange(12, dtype=np.float32), "x"))
    return pb.FrameRequest(
        frame_id=i,
        model="echo",
        branch="split@x",
        tensors=[tensor],
        orig_height=3,
        orig_width=4,
        input_height=3,
        input_width=4,
        deadline_ms=30_000,
    )


async def test_a_replica_killed_mid_load_loses_no_frame(edge_factory, tmp_path):
    edge = edge_factory("--config", str(_ray_config(tmp_path)), "--model", "echo:tail_delay_ms=40")
    assert edge.proc is not None
    await _until_status(
        edge.address, lambda s: all(b.replicas == 2 for b in s.branches), "two replicas"
    )
    victims = _replica_pids(edge.proc.pid)
    assert len(victims) == 2, victims
    count = 80
    killed = asyncio.Event()

    async def requests():
        for i in range(count):
            yield _frame(i)
            if i == count // 3:
                os.kill(victims[0], signal.SIGKILL)  # mid-load: frames are at it now
                killed.set()
            await asyncio.sleep(0.01)

    async with grpc.aio.insecure_channel(edge.address) as channel:
        call = pb_grpc.EdgeInferenceStub(channel).Stream(requests())
        results = [r async for r in call]
        assert await call.code() == grpc.StatusCode.OK
    assert killed.is_set()
    # Every frame answered once: computed, or UNAVAILABLE so the device falls back.
    assert sorted(r.frame_id for r in results) == list(range(count))
    codes = {r.status_code for r in results}
    assert codes <= {0, grpc.StatusCode.UNAVAILABLE.value[0]}, codes
    assert sum(r.status_code == 0 for r in results) > count // 2
    # The kill hit frames in flight: the front end sent them again (or gave up on them).
    retried = [line for line in edge.output if "sending the frame again" in line]
    assert retried or codes != {0}, "\n".join(edge.output)
    # The frames after the kill went to the survivor (and to a replacement).
    assert all(r.status_code == 0 for r in results if r.frame_id > count // 3 + 20)
