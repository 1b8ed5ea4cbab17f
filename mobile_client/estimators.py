"""Online estimators the scheduler predicts with: link, round trip, device, server, content.

Each takes plain numbers (so a frame's timing, a Status RPC answer or an MQTT
``EdgeStatus`` can feed it) and costs O(window) per update, well inside the
scheduler's per-frame budget.

- :class:`BandwidthEstimator`: robust-MPC style. The point estimate is the
  harmonic mean of the last few throughput samples (one lucky transfer cannot
  inflate it); the estimate used for planning divides that by
  ``1 + max recent relative prediction error``, so after the link surprised us
  we plan as if it were slower, and the discount fades once it predicts well.
  A harmonic mean is slow to believe a *faster* link: after a fade its window
  is full of collapse-era samples. So ``jump_samples`` samples in a row each
  over ``jump_ratio`` x the mean replace the window (a regime change, not a
  lucky transfer): a recovered link is believed after two transfers, not five.
- :class:`RttEstimator`: Jacobson/Karels EWMA of mean and mean deviation (as TCP's
  RTO), read out as a normal quantile.
- :class:`ContentionEstimator`: device contention sensed black-box, as ApproxDet
  does: the observed head latency is placed between the profile's latencies at
  its contention levels, giving a fractional level; the EWMA of that level
  predicts every other branch's head latency, and the spread of the log error
  gives a quantile factor. One run far over its prediction (a stall) is capped;
  two in a row are believed.
- :class:`ServerLoadEstimator`: queue wait and tail latency per branch, from
  frames (the server's own timing in each result) and from status reports.
- :class:`ContentFeatures`: object count, mean object size and motion from the
  recent detections, for the accuracy model's content bins.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import TypeVar

import numpy as np

# Mean deviation of a normal is sqrt(2/pi) of its standard deviation.
_DEV_TO_STD = math.sqrt(math.pi / 2.0)


class EstimatorError(ValueError):
    """A sample that cannot be a measurement (negative time, non-positive rate...)."""


_Latency = TypeVar("_Latency", float, np.ndarray)


def z_score(quantile: float) -> float:
    """The standard normal's ``quantile`` (0.95 -> 1.645)."""
    if not 0.0 < quantile < 1.0:
        raise EstimatorError(f"quantile must be in (0, 1), got {quantile}")
    return NormalDist().inv_cdf(quantile)


_Z95 = z_score(0.95)


