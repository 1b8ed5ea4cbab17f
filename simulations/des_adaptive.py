"""What the DES needs to run a scenario's adaptive policy: costs, the session's budgets, accuracy.

The adaptive scheduler picks from its scheduler profile's entries (other JPEG
qualities, widths, detection intervals), not from the scenario's ``branches``, so
the discrete-event simulator needs a cost for each of its candidates
(:func:`~splitedge.simulations.policies.scheduler_candidates` labels):

* :func:`sim_profile` converts the scheduler profile itself: the head time at the
  lowest contention level as device time, the payload mean plus gRPC framing as
  uplink bytes, a fixed reply, the entry's tail latency;
* :func:`adaptive_costs` overlays a measured cost profile
  (:func:`~splitedge.simulations.profiles.measure_cost_profile`, the scenario DES's
  ``--profile``) on it: a candidate the measurement has keeps the measured costs,
  the rest come from the scheduler profile.

Device slowdown. A scenario's ``device_slowdown`` stretches the client's head and
local runs (:class:`~splitedge.simulations.demo.SlowedBackend`); JPEG encoding for an
offload branch and the tracker run outside that backend and are not stretched. A
cost :class:`~splitedge.simulations.profiles.CostProfile` describes the device as the
run sees it, as the runner measures it (with the slowed backend) and saves it in
``profile.json``; so a given cost profile is taken as it is, one measured here on
this machine's plain backend is :func:`slowed`, and costs read from a scheduler
profile (measured at full speed) are slowed too.

:class:`SessionPolicy` is :class:`~splitedge.simulations.policies.AdaptivePolicy`
plus the per-frame budget of :class:`~splitedge.mobile_client.adaptive.AdaptiveSession`
(the SLA less the predicted local fallback, then the local model or the tracker),
which the DES asks for through ``frame_budget``. :func:`predicted_accuracy` is the
DES's accuracy: the mean over answered frames of the profile accuracy of what
produced each one (the local model for a fallback), what the runner's mAP50 over
its answered frames is compared with. Where the DES recorded a frame's track age
(frames since the detection whose boxes it carries, :func:`accuracy_by_age`), a
detection scores its branch's interval-1 accuracy and a tracked frame that less a
loss per frame of age, fitted to the profile's intervals (an interval-k entry is
the mean over ages 0..k-1); a frame tracked on boxes from a background detection
several frames old then scores as low as it is (scored at its entry's interval
accuracy, the DES put adaptive on a 12x slower device 40 % above the real run).
Where the run's video and the model are at hand, :func:`replayed_map50` scores the
DES's answers as the runner scores a real run's: COCO mAP50 over the answered frames,
each given the boxes the real path gives it (its branch's detections on that frame,
or the tracker moved from its boxes' detection frame), with :func:`detection_configs`
naming the branch behind each row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from splitedge.mobile_client.adaptive import (
    STATUS_EVERY_S,
    background_wait_ms,
    detection_budget,
)
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.policy import Candidate
from splitedge.mobile_client.profile import Profile, needs_device_model
from splitedge.mobile_client.scheduler import Decision, Scheduler
from splitedge.simulations.policies import AdaptivePolicy, scheduler_candidates
from splitedge.simulations.profiles import CandidateProfile, CostProfile
from splitedge.simulations.report import FrameRow

__all__ = [
    "FRAMING_BYTES",
    "OVERHEAD_MS",
    "REPLY_BYTES",
    "SessionPolicy",
    "accuracy_by_age",
    "accuracy_by_tag",
    "adaptive_costs",
    "detection_configs",
    "predicted_accuracy",
    "replay_content",
    "replayed_map50",
    "sim_profile",
    "slowed",
    "tracker_costs",
    "tracker_ms",
]

OVERHEAD_MS = 2.0  # per-frame round-trip cost beyond bytes and server (docs: ~2 ms)
FRAMING_BYTES = 300.0  # gRPC/HTTP2 framing per request on the wire
REPLY_BYTES = 1000.0  # detections coming back


def _slowed_kind(cp: CandidateProfile) -> bool:
    """Whether the candidate's device work runs in the (slowed) head backend."""
    return not cp.remote or not cp.branch.startswith("offload")


