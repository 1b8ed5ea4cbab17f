"""The adaptive scheduler: per frame, which branch runs, where, and at what cost.

ApproxDet (content- and contention-aware approximate detection) extended across
the network. The candidates are the profile's entries (branch x bit depth x
slimmable width x input size x detection interval). For each the scheduler
predicts a latency *quantile* and an accuracy:

- latency of a detection frame = head (profile, at the contention sensed from
  observed heads) + payload / uplink bandwidth + RTT + server queue and tail.
  The payload is the profile's bytes x this camera's ratio to them, learned per
  branch from the frames sent (EWMA; a branch not sent yet takes its kind's latest
  ratio): a JPEG's size is its scene's, and the profile's came from another video.
  Each term has a mean and a spread (head: the log error of recent heads;
  transfer: harmonic-mean rate vs its robust-MPC discounted rate and the
  profile's bytes p95; RTT and server: EWMA mean deviation); the quantile is
  ``mean + z x sqrt(sum of variances)`` (independent terms). With a detection
  interval k the per-frame latency is amortised as ApproxDet does,
  (detection + (k - 1) x tracker) / k, unless ``amortise_tracking=False`` asks
  that every detection frame fit by itself. With ``frames_first`` (the default)
  candidates are judged by their detection frames alone whenever the best of
  those that fit so is within ``frames_first_tolerance`` of the utility of the
  best that fits only as a group; otherwise the amortised (group) latency decides,
  as ApproxDet scores it. Tracking then never makes single frames late for a
  sliver of accuracy.
- accuracy = the profile's overall accuracy + the per-bin deltas of the content
  bins the recent detections fall into (object count, size, motion); with a
  known camera ``frame_period_ms`` it is scaled by the share of frames that get a
  result: a detection longer than the period misses the frames captured while it
  runs (one device, one frame at a time). With ``background_local`` (set by the
  session, which runs the device's own model in the background once it has boxes
  to track) such a detection by the device's model misses no frame: when it is
  predicted past the frame's wait (:meth:`Scheduler.background_wait_ms`) the
  tracker answers every frame at once (its latency is the tracker's) on boxes that
  come as many frames after their own as the detection spans, and the accuracy is
  the profile's less a loss per frame of that age (fitted, in the current content
  bins, on the entry's interval-1 and longest-interval accuracy).

Decision: on the Pareto frontier of (latency, accuracy), the best weighted
utility ``accuracy_weight x accuracy - latency_weight x latency / SLA`` whose
latency fits ``SLA x margin``; if none fits, the fastest. The margin starts at
ApproxDet's 1/1.3 and is then learned, one per path (local, remote): 1 / the
``quantile`` of observed / predicted detection latency, tracked online
(Robbins-Monro, O(1) per frame), so a well-calibrated predictor earns a margin
near 1, a surprised one plans more conservatively (it catches what the
estimators cannot see: heavy tails, delays outside the timing breakdown), and
one that over-states latency gets room back. Outages do not count as errors.

Deadline cuts (``cut_to_tracker``, set by the session when it has a tracker): a remote
detection the edge has not answered by its deadline (the SLA less the tracker's
reserve) is answered by the tracker in time when the device's own model is too slow
to be the fallback (past half the SLA or the camera period). A remote every-frame
candidate whose quantile is past SLA x margin is then still eligible when its chance
of beating the deadline (normal, the prediction's mean and spread) is at least
``cut_min_on_time``, at its expected accuracy: p x its own + (1 - p) x the tracker's
boxes from the last answered detection, ~1/p frames old (the fitted loss per frame of
age). A frame cut at its deadline teaches the margin only that it ran over (censored).

Stability: re-decide every max(interval, 8) frames (rounded to whole detection
intervals), or at once when an estimate moves a lot, the SLA or weights change,
or the edge is lost or back. Hysteresis: the current choice stays while it
fits; a switch up needs a utility gain above ``hysteresis_gain`` plus the load
cost of the switch (switches within a load group are free) and a predicted
latency inside ``SLA x margin x (1 - hysteresis_band)``. A switch's load cost
is also amortised over the decision period in the latency it must fit. After a
regime change (the bandwidth estimator replaced its window: a fade ended;
the edge came back) the next decision is a fresh start's, without hysteresis, and so
are the decisions made while a faster regime's window fills and the first with it
full: the estimates right after a fade are still settling (a round trip restarts
with a wide spread), and hysteresis would keep a choice made on them. The
remote path's margin goes back to at least its starting value then: the
frames that shrank it ran over a link that is gone (a fade's misses held a
demo on a lighter JPEG for 6 s after the link came back). When
the edge is unreachable only local candidates are eligible until a retry time
(exponential backoff) passes.

Probing: nothing measures the link while the device runs locally, so a stale
estimate would keep it local long after the link came back. Every
``probe_interval_s`` (or ``probe_every_frames``) without a remote frame, one
frame goes to the cheapest remote branch that costs no model switch (a small
JPEG), and never more often than keeps probes under ``probe_share`` of the
uplink as last measured: a bounded cost, counted in ``probes``. While the device
detects on every frame with its own model and that fits the SLA, the probe goes
*beside* the frame (``Decision.probe``, with ``shadow_probes``): the frame keeps the
device's result, the probe's answer only measures the link (``observe_probe``), so
probing costs no accuracy; so too beside the device's own detections behind the
tracker, whose probe then goes to a branch that does not need the busy model.
Otherwise (tracked or late local frames) the probe takes the frame's place.
A transfer far faster than the estimate (``jump_ratio`` x its harmonic mean)
is checked on the next frame at once, up to 4 in a row, and two such samples
replace the estimator's window, so a recovered link wins the next decision
within a second or two, on tracked remote branches too. A payload whose transfer is
shorter than the round trip's jitter (``jitter_sigmas`` x its spread, capped at half
the path's floor) is RTT-dominated: it only bounds the rate from below, lifts a lower
estimate and never lowers one (large payloads measure the rate; small ones cannot).
When the sample that triggers that check was such a lower bound and moved the
estimator to the faster regime, the check sends the largest payload (of the free
remote branches) that, at the bound, crosses within ``probe_share`` of the SLA and is
at most 4x the bytes that gave the bound: a step up a ladder of payload sizes.
A remote frame cut at its deadline says the link carried its bytes in no more than
that time: an upper bound on the rate, which lowers the estimate (a fade's first
sign), except while a faster link just measured is settling in; there a miss is
likelier the server's or the device's, and its answer, due soon, measures the link.

``pick(now_s) -> Decision`` and ``observe(decision, outcome)``: the same shape
as :class:`~splitedge.mobile_client.policy.RateRule`. ``set_sla`` and
``set_weights`` may be called from another thread (a control callback).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

import numpy as np

from splitedge.mobile_client.estimators import (
    BandwidthEstimator,
    ContentFeatures,
    ContentionEstimator,
    RttEstimator,
    ServerLoadEstimator,
    z_score,
)
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.profile import (
    BranchProfile,
    Profile,
    content_bins,
    needs_device_model,
)
from splitedge.proto.status import StatusCode

log = logging.getLogger(__name__)

HANDOVER_MS = 2.0  # from a missed deadline to the fallback's start (the session's)
_LATE = StatusCode.DEADLINE_EXCEEDED.reason  # an outcome cut at its deadline


class SchedulerError(ValueError):
    """The scheduler cannot be built or configured as asked."""


@dataclass(frozen=True)
class Decision:
    """What to do with one frame; hand it back to :meth:`Scheduler.observe` with the outcome."""

    branch: str
    bits: int
    interval: int
    track: bool  # True: run the on-device tracker, not the detector, on this frame
    predicted_latency_ms: float  # this frame's quantile: detection path, or the tracker
    predicted_accuracy: float
    reason: str
    key: str = ""  # the profile entry (also carries width and input size)
    width: float = 1.0
    input_size: int = 0
    remote: bool = True
    frame_index: int = 0
    index: int = -1  # candidate index inside the scheduler
    # Sent to the edge beside this frame only to measure the link (this frame's result
    # is this decision's); hand its outcome to :meth:`Scheduler.observe_probe`.
    probe: Decision | None = None


@dataclass
class _Evaluation:
    """Every candidate's figures for one decision (:meth:`Scheduler._evaluate`)."""

    detect: np.ndarray  # detection latency quantile, ms
    acc: np.ndarray  # accuracy, camera-scaled
    latency: np.ndarray  # what is held against the budget, ms
    budget: np.ndarray  # SLA x margin, ms
    allowed: np.ndarray  # bool
    feasible: np.ndarray  # bool: allowed and within budget
    utility: np.ndarray
    behind: np.ndarray  # bool: the device's detection runs behind the tracker
    switch_ms: np.ndarray  # the switch cost from the current choice
    cut: np.ndarray  # bool: planned with a chance of a cut at its deadline (_cut_plan)
    on_time: np.ndarray  # for those, the chance of an answer before the deadline


