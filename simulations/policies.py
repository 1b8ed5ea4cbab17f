"""Branch policies for scenarios and the DES: a small protocol and the baselines.

A :class:`Policy` answers ``pick(frame_index, now_s)`` with a
:class:`~splitedge.mobile_client.policy.Candidate` and learns from
``observe(candidate, outcome)``; ``now_s`` is seconds since the run (and its
traces) started, on the real clock in the runner and the simulated one in the
DES. Baselines:

* :class:`LocalOnly`, :class:`FullOffload`, :class:`Fixed`: one candidate always.
* :class:`Neurosurgeon` (Kang et al., ASPLOS 2017): picks, once, the candidate with
  the lowest predicted latency from the initial bandwidth estimate and the
  profile, then sticks to it whatever the link does.
* :class:`Oracle`: knows the future uplink/downlink traces and the profile; per
  frame it picks the most accurate candidate (the scenario lists candidates most
  accurate first, or the profile's ``accuracy`` orders them) whose latency under
  the true future bandwidth meets the SLA, else the fastest. An upper bound on
  accuracy under the SLA for a policy that cannot see the future.
* :class:`RateRulePolicy`: adapts :class:`~splitedge.mobile_client.policy.RateRule`.
* :class:`AdaptivePolicy`: the adaptive scheduler
  (:class:`~splitedge.mobile_client.scheduler.Scheduler`) behind the same two
  methods; its profile entries map to candidates with :func:`scheduler_candidates`.

Detect-vs-track: a candidate with ``interval = k > 1`` detects on one frame in
``k``; the frames between are its ``track=True`` twin (the on-device tracker, no
uplink). The oracle plans such a candidate per group of ``k`` frames with the
same amortised latency the scheduler uses, ``(detection + (k - 1) x tracker) / k``,
and ranks candidates by the accuracies it is given (per interval), so adaptive
and oracle are scored on the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.policy import Candidate, RateRule
from splitedge.mobile_client.profile import Profile, request_bits
from splitedge.mobile_client.scheduler import Decision, Scheduler
from splitedge.simulations.profiles import CandidateProfile, CostProfile, LinkModel
from splitedge.simulations.scenario import PolicyConfig, parse_candidate
from splitedge.simulations.traces import BandwidthTrace

__all__ = [
    "PROFILED_KINDS",
    "AdaptivePolicy",
    "Fixed",
    "FullOffload",
    "LocalOnly",
    "Neurosurgeon",
    "Oracle",
    "Policy",
    "PolicyError",
    "RateRulePolicy",
    "make_policy",
    "scheduler_candidates",
]

PROFILED_KINDS = ("neurosurgeon", "oracle")  # kinds that need a profile
SCHEDULER_KINDS = ("adaptive",)  # kinds that need a scheduler profile


class PolicyError(ValueError):
    """A policy that cannot be built from what it was given."""


@runtime_checkable
class Policy(Protocol):
    name: str

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        """The candidate for this frame."""
        ...

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        """Learn from the frame's outcome (timing breakdown, source, bytes)."""
        ...


class Fixed:
    """Always the same candidate."""

    def __init__(self, candidate: Candidate, name: str | None = None) -> None:
        self.candidate = candidate
        self.name = name or f"fixed:{candidate.label}"

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        return self.candidate

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        pass


class LocalOnly(Fixed):
    def __init__(self, name: str = "local") -> None:
        super().__init__(Candidate("local", remote=False), name)


class FullOffload(Fixed):
    def __init__(self, branch: str = "offload-jpeg90", name: str = "offload") -> None:
        if not branch.startswith("offload"):
            raise PolicyError(f"full offload needs an offload branch, got {branch!r}")
        super().__init__(Candidate(branch), name)