def slowed(profile: CostProfile, factor: float) -> CostProfile:
    """``profile`` on a device ``factor`` x slower: local and head times (and samples) scaled.

    Offload candidates keep theirs: JPEG encoding is not the head backend's work.
    """
    if not (factor >= 1.0 and math.isfinite(factor)):
        raise ValueError(f"device slowdown must be a number >= 1, got {factor}")
    if factor == 1.0:
        return profile
    out = {}
    for label, cp in profile.candidates.items():
        if _slowed_kind(cp):
            cp = replace(
                cp,
                device_ms=cp.device_ms * factor,
                device_ms_samples=[s * factor for s in cp.device_ms_samples],
            )
        out[label] = cp
    return replace(profile, candidates=out)


def sim_profile(
    profile: Profile,
    candidates: Mapping[str, Candidate],
    *,
    seed: int = 0,
    device_slowdown: float = 1.0,
    overhead_ms: float = OVERHEAD_MS,
) -> CostProfile:
    """The DES costs of every candidate, from the same scheduler profile entries.

    ``candidates``: entry key -> detection candidate (:func:`scheduler_candidates`);
    entries without one are skipped. Device and batch-1 tail times get samples
    (log-normal with the entry's median and p95) so that the DES's ``jitter`` draws
    what the profile's spread says; ``device_slowdown`` scales local and head times.
    """
    rng = np.random.default_rng(seed)
    level = min(profile.contention_levels)
    out: dict[str, CandidateProfile] = {}
    for e in profile.entries:
        c = candidates.get(e.key)
        if c is None or c.label in out:
            continue  # not offered, or another detection interval of the same costs
        head = e.head_latency_ms[level]
        sigma = math.log(max(head.p95, 1e-9) / max(head.p50, 1e-9)) / 1.645
        samples = (head.p50 * rng.lognormal(0.0, max(sigma, 0.0), 200)).tolist()
        tail = dict(sorted(e.tail_latency_ms.items()))
        tail_samples = (tail[min(tail)] * rng.lognormal(0.0, 0.08, 200)).tolist() if tail else []
        payload = e.bytes_per_frame.mean if e.remote else 0.0
        out[c.label] = CandidateProfile(
            c.label,
            c.branch,
            c.bits,
            e.remote,
            device_ms=head.p50,
            payload_bytes=payload,
            uplink_wire_bytes=payload + FRAMING_BYTES if e.remote else 0.0,
            downlink_wire_bytes=REPLY_BYTES if e.remote else 0.0,
            decode_ms=0.3 if e.remote else 0.0,
            server_encode_ms=0.2 if e.remote else 0.0,
            tail_ms_by_batch=tail,
            accuracy=e.accuracy if e.config.detection_interval == 1 else None,
            device_ms_samples=samples,
            tail_ms_samples=tail_samples,
        )
    costs = CostProfile(
        profile.model, out, overhead_ms=overhead_ms, measured_on="scheduler profile"
    )
    return slowed(costs, device_slowdown)


def _measured_for(
    c: Candidate, measured: CostProfile, bits_of: Mapping[str, set[int]]
) -> CandidateProfile | None:
    """The measured costs of ``c``: by label, else by branch when the measurement ran the
    branch at its default bit depth and the scheduler profile knows one depth for it."""
    cp = measured.candidates.get(c.label)
    if cp is None and c.bits is not None and len(bits_of.get(c.branch, ())) == 1:
        cp = measured.candidates.get(c.branch)
    return cp


def adaptive_costs(
    profile: Profile,
    *,
    measured: CostProfile | None = None,
    device_slowdown: float = 1.0,
    seed: int = 0,
) -> CostProfile:
    """Costs of every candidate of ``profile``: ``measured`` where it has them, else the profile's.

    ``measured`` is taken as the run's device (slowdown included, as the runner
    measures it); the scheduler profile's device times are multiplied by
    ``device_slowdown``. The overhead is the measured one when there is a measurement.
    """
    cands = scheduler_candidates(profile)
    overhead = measured.overhead_ms if measured is not None else OVERHEAD_MS
    costs = sim_profile(
        profile, cands, seed=seed, device_slowdown=device_slowdown, overhead_ms=overhead
    )
    if measured is None:
        return costs
    bits_of: dict[str, set[int]] = {}
    for e in profile.entries:
        bits_of.setdefault(e.config.branch, set()).add(e.config.bits)
    merged = dict(costs.candidates)
    for c in cands.values():
        cp = _measured_for(c, measured, bits_of)
        if cp is not None:
            own = merged[c.label]
            merged[c.label] = replace(
                cp, label=c.label, branch=c.branch, bits=c.bits, accuracy=own.accuracy
            )
    for label, cp in measured.candidates.items():  # the scenario's branches keep theirs
        merged.setdefault(label, cp)
    return replace(
        costs,
        candidates=merged,
        overhead_ms_samples=list(measured.overhead_ms_samples),
        measured_on=f"{measured.measured_on} + scheduler profile".strip(" +"),
    )


