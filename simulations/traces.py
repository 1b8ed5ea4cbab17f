"""Bandwidth traces: a piecewise-constant rate over time, and seeded generators.

A :class:`BandwidthTrace` is the one currency of the network emulation: files
(see :mod:`splitedge.simulations.trace_formats`) are read into it, generators
build it, and both link backends follow it. It loops at ``duration_s`` like a
Mahimahi trace does.

Mahimahi delivery opportunities (one 1500-byte packet may leave at each listed
millisecond) convert both ways. Reading bins the opportunities per millisecond
(``bin_ms=1``), so ``from_delivery_ms(ts).to_delivery_ms()`` gives ``ts`` back
exactly (a timestamp 0 comes back as the period, its twin in the next loop).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

PACKET_BYTES = 1500
# Counts of packets are computed from float cumulative bytes; this absorbs
# rounding so that exactly n packets per millisecond stay n, not n - 1.
_EPS_PACKETS = 1e-6


class TraceError(ValueError):
    """Base of every trace problem (bad values, bad files)."""


class InvalidTraceError(TraceError):
    """A trace built from values that cannot describe a link."""


@dataclass(frozen=True, eq=False)
class BandwidthTrace:
    """Rate ``rate_mbps[i]`` from ``start_s[i]`` until the next start (or ``duration_s``)."""

    start_s: np.ndarray
    rate_mbps: np.ndarray
    duration_s: float
    name: str = "trace"
    _cum_megabits: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        start = np.array(self.start_s, dtype=np.float64).reshape(-1)
        rate = np.array(self.rate_mbps, dtype=np.float64).reshape(-1)
        duration = float(self.duration_s)
        if start.size == 0 or start.size != rate.size:
            raise InvalidTraceError(
                f"trace '{self.name}': need as many start times as rates (>0), "
                f"got {start.size} and {rate.size}"
            )
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(rate))):
            raise InvalidTraceError(f"trace '{self.name}': start times and rates must be finite")
        if start[0] != 0.0:
            raise InvalidTraceError(f"trace '{self.name}': first segment must start at 0 s")
        if np.any(np.diff(start) <= 0):
            i = int(np.argmax(np.diff(start) <= 0)) + 1
            raise InvalidTraceError(
                f"trace '{self.name}': start times must increase, segment {i} starts at "
                f"{start[i]} s after {start[i - 1]} s"
            )
        if np.any(rate < 0):
            i = int(np.argmax(rate < 0))
            raise InvalidTraceError(f"trace '{self.name}': segment {i} has rate {rate[i]} < 0 Mbps")
        if not math.isfinite(duration) or duration <= start[-1]:
            raise InvalidTraceError(
                f"trace '{self.name}': duration_s={duration} must exceed the last start "
                f"{start[-1]} s"
            )
        seg_s = np.diff(np.append(start, duration))
        cum = np.concatenate(([0.0], np.cumsum(rate * seg_s)))
        for arr in (start, rate, cum):
            arr.setflags(write=False)
        object.__setattr__(self, "start_s", start)
        object.__setattr__(self, "rate_mbps", rate)
        object.__setattr__(self, "duration_s", duration)
        object.__setattr__(self, "_cum_megabits", cum)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_steps(
        cls, steps: Sequence[tuple[float, float]], duration_s: float, name: str = "steps"
    ) -> BandwidthTrace:
        """``[(t_s, mbps), ...]``: the rate becomes ``mbps`` at ``t_s`` (first t_s is 0)."""
        if not steps:
            raise InvalidTraceError(f"trace '{name}': need at least one (t_s, mbps) step")
        t, r = zip(*steps, strict=True)
        return cls(np.asarray(t, float), np.asarray(r, float), duration_s, name)

    @classmethod
    def from_delivery_ms(
        cls, timestamps_ms: ArrayLike, *, bin_ms: int = 1, name: str = "mahimahi"
    ) -> BandwidthTrace:
        """Mahimahi delivery opportunities -> rate, averaged over ``bin_ms`` windows."""
        ts = np.asarray(timestamps_ms)
        if ts.ndim != 1 or ts.size == 0:
            raise InvalidTraceError(f"trace '{name}': need at least one delivery opportunity")
        if not np.issubdtype(ts.dtype, np.integer):
            raise InvalidTraceError(f"trace '{name}': delivery timestamps must be integers (ms)")
        if bin_ms < 1:
            raise InvalidTraceError(f"trace '{name}': bin_ms={bin_ms} must be >= 1")
        if ts[0] < 0 or np.any(np.diff(ts) < 0):
            i = int(np.argmax(np.diff(ts) < 0)) + 1 if ts[0] >= 0 else 0
            raise InvalidTraceError(
                f"trace '{name}': delivery timestamps must be >= 0 and non-decreasing "
                f"(opportunity {i} is {int(ts[i])} ms)"
            )
        period_ms = int(ts[-1])
        if period_ms <= 0:
            raise InvalidTraceError(f"trace '{name}': the last timestamp (the period) must be > 0")
        # Opportunity at t ms ends millisecond bin t-1; t=0 is the previous loop's period.
        ms_index = np.where(ts == 0, period_ms, ts) - 1
        n_bins = -(-period_ms // bin_ms)
        counts = np.bincount(ms_index // bin_ms, minlength=n_bins).astype(np.float64)
        bin_len_ms = np.full(n_bins, float(bin_ms))
        bin_len_ms[-1] = period_ms - (n_bins - 1) * bin_ms
        rates = counts * PACKET_BYTES * 8 / (bin_len_ms * 1000.0)
        starts = np.arange(n_bins, dtype=np.float64) * bin_ms / 1000.0
        keep = np.concatenate(([True], rates[1:] != rates[:-1]))
        return cls(starts[keep], rates[keep], period_ms / 1000.0, name)

    # -- queries ------------------------------------------------------------------------

    @property
    def mean_mbps(self) -> float:
        """Time-weighted mean rate over one period."""
        return float(self._cum_megabits[-1] / self.duration_s)

    def segments(self) -> Iterator[tuple[float, float, float]]:
        """``(start_s, end_s, rate_mbps)`` for each segment of one period."""
        ends = np.append(self.start_s[1:], self.duration_s)
        for s, e, r in zip(self.start_s, ends, self.rate_mbps, strict=True):
            yield float(s), float(e), float(r)

    def sample(self, times_s: ArrayLike) -> np.ndarray:
        """Rate (Mbps) at each time; times past ``duration_s`` wrap around (looping)."""
        t = np.mod(np.asarray(times_s, dtype=np.float64), self.duration_s)
        return self.rate_mbps[np.searchsorted(self.start_s, t, side="right") - 1]

    def rate_at(self, t_s: float) -> float:
        return float(self.sample(t_s))

    def cumulative_megabits(self, times_s: ArrayLike) -> np.ndarray:
        """Megabits the trace can carry from 0 to each time (looping, vectorized)."""
        t = np.asarray(times_s, dtype=np.float64)
        loops = np.floor(t / self.duration_s)
        rem = t - loops * self.duration_s
        i = np.searchsorted(self.start_s, rem, side="right") - 1
        return (
            loops * self._cum_megabits[-1]
            + self._cum_megabits[i]
            + self.rate_mbps[i] * (rem - self.start_s[i])
        )

    def time_of_megabits(self, megabits: ArrayLike) -> np.ndarray:
        """Earliest time at which the cumulative capacity reaches each value (inverse).

        ``inf`` when the trace carries nothing at all.
        """
        x = np.asarray(megabits, dtype=np.float64)
        total = self._cum_megabits[-1]
        if total <= 0:
            return np.full(x.shape, np.inf)
        loops = np.floor(x / total)
        rem = x - loops * total
        # A value reached exactly at a loop boundary belongs to the previous loop's end.
        at_edge = (rem <= 0) & (x > 0)
        loops = np.where(at_edge, loops - 1, loops)
        rem = np.where(at_edge, total, rem)
        i = np.clip(np.searchsorted(self._cum_megabits, rem, side="left") - 1, 0, None)
        rate = self.rate_mbps[i]
        within = np.divide(
            rem - self._cum_megabits[i], rate, out=np.zeros_like(rem), where=rate > 0
        )
        return loops * self.duration_s + self.start_s[i] + within

    def mean_rates(self, interval_s: float, total_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(window_start_s, mean_mbps)`` over consecutive windows covering ``total_s``."""
        if interval_s <= 0 or total_s <= 0:
            raise InvalidTraceError("interval_s and total_s must be > 0")
        edges = np.append(np.arange(0.0, total_s, interval_s), total_s)
        cum = self.cumulative_megabits(edges)
        return edges[:-1], np.diff(cum) / np.diff(edges)

    # -- transformations ------------------------------------------------------------

    def slice(self, start_s: float, end_s: float) -> BandwidthTrace:
        """The trace between two times (they may reach into later loops)."""
        if not (0 <= start_s < end_s):
            raise InvalidTraceError(f"slice needs 0 <= start_s < end_s, got {start_s}, {end_s}")
        first = math.floor(start_s / self.duration_s)
        last = math.ceil(end_s / self.duration_s)
        offsets = np.arange(first, last)[:, None] * self.duration_s
        starts = (self.start_s[None, :] + offsets).reshape(-1)
        rates = np.tile(self.rate_mbps, last - first)
        inside = (starts > start_s) & (starts < end_s)
        new_starts = np.concatenate(([start_s], starts[inside])) - start_s
        new_rates = np.concatenate(([self.rate_at(start_s)], rates[inside]))
        keep = np.concatenate(([True], new_rates[1:] != new_rates[:-1]))
        return BandwidthTrace(
            new_starts[keep], new_rates[keep], end_s - start_s, f"{self.name}[slice]"
        )

    def loop(self, times: int) -> BandwidthTrace:
        """This trace repeated ``times`` times back to back."""
        if times < 1:
            raise InvalidTraceError(f"loop needs times >= 1, got {times}")
        return self.slice(0.0, self.duration_s * times)

    def scale(self, factor: float) -> BandwidthTrace:
        """Every rate multiplied by ``factor`` (>= 0)."""
        if not (math.isfinite(factor) and factor >= 0):
            raise InvalidTraceError(f"scale factor must be finite and >= 0, got {factor}")
        return BandwidthTrace(self.start_s, self.rate_mbps * factor, self.duration_s, self.name)

    def concat(self, other: BandwidthTrace) -> BandwidthTrace:
        """This trace followed by ``other``."""
        return BandwidthTrace(
            np.concatenate((self.start_s, other.start_s + self.duration_s)),
            np.concatenate((self.rate_mbps, other.rate_mbps)),
            self.duration_s + other.duration_s,
            f"{self.name}+{other.name}",
        )

    def to_delivery_ms(self) -> np.ndarray:
        """Mahimahi delivery opportunities (int ms, repeated) for one period.

        The period is rounded to whole milliseconds. Mahimahi takes the last
        timestamp as the period, so trailing time with no opportunity is lost, and
        a fraction of a packet left over at the end of a period is dropped.
        """
        period_ms = round(self.duration_s * 1000)
        if period_ms < 1:
            raise InvalidTraceError(f"trace '{self.name}' is shorter than 1 ms")
        edges_s = np.arange(period_ms + 1) / 1000.0
        packets = self.cumulative_megabits(edges_s) * 1e6 / 8 / PACKET_BYTES
        whole = np.floor(packets + _EPS_PACKETS).astype(np.int64)
        counts = np.diff(whole)
        if counts.sum() == 0:
            raise InvalidTraceError(
                f"trace '{self.name}' carries less than one 1500-byte packet per period"
            )
        return np.repeat(np.arange(1, period_ms + 1, dtype=np.int64), counts)

    def __repr__(self) -> str:
        return (
            f"BandwidthTrace(name={self.name!r}, segments={self.start_s.size}, "
            f"duration_s={self.duration_s:g}, mean_mbps={self.mean_mbps:.3f})"
        )