class Neurosurgeon:
    """Decides once, from the initial bandwidth estimate and the profile, then sticks."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        profile: CostProfile,
        initial_uplink_mbps: float,
        *,
        initial_downlink_mbps: float | None = None,
        delay_ms: float = 0.0,
        name: str = "neurosurgeon",
    ) -> None:
        if not candidates:
            raise PolicyError("Neurosurgeon needs at least one candidate")
        self.name = name
        self.predicted_ms = {
            c: profile.predict_ms(
                c, initial_uplink_mbps, downlink_mbps=initial_downlink_mbps, delay_ms=delay_ms
            )
            for c in candidates
        }
        # Neurosurgeon minimises latency; ties go to the earlier (more accurate) one.
        self.choice = min(candidates, key=lambda c: self.predicted_ms[c])

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        return self.choice

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        pass


class Oracle:
    """Most accurate candidate whose latency under the true future traces meets the SLA.

    ``accuracy`` (per candidate, detection interval included) ranks the candidates;
    without it the profile's accuracy does, else the given order. A candidate with
    ``interval = k > 1`` is judged at the start of a group by its amortised latency
    ``(detection + (k - 1) x tracker_ms) / k`` and then tracks ``k - 1`` frames.
    ``quantile`` (default the median) is the quantile of the profile's device and
    tail samples it plans with: it knows the future link, not the future draws, so
    0.95 makes it meet the SLA on most frames where the median would on half.
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        profile: CostProfile,
        uplink: BandwidthTrace,
        downlink: BandwidthTrace | None,
        sla_ms: float,
        *,
        delay_ms: float = 0.0,
        accuracy: Mapping[Candidate, float] | None = None,
        tracker_ms: float = 0.0,
        quantile: float = 0.5,
        name: str = "oracle",
    ) -> None:
        if not candidates:
            raise PolicyError("Oracle needs at least one candidate")
        if not 0.0 <= quantile <= 1.0:
            raise PolicyError(f"oracle: quantile must be in [0, 1], got {quantile}")
        self.name = name
        self.profile = profile
        order = list(candidates)
        if accuracy is not None:
            missing = [c.tag for c in order if c not in accuracy]
            if missing:
                raise PolicyError(f"oracle: no accuracy for {', '.join(missing[:3])}")
            order.sort(key=lambda c: -accuracy[c])
        elif all(profile.get(c).accuracy is not None for c in order):
            # sorted() is stable: equal accuracies keep the scenario's order.
            order.sort(key=lambda c: -(profile.get(c).accuracy or 0.0))
        self.candidates = order
        self.uplink = LinkModel(uplink)
        self.downlink = LinkModel(downlink or uplink)
        self.sla_ms = sla_ms
        self.delay_ms = delay_ms
        self.tracker_ms = tracker_ms
        self.quantile = quantile
        self._costs: dict[str, tuple[float, float]] = {}  # label -> (device ms, server ms)
        self._current: Candidate | None = None
        self._left = 0  # tracked frames left in the current group

    def predict_ms(self, candidate: Candidate, now_s: float) -> float:
        """Latency of a frame started at ``now_s``, on idle links following the traces."""
        if candidate.track:
            return self.tracker_ms
        cp = self.profile.get(candidate)
        device_ms, server_ms = self._cost(cp)
        if not cp.remote:
            return device_ms
        sent_s = now_s + device_ms / 1000
        up_done_s = self.uplink.send(sent_s, cp.uplink_wire_bytes, commit=False)
        at_client_s = up_done_s + self.delay_ms / 1000 + server_ms / 1000
        down_done_s = self.downlink.send(at_client_s, cp.downlink_wire_bytes, commit=False)
        done_s = down_done_s + self.delay_ms / 1000 + self.profile.overhead_ms / 1000
        return (done_s - now_s) * 1000

    def _cost(self, cp: CandidateProfile) -> tuple[float, float]:
        cost = self._costs.get(cp.label)
        if cost is None:
            device, server = cp.device_ms, cp.server_ms(1)
            if self.quantile != 0.5:
                if cp.device_ms_samples:
                    device = float(np.quantile(cp.device_ms_samples, self.quantile))
                tail_1 = cp.tail_ms_by_batch.get(1)
                if cp.tail_ms_samples and tail_1:
                    tail_q = float(np.quantile(cp.tail_ms_samples, self.quantile))
                    server += tail_q - tail_1
            cost = self._costs[cp.label] = (device, server)
        return cost

    def per_frame_ms(self, candidate: Candidate, now_s: float) -> float:
        """The group's mean frame latency when its detection starts at ``now_s``."""
        k = max(1, candidate.interval)
        return (self.predict_ms(candidate, now_s) + (k - 1) * self.tracker_ms) / k

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        if self._left > 0 and self._current is not None:
            self._left -= 1
            return replace(self._current, track=True)
        fastest, fastest_ms = self.candidates[0], float("inf")
        choice = None
        for c in self.candidates:
            ms = self.per_frame_ms(c, now_s)
            if ms <= self.sla_ms:
                choice = c
                break
            if ms < fastest_ms:
                fastest, fastest_ms = c, ms
        choice = choice or fastest
        self._current, self._left = choice, max(1, choice.interval) - 1
        return choice

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        pass