def tracker_ms(profile: Profile) -> float:
    """The tracker's per-frame time at the lowest contention level (0: none measured)."""
    tracker = profile.tracker_latency_ms
    return float(tracker[min(tracker)]) if tracker else 0.0


def tracker_costs(profile: Profile, measured: CostProfile | None = None) -> dict[str, Any]:
    """The DES's tracker (``DesConfig`` fields) for an adaptive policy: the measured
    cost profile's tracker (:func:`~splitedge.simulations.profiles.measure_tracker`:
    its median alone, and its samples alone and beside the device's own model) where it
    has one, else the scheduler profile's time (:func:`tracker_ms`) without samples.
    The scheduler profile's is the profiling machine's, on few boxes (0.9 ms here): the
    field's sessions learn 4-14 ms on the device, and with 0.9 the DES's scheduler sent
    a third fewer frames' groups to the edge than a real run (73 against 108 frames on
    the field check's trace) and missed the SLA on 0.8 % of frames against 2.1."""
    if profile.tracker_latency_ms and measured is not None and measured.tracker_ms_samples:
        return {
            "tracker_ms": float(np.median(measured.tracker_ms_samples)),
            "tracker_ms_samples": tuple(measured.tracker_ms_samples),
            "tracker_busy_ms_samples": tuple(measured.tracker_busy_ms_samples),
        }
    return {"tracker_ms": tracker_ms(profile)}


