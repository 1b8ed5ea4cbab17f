"""The one "run it inline if cheap" rule, for the device's head + encode and the edge's tails.

A step that would otherwise go to a thread runs on the event loop itself when its
measured cost (a moving average per key: a branch) is under ``below_ms``: the thread
hand-off would cost more than the work. An unmeasured step never runs inline, so the
first runs of a key go to the thread and an unknown cost cannot block the loop.
Lives in ``proto`` as the lowest room both sides use; it knows nothing of either.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["InlineRule"]

K = TypeVar("K", bound=Hashable)


class InlineRule(Generic[K]):
    """``rule.inline(key)`` -> run on the loop?; ``rule.observe(key, ms)`` after each run.

    ``weight`` is the newest run's share of the moving average.
    """

    __slots__ = ("_cost_ms", "below_ms", "weight")

    def __init__(self, below_ms: float, *, weight: float = 0.2) -> None:
        if below_ms < 0:
            raise ValueError(f"below_ms must not be negative, got {below_ms}")
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        self.below_ms = below_ms
        self.weight = weight
        self._cost_ms: dict[K, float] = {}

    def inline(self, key: K) -> bool:
        """Whether ``key``'s next run goes on the event loop (measured under ``below_ms``)."""
        cost = self._cost_ms.get(key)
        return cost is not None and cost < self.below_ms

    def observe(self, key: K, cost_ms: float) -> None:
        """Fold one run's cost into ``key``'s moving average."""
        previous = self._cost_ms.get(key)
        self._cost_ms[key] = (
            cost_ms if previous is None else previous + self.weight * (cost_ms - previous)
        )

    def forget(self, key: K) -> None:
        """``key``'s cost is unknown again (it raised): back to the thread until measured."""
        self._cost_ms.pop(key, None)

    def cost_ms(self, key: K) -> float | None:
        """The moving average, None while unmeasured."""
        return self._cost_ms.get(key)
