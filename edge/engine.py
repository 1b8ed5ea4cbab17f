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

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from splitedge.edge.batcher import Admission, Batcher, BatchObserver, BatchResult, TailFn
from splitedge.edge.config import BatchingConfig, EngineConfig, ModelConfig
from splitedge.models.types import TailInput

__all__ = ["TailEngine", "make_engine"]


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
