"""Baseline policies on synthetic profiles: oracle, Neurosurgeon, fixed, rate-rule adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.policy import Candidate
from splitedge.proto.status import ServerTiming
from splitedge.simulations.policies import (
    Fixed,
    FullOffload,
    LocalOnly,
    Neurosurgeon,
    Oracle,
    Policy,
    PolicyError,
    RateRulePolicy,
    make_policy,
)
from splitedge.simulations.profiles import (
    CandidateProfile,
    CostProfile,
    CostProfileError,
    LinkModel,
)
from splitedge.simulations.scenario import PolicyConfig
from splitedge.simulations.traces import BandwidthTrace, constant

OFFLOAD = Candidate("offload-jpeg90")
SPLIT8 = Candidate("split@x", 8)
SPLIT2 = Candidate("split@x", 2)
LOCAL = Candidate("local", remote=False)
CANDIDATES = [OFFLOAD, SPLIT8, SPLIT2, LOCAL]


def synthetic_profile(tail_ms: float = 20.0) -> CostProfile:
    """Bytes chosen so that each candidate has its own bandwidth range."""

    def remote(c: Candidate, device_ms: float, wire_bytes: float) -> CandidateProfile:
        return CandidateProfile(
            c.label, c.branch, c.bits, True, device_ms,
            payload_bytes=wire_bytes - 100, uplink_wire_bytes=wire_bytes,
            downlink_wire_bytes=150, decode_ms=1.0, server_encode_ms=0.5,
            tail_ms_by_batch={1: tail_ms, 4: 2 * tail_ms},
        )  # fmt: skip

    cps = [
        remote(OFFLOAD, 2.0, 60_000),  # 480 kbit
        remote(SPLIT8, 10.0, 15_000),  # 120 kbit
        remote(SPLIT2, 10.0, 3_000),  # 24 kbit
        CandidateProfile(LOCAL.label, "local", None, False, 400.0),
    ]
    return CostProfile("synthetic", {c.label: c for c in cps}, overhead_ms=2.0)


def test_link_model_matches_packet_opportunities():
    link = LinkModel(constant(12.0, 10.0))  # 12 Mbps: one 1500-byte packet per ms
    assert link.send(0.0, 1500, commit=False) == pytest.approx(0.001)
    assert link.send(0.0, 3001, commit=False) == pytest.approx(0.003)  # 3 packets
    # FIFO: a second message queued at once leaves after the first.
    first = link.send(0.0, 15_000)
    second = link.send(0.0, 1500)
    assert first == pytest.approx(0.010) and second == pytest.approx(0.011)
    # Across a rate step: 12 Mbps for 1 s, then 1.2 Mbps.
    step = LinkModel(BandwidthTrace.from_steps([(0, 12.0), (1.0, 1.2)], 10.0))
    assert step.send(0.999, 3000) == pytest.approx(1.0 + 0.010, abs=1e-6)
    # A shifted fork sees the trace from its offset, with its own queue.
    fork = step.fork(1.0)
    assert fork.send(0.0, 1500) == pytest.approx(0.010)


def test_profile_tail_interpolates_and_extends():
    cp = synthetic_profile().get(SPLIT8)
    assert cp.tail_ms(1) == 20.0 and cp.tail_ms(4) == 40.0
    assert cp.tail_ms(2) == pytest.approx(20.0 + 20.0 / 3)
    assert cp.tail_ms(7) == pytest.approx(60.0)  # the last slope, extended
    assert cp.server_ms(1) == pytest.approx(21.5)


def test_profile_json_round_trip_and_errors(tmp_path: Path):
    profile = synthetic_profile()
    loaded = CostProfile.load(profile.save(tmp_path / "p.json"))
    assert loaded == profile
    # The measured tracker rides along; a file from before it was measured still loads.
    profile.tracker_ms_samples, profile.tracker_busy_ms_samples = [4.1, 4.4], [7.5]
    loaded = CostProfile.load(profile.save(tmp_path / "t.json"))
    assert (loaded.tracker_ms_samples, loaded.tracker_busy_ms_samples) == ([4.1, 4.4], [7.5])
    old = json.loads((tmp_path / "t.json").read_text())
    del old["tracker_ms_samples"], old["tracker_busy_ms_samples"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert CostProfile.load(tmp_path / "old.json").tracker_ms_samples == []
    for bad in ("5", [4.0, -1.0], [4.0, "x"], [None]):
        broken = dict(old, tracker_busy_ms_samples=bad)
        (tmp_path / "bad_tracker.json").write_text(json.dumps(broken))
        with pytest.raises(CostProfileError, match="tracker_busy_ms_samples must be a list"):
            CostProfile.load(tmp_path / "bad_tracker.json")
    with pytest.raises(CostProfileError, match="has no candidate 'split@x/6bit'"):
        profile.get(Candidate("split@x", 6))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CostProfileError, match="not JSON"):
        CostProfile.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"model": "x"}')
    with pytest.raises(CostProfileError, match="not a splitedge profile"):
        CostProfile.load(tmp_path / "other.json")
    with pytest.raises(CostProfileError, match="cannot read profile"):
        CostProfile.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("uplink_mbps", "expected"),
    [(50.0, OFFLOAD), (3.0, SPLIT8), (0.8, SPLIT2), (0.05, LOCAL)],
)
def test_oracle_picks_the_most_accurate_candidate_that_fits(uplink_mbps: float, expected):
    oracle = Oracle(
        CANDIDATES, synthetic_profile(), constant(uplink_mbps, 60), constant(50, 60), 150
    )
    assert oracle.pick(0, 0.0) == expected
    # Its prediction for what it picked is within the SLA (local: always the device time).
    assert oracle.predict_ms(expected, 0.0) <= 150 or expected == LOCAL


def test_oracle_sees_the_future_of_the_trace():
    # 50 Mbps now, 0.05 Mbps from 1 s: a frame starting at 0.99 s straddles the drop.
    trace = BandwidthTrace.from_steps([(0, 50.0), (1.0, 0.05)], 60.0)
    oracle = Oracle(CANDIDATES, synthetic_profile(), trace, constant(50, 60), 150)
    assert oracle.pick(0, 0.0) == OFFLOAD
    assert oracle.pick(1, 0.99) != OFFLOAD  # 480 kbit cannot leave before the drop
    # At 0.05 Mbps nothing fits 150 ms; split@x/2 (~320 ms) still beats local (400 ms).
    assert oracle.pick(2, 1.5) == SPLIT2
    assert 150 < oracle.predict_ms(SPLIT2, 1.5) < oracle.predict_ms(LOCAL, 1.5)


def test_oracle_falls_back_to_the_fastest_when_nothing_fits():
    oracle = Oracle(
        [OFFLOAD, SPLIT8], synthetic_profile(), constant(0.1, 60), constant(50, 60), 150
    )
    assert oracle.pick(0, 0.0) == SPLIT8  # neither fits; the smaller payload is faster


def test_oracle_orders_by_profile_accuracy_when_known():
    profile = synthetic_profile()
    for label, acc in [("offload-jpeg90", 0.5), ("split@x/8bit", 0.9), ("split@x/2bit", 0.4)]:
        profile.candidates[label].accuracy = acc
    profile.candidates["local"].accuracy = 0.5
    oracle = Oracle(CANDIDATES, profile, constant(50, 60), None, 150)
    assert oracle.pick(0, 0.0) == SPLIT8


@pytest.mark.parametrize(
    ("initial_mbps", "expected"), [(100.0, OFFLOAD), (4.0, SPLIT2), (0.01, LOCAL)]
)
def test_neurosurgeon_minimises_latency_once_and_sticks(initial_mbps: float, expected):
    profile = synthetic_profile()
    ns = Neurosurgeon(CANDIDATES, profile, initial_mbps, initial_downlink_mbps=50, delay_ms=10)
    best = min(ns.predicted_ms.values())
    assert ns.predicted_ms[expected] == best
    assert ns.pick(0, 0.0) == expected
    # Latency, not accuracy: at 4 Mbps split@x/8 would fit a 150 ms SLA but is slower.
    assert all(ns.pick(k, 100.0 + k) == expected for k in range(5))


def test_neurosurgeon_from_scenario_reads_the_trace_at_time_zero():
    trace = BandwidthTrace.from_steps([(0, 0.5), (1.0, 100.0)], 60.0)
    policy = make_policy(
        PolicyConfig("neurosurgeon", "ns"), CANDIDATES, sla_ms=150, uplink=trace,
        downlink=constant(50, 60), profile=synthetic_profile(),
    )  # fmt: skip
    assert policy.pick(0, 0.0) == SPLIT2
    assert policy.pick(50, 30.0) == SPLIT2  # the link got fast; Neurosurgeon does not notice


def test_fixed_policies_and_protocol():
    for policy in (LocalOnly(), FullOffload(), Fixed(SPLIT2)):
        assert isinstance(policy, Policy)
    assert LocalOnly().pick(0, 0.0) == LOCAL
    assert FullOffload().pick(3, 1.0) == OFFLOAD
    assert Fixed(SPLIT2).name == "fixed:split@x/2bit"
    with pytest.raises(PolicyError, match="needs an offload branch"):
        FullOffload("split@x")


def test_make_policy_errors():
    with pytest.raises(PolicyError, match="needs a profile"):
        make_policy(PolicyConfig("oracle", "o"), CANDIDATES, sla_ms=100, uplink=constant(1, 10))
    with pytest.raises(PolicyError, match="no offload branch"):
        make_policy(PolicyConfig("offload", "x"), [SPLIT2], sla_ms=100, uplink=constant(1, 10))


def test_rate_rule_adapter_learns_from_outcomes_on_the_given_clock():
    now = [0.0]
    policy = make_policy(
        PolicyConfig("rate-rule", "rr"), [OFFLOAD, LOCAL], sla_ms=100,
        uplink=constant(1, 10), clock=lambda: now[0],
    )  # fmt: skip
    assert isinstance(policy, RateRulePolicy)
    # Both candidates are probed once, in order.
    first = policy.pick(0, 0.0)
    assert first == OFFLOAD
    slow = FrameTiming(
        head_ms=1, network_ms=900, server=ServerTiming(server_total_ms=20), total_ms=921
    )
    policy.observe(first, FrameOutcome(0, first.branch, "edge", "", None, slow, 60_000))
    now[0] = 0.2
    assert policy.pick(1, 0.2) == LOCAL
    local = FrameTiming(local_ms=40, total_ms=40)
    policy.observe(LOCAL, FrameOutcome(1, "local", "local", "", None, local))
    now[0] = 0.4
    # Offload was measured at ~0.5 Mbps (900 ms): local (40 ms) is the one that fits.
    assert policy.pick(2, 0.4) == LOCAL
    assert math.isclose(policy.rule.predict_ms(LOCAL), 40.0)


def test_an_oracle_given_a_quantile_plans_with_the_slow_draws():
    # The edge's tail takes 20 ms on most frames and 200 ms on a few: the median plan
    # sends full JPEG at 50 Mbps, the 95th-percentile plan keeps inside the SLA with a
    # smaller code whose own tail never runs slow.
    profile = synthetic_profile()
    profile.candidates[OFFLOAD.label].tail_ms_samples = [20.0] * 18 + [200.0] * 2
    profile.candidates[SPLIT8.label].tail_ms_samples = [20.0] * 20

    def oracle(**options: float) -> Policy:
        return make_policy(
            PolicyConfig("oracle", "o", **options), CANDIDATES, sla_ms=150,
            uplink=constant(50, 60), downlink=constant(50, 60), profile=profile,
        )  # fmt: skip

    assert oracle().pick(0, 0.0) == OFFLOAD
    assert oracle(quantile=0.95).pick(0, 0.0) == SPLIT8