# -- generators ---------------------------------------------------------------------


def constant(rate_mbps: float, duration_s: float = 60.0) -> BandwidthTrace:
    return BandwidthTrace([0.0], [rate_mbps], duration_s, f"constant-{rate_mbps:g}")


def step(steps: Sequence[tuple[float, float]], duration_s: float) -> BandwidthTrace:
    return BandwidthTrace.from_steps(steps, duration_s, name="step")


def square_wave(
    low_mbps: float, high_mbps: float, period_s: float, duration_s: float, duty: float = 0.5
) -> BandwidthTrace:
    """``high_mbps`` for ``duty`` of each period, then ``low_mbps``."""
    if not (0 < duty < 1) or period_s <= 0:
        raise InvalidTraceError(f"square wave needs 0 < duty < 1 and period_s > 0, got {duty}")
    starts = np.arange(0.0, duration_s, period_s)
    t = np.stack((starts, starts + duty * period_s), axis=1).reshape(-1)
    r = np.tile([high_mbps, low_mbps], starts.size)
    keep = t < duration_s
    return BandwidthTrace(t[keep], r[keep], duration_s, "square")


def random_walk(
    start_mbps: float,
    step_mbps: float,
    interval_s: float,
    duration_s: float,
    *,
    min_mbps: float = 0.0,
    max_mbps: float = math.inf,
    seed: int = 0,
) -> BandwidthTrace:
    """Gaussian steps of std ``step_mbps`` every ``interval_s``, reflected into bounds."""
    if interval_s <= 0 or not (min_mbps <= start_mbps <= max_mbps):
        raise InvalidTraceError("random walk needs interval_s > 0 and min <= start <= max")
    rng = np.random.default_rng(seed)
    n = max(1, math.ceil(duration_s / interval_s))
    rates = np.empty(n)
    rate = start_mbps
    for i in range(n):
        rates[i] = rate
        rate = float(np.clip(rate + rng.normal(0.0, step_mbps), min_mbps, max_mbps))
    return BandwidthTrace(np.arange(n) * interval_s, rates, duration_s, f"random-walk-{seed}")