class BandwidthEstimator:
    """Uplink throughput from each transfer: harmonic mean, discounted by recent error."""

    def __init__(
        self,
        window: int = 5,
        error_window: int = 5,
        initial_mbps: float = 0.0,
        max_error: float = 1.0,
        jump_ratio: float = 3.0,
        jump_samples: int = 2,
    ) -> None:
        if window < 1 or error_window < 1:
            raise EstimatorError("window and error_window must be >= 1")
        if not max_error > 0:
            raise EstimatorError(f"max_error must be > 0, got {max_error}")
        if not jump_ratio > 1 or jump_samples < 1:
            raise EstimatorError(
                f"jump_ratio must be > 1 and jump_samples >= 1, got {jump_ratio}, {jump_samples}"
            )
        self.jump_ratio = jump_ratio
        self.jump_samples = jump_samples
        self._jumps: list[float] = []  # the current run of samples far above the mean
        # The discount's cap: after a collapse (a 600x error) the uncapped discount would
        # divide an already low harmonic mean by 600 and keep it there for a whole window.
        self.error_cap = max_error
        self._samples: deque[float] = deque(maxlen=window)
        self._errors: deque[float] = deque(maxlen=error_window)
        self.initial_mbps = initial_mbps
        # Read on every prediction: kept up to date on add, not recomputed per read.
        self._harmonic = initial_mbps
        self._max_error = 0.0
        self.resets = 0  # regime changes to a faster link taken so far

    @property
    def samples(self) -> int:
        return len(self._samples)

    @property
    def window(self) -> int:
        """How many samples the harmonic mean is taken over."""
        return self._samples.maxlen or 0

    @property
    def harmonic_mbps(self) -> float:
        """The undiscounted prediction (``initial_mbps`` before any sample)."""
        return self._harmonic if self._samples else self.initial_mbps

    @property
    def max_error(self) -> float:
        """Largest relative prediction error of the recent samples (0 when none)."""
        return self._max_error

    @property
    def estimate_mbps(self) -> float:
        """What to plan with: the harmonic mean / (1 + max recent relative error, capped)."""
        return self.harmonic_mbps / (1.0 + min(self._max_error, self.error_cap))

    def add(self, throughput_mbps: float) -> None:
        """One measured throughput sample."""
        if not throughput_mbps > 0 or math.isinf(throughput_mbps):
            raise EstimatorError(f"throughput must be a positive number, got {throughput_mbps}")
        if self._samples:
            predicted = self.harmonic_mbps
            if throughput_mbps > self.jump_ratio * predicted:
                self._jumps.append(throughput_mbps)
            else:
                self._jumps.clear()
            if len(self._jumps) >= self.jump_samples:
                # The link moved to a faster regime: the older samples only hold it back.
                self._samples.clear()
                self._samples.extend(self._jumps[-self._samples.maxlen :])  # type: ignore[misc]
                self._errors.clear()
                self._max_error = 0.0
                self._jumps.clear()
                self._harmonic = len(self._samples) / sum(1.0 / s for s in self._samples)
                self.resets += 1
                return
            self._errors.append(abs(predicted - throughput_mbps) / throughput_mbps)
            self._max_error = max(self._errors)
        self._samples.append(throughput_mbps)
        self._harmonic = len(self._samples) / sum(1.0 / s for s in self._samples)

    def add_transfer(self, size_bytes: float, transfer_ms: float) -> None:
        """A sample from ``size_bytes`` that took ``transfer_ms`` on the link."""
        if size_bytes <= 0 or transfer_ms <= 0:
            raise EstimatorError(
                f"a transfer needs bytes > 0 and time > 0, got {size_bytes} B in {transfer_ms} ms"
            )
        self.add(size_bytes * 8.0 / (transfer_ms * 1000.0))

    def transfer_ms(self, size_bytes: float) -> float:
        """Predicted time for ``size_bytes`` at the planning estimate (inf if unknown)."""
        bw = self.estimate_mbps
        if size_bytes <= 0:
            return 0.0
        return size_bytes * 8.0 / (bw * 1000.0) if bw > 0 else math.inf


