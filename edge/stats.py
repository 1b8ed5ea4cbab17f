"""Rolling server statistics: tail latency per branch, frame rate, executor load.

Updated from the event loop only (after each batch), read by ``Describe`` (a branch's
measured profile) and ``Status`` (the load a device's scheduler sees). Clocks are
``time.monotonic()`` seconds, passed in so tests can drive them.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["BranchSnapshot", "ServerStats"]


@dataclass(frozen=True)
class BranchSnapshot:
    model: str
    branch: str
    tail_latency_ms_p50: float
    tail_latency_ms_p95: float
    tail_samples: int  # samples in the rolling window
    frames: int  # frames answered since start


class _BranchWindow:
    def __init__(self, samples: int) -> None:
        self.tail_ms: deque[float] = deque(maxlen=samples)
        self.frames = 0


class ServerStats:
    """Tail latency percentiles over the last ``window_samples`` frames per branch;
    frames/s and busy fraction over the last ``window_s`` seconds."""

    def __init__(
        self, *, tail_workers: int = 1, window_samples: int = 256, window_s: float = 10.0
    ) -> None:
        self.tail_workers = tail_workers
        self.window_samples = window_samples
        self.window_s = window_s
        self._branches: dict[tuple[str, str], _BranchWindow] = {}
        self._done: deque[float] = deque()  # completion times of frames in the window
        self._busy: deque[tuple[float, float]] = deque()  # (start, end) of tail runs
        self.started = time.monotonic()

    def record_batch(
        self, model: str, branch: str, *, tail_ms: float, batch_size: int, start: float, end: float
    ) -> None:
        """One tail run of ``batch_size`` frames between monotonic ``start`` and ``end``."""
        window = self._branches.setdefault((model, branch), _BranchWindow(self.window_samples))
        window.tail_ms.extend([tail_ms] * batch_size)
        window.frames += batch_size
        self._done.extend([end] * batch_size)
        self._busy.append((start, end))
        self._trim(end)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._done and self._done[0] < horizon:
            self._done.popleft()
        while self._busy and self._busy[0][1] < horizon:
            self._busy.popleft()

    def branch(self, model: str, branch: str) -> BranchSnapshot:
        window = self._branches.get((model, branch))
        if window is None or not window.tail_ms:
            return BranchSnapshot(
                model, branch, 0.0, 0.0, 0, 0 if window is None else window.frames
            )
        p50, p95 = np.percentile(np.fromiter(window.tail_ms, float), [50, 95])
        return BranchSnapshot(
            model, branch, float(p50), float(p95), len(window.tail_ms), window.frames
        )

    def branches(self) -> list[BranchSnapshot]:
        return [self.branch(m, b) for (m, b) in self._branches]

    def frames_per_second(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        span_s = min(self.window_s, max(now - self.started, 1e-9))
        return len(self._done) / span_s

    def busy_fraction(self, now: float | None = None) -> float:
        """Share of the tail workers' time spent in tails over the window, 0..1."""
        now = time.monotonic() if now is None else now
        self._trim(now)
        horizon = now - self.window_s
        busy_s = sum(min(end, now) - max(start, horizon) for start, end in self._busy)
        span_s = min(self.window_s, max(now - self.started, 1e-9)) * self.tail_workers
        return max(0.0, min(1.0, busy_s / span_s))

    def uptime_s(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started