@dataclass(frozen=True)
class MarkovState:
    """A channel state: its mean rate, how long it lasts, how much it wobbles."""

    name: str
    mean_mbps: float
    mean_dwell_s: float
    cv: float = 0.3  # coefficient of variation of the rate within the state


# Time fractions are proportional to dwell times (the state chosen next is uniform
# over the others), so the long-run mean is sum(mean * dwell) / sum(dwell).
MARKOV_PRESETS: dict[str, tuple[tuple[MarkovState, ...], float]] = {
    # HSDPA commute traces: mostly 0.5-2.5 Mbps with short outages; mean ~1.41 Mbps.
    "3g": (
        (
            MarkovState("good", 2.5, 8.0, 0.35),
            MarkovState("fair", 1.3, 10.0, 0.35),
            MarkovState("poor", 0.5, 6.0, 0.4),
            MarkovState("outage", 0.05, 1.5, 0.5),
        ),
        0.5,
    ),
    # FCC broadband as cooked for Pensieve: steadier, mean ~1.40 Mbps.
    "fcc": (
        (
            MarkovState("high", 2.0, 15.0, 0.2),
            MarkovState("mid", 1.6, 20.0, 0.2),
            MarkovState("low", 1.1, 20.0, 0.2),
            MarkovState("congested", 0.7, 10.0, 0.25),
        ),
        1.0,
    ),
    # LTE on the move: mean ~23 Mbps.
    "lte": (
        (
            MarkovState("excellent", 40.0, 10.0, 0.3),
            MarkovState("good", 20.0, 10.0, 0.3),
            MarkovState("edge", 8.0, 6.0, 0.4),
            MarkovState("handover", 2.0, 2.0, 0.5),
        ),
        0.5,
    ),
    # mmWave: hundreds of Mbps in line of sight, blockage fades to ~0; mean ~390 Mbps.
    "5g-mmwave": (
        (
            MarkovState("los", 600.0, 6.0, 0.25),
            MarkovState("los-far", 350.0, 5.0, 0.3),
            MarkovState("nlos", 120.0, 3.0, 0.4),
            MarkovState("blockage", 0.5, 0.8, 0.5),
        ),
        0.1,
    ),
}