class RateRulePolicy:
    """:class:`RateRule` behind the Policy protocol (it keeps its own clock)."""

    def __init__(self, rule: RateRule, name: str = "rate-rule") -> None:
        self.rule = rule
        self.name = name

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        return self.rule.pick()

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        self.rule.observe(candidate, outcome)


class AdaptivePolicy:
    """The adaptive :class:`Scheduler` behind the Policy protocol.

    ``candidates`` maps each scheduler profile entry key to the candidate of its
    detection frames (:func:`scheduler_candidates`); a decision with ``track=True``
    becomes that candidate's ``track`` twin. The decision of each frame is kept
    until its outcome is observed (by frame index), so outcomes can arrive late.
    ``ping_ms``: a round trip measured before the first frame (the real client's
    Status RPC at connect), which gives the scheduler its network floor.

    ``content(frame_index, label, age)``: the boxes (a prediction with ``.boxes``) that
    the candidate labelled ``label`` gives on that frame of the run's video (``age`` 0),
    or the tracker's boxes there from the detection ``age`` frames before (a tracked
    answer), when the DES has the video
    (:func:`~splitedge.simulations.des_adaptive.replay_content`). Each observed outcome
    (tracked ones and background detections too) then carries them, so the scheduler's
    content features (object count, size, motion) and the accuracy per content bin it
    picks by follow the video as the real session's do; without it they stay unknown
    and it picks by the profile's overall accuracy.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        candidates: Mapping[str, Candidate],
        name: str = "adaptive",
        *,
        ping_ms: float | None = None,
        content: Callable[[int, str, int], Any] | None = None,
    ) -> None:
        missing = [e.key for e in scheduler.candidates if e.key not in candidates]
        if missing:
            raise PolicyError(f"adaptive: no candidate for profile entry {missing[0]!r}")
        self.scheduler = scheduler
        self.candidates = dict(candidates)
        self.name = name
        self._pending: dict[int, Decision] = {}
        self._probes: dict[int, Decision] = {}  # probes beside frames, by frame index
        self.content = content
        if ping_ms is not None:
            scheduler.observe_rtt(ping_ms)

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        decision = self.scheduler.pick(now_s)
        self._pending[frame_index] = decision
        candidate = self.candidates[decision.key]
        return replace(candidate, track=True) if decision.track else candidate

    @property
    def probes(self) -> int:
        """Frames its scheduler sent only to measure the link (beside a frame or in its
        place)."""
        return self.scheduler.probes

    def side_probe(self, frame_index: int) -> Candidate | None:
        """The probe the scheduler sent beside frame ``frame_index`` (``Decision.probe``:
        it only measures the link; the frame's result is its own), if any."""
        decision = self._pending.get(frame_index)
        if decision is None or decision.probe is None:
            return None
        self._probes[frame_index] = decision.probe
        return self.candidates[decision.probe.key]

    def observe_probe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        probe = self._probes.pop(outcome.frame_id, None)
        if probe is not None:
            self.scheduler.observe_probe(probe, self._with_content(candidate, outcome))

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        decision = self._pending.pop(outcome.frame_id, None)
        if decision is not None:
            self.scheduler.observe(decision, self._with_content(candidate, outcome))

    def _with_content(self, candidate: Candidate, outcome: FrameOutcome) -> FrameOutcome:
        """``outcome`` with the boxes its frame's answer has on the run's video (``content``):
        a tracked answer (``track_age`` > 0), the tracker's; a remote detection the device
        answered after a missed deadline, the local model's."""
        if self.content is None or outcome.prediction is not None:
            return outcome
        if outcome.source not in ("edge", "local"):
            return outcome
        age = max(0, outcome.track_age)
        fell_back = outcome.source == "local" and candidate.uses_link and age == 0
        label = "local" if fell_back else candidate.label
        prediction = self.content(outcome.frame_id, label, age)
        if prediction is not None:
            outcome.prediction = prediction
        return outcome


def scheduler_candidates(profile: Profile) -> dict[str, Candidate]:
    """Entry key -> the candidate of its detection frames, for the simulations.

    The candidate's label (its cost identity) is the branch and, for splits, the
    bit depth; entries that differ only by detection interval share it. Entries that
    differ by width or input size get the branch name suffixed ``~w<width>~<size>``
    so that each keeps its own costs.
    """
    seen: dict[tuple[str, int | None], set[tuple[float, int]]] = {}
    for e in profile.entries:
        bits = request_bits(e.kind, e.config.bits)
        seen.setdefault((e.config.branch, bits), set()).add((e.config.width, e.config.input_size))
    out = {}
    for e in profile.entries:
        cfg = e.config
        bits = request_bits(e.kind, cfg.bits)
        branch = cfg.branch
        if len(seen[(branch, bits)]) > 1:
            branch = f"{branch}~w{cfg.width:g}~{cfg.input_size or 'native'}"
        out[e.key] = Candidate(branch, bits, e.remote, interval=cfg.detection_interval)
    return out


def make_policy(
    config: PolicyConfig,
    candidates: Sequence[Candidate],
    *,
    sla_ms: float,
    uplink: BandwidthTrace,
    downlink: BandwidthTrace | None = None,
    delay_ms: float = 0.0,
    profile: CostProfile | None = None,
    clock: Callable[[], float] = time.monotonic,
    scheduler_profile: Profile | None = None,
    scheduler_options: Mapping[str, Any] | None = None,
    accuracy: Mapping[Candidate, float] | None = None,
    tracker_ms: float = 0.0,
) -> Policy:
    """Build one client's policy from a scenario's policy entry.

    ``uplink``/``downlink`` are the traces as this client sees them (the oracle
    reads their future; Neurosurgeon their value at time 0). ``clock`` is the
    rate rule's and the scheduler's time source (the DES passes its simulated
    clock). ``adaptive`` needs ``scheduler_profile`` (``scheduler_options`` go to
    :class:`Scheduler`); the oracle ranks by ``accuracy`` when given and plans
    tracked frames at ``tracker_ms``.
    """
    kind, name = config.kind, config.name
    if kind in PROFILED_KINDS and profile is None:
        raise PolicyError(f"policy {name!r} ({kind}) needs a profile")
    if kind in SCHEDULER_KINDS and scheduler_profile is None:
        raise PolicyError(f"policy {name!r} ({kind}) needs a scheduler profile")
    if kind == "local":
        return LocalOnly(name)
    if kind == "offload":
        branch = config.branch or next(
            (c.branch for c in candidates if c.branch.startswith("offload")), ""
        )
        if not branch:
            raise PolicyError(f"policy {name!r}: no offload branch among the candidates")
        return FullOffload(branch, name)
    if kind == "fixed":
        return Fixed(parse_candidate(config.branch), name)
    if kind == "neurosurgeon":
        assert profile is not None
        return Neurosurgeon(
            candidates,
            profile,
            uplink.rate_at(0.0),
            initial_downlink_mbps=(downlink or uplink).rate_at(0.0),
            delay_ms=delay_ms,
            name=name,
        )
    if kind == "oracle":
        assert profile is not None
        return Oracle(
            candidates,
            profile,
            uplink,
            downlink,
            sla_ms,
            delay_ms=delay_ms,
            accuracy=accuracy,
            tracker_ms=tracker_ms,
            quantile=0.5 if config.quantile is None else config.quantile,
            name=name,
        )
    if kind == "rate-rule":
        return RateRulePolicy(RateRule(list(candidates), sla_ms=sla_ms, clock=clock), name)
    if kind == "adaptive":
        assert scheduler_profile is not None
        options = {"clock": clock, **(scheduler_options or {})}
        scheduler = Scheduler(scheduler_profile, sla_ms, **options)
        return AdaptivePolicy(scheduler, scheduler_candidates(scheduler_profile), name)
    raise PolicyError(f"unknown policy kind {kind!r}")