class RttEstimator:
    """Round-trip time: EWMA mean and mean deviation (RFC 6298 gains), normal quantile."""

    def __init__(self, alpha: float = 0.125, beta: float = 0.25, initial_ms: float = 0.0) -> None:
        self.alpha, self.beta = alpha, beta
        self.mean_ms = initial_ms
        self.dev_ms = initial_ms / 2.0
        self.samples = 0
        self._min: deque[float] = deque(maxlen=64)
        self._restarted = False  # restart() since the last sample: the floor is known
        self.restart_dev_share = 0.1  # after a restart, deviation >= this share of a sample

    def add(self, rtt_ms: float) -> None:
        if rtt_ms < 0 or math.isnan(rtt_ms):
            raise EstimatorError(f"round-trip time must be >= 0 ms, got {rtt_ms}")
        if self.samples == 0 and self._restarted:
            # The path is known (its floor over the last samples): the first sample after a
            # regime change is as uncertain as its distance from that floor, not RFC 6298's
            # half a round trip for an unknown path (13 ms of spread on a 21 ms path kept
            # large frames out for seconds after a fade ended).
            floor = self.min_ms
            self.mean_ms = rtt_ms
            self.dev_ms = max(abs(rtt_ms - floor), self.restart_dev_share * rtt_ms)
            self._restarted = False
        elif self.samples == 0:
            self.mean_ms, self.dev_ms = rtt_ms, rtt_ms / 2.0
        else:
            self.dev_ms += self.beta * (abs(rtt_ms - self.mean_ms) - self.dev_ms)
            self.mean_ms += self.alpha * (rtt_ms - self.mean_ms)
        self.samples += 1
        self._min.append(rtt_ms)

    def restart(self) -> None:
        """Start over from the path's floor: the link changed regime (a fade ended), and
        the round trips measured in it (queued behind its backlog) say nothing now. Until
        the next sample: the floor, with ``restart_dev_share`` of it as deviation; the
        next sample sets the mean afresh, and the deviation to its distance from the floor
        (at least ``restart_dev_share`` of the sample)."""
        self.mean_ms = self.min_ms
        self._restarted = bool(self._min)
        # Until a sample comes: the floor, with the spread a known path restarts with.
        share = self.restart_dev_share if self._restarted else 0.5
        self.dev_ms = share * self.mean_ms
        self.samples = 0

    @property
    def min_ms(self) -> float:
        """Smallest of the last 64 samples: the path's floor."""
        return min(self._min, default=self.mean_ms)

    @property
    def std_ms(self) -> float:
        return self.dev_ms * _DEV_TO_STD

    def quantile_ms(self, q: float) -> float:
        return max(0.0, self.mean_ms + z_score(q) * self.std_ms)


def _beyond_slope(y_last: _Latency, x_last: float) -> _Latency:
    """ms per level past the busiest profiled level: slowdown ~ busy cores, proportional
    to the branch's latency there (as a one-level profile assumes).

    Not the last segment's measured slope: that is the difference of two noisy
    latencies, and a small one (0.1 ms a level) reads a 6x slower device as hundreds
    of levels, at which every other branch's own slope predicts nonsense (seconds).
    Proportional extrapolation carries one branch's slowdown factor to every other.
    """
    return y_last / (1.0 + x_last)