def markov(
    states: Sequence[MarkovState],
    duration_s: float,
    *,
    interval_s: float = 0.5,
    seed: int = 0,
    name: str = "markov",
) -> BandwidthTrace:
    """Semi-Markov channel: exponential dwell per state, next state uniform over the others.

    Within a state the rate is redrawn every ``interval_s`` from a log-normal with the
    state's mean and ``cv``, so the state mean is kept.
    """
    if len(states) < 2 or duration_s <= 0 or interval_s <= 0:
        raise InvalidTraceError("markov needs >= 2 states, duration_s > 0 and interval_s > 0")
    rng = np.random.default_rng(seed)
    starts: list[float] = []
    rates: list[float] = []
    t = 0.0
    state = int(rng.integers(len(states)))
    while t < duration_s:
        s = states[state]
        end = min(duration_s, t + max(interval_s, rng.exponential(s.mean_dwell_s)))
        sigma = math.sqrt(math.log1p(s.cv**2))
        while t < end:
            starts.append(t)
            rates.append(s.mean_mbps * float(rng.lognormal(-sigma * sigma / 2, sigma)))
            t = min(end, t + interval_s)
        state = (state + 1 + int(rng.integers(len(states) - 1))) % len(states)
    return BandwidthTrace(np.asarray(starts), np.asarray(rates), duration_s, name)


def preset(name: str, duration_s: float = 600.0, *, seed: int = 0) -> BandwidthTrace:
    """A Markov trace from ``MARKOV_PRESETS`` (``3g``, ``fcc``, ``lte``, ``5g-mmwave``)."""
    try:
        states, interval_s = MARKOV_PRESETS[name]
    except KeyError as exc:
        raise InvalidTraceError(
            f"unknown preset '{name}'; choose one of {sorted(MARKOV_PRESETS)}"
        ) from exc
    return markov(states, duration_s, interval_s=interval_s, seed=seed, name=f"{name}-{seed}")


__all__ = [
    "MARKOV_PRESETS",
    "PACKET_BYTES",
    "BandwidthTrace",
    "InvalidTraceError",
    "MarkovState",
    "TraceError",
    "constant",
    "markov",
    "preset",
    "random_walk",
    "square_wave",
    "step",
]
