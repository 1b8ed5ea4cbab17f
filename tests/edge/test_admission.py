"""Admission under overload: a full queue refuses before any decoding, and a stream
that was refused reads its next frame only once there is room again."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from splitedge.edge.batcher import Batcher
from splitedge.edge.config import BatchingConfig
from splitedge.edge.errors import ResourceExhausted
from splitedge.edge.registry import FrameRequest, ModelRegistry
from splitedge.edge.server import EdgeInferenceServicer
from splitedge.edge.service import EdgeService
from splitedge.models.echo import EchoModel
from splitedge.models.types import Detections, TailInput
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.codec import DEFAULT_LIMITS
from splitedge.proto.status import StatusCode

# One frame in the tail, one waiting: the third is over capacity.
ONE_PLACE = BatchingConfig(
    max_batch_size=1, max_queue_delay_ms=0.0, queue_capacity=1, tail_inline_below_ms=0.0
)


class GatedEcho(EchoModel):
    """Echo whose tail waits for ``gate`` (so the queue stays full while a test looks)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()

    def run_tail(self, branch, batch):
        self.started.set()
        assert self.gate.wait(30)
        return super().run_tail(branch, batch)


class CountingRegistry(ModelRegistry):
    """The real registry, counting the payloads it decodes."""

    decoded = 0

    def decode(self, frame, spec):
        self.decoded += 1
        return super().decode(frame, spec)


def _frame(i: int) -> FrameRequest:
    tensor = codec.encode_tensor(np.arange(12, dtype=np.float32), "x", compression="zstd")
    return FrameRequest(i, "echo", "split@x", [tensor], None, (3, 4), (3, 4))


def _request(i: int) -> pb.FrameRequest:
    tensor = codec.encode_tensor(np.arange(12, dtype=np.float32), "x")
    return pb.FrameRequest(
        frame_id=i,
        model="echo",
        branch="split@x",
        tensors=[wire.tensor_to_pb(tensor)],
        orig_height=3,
        orig_width=4,
        input_height=3,
        input_width=4,
    )


async def _until(condition, what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_full_queue_refuses_before_decoding():
    model = GatedEcho()
    registry = CountingRegistry([model], DEFAULT_LIMITS)
    service = EdgeService(registry, ONE_PLACE)
    await service.__aenter__()
    try:
        running = asyncio.create_task(service.process(_frame(0)))
        await asyncio.to_thread(model.started.wait, 30)
        waiting = asyncio.create_task(service.process(_frame(1)))
        await _until(lambda: service.batcher.queue_depth == 1, "frame 1 queued")
        assert registry.decoded == 2

        refused = service.process_now(_frame(2))  # answered at once, without a task
        assert refused is not None and isinstance(refused.error, ResourceExhausted)
        assert "admission queue full" in refused.error.message
        also = await service.process(_frame(3))
        assert isinstance(also.error, ResourceExhausted)
        assert registry.decoded == 2  # neither refused payload was decoded

        model.gate.set()
        assert all(o.error is None for o in await asyncio.gather(running, waiting))
    finally:
        model.gate.set()
        await service.__aexit__(None, None, None)


def _tail(model: str, branch: str, inputs: list[TailInput]) -> list[Detections]:
    empty = np.zeros((0,), np.float32)
    return [Detections(empty.reshape(0, 4), empty, empty.astype(np.int64)) for _ in inputs]


async def test_an_admitted_frame_holds_its_place_until_submitted_or_released():
    async with Batcher(_tail, max_batch_size=1, max_queue_delay_ms=0, queue_capacity=1) as b:
        with b.admit() as admission:
            assert b.full
            with pytest.raises(ResourceExhausted, match="admission queue full"):
                b.admit()
            # Its own place is not counted twice: the submit goes through.
            result = await b.submit("m", "b", TailInput(orig_size=(1, 1)), admission=admission)
        assert result.batch_size == 1 and not b.full
        with b.admit():  # a decode that fails gives the place back
            pass
        assert not b.full
        with b.admit():
            pass


async def test_a_refused_stream_reads_on_only_once_there_is_room():
    model = GatedEcho()
    service = EdgeService(ModelRegistry([model], DEFAULT_LIMITS), ONE_PLACE)
    await service.__aenter__()
    servicer = EdgeInferenceServicer(service, asyncio.Event())
    written: list[pb.FrameResult] = []
    pulled: list[int] = []

    class Context:
        async def write(self, message: pb.FrameResult) -> None:
            written.append(message)

    async def requests():
        yield _request(0)  # runs (its tail waits for the gate)
        yield _request(1)  # waits: the queue is full
        await _until(lambda: service.batcher.queue_depth == 1, "frame 1 queued")
        yield _request(2)  # refused
        pulled.append(3)
        yield _request(3)

    stream = asyncio.create_task(servicer.Stream(requests(), Context()))
    try:
        await _until(lambda: any(r.frame_id == 2 for r in written), "frame 2 answered")
        await asyncio.sleep(0.2)
        # Without the pause the reader would read frame 3 at once, to refuse it too.
        assert pulled == []
        model.gate.set()  # frame 0 finishes, frame 1 leaves the queue: room
        await asyncio.wait_for(stream, 60)
    finally:
        model.gate.set()
        stream.cancel()
        await service.__aexit__(None, None, None)
    assert pulled == [3]
    codes = {r.frame_id: r.status_code for r in written}
    assert codes == {
        0: StatusCode.OK,
        1: StatusCode.OK,
        2: StatusCode.RESOURCE_EXHAUSTED,
        3: StatusCode.OK,
    }