class ContentionEstimator:
    """Device contention as a fractional profile level, sensed from head latencies."""

    def __init__(
        self, levels: tuple[int, ...], alpha: float = 0.3, jump_ratio: float = 3.0
    ) -> None:
        if not levels:
            raise EstimatorError("contention needs at least one profiled level")
        if not jump_ratio > 1:
            raise EstimatorError(f"jump_ratio must be > 1, got {jump_ratio}")
        self.levels = tuple(sorted(levels))
        self.alpha = alpha
        self.jump_ratio = jump_ratio
        self.level = float(self.levels[0])
        self.samples = 0
        self.outliers = 0  # single samples far over the prediction, counted as capped
        self._jumped = False  # the last sample was over jump_ratio x its prediction
        self._log_err: deque[float] = deque(maxlen=32)

    def head_ms(self, by_level: dict[int, float], level: float | None = None) -> float:
        """A branch's head latency at ``level`` (default: the sensed one), interpolated.

        Beyond the highest level latency grows in proportion to busy cores (see
        :func:`_beyond_slope`), so a device busier or slower than anything profiled
        predicts every branch's head slowed by the same factor.
        """
        lv = self.level if level is None else level
        xs = self.levels
        ys = [by_level[x] for x in xs]
        if len(xs) == 1:
            return ys[0] * (1.0 + lv - xs[0])  # one level: assume slowdown ~ busy cores
        if lv <= xs[0]:
            return ys[0]
        for i in range(1, len(xs)):  # plain Python: a handful of levels, per-frame path
            if lv <= xs[i]:
                t = (lv - xs[i - 1]) / (xs[i] - xs[i - 1])
                return ys[i - 1] + t * (ys[i] - ys[i - 1])
        return ys[-1] + _beyond_slope(ys[-1], xs[-1]) * (lv - xs[-1])

    def head_ms_array(self, by_level: np.ndarray, level: float | None = None) -> np.ndarray:
        """:meth:`head_ms` for many branches at once: rows are branches, columns levels."""
        lv = self.level if level is None else level
        xs = self.levels
        if len(xs) == 1:
            return by_level[:, 0] * (1.0 + lv - xs[0])
        if lv <= xs[0]:
            return by_level[:, 0].copy()
        i = 0
        while i < len(xs) - 2 and lv > xs[i + 1]:
            i += 1
        if lv > xs[-1]:
            last = by_level[:, -1]
            return last + _beyond_slope(last, xs[-1]) * (lv - xs[-1])
        t = (lv - xs[i]) / (xs[i + 1] - xs[i])
        return by_level[:, i] + t * (by_level[:, i + 1] - by_level[:, i])

    def _level_of(self, by_level: dict[int, float], observed_ms: float) -> float:
        xs = self.levels
        ys = [by_level[x] for x in xs]
        if len(xs) == 1:
            return max(xs[0], xs[0] + observed_ms / ys[0] - 1.0) if ys[0] > 0 else xs[0]
        if observed_ms <= ys[0]:
            return float(xs[0])
        for i in range(1, len(xs)):
            if observed_ms <= ys[i]:
                span = ys[i] - ys[i - 1]
                frac = (observed_ms - ys[i - 1]) / span if span > 0 else 1.0
                return xs[i - 1] + frac * (xs[i] - xs[i - 1])
        slope = _beyond_slope(ys[-1], xs[-1])
        return xs[-1] + ((observed_ms - ys[-1]) / slope if slope > 0 else 0.0)

    def observe(self, by_level: dict[int, float], observed_ms: float) -> None:
        """One measured head latency of a branch whose profile is ``by_level``.

        A single run over ``jump_ratio`` x its prediction (a stall: the OS took the core,
        a cold cache, a garbage collection) counts only as that much; two in a row are a
        slower device and count in full. Without this one stall at start-up set the level
        for as long as the device then ran remote branches (nothing else senses it), and
        every local prediction was ten times too slow.
        """
        if observed_ms < 0:
            raise EstimatorError(f"head latency must be >= 0 ms, got {observed_ms}")
        predicted = self.head_ms(by_level)
        if predicted > 0 and observed_ms > self.jump_ratio * predicted:
            if not self._jumped:
                self._jumped = True
                self.outliers += 1
                observed_ms = self.jump_ratio * predicted
        else:
            self._jumped = False
        if predicted > 0 and observed_ms > 0:
            self._log_err.append(math.log(observed_ms / predicted))
        sample = self._level_of(by_level, observed_ms)
        self.level = (
            sample if self.samples == 0 else self.level + self.alpha * (sample - self.level)
        )
        self.samples += 1

    def log_error(self) -> tuple[float, float]:
        """(mean, standard deviation) of log(observed / predicted) head latency, recently.

        Before evidence: no bias and ~6 % spread, typical of a CPU head.
        """
        n = len(self._log_err)
        if n < 3:
            return 0.0, 0.06
        mean = sum(self._log_err) / n
        return mean, math.sqrt(sum((e - mean) ** 2 for e in self._log_err) / n)

    def quantile_factor(self, q: float) -> float:
        """Multiply a predicted head latency by this for its ``q`` quantile (>= 1)."""
        mean, std = self.log_error()
        return max(1.0, math.exp(mean + z_score(q) * std))


@dataclass
class _Reported:
    value_ms: float
    at_s: float
    std_ms: float = 0.0


@dataclass
class _ServerStats:
    mean_ms: float
    dev_ms: float
    queue_ms: float


