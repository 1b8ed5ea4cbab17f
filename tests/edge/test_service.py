"""EdgeService.process_now, and the servicer's stream answering frames from its reader."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import numpy as np
import pytest

from splitedge.edge import server as server_module
from splitedge.edge.config import BatchingConfig
from splitedge.edge.registry import FrameRequest, ModelRegistry
from splitedge.edge.server import EdgeInferenceServicer, frame_from_pb
from splitedge.edge.service import EdgeService
from splitedge.models.echo import EchoModel
from splitedge.models.types import Detections, SegmentationMask
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.codec import DEFAULT_LIMITS
from splitedge.proto.status import StatusCode

NO_WINDOW = BatchingConfig(max_queue_delay_ms=0.0, tail_inline_below_ms=50.0)


class MaskEcho(EchoModel):
    """Echo whose split tail answers a segmentation mask (it needs PNG encoding)."""

    def run_tail(self, branch, batch):
        return [SegmentationMask(np.zeros((4, 4), np.uint8)) for _ in batch]


class ThreadEcho(EchoModel):
    """Echo recording the thread each tail call ran on."""

    def __init__(self, name: str = "echo") -> None:
        super().__init__(name)
        self.threads: list[int] = []

    def run_tail(self, branch, batch):
        self.threads.append(threading.get_ident())
        return super().run_tail(branch, batch)


def _frame(i: int = 1, values: np.ndarray | None = None, model: str = "echo", **kw) -> FrameRequest:
    values = np.arange(12, dtype=np.float32) if values is None else values
    tensor = codec.encode_tensor(values, kw.pop("name", "x"), compression="raw")
    return FrameRequest(i, model, "split@x", [tensor], None, (3, 4), (3, 4), **kw)


async def _service(*models, batching: BatchingConfig = NO_WINDOW) -> EdgeService:
    service = EdgeService(ModelRegistry(list(models), DEFAULT_LIMITS), batching)
    await service.__aenter__()
    return service


async def test_a_measured_cheap_branch_is_answered_synchronously():
    model = ThreadEcho()
    service = await _service(model)
    try:
        assert service.process_now(_frame(0)) is None  # nothing measured yet
        first = await service.process(_frame(1))
        assert first.error is None and model.threads[0] != threading.get_ident()
        now = service.process_now(_frame(2))
        assert now is not None and now.error is None
        assert isinstance(now.output, Detections)
        assert model.threads[-1] == threading.get_ident()
        t = now.timing
        assert t.batch_size == 1 and t.queue_ms == 0.0 and t.server_total_ms > 0
        assert service.batcher.in_flight == 0 and service.batcher.queue_depth == 0
    finally:
        await service.__aexit__(None, None, None)


async def test_a_refusal_on_the_synchronous_path_costs_only_its_frame():
    service = await _service(EchoModel())
    try:
        await service.process(_frame(1))
        bad = service.process_now(_frame(2, name="y"))
        assert bad is not None and bad.error is not None
        assert bad.error.code == StatusCode.INVALID_ARGUMENT
        assert "unexpected tensor 'y'" in bad.error.message
        expired = service.process_now(_frame(3, deadline_ms=1e-9))
        assert expired is not None and expired.error is not None
        assert expired.error.code == StatusCode.DEADLINE_EXCEEDED
        good = service.process_now(_frame(4))
        assert good is not None and good.error is None
    finally:
        await service.__aexit__(None, None, None)


async def test_what_could_block_the_loop_takes_the_asynchronous_path():
    service = await _service(EchoModel(), MaskEcho("masks"))
    try:
        for i in range(3):
            assert (await service.process(_frame(i))).error is None
            assert (await service.process(_frame(i, model="masks"))).error is None
        # A payload too big to decode on the loop.
        big = np.zeros(20_000, np.float32)
        assert service.process_now(_frame(5, big)) is None
        assert (await service.process(_frame(5, big))).error is None
        # An output that needs encoding (a PNG mask).
        assert service.process_now(_frame(6, model="masks")) is None
        assert (await service.process(_frame(6, model="masks"))).error is None
        assert service.process_now(_frame(7)) is not None
        # A shutting-down server refuses on the full path, with its reason.
        service.begin_shutdown()
        assert service.process_now(_frame(8)) is None
        refused = await service.process(_frame(8))
        assert refused.error is not None and refused.error.code == StatusCode.UNAVAILABLE
    finally:
        await service.__aexit__(None, None, None)


async def test_a_batching_window_never_answers_synchronously():
    batching = BatchingConfig(max_queue_delay_ms=2.0, tail_inline_below_ms=50.0)
    service = await _service(EchoModel(), batching=batching)
    try:
        for i in range(4):
            assert (await service.process(_frame(i))).error is None
            assert service.process_now(_frame(i)) is None
    finally:
        await service.__aexit__(None, None, None)


class _Context:
    """Collects what the servicer writes to a stream."""

    def __init__(self) -> None:
        self.written: list[pb.FrameResult] = []

    async def write(self, message: pb.FrameResult) -> None:
        self.written.append(message)


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


async def _requests(n: int):
    for i in range(n):
        yield _request(i)
        await asyncio.sleep(0)


async def _warm(service: EdgeService, monkeypatch) -> None:
    """Measure echo's tail, then make the task path fail loudly: from here on, a frame
    answered OK was answered by the stream's reader (process_now)."""
    for i in range(3):
        await service.process(frame_from_pb(_request(i)))

    async def no_task_path(frame: FrameRequest):
        raise AssertionError("the task path ran")

    monkeypatch.setattr(service, "process_pooled", no_task_path)