def pareto_frontier(latency_ms: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats (faster-or-equal and more accurate).

    Sorted by latency ascending; ties in latency keep only the most accurate.
    """
    if len(latency_ms) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-accuracy, latency_ms))
    acc = accuracy[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(acc)[:-1]))
    return order[acc > best_before]


BIN_DELTAS = ("interval", "branch")


class Scheduler:
    """Picks a branch per frame from a :class:`Profile` and online estimates."""

    def __init__(
        self,
        profile: Profile,
        sla_ms: float,
        *,
        quantile: float = 0.95,
        accuracy_weight: float = 1.0,
        latency_weight: float = 0.0,
        margin: float = 1 / 1.3,
        learn_margin: bool = True,
        margin_bounds: tuple[float, float] = (0.4, 1.5),
        margin_rate: float = 0.1,
        min_period_frames: int = 8,
        hysteresis_gain: float = 0.01,
        hysteresis_band: float = 0.1,
        load_gain_per_ms: float = 0.0005,
        change_threshold: float = 0.3,
        edge_retry_s: float = 2.0,
        max_edge_retry_s: float = 30.0,
        probe_every_frames: int = 30,
        probe_interval_s: float = 1.0,
        probe_share: float = 0.25,
        shadow_probes: bool = True,
        amortise_tracking: bool = True,
        frames_first: bool = True,
        frames_first_tolerance: float = 0.01,
        cut_min_on_time: float = 0.8,
        regime_ratio: float = 2.0,
        jitter_sigmas: float = 2.0,
        min_sensed_ms: float = 2.0,
        learn_bytes: bool = True,
        bytes_rate: float = 0.3,
        bin_deltas: str = "interval",
        frame_period_ms: float | None = None,
        initial_bandwidth_mbps: float = 10.0,
        initial_rtt_ms: float = 20.0,
        branches: Collection[str] | None = None,
        tracking: bool = True,
        frame_hw: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        entries = [e for e in profile.entries if branches is None or e.config.branch in branches]
        if not tracking or not profile.tracker_latency_ms:
            # No tracker here (``tracking=False``: no OpenCV on this device) or none was
            # measured: the detect-every-k-th-frame candidates are not for it.
            entries = [e for e in entries if e.config.detection_interval == 1]
        if not entries:
            raise SchedulerError(
                "no profile entry is usable (check the branches filter; without a measured "
                "tracker, only detection interval 1 is)"
            )
        unmeasured = [e.key for e in entries if e.accuracy is None]
        if unmeasured:
            raise SchedulerError(
                f"profile has no accuracy for {', '.join(unmeasured[:3])}"
                f"{' ...' if len(unmeasured) > 3 else ''}: measure it with a validation set"
            )
        self.profile = profile
        self.candidates: list[BranchProfile] = entries
        self.quantile = quantile
        self._z = z_score(quantile)
        self.learn_margin = learn_margin
        self.margin_bounds = margin_bounds
        # One margin per path: the device alone is predicted far better than device + link
        # + server, and one shared margin would let the easy path relax the hard one.
        self._margin = {False: margin, True: margin}
        self._margin_prior = margin
        self._budget_factor = np.zeros(0)  # per candidate: its path's margin
        # Per path: the tracked quantile of observed / predicted latency; margin = 1 / it.
        self._theta = {False: 1.0 / margin, True: 1.0 / margin}
        self._ratio_count = {False: 0, True: 0}
        self.margin_rate = margin_rate
        self.min_period_frames = min_period_frames
        self.hysteresis_gain = hysteresis_gain
        self.hysteresis_band = hysteresis_band
        self.load_gain_per_ms = load_gain_per_ms
        self.change_threshold = change_threshold
        self.edge_retry_s = edge_retry_s
        self.max_edge_retry_s = max_edge_retry_s
        self.probe_every_frames = probe_every_frames
        if not probe_interval_s > 0:
            raise SchedulerError(f"probe_interval_s must be > 0, got {probe_interval_s}")
        self.probe_interval_s = probe_interval_s
        if not 0 < probe_share <= 1:
            raise SchedulerError(f"probe_share must be in (0, 1], got {probe_share}")
        self.probe_share = probe_share
        self.shadow_probes = shadow_probes
        self.amortise_tracking = amortise_tracking
        self.frames_first = frames_first
        self.frames_first_tolerance = frames_first_tolerance
        if not 0.0 < cut_min_on_time <= 1.0:
            raise SchedulerError(f"cut_min_on_time must be in (0, 1], got {cut_min_on_time}")
        self.cut_min_on_time = cut_min_on_time
        # Set by the session when the tracker answers a detection cut at its deadline
        # (AdaptiveSession, the DES's SessionPolicy): remote detections every frame are
        # then planned by their chance of beating the deadline (_cut_plan).
        self.cut_to_tracker = False
        self.regime_ratio = regime_ratio
        if not jitter_sigmas >= 0 or math.isinf(jitter_sigmas):
            raise SchedulerError(f"jitter_sigmas must be a number >= 0, got {jitter_sigmas}")
        self.jitter_sigmas = jitter_sigmas
        self.min_sensed_ms = min_sensed_ms
        self.frame_period_ms: float | None = None
        # The device's own detections go on in the background once there are boxes to
        # track (AdaptiveSession, the DES's SessionPolicy): frames during one longer than
        # the camera period get the tracker's older boxes, not nothing.
        self.background_local = False
        self.clock = clock
        self.frame_hw = frame_hw or (profile.frame_size if min(profile.frame_size) > 0 else None)
        self._lock = threading.Lock()
        self._sla_ms = 0.0
        self._weights = (1.0, 0.0)
        self.set_sla(sla_ms)
        self.set_weights(accuracy=accuracy_weight, latency=latency_weight)
        self.set_frame_period(frame_period_ms)

        self.bandwidth = BandwidthEstimator(initial_mbps=initial_bandwidth_mbps)
        self.rtt = RttEstimator(initial_ms=initial_rtt_ms)
        self.contention = ContentionEstimator(profile.contention_levels)
        # Every offload branch runs the one full model on a decoded image at the server.
        self.server = ServerLoadEstimator(
            pools={c.config.branch: "offload" for c in self.candidates if c.kind == "offload"}
        )
        self.content = ContentFeatures()
        if not 0.0 < bytes_rate <= 1.0:
            raise SchedulerError(f"bytes_rate must be in (0, 1], got {bytes_rate}")
        self.learn_bytes = learn_bytes
        self.bytes_rate = bytes_rate
        if bin_deltas not in BIN_DELTAS:
            raise SchedulerError(
                f"bin_deltas must be one of {', '.join(BIN_DELTAS)}, got {bin_deltas!r}"
            )
        self.bin_deltas = bin_deltas
        self._build_arrays()

        self._current: int | None = None
        self._phase = 0  # frames since the current candidate's last detection
        self._since_decision = 0
        self._frame = 0
        self._since_remote = 0
        self._reprobe = False  # a probe found a faster link: probe on the very next frame
        self._burst = 0  # probes in a row so far
        self._last_remote_s: float | None = None  # when the last remote detection was sent
        self._backlog_kbits = 0.0  # unanswered bytes ahead on the uplink (set_backlog)
        self._device_busy = False  # the device's own model is running (set_device_busy)
        self.probes = 0  # frames sent to the edge only to measure the link
        self._force = True
        self._fresh = False  # the link changed regime: the next decision starts afresh
        # A faster regime's window is still filling: its decisions start afresh too.
        self._settling = False
        # The last sample far above the estimate was a lower bound (an RTT-dominated
        # payload), of this many Mbps: the check on the next frame sends a larger one.
        self._bound_mbps = 0.0
        self._sample_is_bound = False  # the last transfer sample was a lower bound
        self._sample_bytes = 0.0  # ... of this many bytes
        self._bound_bytes = 0.0
        self._now_s = 0.0
        self._edge_down = False
        self._edge_failures = 0
        self._edge_retry_at = 0.0
        self._at_decision = (0.0, 0.0, 0.0)  # bandwidth, rtt, contention level
        self._net: deque[tuple[float, float]] = deque(maxlen=64)  # (network ms, bytes)
        self._pings: deque[float] = deque(maxlen=16)
        self._floor_ms: float | None = None
        self._net_count = 0
        self._tracker_ratio = 1.0
        self._late_free_s: float | None = None  # the last late answer's bytes crossed
        self._tracker_seen: deque[float] = deque(maxlen=16)  # its last runs, ms
        self._pred_detect = np.zeros(len(self.candidates))
        self._pred_acc = self._acc.copy()
        self.switches = 0  # changes of candidate
        self.decisions = 0  # re-decisions (the costly frames)
        self.violations = 0  # detection frames over the SLA
        self.last_reason = ""

    # ------------------------------------------------------------ configuration

    def _build_arrays(self) -> None:
        c = self.candidates
        levels = self.contention.levels
        head = np.array([[e.head_latency_ms[lv].mean for lv in levels] for e in c])
        # More contention cannot make a head faster: a dip is measurement noise.
        self._head = np.maximum.accumulate(head, axis=1)
        self._bytes_mean = np.array([e.bytes_per_frame.mean for e in c])
        self._bytes_q = np.array([e.bytes_per_frame.p95 for e in c])
        self._tail = np.array(
            [e.tail_latency_ms[min(e.tail_latency_ms)] if e.tail_latency_ms else 0.0 for e in c]
        )
        self._remote = np.array([e.remote for e in c])
        self._needs_device = np.array([needs_device_model(e.kind) for e in c])
        self._interval = np.array([e.config.detection_interval for e in c], dtype=np.float64)
        self._acc = np.array([e.accuracy for e in c], dtype=np.float64)
        bins = sorted({b for e in c for b in e.accuracy_by_bin})
        self._bin_delta = {
            b: np.array(
                [e.accuracy_by_bin[b] - e.accuracy if b in e.accuracy_by_bin else 0.0 for e in c]
            )
            for b in bins
        }
        if self.bin_deltas == "interval":
            # A content bin moves every entry of one detection interval alike: its mean
            # delta over them. Each branch's own delta, measured on one video, does not
            # carry over to another (benchmarks.bin_deltas on four seeded videos: the
            # branch-specific parts correlated -0.34 to +0.45 between videos, -0.05 on
            # average, rms 0.017-0.040: as large as the gaps between branches), and it
            # reordered branches by noise: the profile rated every code above JPEG q90
            # and the device's own model on small objects.
            for b, delta in self._bin_delta.items():
                has = np.array([b in e.accuracy_by_bin for e in c])
                for k in np.unique(self._interval[has]):
                    group = has & (self._interval == k)
                    delta[group] = delta[group].mean()
        # Each tracked entry's every-frame sibling (same branch, bits, width, input size).
        # Per-bin deltas, added up over several bins, can rate a tracked group far above
        # detecting every frame; a tracked entry's lead over its sibling is capped at the
        # lead the profile measured overall (none when tracking measured worse).
        every_frame = {
            replace(e.config, detection_interval=1): i
            for i, e in enumerate(c)
            if e.config.detection_interval == 1
        }
        pairs = [
            (i, every_frame[replace(e.config, detection_interval=1)])
            for i, e in enumerate(c)
            if e.config.detection_interval > 1
            and replace(e.config, detection_interval=1) in every_frame
        ]
        self._tracked_idx = np.array([t for t, _ in pairs], dtype=np.int64)
        self._sibling_idx = np.array([f for _, f in pairs], dtype=np.int64)
        # Accuracy lost per frame of a tracked box's age, as the DES's accuracy_by_age fits
        # it: an interval-k entry is the mean over ages 0..k-1 of fresh - loss x age. Fitted
        # at each decision on the accuracy of the content bins then (per candidate: the
        # pair of entries it is fitted on, an every-frame entry its longest-interval
        # sibling's; -1: none).
        self._loss_tracked = np.full(len(c), -1, dtype=np.int64)
        self._loss_fresh = np.full(len(c), -1, dtype=np.int64)
        for t, f in pairs:
            self._loss_tracked[t], self._loss_fresh[t] = t, f
            if (
                self._loss_tracked[f] < 0
                or self._interval[t] > self._interval[self._loss_tracked[f]]
            ):
                self._loss_tracked[f], self._loss_fresh[f] = t, f
        fitted = self._loss_tracked >= 0
        self._loss_half_span = np.where(
            fitted, (self._interval[np.maximum(self._loss_tracked, 0)] - 1.0) / 2.0, 1.0
        )
        self._background_kind = np.array([e.kind == "local" for e in c]) & fitted
        self._cut_kind = self._remote & (self._interval == 1) & fitted
        groups = sorted({e.load_group for e in c})
        self._group = np.array([groups.index(e.load_group) for e in c])
        self._switch = np.array([[self.profile.switch_ms(a, b) for b in groups] for a in groups])
        self._names = sorted({e.config.branch for e in c})
        self._name_idx = np.array([self._names.index(e.config.branch) for e in c])
        tracker = self.profile.tracker_latency_ms
        self._tracker_by_level = {lv: tracker.get(lv, 0.0) for lv in levels}
        self._kbits_q = self._bytes_q * 8.0 / 1000.0  # / Mbps = ms
        self._kbits_mean = self._bytes_mean * 8.0 / 1000.0
        # Payloads as this camera's frames make them: the profile's bytes came from its
        # own video, and a JPEG's size is the scene's (on the field benchmark's video a
        # 28 kB profiled offload-jpeg90 frame is 8-21 kB). Per branch, observed / profiled
        # (EWMA); a branch not yet sent takes its kind's latest (JPEG qualities, or split
        # heads, shrink together with the scene's detail), else 1.
        kinds = sorted({e.kind for e in c})
        self._kind_idx = np.array([kinds.index(e.kind) for e in c])
        self._bytes_seen = np.zeros(len(self._names), dtype=bool)  # per branch name
        self._byte_scale = np.ones(len(c))
        self._remote_f = self._remote.astype(np.float64)
        self._inv_interval = 1.0 / self._interval
        self._tracked_share = (self._interval - 1.0) / self._interval
        self._acc_by_bins: dict[tuple[str, ...], np.ndarray] = {}
        self._local_mask = ~self._remote
        self._all_mask = np.ones(len(c), dtype=bool)
        self._no_switch = np.zeros(len(c))
        self._switch_ms_from = [self._switch[g][self._group] for g in range(len(groups))]
        self._any_local = bool((~self._remote).any())
        self._any_tracking = bool((self._interval > 1).any())
        # Per candidate: its detections go on behind the tracker's answers (set by _decide).
        self._no_behind = np.zeros(len(c), dtype=bool)
        self._behind = self._no_behind
        self._update_budget_factor()
        self._periods = np.array([self._period(i) for i in range(len(c))], dtype=np.float64)

    @property
    def sla_ms(self) -> float:
        return self._sla_ms

    def set_sla(self, sla_ms: float) -> None:
        """A new latency SLA; the next :meth:`pick` decides again with it."""
        if not sla_ms > 0 or math.isinf(sla_ms):
            raise SchedulerError(f"SLA must be a positive number of ms, got {sla_ms}")
        with self._lock:
            self._sla_ms = float(sla_ms)
            self._force = True

    @property
    def weights(self) -> tuple[float, float]:
        """``(accuracy, latency)`` utility weights."""
        return self._weights

    def set_weights(self, *, accuracy: float | None = None, latency: float | None = None) -> None:
        """Utility weights; ``latency`` > 0 trades accuracy for lower latency."""
        wa, wl = self._weights
        wa = wa if accuracy is None else float(accuracy)
        wl = wl if latency is None else float(latency)
        if wa < 0 or wl < 0 or (wa == 0 and wl == 0) or math.isnan(wa + wl):
            raise SchedulerError(
                f"weights must be >= 0 and not both 0, got accuracy={wa}, latency={wl}"
            )
        with self._lock:
            self._weights = (wa, wl)
            self._force = True

    def set_frame_period(self, period_ms: float | None) -> None:
        """The camera's frame period (None: unknown, frames are never missed)."""
        if period_ms is not None and not (period_ms > 0 and math.isfinite(period_ms)):
            raise SchedulerError(f"frame period must be a positive number of ms, got {period_ms}")
        with self._lock:
            self.frame_period_ms = period_ms
            self._force = True

    def set_edge_available(self, available: bool) -> None:
        """What discovery or MQTT says about the edge; loss takes effect on the next pick."""
        with self._lock:
            if available:
                self._edge_down, self._edge_failures = False, 0
            else:
                self._mark_edge_lost()
            self._force = True

    # ------------------------------------------------------------ prediction

    def predict(
        self, now_s: float | None = None, bandwidth: tuple[float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(detection latency quantile ms, per-frame latency ms, accuracy) of every
        candidate; ``bandwidth``: (harmonic, robust) Mbps instead of the estimator's."""
        mean, sd, acc = self._predict(now_s, bandwidth)
        return (*self._quantiles(mean, sd), acc)

    def _quantiles(self, mean: np.ndarray, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(detection latency quantile, per-frame latency) from the mean and spread."""
        detect = mean + self._z * sd
        if self.amortise_tracking:
            return detect, detect * self._inv_interval + self._tracked_share * self._tracker_ms()
        return detect, detect

    def _predict(
        self, now_s: float | None, bandwidth: tuple[float, float] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(detection latency mean ms, its spread ms, accuracy) of every candidate."""
        now = self._now_s if now_s is None else now_s
        # Vectorised over candidates, per-branch work only over distinct branch names:
        # this runs at every re-decision and must stay far below the 0.2 ms frame budget.
        # Each term's mean and spread; the quantile of the sum assumes independent terms
        # (mean + z * sqrt(sum of variances)); what that misses, the learned margin takes.
        bias, spread = self.contention.log_error()
        head = self.contention.head_ms_array(self._head) * math.exp(bias)
        variance = (head * spread) ** 2
        if bandwidth is None:
            bw, bw_robust = self.bandwidth.harmonic_mbps, self.bandwidth.estimate_mbps
        else:
            bw, bw_robust = bandwidth
        if bw > 0:
            transfer = (self._kbits_mean * self._byte_scale + self._backlog_kbits) / bw
            transfer_q = (self._kbits_q * self._byte_scale + self._backlog_kbits) / bw_robust
        else:
            transfer = transfer_q = self._kbits_q * np.inf
        server = np.array([self.server.mean_std_ms(n, now) for n in self._names])[self._name_idx]
        server_mean = np.maximum(server[:, 0], self._tail)
        network = transfer + self.rtt.mean_ms + server_mean
        network_var = (
            ((transfer_q - transfer) / self._z) ** 2 + self.rtt.std_ms**2 + server[:, 1] ** 2
        )
        mean = head + self._remote_f * network
        sd = np.sqrt(variance + self._remote_f * network_var)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "predict: %s",
                ", ".join(
                    f"{self.candidates[i].key}: head {head[i]:.0f}+-{head[i] * spread:.0f} "
                    f"transfer {transfer[i]:.0f} (q {transfer_q[i]:.0f}) server "
                    f"{server_mean[i]:.0f}+-{server[i, 1]:.0f}"
                    for i in np.flatnonzero(self._interval == 1)[:8]
                ),
            )  # fmt: skip
        return mean, sd, self._accuracy()

    def _accuracy(self) -> np.ndarray:
        bins = content_bins(self.content.as_dict(), self.profile.bin_edges)
        acc = self._acc_by_bins.get(bins)
        if acc is None:  # bins are few and discrete: compute each combination once
            acc = self._acc.copy()
            for b in bins:
                delta = self._bin_delta.get(b)
                if delta is not None:
                    acc += delta
            acc = np.clip(acc, 0.0, 1.0)
            if self._tracked_idx.size:
                t, f = self._tracked_idx, self._sibling_idx
                lead = np.maximum(0.0, self._acc[t] - self._acc[f])
                acc[t] = np.minimum(acc[t], acc[f] + lead)
            self._acc_by_bins[bins] = acc
        return acc

    def _camera_accuracy(
        self, acc: np.ndarray, detect: np.ndarray, period: float, behind: np.ndarray
    ) -> np.ndarray:
        """``acc`` over the camera's frames, given how many frame periods a detection
        (``detect``, its predicted latency) spans.

        One frame at a time: a detection longer than the camera period misses the frames
        captured meanwhile (they get no result); of a group of k frames' worth of camera
        time, k / (k + missed) get one. The device's own detections ``behind`` the
        tracker (``background_local``, predicted past :meth:`background_wait_ms`) miss
        none: the tracker answers every frame on the boxes it has, and new boxes come as
        many frames after their own as the detection spans. Each frame's boxes are then
        ``spans`` to ``spans + cadence - 1`` frames old, ``cadence`` the frames between
        detections (k, or more when a detection outlasts k periods), and score the
        fitted loss per frame of age below the profile's interval-k accuracy (ages
        0..k-1)."""
        spans = np.ceil(detect / period - 1e-9)
        out = acc * (self._interval / (self._interval + np.maximum(0.0, spans - 1.0)))
        if behind.any():
            extra = spans + (np.maximum(self._interval, spans) - self._interval) / 2.0
            t = np.maximum(self._loss_tracked, 0)
            f = np.maximum(self._loss_fresh, 0)
            loss = np.maximum(0.0, acc[f] - acc[t]) / self._loss_half_span
            out = np.where(behind, np.maximum(0.0, acc - loss * extra), out)
        return out

    def background_wait_ms(self) -> float:
        """How long a frame waits for the device's own detection before the tracker
        answers it and the detection goes on in the background (with
        ``background_local``): the SLA or the camera period, whichever is shorter, less
        the tracker's reserve (:meth:`tracker_reserve_ms`) and a hand-over."""
        with self._lock:
            return self._background_wait_ms()

    def _background_wait_ms(self) -> float:
        sla = self._sla_ms
        budget = min(sla, self.frame_period_ms or sla)
        return max(0.0, budget - (self._tracker_reserve_ms() + HANDOVER_MS))

    def tracker_reserve_ms(self) -> float:
        """What a frame keeps of its budget for the tracker when the tracker answers
        it after a wait (for the device's own detection, or for the edge's answer):
        1.25 x the tracker's predicted time, or 1.5 x its slowest recent run when that
        is more. Beside a detection running in the background the tracker's time
        spreads far past its mean (on a 2-core machine, profiled at 0.9 ms: 5-13 ms),
        and a frame kept only the mean's room missed the SLA by those few ms."""
        with self._lock:
            return self._tracker_reserve_ms()

    def _tracker_reserve_ms(self) -> float:
        return max(1.25 * self._tracker_ms(), 1.5 * max(self._tracker_seen, default=0.0))

    def observe_tracker_ms(self, ms: float) -> None:
        """One run of the tracker (ms), timed outside a frame: the session times it
        before the first frame (:meth:`AdaptiveSession.time_tracker
        <splitedge.mobile_client.adaptive.AdaptiveSession.time_tracker>`)."""
        if not (math.isfinite(ms) and ms > 0):
            raise SchedulerError(f"tracker time must be a positive number of ms, got {ms}")
        with self._lock:
            self._learn_tracker(ms)

    def _learn_tracker(self, observed_ms: float) -> None:
        """The tracker's ratio to its profiled time: the first run replaces the prior
        (1, the profiling machine's speed), later ones move it a step at a time."""
        profiled = self._tracker_ms() / max(self._tracker_ratio, 1e-9)
        if profiled <= 0 or observed_ms <= 0:
            return
        ratio = observed_ms / profiled
        first = not self._tracker_seen
        self._tracker_ratio = (
            ratio if first else self._tracker_ratio + 0.2 * (ratio - self._tracker_ratio)
        )
        self._tracker_seen.append(observed_ms)

    def fallback_ms(self) -> tuple[float | None, float]:
        """(the device's own model, the tracker): predicted ms now, for a frame the edge
        did not answer in time; the model's is None when the device has none."""
        with self._lock:
            return self._fallback_ms()

    def _fallback_ms(self) -> tuple[float | None, float]:
        local = np.flatnonzero(self._local_mask)
        tracker = self._tracker_ms()
        if len(local) == 0:
            return None, tracker
        bias, _ = self.contention.log_error()
        head = self.contention.head_ms_array(self._head[local]) * math.exp(bias)
        return float(head.min()), tracker

    def _tracker_ms(self) -> float:
        return self.contention.head_ms(self._tracker_by_level) * self._tracker_ratio

    # ------------------------------------------------------------ decision

    def pick(self, now_s: float | None = None) -> Decision:
        """The decision for the next frame."""
        with self._lock:
            now = self.clock() if now_s is None else now_s
            self._now_s = now
            self._frame += 1
            if self._edge_down and now >= self._edge_retry_at:
                self._edge_down = False  # retry: remote candidates are eligible again
                self._force = True
            if (
                self._current is None
                or self._force
                or self._big_change()
                or (self._since_decision >= self._period(self._current))
            ):
                self._decide(now)
            else:
                self._since_decision += 1
            return self._frame_decision(now)

    def _period(self, index: int) -> int:
        k = int(self._interval[index])
        return k * math.ceil(self.min_period_frames / k)

    def _big_change(self) -> bool:
        bw0, rtt0, lv0 = self._at_decision
        thr = self.change_threshold
        bw = self.bandwidth.estimate_mbps
        if bw0 > 0 and bw > 0 and not (1 / (1 + thr) <= bw / bw0 <= 1 + thr):
            return True
        if rtt0 > 0 and abs(self.rtt.mean_ms - rtt0) > thr * rtt0:
            return True
        return abs(self.contention.level - lv0) >= 0.5

    def _evaluate(
        self, now: float, cur: int | None, bandwidth: tuple[float, float] | None = None
    ) -> _Evaluation:
        """Every candidate's prediction, budget and utility for a choice made now with
        ``cur`` the current one (None: a fresh start); changes no state.
        ``bandwidth``: (harmonic, robust) Mbps instead of the estimator's."""
        mean, sd, acc = self._predict(now, bandwidth)
        detect, per_frame = self._quantiles(mean, sd)
        period = self.frame_period_ms
        answered = detect  # when a detection frame gets its answer
        behind = self._no_behind
        cut, on_time = self._cut_plan(mean, sd, detect)
        raw_acc = acc  # before the camera's share: the loss per frame of age is fitted on it
        spans = detect
        if cut.any():
            # Cut at its deadline, the frame's answer is the tracker's at the SLA at the latest.
            bound = self._cut_deadline_ms() + self._tracker_reserve_ms()
            answered = spans = np.where(cut, np.minimum(detect, bound), detect)
            per_frame = np.where(cut, answered, per_frame)
        if period:
            if self.background_local:
                # The device's own detections predicted to outlast what a frame may wait:
                # the session does not wait, the tracker answers every frame at once and
                # the detection goes on in the background (its boxes' age is in ``acc``).
                behind = self._background_kind & (detect > self._background_wait_ms())
                if behind.any():
                    tracker = self._tracker_ms()
                    answered = np.where(behind, tracker, detect)
                    per_frame = np.where(behind, tracker, per_frame)
            acc = self._camera_accuracy(acc, spans, period, behind)
        if cut.any():
            acc = np.where(cut, self._cut_accuracy(acc, raw_acc, on_time), acc)
        local_only = self._edge_down and self._any_local
        allowed = self._local_mask if local_only else self._all_mask
        if cur is None:
            switch_ms = self._no_switch
            load = 0.0
        else:
            switch_ms = self._switch_ms_from[self._group[cur]]
            load = switch_ms / self._periods  # a load, amortised over a period
        budget = self._budget_factor * self._sla_ms
        wa, wl = self._weights
        latency = per_frame + load
        if self.frames_first and self.amortise_tracking and self._any_tracking:
            # Detection frames alone first: when candidates that fit frame by frame are
            # (nearly) as good as those that fit only as a group, only they count, so
            # tracking does not make single detection frames late for a sliver of accuracy.
            frame_latency = np.maximum(answered, per_frame) + load
            strict = allowed & ((frame_latency <= budget) | cut)
            if strict.any():
                group = allowed & ((latency <= budget) | cut)
                if wl:
                    k = wl / self._sla_ms
                    best_strict = float((wa * acc - k * frame_latency)[strict].max())
                    best_group = float((wa * acc - k * latency)[group].max())
                else:
                    best_strict = wa * float(acc[strict].max())
                    best_group = wa * float(acc[group].max())
                if best_strict >= best_group - self.frames_first_tolerance:
                    latency = frame_latency
        utility = wa * acc - (wl / self._sla_ms) * latency if wl else acc * wa
        feasible = allowed & ((latency <= budget) | cut)
        return _Evaluation(
            detect, acc, latency, budget, allowed, feasible, utility, behind, switch_ms,
            cut, on_time,
        )  # fmt: skip

    def _cut_deadline_ms(self) -> float:
        """A remote detection's deadline when the tracker is its fallback (the session's,
        :func:`~splitedge.mobile_client.adaptive.detection_budget`)."""
        sla = self._sla_ms
        return max(sla - (self._tracker_reserve_ms() + HANDOVER_MS), 0.5 * sla)

    def _cut_plan(
        self, mean: np.ndarray, sd: np.ndarray, detect: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(which candidates are planned with a chance of being cut at their deadline, each
        one's chance of an answer before it).

        With ``cut_to_tracker`` (the session: a missed deadline is answered by the tracker
        from the last boxes, on time) a remote detection every frame whose latency
        quantile is past SLA x margin still answers every frame in time: it is judged by
        its chance of beating the deadline (normal, from the prediction's mean and spread),
        which must be at least ``cut_min_on_time``, and by its expected accuracy
        (:meth:`_cut_accuracy`). The margin plays no part: a miss is answered in time. Only
        where the fallback is the tracker (the device's own model slower than half the SLA
        or than the camera period) and its loss per frame of age is fitted."""
        on_time = np.ones(len(detect))
        if not self.cut_to_tracker or not self._cut_kind.any():
            return self._no_behind, on_time
        local_ms, _ = self._fallback_ms()
        period = self.frame_period_ms
        sla = self._sla_ms
        if local_ms is not None and local_ms <= 0.5 * sla and not (period and local_ms > period):
            return self._no_behind, on_time
        # Those within SLA x margin are planned as every detection is; the rest may be cut.
        eligible = np.flatnonzero(self._cut_kind & (detect > self._budget_factor * sla))
        deadline = self._cut_deadline_ms()
        for i in eligible:  # a few candidates, at a decision (not every frame)
            z = (deadline - mean[i]) / max(float(sd[i]), 1e-6)
            on_time[i] = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
        cut = np.zeros(len(detect), dtype=bool)
        cut[eligible] = on_time[eligible] >= self.cut_min_on_time
        return cut, on_time

    def _cut_accuracy(
        self, acc: np.ndarray, raw_acc: np.ndarray, on_time: np.ndarray
    ) -> np.ndarray:
        """Expected accuracy of a detection that beats its deadline with chance ``p``: its
        own (``acc``), or when cut, the tracker's boxes from the last answered detection,
        on average 1 / p frames old (less the loss per frame of age, fitted on ``raw_acc``,
        the content bins' accuracies before the camera's share)."""
        t = np.maximum(self._loss_tracked, 0)
        f = np.maximum(self._loss_fresh, 0)
        loss = np.maximum(0.0, raw_acc[f] - raw_acc[t]) / self._loss_half_span
        p = np.clip(on_time, 1e-6, 1.0)
        return p * acc + (1.0 - p) * np.maximum(0.0, acc - loss / p)

    def _decide(self, now: float) -> None:
        self._force = False
        self.decisions += 1
        self._since_decision = 1
        self._at_decision = (self.bandwidth.estimate_mbps, self.rtt.mean_ms, self.contention.level)
        cur = self._current
        ev = self._evaluate(now, cur)
        self._behind, self._pred_detect, self._pred_acc = ev.behind, ev.detect, ev.acc
        allowed, feasible, budget = ev.allowed, ev.feasible, ev.budget
        latency, acc, utility, switch_ms = ev.latency, ev.acc, ev.utility, ev.switch_ms
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "decide: bw %.2f (harmonic %.2f) Mbps, rtt %.1f+-%.1f ms, backlog %.0f kbit, "
                "margins %s, contention %.2f; feasible: %s",
                self.bandwidth.estimate_mbps, self.bandwidth.harmonic_mbps, self.rtt.mean_ms,
                self.rtt.std_ms, self._backlog_kbits, self._margin, self.contention.level,
                ", ".join(
                    f"{self.candidates[i].key}={latency[i]:.0f}/{budget[i]:.0f}ms@{acc[i]:.3f}"
                    for i in np.flatnonzero(allowed)[:12]
                ),
            )  # fmt: skip
        fresh, self._fresh = self._fresh or self._settling, False
        if self._settling and self.bandwidth.samples >= self.bandwidth.window:
            # The new regime's window is full: this is its last decision without hysteresis.
            self._settling = False
        if cur is None or fresh or not feasible[cur]:
            # No choice yet, or the link changed regime (a fade ended, the edge came
            # back): pick as a fresh start would, without the hysteresis that keeps a
            # choice made for a link that is gone.
            self._switch_to(*self._fresh_choice(ev))
            return
        # The current choice still fits: move only for a clear gain that fits comfortably.
        # A candidate planned with a chance of a cut: its chance of a miss shrunk by the
        # band, as a latency is (0.8 -> at least 0.82 on time with the defaults).
        sure = 1.0 - (1.0 - self.cut_min_on_time) * (1.0 - self.hysteresis_band)
        comfortable = feasible & (
            (latency <= budget * (1.0 - self.hysteresis_band)) | (ev.cut & (ev.on_time >= sure))
        )
        if not comfortable.any():
            self._switch_to(cur, "hold")
            return
        best = self._best(comfortable, latency, acc, utility)
        needed = self.hysteresis_gain + self.load_gain_per_ms * switch_ms[best]
        if best != cur and utility[best] - utility[cur] > needed:
            self._switch_to(best, self._fit_reason())
        else:
            self._switch_to(cur, "hold")

    def _fresh_choice(self, ev: _Evaluation) -> tuple[int, str]:
        """(candidate, reason) a fresh start picks: the best feasible, else the fastest."""
        if not ev.feasible.any():
            best = int(np.flatnonzero(ev.allowed)[np.argmin(ev.latency[ev.allowed])])
            return best, "edge-down-fastest" if self._edge_down else "none-feasible-fastest"
        return self._best(ev.feasible, ev.latency, ev.acc, ev.utility), self._fit_reason()

    def fresh_pick(
        self, bandwidth_mbps: float | None = None, now_s: float | None = None
    ) -> tuple[str, dict[str, float]]:
        """What a fresh start would pick now: everything this scheduler has learned
        (round trip, server and device load, content, margins) but no current choice, so
        no hysteresis. ``bandwidth_mbps``: the uplink's rate instead of the estimate
        (a link's known rate: what would a start that had measured it pick?). Returns
        the pick's key and every candidate's accuracy as predicted for that choice (the
        camera's share of frames and boxes' age included), to compare a pick with it.
        Changes no state. The demo records it per frame to show when the scheduler is
        back on it after a fade."""
        if bandwidth_mbps is not None and not (bandwidth_mbps > 0):
            raise SchedulerError(f"bandwidth must be > 0 Mbps, got {bandwidth_mbps}")
        with self._lock:
            now = self._now_s if now_s is None else now_s
            bw = None if bandwidth_mbps is None else (bandwidth_mbps, bandwidth_mbps)
            ev = self._evaluate(now, None, bw)
            index, _ = self._fresh_choice(ev)
            keys = (c.key for c in self.candidates)
            return self.candidates[index].key, dict(zip(keys, ev.acc.tolist(), strict=True))

    @staticmethod
    def _best(mask: np.ndarray, latency: np.ndarray, acc: np.ndarray, utility: np.ndarray) -> int:
        """The highest-utility point of the Pareto frontier of the ``mask`` candidates."""
        idx = np.flatnonzero(mask)
        front = idx[pareto_frontier(latency[idx], acc[idx])]
        return int(front[np.argmax(utility[front])])

    def _fit_reason(self) -> str:
        return "edge-down-local" if self._edge_down else "best-feasible"

    def _switch_to(self, index: int, reason: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("chose %s (%s)", self.candidates[index].key, reason)
        if index != self._current:
            if self._current is not None:
                self.switches += 1
            self._current = index
            self._phase = 0  # a new branch detects first
        self.last_reason = reason

    def _frame_decision(self, now: float) -> Decision:
        cur = self._current
        assert cur is not None
        k = int(self._interval[cur])
        track = self._phase % k != 0
        self._phase = (self._phase + 1) % k
        index, reason = cur, self.last_reason
        probe = self._probe_target(now)
        beside = None
        if probe is not None:
            self.probes += 1
            self._last_remote_s = now
            if (
                self.shadow_probes
                and not self._remote[cur]
                and not track
                and (self._pred_detect[cur] <= self._sla_ms or self._behind[cur])
            ):
                # The device's own detection fits (or goes on behind the tracker's
                # answer): that answers the frame, the probe only measures the link
                # beside it.
                beside = self._decision(probe, "probe", False)
            else:
                index, reason, track = probe, "probe", False
        entry = self.candidates[index]
        if entry.remote and not track:
            self._last_remote_s = now
        return self._decision(index, reason, track, beside)

    def _decision(
        self, index: int, reason: str, track: bool, probe: Decision | None = None
    ) -> Decision:
        entry = self.candidates[index]
        # Predictions from the last decision: estimates that moved enough re-decide anyway.
        latency = self._tracker_ms() if track else float(self._pred_detect[index])
        return Decision(
            branch=entry.config.branch,
            bits=entry.config.bits,
            interval=int(self._interval[index]),
            track=track,
            predicted_latency_ms=latency,
            predicted_accuracy=float(self._pred_acc[index]),
            reason="track" if track else reason,
            key=entry.key,
            width=entry.config.width,
            input_size=entry.config.input_size,
            remote=entry.remote,
            frame_index=self._frame,
            index=index,
            probe=probe,
        )

    def _probe_target(self, now: float) -> int | None:
        """The candidate to send this frame to, only to measure the link; None: no probe.

        A device that stayed local has a stale bandwidth estimate: one cheap frame (free
        switch only: same load group, or one the switch table prices at 0, e.g. a JPEG
        offload that loads no model) every ``probe_interval_s`` lets a recovered link win
        the next decision. After a transfer far faster than the estimate, the next frame
        checks it at once (a detection on the current remote branch, or that cheap frame).
        """
        cur = self._current
        if self.probe_every_frames <= 0 or self._edge_down or cur is None:
            return None
        if self._backlog_kbits > 0:
            return None  # the link still carries earlier bytes: a probe would queue behind
        if self._last_remote_s is None:
            self._last_remote_s = now  # the clock of "no remote frame for a while" starts
        free = self._switch_ms_from[self._group[cur]] <= 0.0
        if self._device_busy or self._behind[cur]:
            # The device's model is busy, or about to be (detections one after another
            # behind the tracker): a probe that needs it would wait or slow them.
            free = free & ~self._needs_device
        same = np.flatnonzero(self._remote & free)
        if self._remote[cur]:
            if not self._reprobe:
                return None
            self._reprobe = False
            return self._upward(cur, same)
        if len(same) == 0:
            return None
        target = int(same[np.argmin(self._bytes_q[same])])
        if self._reprobe:
            target = self._upward(target, same)
        if not self._reprobe:
            idle_s = now - self._last_remote_s
            bw = self.bandwidth.harmonic_mbps
            # At most ``probe_share`` of the uplink as last measured: a 30 kB probe on a
            # 0.1 Mbit/s link would hold it for seconds, and every frame behind it.
            share_s = self._kbits_q[target] / (self.probe_share * bw * 1000.0) if bw > 0 else 0.0
            due = self._since_remote >= self.probe_every_frames or idle_s >= self.probe_interval_s
            if not due or idle_s < share_s:
                return None
        self._since_remote = 0
        self._reprobe = False
        return target

    def _upward(self, target: int, free: np.ndarray) -> int:
        """The check after a transfer far faster than the estimate: ``target``, unless
        that transfer was a lower bound (RTT-dominated). Then the largest payload among
        the ``free`` remote candidates whose bytes, at that bound, cross within
        ``probe_share`` of the SLA: on a link as fast as the bound, or faster, it costs
        that little, and it is large enough to time (a bound only lifts the estimate a
        step at a time, keeping full frames off a recovered link for seconds). Only once
        the estimator has taken the faster regime, and at most 4x the bytes that gave
        the bound: a ladder."""
        bound, self._bound_mbps = self._bound_mbps, 0.0
        step, self._bound_bytes = 4.0 * self._bound_bytes, 0.0
        if bound <= 0 or len(free) == 0:
            return target
        # A step up at most 4x the bytes that gave the bound, and cheap at that bound.
        cheap = free[
            (self._kbits_q[free] / bound <= self.probe_share * self._sla_ms)
            & (self._bytes_q[free] <= step)
        ]
        if len(cheap) == 0:
            return target
        # The largest payload; among equals the most accurate, then a detection every frame.
        best = int(cheap[np.lexsort((self._interval[cheap], -self._acc[cheap],
                                      -self._bytes_q[cheap]))[0]])  # fmt: skip
        return best if self._bytes_q[best] > self._bytes_q[target] else target

    # ------------------------------------------------------------ feedback

    def observe(self, decision: Decision, outcome: FrameOutcome) -> None:
        """Feed one frame's outcome (its timing breakdown) to the estimators."""
        with self._lock:
            self._observe(decision, outcome)

    def observe_probe(self, probe: Decision, outcome: FrameOutcome) -> None:
        """The outcome of a probe sent beside a frame (``Decision.probe``): it measures the
        link, server and device like any remote frame, but no one waited for it, so it
        counts no SLA violation and teaches the latency margin nothing."""
        with self._lock:
            self._observe(probe, outcome, shadow=True)

    def observe_late_answer(self, payload_bytes: int, network_ms: float) -> None:
        """An answer that came after its frame's deadline (now, by ``clock``): its
        transfer is a throughput sample. In a fade late frames queue on the link one
        behind another; a frame sent before the previous late answer's bytes had crossed
        waited for them first, and that wait is not its transfer: it is taken off (the
        previous bytes crossed half a round trip floor before their answer came). Counted
        in, two 28 kB frames on a 0.1 Mbit/s link read as 0.07 Mbit/s; in the demo's fade
        the estimate fell to 0.02-0.04, and probes spaced by it (at most a quarter of the
        uplink) kept a recovered link unseen for 3 s."""
        with self._lock:
            if payload_bytes <= 0:
                return
            floor_ms = min(self._pings) if self._pings else self.rtt.min_ms
            now = self.clock()
            sent = now - network_ms / 1000.0
            free, self._late_free_s = self._late_free_s, now - floor_ms / 2000.0
            behind_ms = max(0.0, (free - sent) * 1000.0) if free is not None else 0.0
            transfer_ms = max(0.0, network_ms - floor_ms - behind_ms)
            log.debug("late answer: %d bytes, network %.1f ms, floor %.1f, behind %.1f",
                      payload_bytes, network_ms, floor_ms, behind_ms)  # fmt: skip
            before, resets = self.bandwidth.harmonic_mbps, self.bandwidth.resets
            sample = self._transfer_sample(payload_bytes, transfer_ms)
            reset = self.bandwidth.resets > resets
            if reset:
                self.rtt.restart()  # the fade's round trips were queueing
                self._new_faster_regime()
            if sample is not None and sample > self.bandwidth.jump_ratio * before:
                # Cut by its deadline on a fading link, answered at once on a recovered
                # one (a probe whose deadline was tight): check the link on the next
                # frame, whichever branch it was.
                self._reprobe_after(sample, before, -math.inf, reset)

    def set_backlog(self, backlog_bytes: int) -> None:
        """Bytes sent earlier and not answered yet: a new frame's bytes queue behind them."""
        if backlog_bytes < 0:
            raise SchedulerError(f"backlog must be >= 0 bytes, got {backlog_bytes}")
        with self._lock:
            self._backlog_kbits = backlog_bytes * 8.0 / 1000.0

    def set_device_busy(self, busy: bool) -> None:
        """Whether the device's own model is running now (a detection going on in the
        background): a probe that needs it (a split head) would be tracked instead and
        never leave, so probes go to a branch that does not (a JPEG) meanwhile."""
        with self._lock:
            self._device_busy = bool(busy)

    def observe_rtt(self, rtt_ms: float) -> None:
        """A round trip measured outside frames (a Status RPC, an MQTT ping)."""
        with self._lock:
            self.rtt.add(rtt_ms)
            self._pings.append(rtt_ms)

    def _observe(self, decision: Decision, outcome: FrameOutcome, shadow: bool = False) -> None:
        t = outcome.timing
        if decision.index < 0 or decision.index >= len(self.candidates):
            raise SchedulerError(f"decision {decision.key!r} was not made by this scheduler")
        entry = self.candidates[decision.index]
        self._content(outcome)
        if decision.track:
            if not entry.remote:
                self._since_remote += 1  # probing counts frames, tracked ones too
            # The tracker's own time (a frame that first waited for a background
            # detection has a longer total).
            self._learn_tracker(t.local_ms or t.total_ms)
            return
        edge_failed = outcome.edge_failed
        if t.total_ms > 0 and decision.predicted_latency_ms > 0 and not shadow:
            if t.total_ms > self._sla_ms:
                self.violations += 1
            ratio = t.total_ms / decision.predicted_latency_ms
            # An outage is not an error of the latency model, nor is a regime change (a
            # frame far over its prediction: the link collapsed, a deadline passed): the
            # estimators take those (bandwidth error discount, contention), while the margin
            # tracks the everyday spread. Learned from regime changes it would stay
            # pessimistic for hundreds of frames after the link came back.
            # A frame cut at its deadline ran at least this long: censored, it says the
            # latency went over theta only when its ratio does already (a detection
            # planned with a chance of a cut would otherwise teach that it was on time).
            censored = outcome.reason == _LATE and ratio <= self._theta[entry.remote]
            if not edge_failed and ratio <= self.regime_ratio and not censored:
                self._learn_margin(entry.remote, ratio)
        by_level = dict(zip(self.contention.levels, self._head[decision.index], strict=True))
        # Device work of a few ms (a JPEG encode) is dominated by timer and scheduling
        # noise: it would blur the contention estimate, so only longer work feeds it.
        sensed = by_level[self.contention.levels[0]] >= self.min_sensed_ms
        if not entry.remote:
            self._since_remote += 1
            if outcome.source == "local" and t.local_ms > 0 and sensed:
                self.contention.observe(by_level, t.local_ms)
            return
        self._since_remote = 0
        self._learn_bytes(decision.index, outcome.payload_bytes)
        device_ms = t.head_ms + t.encode_ms
        if device_ms > 0 and sensed:
            self.contention.observe(by_level, device_ms)
        if outcome.source == "edge":
            if log.isEnabledFor(logging.DEBUG):  # every answer: not even the args otherwise
                log.debug(
                    "observed %s: %.1f ms (predicted %.1f): device %.1f, network %.1f, "
                    "server %.1f (queue %.1f), %d bytes",
                    decision.key, t.total_ms, decision.predicted_latency_ms, device_ms,
                    t.network_ms, t.server.server_total_ms, t.server.queue_ms,
                    outcome.payload_bytes,
                )  # fmt: skip
            if self._edge_down or self._edge_failures:
                self._force = self._fresh = True
            self._edge_down, self._edge_failures = False, 0
            self.server.observe_frame(
                entry.config.branch,
                t.server.queue_ms,
                max(0.0, t.server.server_total_ms - t.server.queue_ms),
            )
            before, resets = self.bandwidth.harmonic_mbps, self.bandwidth.resets
            sample = self._network(outcome.payload_bytes, t.network_ms)
            reset = self.bandwidth.resets > resets
            if reset:
                # The link is back: round trips from the fade were queueing, not distance.
                rate = self.bandwidth.harmonic_mbps
                self.rtt.restart()
                carried_ms = outcome.payload_bytes * 8.0 / (rate * 1e3)
                self.rtt.add(max(self._known_floor_ms(), t.network_ms - carried_ms))
                self._new_faster_regime()
            self._reprobe_after(sample, before, self._acc[decision.index], reset)
            return
        if edge_failed:
            self._mark_edge_lost()
            self._force = True
            return
        waited_ms = t.total_ms - device_ms - t.local_ms
        if outcome.payload_bytes > 0 and waited_ms > 0 and not self._settling:
            # Missed the deadline: the bytes did not make it in this time, so the link
            # carried at most this much. An upper bound: it says something only when it is
            # below the estimate (a small probe cut short must not lift it in a fade);
            # the answer, when it comes late, gives the true rate (observe_late_answer).
            # Not while a faster link just measured is settling in: then a miss is more
            # likely the server's or this device's (the wait counts their time too) than
            # a new fade, and its answer, due a few ms later on a fast link, tells which.
            # Taken as the link's, a 7 kB JPEG cut after 140 ms beside a busy edge (its
            # answers then spent 118-146 ms in the server) read 0.4 Mbit/s just after a
            # 26 Mbit/s measurement, and kept full frames off the recovered link for 1.2 s.
            bound = outcome.payload_bytes * 8.0 / (waited_ms * 1000.0)
            if bound < self.bandwidth.harmonic_mbps:
                self.bandwidth.add(bound)

    def _learn_bytes(self, index: int, payload_bytes: int) -> None:
        """One remote frame's payload against its profiled mean: its branch's ratio moves
        toward it (EWMA), and so do the branches of its kind not sent yet (they take the
        kind's latest ratio). O(candidates) in numpy, once per remote answer."""
        profiled = float(self._bytes_mean[index])
        if not self.learn_bytes or payload_bytes <= 0 or profiled <= 0:
            return
        ratio = min(max(payload_bytes / profiled, 0.05), 20.0)
        name = self._name_idx[index]
        if self._bytes_seen[name]:
            old = float(self._byte_scale[index])
            ratio = old + self.bytes_rate * (ratio - old)
        self._bytes_seen[name] = True
        unseen_kin = (self._kind_idx == self._kind_idx[index]) & ~self._bytes_seen[self._name_idx]
        self._byte_scale[(self._name_idx == name) | unseen_kin] = ratio

    def payload_scale(self) -> dict[str, float]:
        """Per branch, the learned observed / profiled payload ratio the predictions use."""
        with self._lock:
            return {
                e.config.branch: float(x)
                for e, x in zip(self.candidates, self._byte_scale, strict=True)
            }

    def _reprobe_after(
        self, sample: float | None, before: float, accuracy: float, reset: bool = False
    ) -> None:
        """After a transfer far faster than the estimate ``before`` it, check the link on
        the next frame while transfers beat the estimate many times over, so the estimator
        sees the new regime in two samples (it then replaces its window), not one sample per
        probe period. Only when a more accurate branch than ``accuracy`` exists; at most 4
        in a row."""
        faster = (
            sample is not None
            and sample > self.bandwidth.jump_ratio * before
            and accuracy < self._acc.max()
        )
        log.debug(
            "throughput sample %s Mbps (harmonic before %.3f): faster %s, burst %d, resets %d",
            None if sample is None else f"{sample:.3f}", before, faster, self._burst,
            self.bandwidth.resets,
        )  # fmt: skip
        if faster and self._burst < 4:
            self._reprobe = True
            self._burst += 1
            # Small payloads cross a fast link within the round trip's jitter: they only
            # bound the rate from below, and more of them would lift the estimate a bound
            # at a time. The check sends a payload large enough to time, if it is cheap,
            # once the estimator took the faster regime (two samples: one small payload
            # after a quiet spell can ride a shaper's burst allowance in a fade).
            bound = self._sample_is_bound and reset
            self._bound_mbps = (sample or 0.0) if bound else 0.0
            self._bound_bytes = self._sample_bytes if bound else 0.0
        elif not faster:
            self._burst = 0
            self._bound_mbps = self._bound_bytes = 0.0

    def _transfer_sample(self, payload_bytes: int, transfer_ms: float) -> float | None:
        """Feed one transfer (its time past the round-trip floor) to the bandwidth
        estimator; the throughput sample taken (Mbps), if any.

        A transfer longer than the round trip's own jitter (``jitter_sigmas`` x its
        spread, at most half the path's floor, at least 1 ms) gives the rate. One that
        is not is *RTT-dominated*: how long the bytes took is lost in how long the round
        trip took this time, so it says only that the link carried them within that
        time, a lower bound. A lower bound is used when the estimate is below it (else a
        link that recovered while only small payloads crossed it would keep a stale,
        pessimistic estimate for ever) and never lowers the estimate: a 3 kB frame whose
        round trip was 5 ms late on a 40 Mbit/s link would read as 5 Mbit/s and keep full
        frames off the link.
        """
        # The round trip's spread, but not past half the path's floor: in a fade, round
        # trips that queue behind a backlog inflate it, and a small payload that takes
        # 100 ms on a 0.1 Mbit/s link must still read as the slow link it shows.
        band_ms = min(self.jitter_sigmas * self.rtt.std_ms, 0.5 * self.rtt.min_ms)
        self._sample_is_bound = transfer_ms < max(1.0, band_ms)
        self._sample_bytes = float(payload_bytes)
        if not self._sample_is_bound:
            self.bandwidth.add_transfer(payload_bytes, transfer_ms)
            return payload_bytes * 8.0 / (transfer_ms * 1000.0)
        bound = payload_bytes * 8.0 / (max(transfer_ms, 1.0) * 1000.0)
        if bound > self.bandwidth.estimate_mbps:
            self.bandwidth.add(bound)
            return bound
        return None

    def _network(self, payload_bytes: int, network_ms: float) -> float | None:
        """Feed one edge answer's network time; the throughput sample taken (Mbps), if any."""
        if network_ms <= 0:
            return None
        self._net.append((network_ms, float(payload_bytes)))
        floor_ms = self._rtt_floor_ms()
        transfer_ms = network_ms - floor_ms
        sample = self._transfer_sample(payload_bytes, transfer_ms) if payload_bytes > 0 else None
        rate = self.bandwidth.harmonic_mbps
        carried_ms = payload_bytes * 8.0 / (rate * 1000.0) if rate > 0 else 0.0
        # Not under the floor: when the link just got faster, the bytes at the old rate
        # "took" longer than the whole answer, and a round trip of 0 would become the
        # path's floor, the spread of every round trip after it.
        self.rtt.add(max(floor_ms, network_ms - carried_ms))
        return sample

    def _known_floor_ms(self) -> float:
        """The round-trip floor as last worked out (pings, else the cached inference)."""
        if self._pings:
            return min(self._pings)
        return max(0.0, self._floor_ms or 0.0)

    def _rtt_floor_ms(self) -> float:
        # Pure round trips (pings) give the floor directly. Without them, the floor is the
        # smallest network time left after the bytes at the current rate; one payload size
        # alone cannot tell round trip from rate, other sizes (bit depths, probes) can.
        if self._pings:
            return self._known_floor_ms()
        rate = self.bandwidth.harmonic_mbps
        per_byte_ms = 8.0 / (rate * 1000.0) if rate > 0 else 0.0
        ms, size = self._net[-1]
        newest = ms - size * per_byte_ms
        self._net_count += 1
        if self._net_count % 8 == 0 or self._floor_ms is None:
            # A full pass now and then, so old samples and rate changes are accounted for.
            self._floor_ms = min(ms - size * per_byte_ms for ms, size in self._net)
        else:
            self._floor_ms = min(self._floor_ms, newest)
        return max(0.0, self._floor_ms)

    def _new_faster_regime(self) -> None:
        """The bandwidth estimator took a faster link: decide afresh while it settles, and
        plan the remote path with at least the starting margin (what shrank it was the
        old link's doing; an earned wider margin stays)."""
        self._force = self._fresh = self._settling = True
        if self.learn_margin and self._theta[True] > 1.0 / self._margin_prior:
            self._theta[True] = 1.0 / self._margin_prior
            self._margin[True] = self._margin_prior
            self._update_budget_factor()

    def _learn_margin(self, remote: bool, ratio: float) -> None:
        # Online quantile tracking (Robbins-Monro) of observed / predicted latency, in
        # log space: up by rate x q when a frame ran over its prediction x theta, down
        # by rate x (1 - q) otherwise, so theta settles where a fraction 1 - q of frames
        # exceed it. One spike moves it a step, not to the spike; O(1) per frame.
        self._ratio_count[remote] += 1
        if not self.learn_margin:
            return
        theta = self._theta[remote]
        over = 1.0 if ratio > theta else 0.0
        theta *= math.exp(self.margin_rate * (over - (1.0 - self.quantile)))
        lo, hi = self.margin_bounds
        self._theta[remote] = min(1.0 / lo, max(1.0 / hi, theta))
        self._margin[remote] = 1.0 / self._theta[remote]
        self._update_budget_factor()

    def _update_budget_factor(self) -> None:
        self._budget_factor = np.where(self._remote, self._margin[True], self._margin[False])

    @property
    def margins(self) -> dict[str, float]:
        """The SLA fraction each path plans with: ``{"local": .., "remote": ..}``."""
        return {"local": self._margin[False], "remote": self._margin[True]}

    def _content(self, outcome: FrameOutcome) -> None:
        boxes = getattr(outcome.prediction, "boxes", None)
        if boxes is not None and self.frame_hw is not None:
            self.content.update(boxes, self.frame_hw, outcome.frame_id)

    def _mark_edge_lost(self) -> None:
        self._edge_failures += 1
        self._edge_down = True
        backoff = min(self.max_edge_retry_s, self.edge_retry_s * 2 ** (self._edge_failures - 1))
        self._edge_retry_at = self._now_s + backoff

    @property
    def edge_down(self) -> bool:
        return self._edge_down

    @property
    def current(self) -> BranchProfile | None:
        return None if self._current is None else self.candidates[self._current]