class ServerLoadEstimator:
    """Per-branch server time (queue wait + tail + server codec): frames and status reports.

    From frames: EWMA mean and mean deviation of each result's server time (as
    :class:`RttEstimator`), so a jittery server (batching behind other devices)
    widens the quantile, not just the mean. From reports: the queue wait and tail
    p95 the server publishes; a fresh report raises the prediction, so a queue
    other devices built up counts before this device's frames feel it.
    """

    def __init__(
        self,
        alpha: float = 0.125,
        beta: float = 0.25,
        report_ttl_s: float = 5.0,
        pools: Mapping[str, str] | None = None,
    ) -> None:
        self.alpha, self.beta = alpha, beta
        self.report_ttl_s = report_ttl_s
        # Branches that cost the server the same work pool their frames' timings under one
        # key (every JPEG quality of an offload runs one model on a decoded image): a
        # branch this device has not sent lately is then predicted from its siblings'
        # frames, not from one old sample with a first sample's wide spread, which kept
        # a device on a lighter JPEG for a whole phase of a fast link.
        self.pools = dict(pools or {})
        self._stats: dict[str, _ServerStats] = {}
        self._reported_queue: dict[str, _Reported] = {}
        self._reported_tail: dict[str, _Reported] = {}

    def observe_frame(self, branch: str, queue_ms: float, service_ms: float) -> None:
        """A result's server timing: queue wait and the rest (decode + tail + encode)."""
        if queue_ms < 0 or service_ms < 0:
            raise EstimatorError(f"server times must be >= 0 ms, got {queue_ms}, {service_ms}")
        total = queue_ms + service_ms
        key = self.pools.get(branch, branch)
        st = self._stats.get(key)
        if st is None:
            # A model's time on one server is far steadier than a path's round trip: an
            # eighth of the first sample as its deviation, not RFC 6298's half (which, on
            # a pooled key, kept a fresh device local beside a fast link and a fast server).
            self._stats[key] = _ServerStats(total, total / 8.0, queue_ms)
            return
        st.dev_ms += self.beta * (abs(total - st.mean_ms) - st.dev_ms)
        st.mean_ms += self.alpha * (total - st.mean_ms)
        st.queue_ms += self.alpha * (queue_ms - st.queue_ms)

    def report(
        self,
        branch: str,
        *,
        now_s: float,
        queue_ms: float | None = None,
        tail_p50_ms: float | None = None,
        tail_p95_ms: float | None = None,
    ) -> None:
        """A status report (Status RPC's BranchLoad, or MQTT's EdgeStatus) for ``branch``:
        the queue wait and the tail's median and 95th percentile over the server's recent
        frames of that branch (any of them None: nothing to say)."""
        if (tail_p50_ms is None) != (tail_p95_ms is None):
            raise EstimatorError("a reported tail needs both its p50 and its p95")
        for value in (queue_ms, tail_p50_ms, tail_p95_ms):
            if value is not None and (value < 0 or math.isnan(value)):
                raise EstimatorError(f"reported server time must be >= 0 ms, got {value}")
        if tail_p50_ms is not None and tail_p95_ms is not None and tail_p95_ms < tail_p50_ms:
            raise EstimatorError(
                f"reported tail p95 {tail_p95_ms} ms is below its p50 {tail_p50_ms} ms"
            )
        if queue_ms is not None:
            self._reported_queue[branch] = _Reported(queue_ms, now_s)
        if tail_p50_ms is not None and tail_p95_ms is not None:
            # A percentile is not a mean: the median stands for the mean, the distance to
            # the 95th percentile gives the spread (as a normal's 1.645 sigma). Taking the
            # p95 as the mean and adding the spread on top counted the tail twice, and a
            # window holding a cold first run kept every prediction of the branch high.
            std = (tail_p95_ms - tail_p50_ms) / _Z95
            self._reported_tail[branch] = _Reported(tail_p50_ms, now_s, std)

    def _fresh(self, table: dict[str, _Reported], branch: str, now_s: float) -> _Reported | None:
        r = table.get(branch)
        return r if r is not None and now_s - r.at_s <= self.report_ttl_s else None

    def reported(self, branch: str, now_s: float) -> tuple[float, float]:
        """(queue wait, tail p50) ms the server last reported for ``branch``; 0 if stale."""
        queue = self._fresh(self._reported_queue, branch, now_s)
        tail = self._fresh(self._reported_tail, branch, now_s)
        return (
            queue.value_ms if queue is not None else 0.0,
            tail.value_ms if tail is not None else 0.0,
        )

    def queue_ms(self, branch: str, now_s: float) -> float:
        """Expected queue wait: frames' EWMA or a fresh report, whichever is larger."""
        st = self._stats.get(self.pools.get(branch, branch))
        measured = st.queue_ms if st is not None else 0.0
        return max(measured, self.reported(branch, now_s)[0])

    def server_ms(
        self, branch: str, now_s: float, z: float = 0.0, default_ms: float = 0.0
    ) -> float:
        """Server time at ``z`` standard deviations (0: the mean); ``default_ms`` if unseen."""
        mean, std = self.mean_std_ms(branch, now_s, default_ms)
        return mean + z * std

    def mean_std_ms(
        self, branch: str, now_s: float, default_ms: float = 0.0
    ) -> tuple[float, float]:
        """(mean, standard deviation) of the server time.

        The mean: this device's frames (EWMA), raised by a fresh report that says the
        server is slower now (a queue other devices built up). The spread: this device's
        frames once it has some; before, the report's (its p95 - p50: one cold first run
        in a short window would otherwise widen every prediction of a branch this device
        already times well)."""
        st = self._stats.get(self.pools.get(branch, branch))
        queue = self._fresh(self._reported_queue, branch, now_s)
        tail = self._fresh(self._reported_tail, branch, now_s)
        if st is None:
            mean, std = default_ms, tail.std_ms if tail is not None else 0.0
        else:
            mean, std = st.mean_ms, st.dev_ms * _DEV_TO_STD
        reported = (queue.value_ms if queue else 0.0) + (tail.value_ms if tail else 0.0)
        return max(mean, reported), std