async def test_the_reader_answers_cheap_frames_itself(monkeypatch):
    service = await _service(EchoModel())
    servicer = EdgeInferenceServicer(service, asyncio.Event())
    try:
        await _warm(service, monkeypatch)
        context = _Context()
        await servicer.Stream(_requests(8), context)
    finally:
        await service.__aexit__(None, None, None)
    assert [r.frame_id for r in context.written] == list(range(8))
    assert all(r.status_code == 0 for r in context.written), context.written


@pytest.mark.parametrize("where", ["process_now", "frame_from_pb"])
async def test_a_bug_on_the_readers_path_costs_one_frame_not_the_stream(where, monkeypatch, caplog):
    service = await _service(EchoModel())
    servicer = EdgeInferenceServicer(service, asyncio.Event())
    try:
        await _warm(service, monkeypatch)
        if where == "process_now":
            real_now = service.process_now

            def flaky_now(frame: FrameRequest):
                if frame.frame_id == 4:
                    raise RuntimeError("a bug")
                return real_now(frame)

            monkeypatch.setattr(service, "process_now", flaky_now)
        else:
            real_convert = server_module.frame_from_pb

            def flaky_convert(request: pb.FrameRequest):
                if request.frame_id == 4:
                    raise RuntimeError("a bug")
                return real_convert(request)

            monkeypatch.setattr(server_module, "frame_from_pb", flaky_convert)
        context = _Context()
        await servicer.Stream(_requests(8), context)
    finally:
        await service.__aexit__(None, None, None)
    by_id = {r.frame_id: r for r in context.written}
    assert sorted(by_id) == list(range(8))
    assert by_id[4].status_code == StatusCode.INTERNAL
    assert "a bug" in by_id[4].status_message
    assert (by_id[4].model, by_id[4].branch) == ("echo", "split@x")
    assert all(by_id[i].status_code == 0 for i in by_id if i != 4)
    assert "frame 4 failed" in caplog.text


async def test_a_stopping_server_finishes_the_answer_its_reader_is_writing(monkeypatch):
    service = await _service(EchoModel())
    stopping = asyncio.Event()
    servicer = EdgeInferenceServicer(service, stopping)
    await _warm(service, monkeypatch)
    release = asyncio.Event()

    class SlowContext(_Context):
        async def write(self, message):
            stopping.set()  # the server starts stopping while this answer is on its way
            await release.wait()
            await super().write(message)

    async def forever():
        yield _request(7)
        await asyncio.Event().wait()

    context = SlowContext()
    stream = asyncio.create_task(servicer.Stream(forever(), context))
    await asyncio.sleep(0.05)
    assert not stream.done()  # still writing frame 7
    release.set()
    await asyncio.wait_for(stream, 5.0)
    await service.__aexit__(None, None, None)
    assert [r.frame_id for r in context.written] == [7]
    assert context.written[0].status_code == 0


@pytest.mark.parametrize("tail_inline_below_ms", [0.0, 50.0])
async def test_answers_are_the_same_on_either_path(tail_inline_below_ms):
    batching = BatchingConfig(max_queue_delay_ms=0.0, tail_inline_below_ms=tail_inline_below_ms)
    service = await _service(EchoModel(), batching=batching)
    try:
        outcomes = [await service.process(_frame(i)) for i in range(4)]
    finally:
        await service.__aexit__(None, None, None)
    assert [o.frame_id for o in outcomes] == [0, 1, 2, 3]
    assert all(isinstance(o.output, Detections) and o.error is None for o in outcomes)


class ThreadMaskEcho(ThreadEcho):
    """Records its tail's thread and answers a mask (the output needs encoding)."""

    def run_tail(self, branch, batch):
        self.threads.append(threading.get_ident())
        return [SegmentationMask(np.zeros((4, 4), np.uint8)) for _ in batch]


