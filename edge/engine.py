"""Where tails run, behind one small interface the service talks to.

:class:`TailEngine` is what :class:`~splitedge.edge.service.EdgeService` needs from
whatever runs its tails: admission before decoding (``admit``, ``full``,
``wait_for_room``), ``submit`` a decoded frame and await its :class:`BatchResult`,
the optional run-on-the-loop fast path (``can_run_now`` / ``run_now``), and the load
figures Status reports (``queue_depth``, ``in_flight``, ``depth``, ``replicas``,
``workers``). Two engines implement it:

- ``local`` (the default): :class:`~splitedge.edge.batcher.Batcher`, in-process
  dynamic batching in front of a thread pool. One box needs nothing else.
- ``ray``: :class:`splitedge.edge.ray_engine.RayEngine`, every model's tails as a Ray
  Serve deployment (batched inside each replica, autoscaled, on any node of a Ray
  cluster); the gRPC front end stays this server's. Imported only when chosen, so
  the default install needs no Ray.

Both call ``observer(model, branch, batch_size, start_s, end_s)`` once per tail run
(the ray engine for every replica's runs), which feeds the server's statistics.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from splitedge.edge.batcher import Admission, Batcher, BatchObserver, BatchResult, TailFn
from splitedge.edge.config import BatchingConfig, EngineConfig, ModelConfig
from splitedge.models.types import TailInput

__all__ = ["FifoGate", "TailEngine", "make_engine"]


class TailEngine(Protocol):
    """What runs tails for the service (see the module doc)."""

    queue_capacity: int

    async def __aenter__(self) -> TailEngine: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def closing(self) -> bool: ...

    @property
    def queue_depth(self) -> int:
        """Frames admitted and not yet in a tail, across branches (and replicas)."""

    @property
    def in_flight(self) -> int:
        """Frames admitted and not yet answered."""

    @property
    def full(self) -> bool:
        """Whether a new frame would be refused now."""

    @property
    def workers(self) -> int:
        """Tail runs that can be under way at once (threads, or running replicas)."""

    def admit(self) -> Admission: ...

    async def wait_for_room(self, timeout_s: float) -> None: ...

    def depth(self, model: str, branch: str) -> int: ...

    def replicas(self, model: str, branch: str) -> int:
        """Replicas serving the branch's tail now (1 for the in-process engine)."""

    def can_run_now(self, model: str, branch: str) -> bool: ...

    def run_now(self, model: str, branch: str, item: TailInput) -> BatchResult | None: ...

    async def submit(
        self,
        model: str,
        branch: str,
        item: TailInput,
        *,
        deadline_ms: float = 0.0,
        admission: Admission | None = None,
    ) -> BatchResult: ...


def make_engine(
    engine: EngineConfig,
    batching: BatchingConfig,
    tail: TailFn,
    *,
    models: Sequence[ModelConfig] = (),
    device: str = "cpu",
    observer: BatchObserver | None = None,
) -> TailEngine:
    """The engine ``engine.kind`` names. ``tail`` runs in-process (local); ``models``
    and ``device`` are what each Ray replica builds and where it runs them."""
    if engine.kind == "ray":
        from splitedge.edge.ray_engine import RayEngine  # Ray only when asked for

        return RayEngine(engine, batching, models, device=device, observer=observer)
    return Batcher(
        tail,
        max_batch_size=batching.max_batch_size,
        max_queue_delay_ms=batching.max_queue_delay_ms,
        queue_capacity=batching.queue_capacity,
        tail_workers=batching.tail_workers,
        tail_inline_below_ms=batching.tail_inline_below_ms,
        observer=observer,
    )


class FifoGate:
    """First come, first sent: at most ``limit`` frames of one model at its deployment,
    the rest wait here in arrival order. Serve's router spreads what it is given over
    replicas, and a request no replica can take yet waits in the handle with backoff
    retries, out of order: on a saturated tail the 95th percentile came out twice a
    FIFO queue's. The limit follows the replica count (autoscaling)."""

    def __init__(self) -> None:
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self, limit: int, timeout_s: float | None) -> bool:
        """Take a slot (True), or give up after ``timeout_s`` (False)."""
        if self.running < limit and not self._waiters:
            self.running += 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
            return True
        except TimeoutError:
            self._abandon(waiter, limit)
            return False
        except asyncio.CancelledError:
            self._abandon(waiter, limit)
            raise

    def _abandon(self, waiter: asyncio.Future[None], limit: int) -> None:
        if waiter.done() and not waiter.cancelled():
            self.running -= 1  # handed a slot just as it gave up: pass it on
            self.wake(limit)
        else:
            waiter.cancel()
            self._waiters.remove(waiter)

    def leave(self, limit: int) -> None:
        self.running -= 1
        self.wake(limit)

    def wake(self, limit: int) -> None:
        while self._waiters and self.running < limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.running += 1
                waiter.set_result(None)