class ContentFeatures:
    """Object count, mean object size and motion of the recent detections (EWMA).

    Size is the mean box area over the frame area; motion is the mean distance a
    box centre moved since the previous result (nearest centre), over the frame
    diagonal and per frame elapsed.
    """

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.object_count = 0.0
        self.object_size = 0.0
        self.motion = 0.0
        self.samples = 0
        self._prev_centres: list[tuple[float, float]] = []
        self._prev_frame = 0

    def update(self, boxes: np.ndarray, frame_hw: tuple[int, int], frame_index: int = 0) -> None:
        """One result's boxes (xyxy pixels) on a frame of ``frame_hw`` (height, width)."""
        h, w = frame_hw
        if h <= 0 or w <= 0:
            raise EstimatorError(f"frame size must be positive, got {frame_hw}")
        # Plain Python over a few boxes: numpy's per-call overhead would dominate here.
        rows = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).tolist()
        count = float(len(rows))
        area = sum(max(0.0, x1 - x0) * max(0.0, y1 - y0) for x0, y0, x1, y1 in rows)
        size = area / len(rows) / (h * w) if rows else 0.0
        centres = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in rows]
        motion = self.motion
        prev = self._prev_centres
        if prev and centres:
            gap = max(1, frame_index - self._prev_frame)
            moved = sum(min(math.hypot(cx - px, cy - py) for px, py in prev) for cx, cy in centres)
            motion = moved / len(centres) / math.hypot(h, w) / gap
        self._prev_centres, self._prev_frame = centres, frame_index
        if self.samples == 0:
            self.object_count, self.object_size, self.motion = count, size, motion
        else:
            a = self.alpha
            self.object_count += a * (count - self.object_count)
            self.object_size += a * (size - self.object_size)
            self.motion += a * (motion - self.motion)
        self.samples += 1

    def as_dict(self) -> dict[str, float]:
        """The features by the names the profile's bins use (empty before any result)."""
        if self.samples == 0:
            return {}
        return {
            "object_count": self.object_count,
            "object_size": self.object_size,
            "motion": self.motion,
        }
