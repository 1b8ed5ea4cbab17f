"""Dynamic batching, admission control, deadlines and tail failures of the Batcher."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

import numpy as np
import pytest

from splitedge.edge.batcher import Batcher
from splitedge.edge.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from splitedge.models.types import Detections, TailInput


def _item(tag: int) -> TailInput:
    return TailInput(orig_size=(tag, 1))


def _det(tag: int) -> Detections:
    # The tag travels in the score so each caller can check it got its own answer.
    return Detections(
        np.zeros((1, 4), np.float32), np.array([tag], np.float32), np.zeros(1, np.int64)
    )


class RecordingTail:
    """A tail that records every batch it runs; optionally blocks until released."""

    def __init__(self, *, block: bool = False, fail_tag: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.fail_tag = fail_tag

    def __call__(self, model: str, branch: str, inputs: list[TailInput]) -> list[Detections]:
        tags = [i.orig_size[0] for i in inputs]
        self.batches.append(tags)
        self.started.set()
        assert self.release.wait(5.0)
        if self.fail_tag in tags:
            raise RuntimeError(f"poisoned input {self.fail_tag}")
        return [_det(t) for t in tags]


async def test_burst_is_batched_up_to_max_batch_size():
    tail = RecordingTail()
    async with Batcher(tail, max_batch_size=4, max_queue_delay_ms=50) as batcher:
        results = await asyncio.gather(*(batcher.submit("m", "b", _item(i)) for i in range(10)))
    assert [len(b) for b in tail.batches] == [4, 4, 2]
    assert sorted(t for b in tail.batches for t in b) == list(range(10))
    for i, r in enumerate(results):
        assert r.prediction.scores[0] == i
    assert [r.batch_size for r in results] == [4] * 8 + [2] * 2


async def test_lone_request_waits_at_most_max_queue_delay():
    tail = RecordingTail()
    async with Batcher(tail, max_batch_size=8, max_queue_delay_ms=30) as batcher:
        start = time.perf_counter()
        result = await batcher.submit("m", "b", _item(1))
        elapsed_ms = (time.perf_counter() - start) * 1000
    assert tail.batches == [[1]]
    assert result.batch_size == 1
    # It waits for companions for the whole window, and not much longer (loaded CI slack).
    assert 25 <= result.queue_ms <= 130
    assert elapsed_ms <= 200


async def test_zero_delay_runs_at_once():
    tail = RecordingTail()
    async with Batcher(tail, max_batch_size=8, max_queue_delay_ms=0) as batcher:
        result = await batcher.submit("m", "b", _item(1))
    assert result.queue_ms < 20


async def test_full_queue_is_refused_without_blocking():
    tail = RecordingTail(block=True)
    async with Batcher(tail, max_batch_size=1, max_queue_delay_ms=0, queue_capacity=2) as batcher:
        running = asyncio.create_task(batcher.submit("m", "b", _item(0)))
        await asyncio.to_thread(tail.started.wait, 5.0)
        waiting = [asyncio.create_task(batcher.submit("m", "b", _item(i))) for i in (1, 2)]
        await asyncio.sleep(0.01)
        assert batcher.queue_depth == 2
        start = time.perf_counter()
        with pytest.raises(ResourceExhausted, match="admission queue full"):
            await batcher.submit("m", "other-branch", _item(3))
        assert time.perf_counter() - start < 0.05
        tail.release.set()
        results = await asyncio.gather(running, *waiting)
    assert [r.prediction.scores[0] for r in results] == [0, 1, 2]
    assert sorted(t for b in tail.batches for t in b) == [0, 1, 2]


async def test_expired_deadline_never_reaches_the_tail():
    tail = RecordingTail(block=True)
    async with Batcher(tail, max_batch_size=1, max_queue_delay_ms=0) as batcher:
        first = asyncio.create_task(batcher.submit("m", "b", _item(0)))
        await asyncio.to_thread(tail.started.wait, 5.0)
        late = asyncio.create_task(batcher.submit("m", "b", _item(1), deadline_ms=20))
        in_time = asyncio.create_task(batcher.submit("m", "b", _item(2), deadline_ms=5000))
        await asyncio.sleep(0.06)
        tail.release.set()
        with pytest.raises(DeadlineExceeded, match="20 ms budget"):
            await late
        assert (await first).prediction.scores[0] == 0
        assert (await in_time).prediction.scores[0] == 2
    assert tail.batches == [[0], [2]]


async def test_raising_tail_fails_only_the_frame_that_makes_it_raise():
    # A batch [13, 14] fails because of 13; 14 must not pay for it (issue 13 item 2).
    tail = RecordingTail(fail_tag=13)
    async with Batcher(tail, max_batch_size=2, max_queue_delay_ms=20) as batcher:
        bad, fine = (asyncio.create_task(batcher.submit("m", "bad", _item(t))) for t in (13, 14))
        good = asyncio.create_task(batcher.submit("m", "good", _item(1)))
        with pytest.raises(InternalError, match="poisoned input 13"):
            await bad
        alone = await fine
        assert alone.prediction.scores[0] == 14 and alone.batch_size == 1
        assert (await good).prediction.scores[0] == 1
        # The failed branch keeps serving.
        after = await batcher.submit("m", "bad", _item(15))
    assert after.prediction.scores[0] == 15
    assert [13, 14] in tail.batches and [14] in tail.batches


async def test_a_request_error_the_tail_raises_is_passed_on_without_a_trace(caplog):
    def tail(model, branch, inputs):
        if any(i.orig_size[0] == 13 for i in inputs):
            raise InvalidArgument("input 13 does not fit")
        return [_det(i.orig_size[0]) for i in inputs]

    async with Batcher(tail, max_batch_size=2, max_queue_delay_ms=20) as batcher:
        bad, fine = (asyncio.create_task(batcher.submit("m", "b", _item(t))) for t in (13, 14))
        with pytest.raises(InvalidArgument, match="input 13 does not fit"):
            await bad
        assert (await fine).prediction.scores[0] == 14
    assert "Traceback" not in caplog.text and "ERROR" not in caplog.text


async def test_close_drains_admitted_frames_then_refuses():
    tail = RecordingTail(block=True)
    batcher = Batcher(tail, max_batch_size=4, max_queue_delay_ms=0)
    async with batcher:
        pending = asyncio.create_task(batcher.submit("m", "b", _item(7)))
        await asyncio.to_thread(tail.started.wait, 5.0)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0.02)
        assert not closing.done()
        with pytest.raises(Unavailable):
            await batcher.submit("m", "b", _item(8))
        tail.release.set()
        assert (await pending).prediction.scores[0] == 7
        await closing
    assert tail.batches == [[7]]


async def test_tails_of_different_branches_run_in_parallel_with_two_workers():
    barrier = threading.Barrier(2, timeout=5.0)

    def tail(model: str, branch: str, inputs: list[TailInput]) -> list[Detections]:
        barrier.wait()  # only returns if both branches' tails run at the same time
        return [_det(i.orig_size[0]) for i in inputs]

    async with Batcher(tail, max_queue_delay_ms=0, tail_workers=2) as batcher:
        a, b = await asyncio.gather(
            batcher.submit("m", "a", _item(1)), batcher.submit("m", "b", _item(2))
        )
    assert (a.prediction.scores[0], b.prediction.scores[0]) == (1, 2)


class ThreadTail:
    """Records which thread ran each batch; sleeps ``delay_s`` in each call."""

    def __init__(self, delay_s: float = 0.0, fail_tag: int | None = None) -> None:
        self.threads: list[int] = []
        self.delay_s = delay_s
        self.fail_tag = fail_tag

    def __call__(self, model: str, branch: str, inputs: list[TailInput]) -> list[Detections]:
        self.threads.append(threading.get_ident())
        if self.delay_s:
            time.sleep(self.delay_s)
        tags = [i.orig_size[0] for i in inputs]
        if self.fail_tag in tags:
            raise RuntimeError(f"poisoned input {self.fail_tag}")
        return [_det(t) for t in tags]


async def test_a_cheap_tail_moves_onto_the_event_loop_after_its_first_run():
    tail = ThreadTail()
    loop_thread = threading.get_ident()
    async with Batcher(tail, max_queue_delay_ms=0, tail_inline_below_ms=50) as batcher:
        assert not batcher.inline_tail("m", "b")  # never measured: the pool
        results = [await batcher.submit("m", "b", _item(i)) for i in range(4)]
        assert batcher.inline_tail("m", "b")
        assert not batcher.inline_tail("m", "other")
    assert [r.prediction.scores[0] for r in results] == [0, 1, 2, 3]
    assert tail.threads[0] != loop_thread
    assert tail.threads[1:] == [loop_thread] * 3
    assert all(r.batch_size == 1 for r in results)


async def test_a_slow_tail_stays_in_the_pool():
    tail = ThreadTail(delay_s=0.005)
    loop_thread = threading.get_ident()
    async with Batcher(tail, max_queue_delay_ms=0, tail_inline_below_ms=1.0) as batcher:
        for i in range(3):
            await batcher.submit("m", "b", _item(i))
        assert not batcher.inline_tail("m", "b")
    assert loop_thread not in tail.threads


async def test_no_inline_tail_by_default_nor_with_a_batching_window():
    loop_thread = threading.get_ident()
    for kwargs in (
        {"max_queue_delay_ms": 0},
        {"max_queue_delay_ms": 5, "tail_inline_below_ms": 50},
    ):
        tail = ThreadTail()
        async with Batcher(tail, **kwargs) as batcher:
            for i in range(3):
                await batcher.submit("m", "b", _item(i))
        assert loop_thread not in tail.threads, kwargs


async def test_a_raising_inline_tail_fails_only_its_frame():
    tail = ThreadTail(fail_tag=13)
    loop_thread = threading.get_ident()
    async with Batcher(tail, max_queue_delay_ms=0, tail_inline_below_ms=50) as batcher:
        await batcher.submit("m", "b", _item(1))
        with pytest.raises(InternalError, match="poisoned input 13"):
            await batcher.submit("m", "b", _item(13))
        assert not batcher.inline_tail("m", "b")  # a failure forgets the cost
        after = await batcher.submit("m", "b", _item(2))
        assert batcher.in_flight == 0
    assert tail.threads[1] == loop_thread
    assert tail.threads[2] != loop_thread  # measured again in the pool
    assert after.prediction.scores[0] == 2


async def test_frames_queue_behind_a_busy_worker_instead_of_the_fast_path():
    tail = RecordingTail(block=True)
    async with Batcher(tail, max_batch_size=8, max_queue_delay_ms=0) as batcher:
        first = asyncio.create_task(batcher.submit("m", "b", _item(0)))
        await asyncio.to_thread(tail.started.wait, 5.0)
        rest = [asyncio.create_task(batcher.submit("m", "b", _item(i))) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        assert batcher.queue_depth == 3
        tail.release.set()
        results = await asyncio.gather(first, *rest)
    # The three that waited for the worker ran as one batch.
    assert tail.batches == [[0], [1, 2, 3]]
    assert [r.batch_size for r in results] == [1, 3, 3, 3]


def test_negative_inline_threshold_is_refused():
    with pytest.raises(ValueError, match="tail_inline_below_ms"):
        Batcher(ThreadTail(), tail_inline_below_ms=-1)


async def test_an_answered_batch_leaves_no_reference_to_its_inputs():
    # The branch loop waits for the next frame, maybe for a long time: it must not keep
    # the last batch's decoded tensors (up to max_tensor_bytes each) alive meanwhile.
    tensor = np.zeros((4, 8), np.float32)
    gone = weakref.ref(tensor)
    item = TailInput(orig_size=(1, 1), input_size=(1, 1), tensors={"z": tensor})
    del tensor
    async with Batcher(RecordingTail(), max_batch_size=4, max_queue_delay_ms=5) as batcher:
        result = await batcher.submit("m", "b", item)
        assert result.batch_size == 1
        del item, result
        await asyncio.sleep(0.05)  # the branch loop is back to waiting for frames
        gc.collect()
        assert gone() is None, gc.get_referrers(gone())
