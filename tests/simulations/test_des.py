"""Discrete-event simulator invariants: frames conserved, latency >= service, GPUs and batching."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import replace

import pytest

from splitedge.mobile_client.policy import Candidate
from splitedge.simulations.des import (
    DesConfig,
    batching_effect,
    min_gpus,
    policy_factory,
    simulate,
)
from splitedge.simulations.policies import Fixed
from splitedge.simulations.profiles import CandidateProfile, Profile
from splitedge.simulations.report import summarize
from splitedge.simulations.scenario import PolicyConfig
from splitedge.simulations.traces import BandwidthTrace, constant

OFFLOAD = Candidate("offload-jpeg90")
SPLIT = Candidate("split@x", 4)
LOCAL = Candidate("local", remote=False)


def profile(tail_1_ms: float = 10.0, tail_8_ms: float = 16.0) -> Profile:
    """GPU-like tails: a batch of 8 costs far less than 8 batches of 1."""

    def remote(c: Candidate, wire: float) -> CandidateProfile:
        return CandidateProfile(
            c.label, c.branch, c.bits, True, 3.0, payload_bytes=wire - 200,
            uplink_wire_bytes=wire, downlink_wire_bytes=200, decode_ms=0.5,
            server_encode_ms=0.2, tail_ms_by_batch={1: tail_1_ms, 8: tail_8_ms},
        )  # fmt: skip

    cps = [
        remote(OFFLOAD, 9000),
        remote(SPLIT, 3000),
        CandidateProfile("local", "local", None, False, 80.0),
    ]
    return Profile("test", {c.label: c for c in cps}, overhead_ms=1.0)


def config(**changes) -> DesConfig:
    base = DesConfig(
        clients=4,
        duration_s=4.0,
        fps=10,
        sla_ms=100,
        deadline_ms=200,
        uplink=BandwidthTrace.from_steps([(0, 20.0), (2.0, 0.5)], 4.0),
        downlink=constant(50, 4.0),
        delay_ms=5,
        max_batch_size=8,
        max_queue_delay_ms=2,
    )
    return replace(base, **changes)


def fixed(candidate: Candidate):
    return lambda client, clock: Fixed(candidate)


def test_every_camera_frame_has_exactly_one_row():
    cfg = config()
    result = simulate(cfg, profile(), fixed(OFFLOAD), name="offload")
    frames = round(cfg.duration_s * cfg.fps)
    assert len(result.rows) == cfg.clients * frames == result.summary.frames
    keys = Counter((r.client, r.frame_index) for r in result.rows)
    assert set(keys) == {(c, k) for c in range(cfg.clients) for k in range(frames)}
    assert max(keys.values()) == 1
    s = result.summary
    assert s.answered + sum(s.drops.values()) == s.frames
    # The slow phase (0.5 Mbps: 9000 B take 144 ms) makes the client skip ticks.
    assert s.drops.get("busy", 0) > 0
    assert all(math.isnan(r.latency_ms) for r in result.rows if r.source == "dropped")


def test_collector_summary_matches_the_report_of_its_rows():
    result = simulate(config(), profile(), fixed(SPLIT), name="split")
    from_rows = summarize(result.rows)[0]
    assert from_rows.frames == result.summary.frames
    assert from_rows.p95_ms == pytest.approx(result.summary.p95_ms)
    assert from_rows.sla_violation_pct == pytest.approx(result.summary.sla_violation_pct)
    assert from_rows.uplink_mb == pytest.approx(result.summary.uplink_mb)
    assert from_rows.branch_mix == result.summary.branch_mix


def test_latency_is_never_below_the_service_time():
    p = profile()
    cfg = config(clients=6)
    result = simulate(cfg, p, fixed(OFFLOAD))
    edge = [r for r in result.rows if r.source == "edge"]
    assert edge
    cp = p.get(OFFLOAD)
    # Device + at least one packet each way + both delays + decode, tail, encode.
    floor_ms = cp.device_ms + 2 * cfg.delay_ms + cp.server_ms(1) + p.overhead_ms
    for r in edge:
        assert r.latency_ms >= floor_ms - 1e-6
        assert r.latency_ms >= r.device_ms + r.server_ms - 1e-6
        assert r.server_ms >= r.queue_ms + r.tail_ms - 1e-6
        assert r.tail_ms == pytest.approx(cp.tail_ms(r.batch_size))
    local = simulate(cfg, p, fixed(LOCAL)).rows
    assert all(r.latency_ms == pytest.approx(80.0) for r in local if r.source == "local")


def test_more_gpus_are_never_worse():
    p = profile(tail_1_ms=40.0, tail_8_ms=320.0)  # no gain from batching: pure capacity
    cfg = config(clients=24, uplink=constant(100, 4.0), keep_rows=False)
    results = [simulate(replace(cfg, gpus=g), p, fixed(OFFLOAD)).summary for g in (1, 2, 4, 8)]
    for fewer, more in itertools.pairwise(results):
        assert more.p95_ms <= fewer.p95_ms + 1e-9
        assert more.sla_violation_pct <= fewer.sla_violation_pct + 1e-9
        assert more.answered >= fewer.answered
    assert results[0].sla_violation_pct > results[-1].sla_violation_pct


def test_batching_helps_when_batches_are_cheap():
    p = profile(tail_1_ms=20.0, tail_8_ms=24.0)
    cfg = config(clients=30, uplink=constant(100, 4.0))
    effect = batching_effect(cfg, p, fixed(OFFLOAD))
    on, off = effect["batching"], effect["no-batching"]
    assert on.mean_batch > 1.5 and off.mean_batch == 1.0
    assert on.p95_ms < off.p95_ms
    assert on.sla_violation_pct < off.sla_violation_pct


def test_min_gpus_is_the_smallest_count_meeting_the_target():
    p = profile(tail_1_ms=40.0, tail_8_ms=320.0)
    cfg = config(clients=24, uplink=constant(100, 4.0))
    gpus, tried = min_gpus(cfg, p, fixed(OFFLOAD), max_violation_pct=5.0)
    assert gpus is not None and gpus > 1
    assert tried[gpus].sla_violation_pct <= 5.0
    assert tried[gpus - 1].sla_violation_pct > 5.0
    none, _ = min_gpus(cfg, p, fixed(OFFLOAD), max_violation_pct=-1.0, max_gpus=4)
    assert none is None


def test_overload_falls_back_on_deadline_and_refuses_beyond_capacity():
    p = profile(tail_1_ms=150.0, tail_8_ms=1200.0)
    cfg = config(clients=20, uplink=constant(100, 4.0), queue_capacity=4, deadline_ms=250)
    result = simulate(cfg, p, fixed(OFFLOAD))
    s = result.summary
    reasons = Counter(r.reason for r in result.rows if r.source == "local")
    assert reasons["deadline"] > 0
    assert reasons["edge-error:RESOURCE_EXHAUSTED"] > 0
    assert s.fallbacks == sum(reasons.values())
    for r in result.rows:
        if r.reason == "deadline":  # the client waited its whole budget, then ran locally
            assert r.latency_ms == pytest.approx(cfg.deadline_ms + 80.0)


def test_scenario_policies_run_in_the_des_with_a_simulated_clock():
    p = profile()
    cfg = config(clients=3)
    candidates = [OFFLOAD, SPLIT, LOCAL]
    for kind in ("rate-rule", "oracle", "neurosurgeon"):
        factory = policy_factory(PolicyConfig(kind, kind), candidates, cfg, p)
        result = simulate(cfg, p, factory, name=kind)
        assert result.summary.frames == 3 * 40
        fast = Counter(r.candidate for r in result.rows if r.t_s < 2 and r.source != "dropped")
        slow = Counter(r.candidate for r in result.rows if r.t_s >= 2.5 and r.source != "dropped")
        if kind == "neurosurgeon":
            assert len(fast | slow) == 1  # decided once
        else:  # adapts: offload while the link is fast, something smaller once it is slow
            assert fast.most_common(1)[0][0] == OFFLOAD.label
            assert slow.most_common(1)[0][0] != OFFLOAD.label


def test_many_clients_without_rows():
    cfg = config(clients=1000, duration_s=1.0, gpus=8, keep_rows=False, uplink=constant(50, 1))
    result = simulate(cfg, profile(), fixed(SPLIT))
    assert result.rows == [] and result.summary.frames == 1000 * 10
    assert result.summary.mean_batch > 1


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match=r"DesConfig\.gpus: out of range: 0"):
        config(gpus=0)