async def test_one_pipeline_chooses_inline_or_pool_in_one_place(monkeypatch):
    """``EdgeService.inline`` decides; ``process`` and ``process_now`` both follow it."""
    model, masks = ThreadEcho(), ThreadMaskEcho("masks")
    service = await _service(model, masks)
    decoded_on: list[int] = []
    real_decode = service.registry.decode

    def decode(frame, spec):
        decoded_on.append(threading.get_ident())
        return real_decode(frame, spec)

    monkeypatch.setattr(service.registry, "decode", decode)
    loop_thread = threading.get_ident()
    big = np.zeros(20_000, np.float32)  # over the inline decode size
    try:
        assert not service.inline(_frame(0))  # unmeasured tail: the pool
        await service.process(_frame(0))
        assert model.threads[-1] != loop_thread
        assert service.inline(_frame(1))  # measured cheap, small, detections
        await service.process(_frame(1))
        assert model.threads[-1] == loop_thread and decoded_on[-1] == loop_thread
        # A large payload: not inline; its decode leaves the loop, the cheap tail does not.
        assert not service.inline(_frame(2, big))
        assert service.process_now(_frame(2, big)) is None
        assert (await service.process(_frame(2, big))).error is None
        assert decoded_on[-1] != loop_thread and model.threads[-1] == loop_thread
        # Outputs that need encoding never go inline, however cheap the tail.
        for i in range(3):
            assert (await service.process(_frame(i, model="masks"))).error is None
        assert not service.inline(_frame(3, model="masks"))
        # A shutting-down server: not inline; the pipeline refuses with its reason.
        service.begin_shutdown()
        assert not service.inline(_frame(4))
        refused = await service.process(_frame(4))
        assert refused.error is not None and refused.error.code is StatusCode.UNAVAILABLE
    finally:
        await service.__aexit__(None, None, None)


async def test_an_inline_pipeline_that_suspends_is_a_loud_bug():
    from splitedge.edge.service import _run_inline

    with pytest.raises(RuntimeError, match="suspended"):
        _run_inline(asyncio.sleep(0))  # type: ignore[arg-type]


# ---------------------------------------------------------------- issue 13 item 1


def _zstd_frame(i: int, values: np.ndarray) -> FrameRequest:
    tensor = codec.encode_tensor(values, "x")  # zstd: zeros pack to a few dozen bytes
    return FrameRequest(i, "echo", "split@x", [tensor], None, (3, 4), (3, 4))


async def test_the_inline_rule_looks_at_the_declared_decoded_size_not_the_wire_size(monkeypatch):
    model = ThreadEcho()
    service = await _service(model)
    decoded_on: list[int] = []
    real_decode = service.registry.decode

    def decode(frame, spec):
        decoded_on.append(threading.get_ident())
        return real_decode(frame, spec)

    monkeypatch.setattr(service.registry, "decode", decode)
    try:
        for i in range(3):
            await service.process(_frame(i))
        assert service.inline(_frame(3))  # measured cheap
        bomb = _zstd_frame(4, np.zeros(200_000, np.float32))  # 800 kB declared
        assert len(bomb.tensors[0].data) < 1000
        assert not service.inline(bomb)
        assert service.process_now(bomb) is None
        assert (await service.process(bomb)).error is None
        assert decoded_on[-1] != threading.get_ident()  # decoded off the event loop
    finally:
        await service.__aexit__(None, None, None)


class GatedEcho(EchoModel):
    """Echo whose tail waits for ``gate`` (a real thread blocking, as a slow model does)."""

    def __init__(self) -> None:
        super().__init__("echo")
        self.started = threading.Event()
        self.gate = threading.Event()

    def run_tail(self, branch, batch):
        self.started.set()
        assert self.gate.wait(10.0)
        return super().run_tail(branch, batch)


async def test_a_full_queue_refuses_a_frame_before_it_is_decoded(monkeypatch):
    model = GatedEcho()
    batching = BatchingConfig(max_batch_size=1, max_queue_delay_ms=0.0, queue_capacity=1)
    service = await _service(model, batching=batching)
    decoded: list[int] = []
    real_decode = service.registry.decode

    def decode(frame, spec):
        decoded.append(frame.frame_id)
        return real_decode(frame, spec)

    monkeypatch.setattr(service.registry, "decode", decode)
    try:
        running = asyncio.create_task(service.process(_frame(1)))
        await asyncio.to_thread(model.started.wait, 10.0)
        waiting = asyncio.create_task(service.process(_frame(2)))
        while service.batcher.queue_depth < 1:
            await asyncio.sleep(0.001)
        # Corrupt zstd: decoding it would say INVALID_ARGUMENT; admission comes first.
        corrupt = _zstd_frame(3, np.arange(64, dtype=np.float32))
        t = corrupt.tensors[0]
        corrupt.tensors[0] = dataclasses.replace(t, data=t.data[:-4] + b"\0\0\0\0")
        refused = await service.process(corrupt)
        assert refused.error is not None
        assert refused.error.code == StatusCode.RESOURCE_EXHAUSTED, refused.error.message
        assert "admission queue full" in refused.error.message
        assert 3 not in decoded
        model.gate.set()
        assert (await running).error is None and (await waiting).error is None
        assert service.batcher.queue_depth == 0 and service.batcher.in_flight == 0
        assert (await service.process(corrupt)).error.code == StatusCode.INVALID_ARGUMENT
    finally:
        model.gate.set()
        await service.__aexit__(None, None, None)
