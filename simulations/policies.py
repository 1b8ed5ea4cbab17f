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

The adaptive scheduler of a later issue plugs in as one more class with the same
two methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.policy import Candidate, RateRule
from splitedge.simulations.profiles import LinkModel, Profile
from splitedge.simulations.scenario import PolicyConfig, parse_candidate
from splitedge.simulations.traces import BandwidthTrace

__all__ = [
    "PROFILED_KINDS",
    "Fixed",
    "FullOffload",
    "LocalOnly",
    "Neurosurgeon",
    "Oracle",
    "Policy",
    "PolicyError",
    "RateRulePolicy",
    "make_policy",
]

PROFILED_KINDS = ("neurosurgeon", "oracle")  # kinds that need a profile


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
        profile: Profile,
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
    """Most accurate candidate whose latency under the true future traces meets the SLA."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        profile: Profile,
        uplink: BandwidthTrace,
        downlink: BandwidthTrace | None,
        sla_ms: float,
        *,
        delay_ms: float = 0.0,
        name: str = "oracle",
    ) -> None:
        if not candidates:
            raise PolicyError("Oracle needs at least one candidate")
        self.name = name
        self.profile = profile
        order = list(candidates)
        if all(profile.get(c).accuracy is not None for c in order):
            # sorted() is stable: equal accuracies keep the scenario's order.
            order.sort(key=lambda c: -(profile.get(c).accuracy or 0.0))
        self.candidates = order
        self.uplink = LinkModel(uplink)
        self.downlink = LinkModel(downlink or uplink)
        self.sla_ms = sla_ms
        self.delay_ms = delay_ms

    def predict_ms(self, candidate: Candidate, now_s: float) -> float:
        """Latency of a frame started at ``now_s``, on idle links following the traces."""
        cp = self.profile.get(candidate)
        if not cp.remote:
            return cp.device_ms
        sent_s = now_s + cp.device_ms / 1000
        up_done_s = self.uplink.send(sent_s, cp.uplink_wire_bytes, commit=False)
        at_client_s = up_done_s + self.delay_ms / 1000 + cp.server_ms(1) / 1000
        down_done_s = self.downlink.send(at_client_s, cp.downlink_wire_bytes, commit=False)
        done_s = down_done_s + self.delay_ms / 1000 + self.profile.overhead_ms / 1000
        return (done_s - now_s) * 1000

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        fastest, fastest_ms = self.candidates[0], float("inf")
        for c in self.candidates:
            ms = self.predict_ms(c, now_s)
            if ms <= self.sla_ms:
                return c
            if ms < fastest_ms:
                fastest, fastest_ms = c, ms
        return fastest

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


def make_policy(
    config: PolicyConfig,
    candidates: Sequence[Candidate],
    *,
    sla_ms: float,
    uplink: BandwidthTrace,
    downlink: BandwidthTrace | None = None,
    delay_ms: float = 0.0,
    profile: Profile | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Policy:
    """Build one client's policy from a scenario's policy entry.

    ``uplink``/``downlink`` are the traces as this client sees them (the oracle
    reads their future; Neurosurgeon their value at time 0). ``clock`` is the
    rate rule's time source (the DES passes its simulated clock).
    """
    kind, name = config.kind, config.name
    if kind in PROFILED_KINDS and profile is None:
        raise PolicyError(f"policy {name!r} ({kind}) needs a profile")
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
        return Oracle(candidates, profile, uplink, downlink, sla_ms, delay_ms=delay_ms, name=name)
    if kind == "rate-rule":
        return RateRulePolicy(RateRule(list(candidates), sla_ms=sla_ms, clock=clock), name)
    raise PolicyError(f"unknown policy kind {kind!r}")