class SessionPolicy(AdaptivePolicy):
    """The adaptive scheduler with :class:`AdaptiveSession`'s per-frame budget.

    ``frame_budget(frame_index)`` (asked by the DES after ``pick``) is
    ``(edge deadline ms, fallback)``: the SLA (a tracked group planned late: 1.5 x
    its prediction, at most k x the SLA) less the predicted local run and a
    hand-over when the local model takes at most half of it (fallback ``local``),
    else less the tracker's time once there is a result to track (``track``).

    The session's Status RPC, about once a second: ``status_due`` (asked at each frame's
    start) and ``status_done``; the DES carries it over the client's links, and a round
    trip taken on an idle link goes to the scheduler (``observe_rtt``), as the session's
    does. On a trace with delivery gaps (a fade) such a round trip waits for the link:
    without it the DES's scheduler saw a far steadier round trip than the real one.

    Background detection, as the session runs it: ``background_wait`` is how long a
    frame waits for the device's own detection before the tracker answers it
    (:func:`~splitedge.mobile_client.adaptive.background_wait_ms`); the DES then calls
    ``to_background`` (the frame is recorded as tracked), ``track_instead`` for frames
    that need the device's model while that detection runs, and ``observe_background``
    when it ends (an unwaited outcome, as the session's ``observe_probe``).
    """

    def __init__(self, *args: Any, status_every_s: float = STATUS_EVERY_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scheduler.background_local = bool(self.scheduler.profile.tracker_latency_ms)
        self.scheduler.cut_to_tracker = self.scheduler.background_local
        self._budgets: dict[int, tuple[float, str]] = {}
        self._has_result = False
        self._background: dict[int, Decision] = {}  # detections going on in the background
        self.status_every_s = status_every_s
        self._next_status_s = 0.0
        self._status_out = False

    def status_due(self, now_s: float) -> bool:
        """Whether the session sends its Status RPC now (asked at each frame's start):
        every ``status_every_s``, never a second while one is out. The DES sends it over
        the client's links and hands back its round trip (:meth:`status_done`)."""
        if self.status_every_s <= 0 or self._status_out or now_s < self._next_status_s:
            return False
        self._next_status_s = now_s + self.status_every_s
        self._status_out = True
        return True

    def status_done(self, rtt_ms: float | None) -> None:
        """The Status RPC came back: its round trip when the link was idle both when it
        left and when it came back (the session's pure round trip), else None."""
        self._status_out = False
        if rtt_ms is not None:
            self.scheduler.observe_rtt(rtt_ms)

    def _kind(self, decision: Decision) -> str:
        return self.scheduler.candidates[decision.index].kind

    def _can_track(self) -> bool:
        return self._has_result and bool(self.scheduler.profile.tracker_latency_ms)

    def track_instead(self, frame_index: int) -> Candidate | None:
        """While a background detection runs: frame ``frame_index``'s tracked twin when
        its decision needs the device's model (the session tracks it), else None."""
        decision = self._pending.get(frame_index)
        if decision is None or decision.track or not needs_device_model(self._kind(decision)):
            return None
        self._pending[frame_index] = replace(decision, track=True)
        return replace(self.candidates[decision.key], track=True)

    def background_wait(self, frame_index: int) -> float | None:
        """How long the frame waits for the device's own detection before the tracker
        answers it (:func:`~splitedge.mobile_client.adaptive.background_wait_ms`)."""
        decision = self._pending.get(frame_index)
        if decision is None:
            return None
        kind = self._kind(decision)
        return background_wait_ms(self.scheduler, decision, kind=kind, can_track=self._can_track())

    def to_background(self, frame_index: int) -> Candidate:
        """The detection of ``frame_index`` goes on in the background; the frame's answer
        is the tracker's: the candidate it is recorded under."""
        decision = self._pending[frame_index]
        self._background[frame_index] = decision
        self._pending[frame_index] = replace(decision, track=True)
        return replace(self.candidates[decision.key], track=True)

    def observe_late_answer(self, payload_bytes: int, network_ms: float) -> None:
        """An answer that came after its frame's deadline: a throughput sample, as the
        real client hands it to the scheduler (``Client.on_late_answer``)."""
        self.scheduler.observe_late_answer(payload_bytes, network_ms)

    def observe_background(self, frame_index: int, outcome: FrameOutcome) -> None:
        decision = self._background.pop(frame_index, None)
        if decision is not None:
            candidate = self.candidates[decision.key]
            self.scheduler.observe_probe(decision, self._with_content(candidate, outcome))

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        self.scheduler.set_device_busy(bool(self._background))
        candidate = super().pick(frame_index, now_s)
        self._budgets[frame_index] = self._budget(self._pending[frame_index])
        return candidate

    def _budget(self, decision: Decision) -> tuple[float, str]:
        can_track = self._has_result and bool(self.scheduler.profile.tracker_latency_ms)
        return detection_budget(self.scheduler, decision, can_track=can_track)

    def frame_budget(self, frame_index: int) -> tuple[float, str] | None:
        return self._budgets.pop(frame_index, None)

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        self._budgets.pop(outcome.frame_id, None)
        if outcome.source != "dropped":
            self._has_result = True
        super().observe(candidate, outcome)


def session_policy(
    profile: Profile,
    sla_ms: float,
    *,
    fps: float,
    clock: Callable[[], float],
    branches: Collection[str] | None = None,
    ping_ms: float | None = None,
    name: str = "adaptive",
    content: Callable[[int, str, int], Any] | None = None,
    **scheduler_options: Any,
) -> SessionPolicy:
    """One client's adaptive policy as the runner builds it (frame period told, branches;
    ``content``: the run's video's boxes, :func:`replay_content`)."""
    scheduler = Scheduler(
        profile,
        sla_ms,
        branches=branches,
        frame_period_ms=1000.0 / fps,
        clock=clock,
        **scheduler_options,
    )
    return SessionPolicy(
        scheduler, scheduler_candidates(profile), name, ping_ms=ping_ms, content=content
    )


class _TrackerReplay:
    """The device's tracker replayed on a run's video (``validator.video``): a detection
    restarts it on its frame, and a tracked answer gets that detection's boxes moved to
    its frame, one update per answer asked for, as the session's tracker does."""

    def __init__(self, validator: Any, tracker_factory: Callable[[], Any] | None) -> None:
        if tracker_factory is None:
            from splitedge.mobile_client.tracker import BoxTracker

            tracker_factory = BoxTracker
        self.validator = validator
        self.frames = validator.video.frames
        self.tracker = tracker_factory()
        self._base: tuple[int, int] | None = None  # (frame, id of its config)
        self._det: Any = None

    def detected(self, config: Any, frame: int) -> Any:
        """``config``'s detections on ``frame``; the tracker restarts from them."""
        self._det = self.validator.detect(config, frame)
        self.tracker.init(self.frames[frame], np.asarray(self._det.boxes, np.float32))
        self._base = (frame, id(config))
        return self._det

    def moved(self, config: Any, base: int, frame: int) -> Any:
        """The boxes of ``config``'s detection on frame ``base``, tracked to ``frame``."""
        from splitedge.models.types import Detections

        if self._base != (base, id(config)):
            self.detected(config, base)
        boxes = np.asarray(self.tracker.update(self.frames[frame]), np.float32).copy()
        return Detections(boxes, self._det.scores, self._det.labels)


def replay_content(
    validator: Any,
    configs: Mapping[str, Any],
    *,
    tracker_factory: Callable[[], Any] | None = None,
) -> Callable[[int, str, int], Any]:
    """``content`` for :class:`~splitedge.simulations.policies.AdaptivePolicy`: the boxes
    the real session has for frame ``i`` of the run's video, as :func:`replayed_map50`
    scores them (``configs`` from :func:`detection_configs`):

    - ``age`` 0, a detection: the detections on frame ``i`` by the branch behind
      candidate label ``label`` (``validator.detect``);
    - ``age`` a > 0, a tracked frame: the detections of frame ``i - a`` (by the branch
      that detected there, when this replay saw it, else ``label``'s), moved to frame
      ``i`` by the device's tracker, started on frame ``i - a`` and updated on each
      tracked frame asked for since, as the session's tracker is. The real scheduler's
      content features see these boxes on every tracked frame.

    None for a label or frame the video does not cover. Calls must come in the session's
    order (the tracker keeps its state between them)."""
    replay = _TrackerReplay(validator, tracker_factory)
    count = len(validator.video.frames)
    detected: dict[int, str] = {}  # frame -> the label whose detection it had

    def content(frame_index: int, label: str, age: int = 0) -> Any:
        if not 0 <= frame_index < count:
            return None
        if age <= 0:
            config = configs.get(label)
            if config is None:
                return None
            detected[frame_index] = label
            return validator.detect(config, frame_index)
        b = frame_index - age
        config = configs.get(detected.get(b, label))
        if config is None or b < 0:
            return None
        return replay.moved(config, b, frame_index)

    return content


def accuracy_by_tag(profile: Profile, extra: Iterable[Candidate] = ()) -> dict[str, float]:
    """Row tag -> the profile accuracy of what produced it.

    Every entry's candidate (and its ``+track`` twin: a group's accuracy is the
    entry's at its interval); ``extra`` candidates (a scenario's branches, bit depth
    possibly unset) get their branch's interval-1 accuracy.
    """
    out: dict[str, float] = {}
    by_branch: dict[str, float] = {}
    for key, c in scheduler_candidates(profile).items():
        acc = profile.entry(key).accuracy
        if acc is None:
            continue
        out.setdefault(c.tag, acc)
        out.setdefault(replace(c, track=True).tag, acc)
        if c.interval == 1:
            by_branch.setdefault(c.branch.split("~")[0], acc)
    for c in extra:
        if c.tag not in out and c.branch in by_branch:
            out[c.tag] = by_branch[c.branch]
    return out


def accuracy_by_age(profile: Profile) -> dict[str, tuple[float, float]]:
    """Candidate label -> (accuracy of a detection on its own frame, accuracy lost per
    frame a tracker carries its boxes), from the profile's interval-1 entry and its
    longest-interval one (an interval-k entry's accuracy is the mean over ages
    0..k-1 of ``fresh - loss x age``). Labels without an interval-1 accuracy are left
    out; a loss is never negative."""
    by_label: dict[str, dict[int, float]] = {}
    for key, c in scheduler_candidates(profile).items():
        acc = profile.entry(key).accuracy
        if acc is not None:
            by_label.setdefault(c.label, {}).setdefault(c.interval, acc)
    out: dict[str, tuple[float, float]] = {}
    for label, by_interval in by_label.items():
        fresh = by_interval.get(1)
        if fresh is None:
            continue
        k = max(by_interval)
        loss = max(0.0, (fresh - by_interval[k]) / ((k - 1) / 2)) if k > 1 else 0.0
        out[label] = (fresh, loss)
    return out


def _label(tag: str) -> str:
    label = tag.removesuffix("+track")
    head, _, tail = label.rpartition("/k")
    return head if head and tail.isdigit() else label


def predicted_accuracy(
    rows: Sequence[FrameRow],
    by_tag: Mapping[str, float],
    fallback: float | None,
    by_age: Mapping[str, tuple[float, float]] | None = None,
) -> float:
    """Mean profile accuracy over answered rows (a fallback: ``fallback``); NaN if none.

    With ``by_age`` (:func:`accuracy_by_age`), a row with a recorded track age whose
    label it covers scores ``fresh - loss x age`` (not below 0) instead.
    """
    values = []
    for r in rows:
        if r.source == "dropped":
            continue
        aged = by_age.get(_label(r.candidate)) if by_age and r.track_age >= 0 else None
        if aged is not None:
            fresh, loss = aged
            acc = max(0.0, fresh - loss * r.track_age)
        elif r.source == "local" and r.reason and not r.candidate.endswith("+track"):
            acc = fallback
        else:
            acc = by_tag.get(r.candidate)
        if acc is None:
            raise KeyError(f"no accuracy for row candidate {r.candidate!r}")
        values.append(acc)
    return float(np.mean(values)) if values else math.nan


def detection_configs(profile: Profile, extra: Iterable[Candidate] = ()) -> dict[str, Any]:
    """Candidate label -> the profile's interval-1 :class:`BranchConfig` behind it (what
    runs on a detection frame); ``extra`` candidates (a scenario's branches, bit depth
    possibly unset) get their branch's first interval-1 entry."""
    out: dict[str, Any] = {}
    by_branch: dict[str, Any] = {}
    for key, c in scheduler_candidates(profile).items():
        config = profile.entry(key).config
        if config.detection_interval != 1:
            continue
        out.setdefault(c.label, config)
        by_branch.setdefault(config.branch, config)
    for c in extra:
        if c.label not in out and c.branch in by_branch:
            out[c.label] = by_branch[c.branch]
    return out


def replayed_map50(
    rows: Sequence[FrameRow],
    validator: Any,
    configs: Mapping[str, Any],
    *,
    tracker_factory: Callable[[], Any] | None = None,
) -> float:
    """COCO mAP50 over the answered ``rows`` of a run, each frame given the boxes the real
    path gives it on the run's video: a detection, its branch's detections on that frame
    (``validator.detect``, a :class:`~splitedge.training.branch_accuracy.VideoValidator`
    of the run's frames; ``configs`` from :func:`detection_configs`, ``local`` for a
    fallback); a frame answered ``track_age`` = a frames after its boxes' detection, the
    device's tracker started on that detection's frame and moved to this one, as the
    session does when a background detection ends. A row without a recorded age (-1) is
    taken as a detection. The same metric on the same frames as the runner's mAP50, for
    the DES's rows as for a real run's (which checks the replay itself)."""
    replay = _TrackerReplay(validator, tracker_factory)
    preds: dict[int, Any] = {}
    answered = sorted((r for r in rows if r.source != "dropped"), key=lambda r: r.frame_index)
    by_frame = {r.frame_index: r for r in answered}

    def config_of(row: FrameRow) -> Any:
        # A detection the edge missed, answered by the device's model: the local branch.
        fallback = row.source == "local" and row.reason and not row.candidate.endswith("+track")
        config = configs.get("local" if fallback and row.track_age <= 0 else _label(row.candidate))
        if config is None:
            raise KeyError(f"no branch config for row candidate {row.candidate!r}")
        return config

    for r in answered:
        f = r.frame_index
        if r.track_age <= 0:
            preds[f] = replay.detected(config_of(r), f)
            continue
        # The boxes came from frame b's detection: what frame b's row ran (a detection
        # that went on in the background is recorded under its branch, tracked), not
        # necessarily this row's branch (an edge frame that missed carries them too).
        b = f - r.track_age
        preds[f] = replay.moved(config_of(by_frame.get(b, r)), b, f)
    return float(validator.score(preds)) if preds else math.nan
