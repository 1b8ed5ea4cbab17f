"""Dynamic batching with bounded admission, deadlines, and a tail executor it owns.

Frames are grouped per (model, branch): the first frame of a batch waits at most
``max_queue_delay_ms`` for up to ``max_batch_size - 1`` companions, then the batch
runs as soon as one of ``tail_workers`` threads is free. One admission count bounds
the frames waiting across all branches (``queue_capacity``), counted from
:meth:`Batcher.admit`, before their payload is decoded: a frame over it is refused at
once with RESOURCE_EXHAUSTED, having cost no decoding, so overload never blocks the
event loop; :meth:`Batcher.wait_for_room` lets a refused stream wait for a place.
A frame whose deadline has passed when its batch is formed is failed with
DEADLINE_EXCEEDED and never computed. A raising tail costs only the frames that make
it raise: a failed batch of several frames is run again one frame at a time, so each
frame gets its own answer (a :class:`RequestError` the tail raises is passed on as
it is; anything else is INTERNAL). Tails run in a thread pool, so torch work never
blocks asyncio.

Fast path: with no batching window (``max_queue_delay_ms`` 0 or ``max_batch_size``
1), a frame that finds no frame waiting (in any branch) and a worker free starts
its tail at once, without the branch loop's wake-up; frames that arrive while
every worker is busy queue and batch as usual. A branch whose tail is measured (moving
average, timed inside the call) under ``tail_inline_below_ms`` runs on the event
loop itself, synchronously (:meth:`Batcher.run_now`, also open to callers that want
the whole answer without awaiting): handing such a tail to a thread costs more than
the tail does. Real model tails (milliseconds) never qualify; the first runs of a
branch always go to the pool, so an unmeasured tail cannot block the loop, and a
tail that raises is forgotten (back to the pool until measured again).

Lifetime: ``async with Batcher(tail, ...) as batcher:``; leaving the block refuses
new frames (UNAVAILABLE), drains every admitted frame, then stops the branch loops
and the executor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from splitedge.edge.errors import (
    DeadlineExceeded,
    InternalError,
    RequestError,
    ResourceExhausted,
    Unavailable,
)
from splitedge.models.types import Prediction, TailInput
from splitedge.proto.aio import wait_within
from splitedge.proto.inline import InlineRule

__all__ = ["Admission", "BatchObserver", "BatchResult", "Batcher", "TailFn"]

log = logging.getLogger(__name__)

TailFn = Callable[[str, str, list[TailInput]], Sequence[Prediction]]
"""``tail(model, branch, inputs)`` -> one prediction per input; runs in a worker thread."""

BatchObserver = Callable[[str, str, int, float, float], None]
"""``observer(model, branch, batch_size, start_s, end_s)`` after each successful tail run
(monotonic seconds); called on the event loop."""


@dataclass(frozen=True)
class BatchResult:
    prediction: Prediction
    queue_ms: float  # admission to the start of its batch's tail
    tail_ms: float  # the whole batch's tail time
    batch_size: int


@dataclass
class _Pending:
    item: TailInput
    future: asyncio.Future[BatchResult]
    enqueued_s: float
    deadline_s: float | None
    budget_ms: float


class _BranchQueue:
    def __init__(self) -> None:
        self.items: deque[_Pending] = deque()
        self.arrived = asyncio.Event()


class RoomWaiting:
    """``wait_for_room`` / ``_notify_room`` for an engine with ``full``, ``_closing`` and
    a ``_room_waiters`` list (the local batcher and the ray engine)."""

    _room_waiters: list[asyncio.Future[None]]
    _closing: bool

    @property
    def full(self) -> bool:
        raise NotImplementedError

    async def wait_for_room(self, timeout_s: float) -> None:
        """Return once a frame could be admitted again (or closing begins), at the latest
        after ``timeout_s``: a stream just refused waits here before its next frame."""
        if not self.full or self._closing:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room_waiters.append(waiter)
        try:
            await asyncio.wait((waiter,), timeout=timeout_s)
        finally:
            if not waiter.done():
                waiter.cancel()
                self._room_waiters.remove(waiter)

    def _notify_room(self, closing: bool = False) -> None:
        if self._room_waiters and (closing or not self.full):
            waiters, self._room_waiters = self._room_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class Batcher(RoomWaiting):
    """Per-(model, branch) dynamic batching in front of a blocking ``tail`` function."""

    def __init__(
        self,
        tail: TailFn,
        *,
        max_batch_size: int = 8,
        max_queue_delay_ms: float = 5.0,
        queue_capacity: int = 64,
        tail_workers: int = 1,
        tail_inline_below_ms: float = 0.0,
        observer: BatchObserver | None = None,
    ) -> None:
        if max_batch_size < 1 or queue_capacity < 1 or tail_workers < 1:
            raise ValueError("max_batch_size, queue_capacity and tail_workers must be >= 1")
        if tail_inline_below_ms < 0:
            raise ValueError("tail_inline_below_ms must not be negative")
        self._tail = tail
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.queue_capacity = queue_capacity
        self.tail_workers = tail_workers
        self._no_window = max_queue_delay_ms <= 0 or max_batch_size == 1
        self._inline = InlineRule[tuple[str, str]](tail_inline_below_ms)  # cost per branch
        self._observer = observer
        self._queues: dict[tuple[str, str], _BranchQueue] = {}
        self._loops: set[asyncio.Task[None]] = set()  # one per branch, run until close
        self._tails: set[asyncio.Task[None]] = set()  # one per running batch
        self._executor: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0  # admitted, not yet taken into a batch
        self._reserved = 0  # admitted (see admit), still decoding: not yet submitted
        self._room_waiters: list[asyncio.Future[None]] = []  # see wait_for_room
        self._in_flight = 0  # admitted, not yet answered
        self._idle: asyncio.Event | None = None
        self._closing = False
        self._started = False

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Batcher:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def start(self) -> None:
        """Create the executor and loop-bound primitives (call inside the running loop)."""
        if self._started:
            return
        self._executor = ThreadPoolExecutor(self.tail_workers, thread_name_prefix="splitedge-tail")
        self._slots = asyncio.Semaphore(self.tail_workers)
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = True

    async def close(self) -> None:
        """Refuse new frames, answer every admitted one, then stop loops and executor."""
        if not self._started or self._executor is None:
            return
        self._closing = True
        self._notify_room(closing=True)
        assert self._idle is not None
        await self._idle.wait()
        # A tail whose callers all went away still runs in a thread: let it finish.
        await asyncio.gather(*self._tails, return_exceptions=True)
        loops = list(self._loops)
        for task in loops:
            task.cancel()
        results = await asyncio.gather(*loops, return_exceptions=True)
        for task, result in zip(loops, results, strict=True):
            if isinstance(result, Exception):
                log.error("batcher task %s failed: %r", task.get_name(), result)
        self._executor.shutdown(wait=True)
        self._executor = None

    @property
    def closing(self) -> bool:
        return self._closing

    # ------------------------------------------------------------ state

    @property
    def queue_depth(self) -> int:
        """Frames admitted and waiting for a batch, across all branches."""
        return self._waiting

    @property
    def in_flight(self) -> int:
        """Frames admitted and not yet answered (waiting or in a running tail)."""
        return self._in_flight

    @property
    def full(self) -> bool:
        """True when a new frame would be refused (queue full or closing)."""
        return self._closing or self._waiting + self._reserved >= self.queue_capacity

    def admit(self) -> Admission:
        """Take a frame's place in the admission queue before any work is spent on it.

        Refuses at once (RESOURCE_EXHAUSTED when full, UNAVAILABLE once closing), so
        under overload a refusal costs no decoding. The place counts against
        ``queue_capacity`` until :meth:`submit` takes it (``admission=``) or the
        returned :class:`Admission` is closed (``with batcher.admit() as a: ...``).
        """
        self._refuse_if_full()
        self._reserved += 1
        return Admission(self)

    def _refuse_if_full(self) -> None:
        if self._closing:
            raise Unavailable("server is shutting down; send this frame elsewhere")
        if self._waiting + self._reserved >= self.queue_capacity:
            raise ResourceExhausted(
                f"admission queue full ({self.queue_capacity} frames waiting for a tail); "
                "retry later or lower the frame rate"
            )

    def depth(self, model: str, branch: str) -> int:
        queue = self._queues.get((model, branch))
        return 0 if queue is None else len(queue.items)

    @property
    def workers(self) -> int:
        """Tail runs under way at once at most (the executor's threads)."""
        return self.tail_workers

    def replicas(self, model: str, branch: str) -> int:
        """One: every tail runs in this process."""
        return 1

    # ------------------------------------------------------------ requests

    async def submit(
        self,
        model: str,
        branch: str,
        item: TailInput,
        *,
        deadline_ms: float = 0.0,
        admission: Admission | None = None,
    ) -> BatchResult:
        """Queue one frame and wait for its prediction.

        ``deadline_ms`` > 0: the frame is dropped (DEADLINE_EXCEEDED) if its batch
        forms later than that many ms from now. Raises RESOURCE_EXHAUSTED when the
        admission queue is full and UNAVAILABLE once closing, unless ``admission``
        (from :meth:`admit`) already holds the frame's place.
        """
        if not self._started:
            raise RuntimeError("Batcher.submit() before start() (use `async with`)")
        if admission is not None and admission.take():
            if self._closing:
                raise Unavailable("server is shutting down; send this frame elsewhere")
        else:
            self._refuse_if_full()
        now_result = self.run_now(model, branch, item)
        if now_result is not None:
            return now_result
        key = (model, branch)
        queue = self._queues.get(key)
        assert self._slots is not None and self._idle is not None
        now = time.monotonic()
        pending = _Pending(
            item=item,
            future=asyncio.get_running_loop().create_future(),
            enqueued_s=now,
            deadline_s=now + deadline_ms / 1000.0 if deadline_ms > 0 else None,
            budget_ms=deadline_ms,
        )
        self._in_flight += 1
        self._idle.clear()
        try:
            # Nothing waits anywhere (so no branch loop waits for a worker) and one is free:
            # the fast path, a batch of one started without the branch loop.
            if self._no_window and self._waiting == 0 and not self._slots.locked():
                await self._slots.acquire()  # free, as just checked: does not yield
                self._spawn(self._tails, self._run_tail(key, [pending]), f"tail:{model}/{branch}")
            else:
                if queue is None:
                    queue = self._queues[key] = _BranchQueue()
                    self._spawn(
                        self._loops, self._branch_loop(key, queue), f"batcher:{model}/{branch}"
                    )
                queue.items.append(pending)
                queue.arrived.set()
                self._waiting += 1
            # A cancelled caller cancels the future; the branch loop then skips it.
            return await pending.future
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    @property
    def tail_inline_below_ms(self) -> float:
        return self._inline.below_ms

    def inline_tail(self, model: str, branch: str) -> bool:
        """Whether this branch's tail now runs on the event loop (see the module doc)."""
        return self._inline.inline((model, branch))

    def can_run_now(self, model: str, branch: str) -> bool:
        """Whether :meth:`run_now` would run this branch's next frame right away."""
        return (
            self._no_window
            and self._waiting == 0
            and not self._closing
            and self._slots is not None
            and not self._slots.locked()
            and self.inline_tail(model, branch)
        )

    def run_now(self, model: str, branch: str, item: TailInput) -> BatchResult | None:
        """Run one frame's tail synchronously on the event loop, or None if it must queue.

        It runs when :meth:`can_run_now` holds: the fast path applies and the branch's
        tail is measured under ``tail_inline_below_ms``. Nothing else runs meanwhile,
        so the frame needs no admission slot and no future. A raising tail raises
        INTERNAL here and is forgotten, like a failed batch.
        """
        if not self.can_run_now(model, branch):
            return None
        key = (model, branch)
        start_s = time.monotonic()
        try:
            predictions, cost_ms = self._timed_tail(model, branch, [item])
            self._account(key, predictions, 1, cost_ms)
        except Exception as exc:
            error = self._tail_failed(key, 1, exc)
            if error is exc:
                raise
            raise error from exc
        end_s = time.monotonic()
        self._observe(key, 1, start_s, end_s)
        return BatchResult(predictions[0], 0.0, (end_s - start_s) * 1000.0, 1)

    # ------------------------------------------------------------ loops

    def _spawn(
        self, tasks: set[asyncio.Task[None]], coro: Coroutine[None, None, None], name: str
    ) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_crash)

    async def _branch_loop(self, key: tuple[str, str], queue: _BranchQueue) -> None:
        assert self._slots is not None
        while True:
            while not queue.items:
                queue.arrived.clear()
                await queue.arrived.wait()
            flush_at = queue.items[0].enqueued_s + self.max_queue_delay_s
            while len(queue.items) < self.max_batch_size:
                remaining_s = flush_at - time.monotonic()
                if remaining_s <= 0:
                    break
                queue.arrived.clear()
                try:
                    await wait_within(queue.arrived.wait(), remaining_s)
                except asyncio.TimeoutError:
                    break
            # Frames arriving while every worker is busy join this batch.
            await self._slots.acquire()
            try:
                batch = [
                    queue.items.popleft() for _ in range(min(self.max_batch_size, len(queue.items)))
                ]
                self._waiting -= len(batch)
                self._notify_room()
                live = self._drop_dead(key, batch)
            except BaseException:
                self._slots.release()
                raise
            if live:
                self._spawn(self._tails, self._run_tail(key, live), f"tail:{key[0]}/{key[1]}")
            else:
                self._slots.release()
            # The loop now waits for the next frame, maybe for long: it must not keep
            # this batch's inputs (decoded tensors, up to max_tensor_bytes each) alive.
            del batch, live

    def _drop_dead(self, key: tuple[str, str], batch: list[_Pending]) -> list[_Pending]:
        """Skip cancelled frames; fail expired ones without computing them."""
        now = time.monotonic()
        live = []
        for p in batch:
            if p.future.done():
                continue
            if p.deadline_s is not None and now >= p.deadline_s:
                waited_ms = (now - p.enqueued_s) * 1000.0
                p.future.set_exception(
                    DeadlineExceeded(
                        f"frame waited {waited_ms:.0f} ms for {key[0]}/{key[1]}'s tail, over its "
                        f"{p.budget_ms:.0f} ms budget; dropped uncomputed"
                    )
                )
                continue
            live.append(p)
        return live

    def _timed_tail(
        self, model: str, branch: str, items: list[TailInput]
    ) -> tuple[Sequence[Prediction], float]:
        t0 = time.perf_counter()
        predictions = self._tail(model, branch, items)
        return predictions, (time.perf_counter() - t0) * 1000.0

    def _account(
        self, key: tuple[str, str], predictions: Sequence[Prediction], size: int, cost_ms: float
    ) -> None:
        """Fold a run's cost into the branch's moving average; check the prediction count."""
        self._inline.observe(key, cost_ms)
        if len(predictions) != size:
            raise RuntimeError(f"returned {len(predictions)} predictions for {size} inputs")

    def _tail_failed(self, key: tuple[str, str], size: int, exc: Exception) -> RequestError:
        """The error a failed tail run answers: a RequestError the tail raised (a frame it
        refused: no trace logged), else INTERNAL with the trace logged."""
        self._inline.forget(key)  # its cost is unknown again: the pool
        if isinstance(exc, RequestError):
            log.debug("tail %s/%s refused a batch of %d: %s", key[0], key[1], size, exc)
            return exc
        log.error("tail %s/%s failed on a batch of %d", key[0], key[1], size, exc_info=exc)
        return InternalError(f"tail of {key[0]}/{key[1]} failed: {exc!r}")

    def _observe(self, key: tuple[str, str], size: int, start_s: float, end_s: float) -> None:
        if self._observer is not None:
            try:
                self._observer(key[0], key[1], size, start_s, end_s)
            except Exception:
                log.exception("batch observer failed")

    async def _run_tail(self, key: tuple[str, str], batch: list[_Pending]) -> None:
        assert self._slots is not None and self._executor is not None
        model, branch = key
        loop = asyncio.get_running_loop()
        items = [p.item for p in batch]
        try:
            start_s = time.monotonic()
            try:
                try:
                    predictions, cost_ms = await loop.run_in_executor(
                        self._executor, self._timed_tail, model, branch, items
                    )
                    self._account(key, predictions, len(items), cost_ms)
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch[0], self._tail_failed(key, 1, exc))
                    else:
                        log.debug(
                            "tail %s/%s failed on a batch of %d (%r); running its frames "
                            "one by one",
                            model,
                            branch,
                            len(batch),
                            exc,
                        )
                        await self._run_one_by_one(key, batch)
                    return
            except asyncio.CancelledError:
                for p in batch:
                    _fail(p, Unavailable("server stopped while this frame's tail was running"))
                raise
            end_s = time.monotonic()
            tail_ms = (end_s - start_s) * 1000.0
            for p, prediction in zip(batch, predictions, strict=True):
                if not p.future.done():
                    queue_ms = (start_s - p.enqueued_s) * 1000.0
                    p.future.set_result(BatchResult(prediction, queue_ms, tail_ms, len(batch)))
            self._observe(key, len(batch), start_s, end_s)
        finally:
            self._slots.release()

    async def _run_one_by_one(self, key: tuple[str, str], batch: list[_Pending]) -> None:
        """A failed batch again, a frame at a time: each frame gets its own answer, so one
        bad frame cannot fail the frames batched with it (the caller holds the slot)."""
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        for p in batch:
            if p.future.done():  # its caller went away
                continue
            start_s = time.monotonic()
            try:
                predictions, cost_ms = await loop.run_in_executor(
                    self._executor, self._timed_tail, key[0], key[1], [p.item]
                )
                self._account(key, predictions, 1, cost_ms)
            except Exception as exc:
                _fail(p, self._tail_failed(key, 1, exc))
                continue
            end_s = time.monotonic()
            if not p.future.done():
                queue_ms = (start_s - p.enqueued_s) * 1000.0
                p.future.set_result(
                    BatchResult(predictions[0], queue_ms, (end_s - start_s) * 1000.0, 1)
                )
            self._observe(key, 1, start_s, end_s)


class Admission:
    """A frame's place in the admission queue, held from :meth:`Batcher.admit` until
    :meth:`Batcher.submit` takes it or the ``with`` block ends without submitting."""

    __slots__ = ("_batcher",)

    # Any engine with a ``_reserved`` count and ``_notify_room()`` (the ray engine too).
    def __init__(self, batcher: Any) -> None:
        self._batcher: Any = batcher

    def take(self) -> bool:
        """Give the place back to the queue's count (True if it was still held)."""
        if self._batcher is None:
            return False
        self._batcher._reserved -= 1
        self._batcher = None
        return True

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc: object) -> None:
        batcher = self._batcher
        if self.take():  # not submitted (a decode failed): its place is free again
            assert batcher is not None
            batcher._notify_room()


def _fail(p: _Pending, error: RequestError) -> None:
    if not p.future.done():
        p.future.set_exception(error)


def _log_crash(task: asyncio.Task[None]) -> None:
    # A crashed branch loop would leave its frames waiting forever: make it loud.
    if not task.cancelled() and task.exception() is not None:
        log.error("batcher task %s crashed", task.get_name(), exc_info=task.exception())
