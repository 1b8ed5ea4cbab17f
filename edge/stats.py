"""Rolling server statistics: tail latency per branch and batch size, frame rate, load.

Updated from the event loop only (after each batch), read by ``Describe`` (a branch's
measured profile) and ``Status`` (the load a device's scheduler sees). Clocks are
``time.monotonic()`` seconds, passed in so tests can drive them.

Per batch size the window holds one sample per tail run (the whole run's time, which
is what every frame of that batch waited for its tail), at most ``window_samples`` runs
per (model, branch, batch size). Batch sizes come from the batcher, which never forms a
batch above its ``max_batch_size``, so the number of windows stays bounded too.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from splitedge.proto.status import BatchLatency

__all__ = ["BranchSnapshot", "ServerStats"]


@dataclass(frozen=True)
class BranchSnapshot:
    model: str
    branch: str
    tail_latency_ms_p50: float
    tail_latency_ms_p95: float
    tail_samples: int  # samples in the rolling window
    frames: int  # frames answered since start
    by_batch_size: tuple[BatchLatency, ...] = ()  # ascending batch size


class _BranchWindow:
    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.tail_ms: deque[float] = deque(maxlen=samples)
        self.by_batch_size: dict[int, deque[float]] = {}  # batch size -> tail ms per run
        self.frames = 0

    def add(self, tail_ms: float, batch_size: int) -> None:
        self.tail_ms.extend([tail_ms] * batch_size)
        runs = self.by_batch_size.get(batch_size)
        if runs is None:
            runs = self.by_batch_size[batch_size] = deque(maxlen=self.samples)
        runs.append(tail_ms)
        self.frames += batch_size

    def per_batch_size(self) -> tuple[BatchLatency, ...]:
        out = []
        for size in sorted(self.by_batch_size):
            runs = self.by_batch_size[size]
            p50, p95 = _percentiles(runs)
            out.append(BatchLatency(size, p50, p95, len(runs)))
        return tuple(out)


def _percentiles(values: deque[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.fromiter(values, float, len(values)), [50, 95])
    return float(p50), float(p95)


class ServerStats:
    """Tail latency percentiles over the last ``window_samples`` frames per branch and
    the last ``window_samples`` tail runs per (branch, batch size); frames/s and busy
    fraction over the last ``window_s`` seconds."""

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
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        window = self._branches.get((model, branch))
        if window is None:
            window = self._branches[(model, branch)] = _BranchWindow(self.window_samples)
        window.add(tail_ms, batch_size)
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
        p50, p95 = _percentiles(window.tail_ms)
        return BranchSnapshot(
            model,
            branch,
            p50,
            p95,
            len(window.tail_ms),
            window.frames,
            window.per_batch_size(),
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
