"""Discrete-event simulator invariants: frames conserved, latency >= service, GPUs and batching;
the adaptive policy on its scheduler profile's costs."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import replace

import pytest

from splitedge.mobile_client.policy import Candidate
from splitedge.mobile_client.profile import BranchConfig, BranchProfile, Profile, Quantiles
from splitedge.proto.status import StatusCode
from splitedge.simulations.des import (
    DesConfig,
    batching_effect,
    min_gpus,
    policy_factory,
    simulate,
)
from splitedge.simulations.des_adaptive import (
    accuracy_by_age,
    accuracy_by_tag,
    adaptive_costs,
    predicted_accuracy,
    session_policy,
    slowed,
    tracker_costs,
    tracker_ms,
)
from splitedge.simulations.policies import Fixed, PolicyError
from splitedge.simulations.profiles import CandidateProfile, CostProfile
from splitedge.simulations.report import FrameRow, summarize
from splitedge.simulations.scenario import PolicyConfig
from splitedge.simulations.traces import BandwidthTrace, constant

OFFLOAD = Candidate("offload-jpeg90")
SPLIT = Candidate("split@x", 4)
LOCAL = Candidate("local", remote=False)


def profile(tail_1_ms: float = 10.0, tail_8_ms: float = 16.0) -> CostProfile:
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
    return CostProfile("test", {c.label: c for c in cps}, overhead_ms=1.0)


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


def test_the_per_frame_overhead_is_paid_before_the_uplink_and_overlaps_its_gaps():
    # A link with no delivery opportunity in the first 50 ms of every 100 ms: a frame sent
    # 3 ms after capture waits for 50 ms whatever its client-side overhead (1 or 20 ms),
    # as on the real path, where that overhead is spent before the bytes reach the link.
    gapped = BandwidthTrace.from_steps([(0, 0.0), (0.05, 100.0)], 0.1)
    steady = constant(100.0, 1.0)

    def network_ms(uplink: BandwidthTrace, overhead_ms: float) -> list[float]:
        cfg = config(clients=1, duration_s=1.0, uplink=uplink, downlink=constant(100.0, 1.0))
        rows = simulate(cfg, replace(profile(), overhead_ms=overhead_ms), fixed(OFFLOAD)).rows
        assert all(r.source == "edge" for r in rows)
        return [r.network_ms for r in rows]

    low, high = network_ms(gapped, 1.0), network_ms(gapped, 20.0)
    assert low == pytest.approx(high)
    assert min(low) > 47.0 + 2 * 5.0  # the wait for the opportunities, both delays
    # On a link with no gaps the overhead adds in full (to within one 1500-byte
    # opportunity at 100 Mbit/s, 0.12 ms).
    low, high = network_ms(steady, 1.0), network_ms(steady, 20.0)
    assert [h - lo for lo, h in zip(low, high, strict=True)] == pytest.approx(
        [19.0] * len(low), abs=0.13
    )


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
    with pytest.raises(ValueError, match=r"DesConfig\.tracker_busy_ms_samples: out of range"):
        config(tracker_busy_ms_samples=(4.0, -1.0))


# ---------------------------------------------------------------------- adaptive


def scheduler_profile(tracker_ms: float = 2.0) -> Profile:
    """A small scheduler profile: JPEG offload, a 4-bit split, local; intervals 1 and 4."""

    def entry(branch, kind, bits, head_ms, size, acc, k):
        return BranchProfile(
            config=BranchConfig(branch, bits, 1.0, 0, k),
            kind=kind,
            load_group="g",
            head_latency_ms={0: Quantiles(head_ms, head_ms, 1.2 * head_ms)},
            bytes_per_frame=Quantiles(size, size, 1.1 * size),
            tail_latency_ms={} if kind == "local" else {1: 10.0},
            accuracy=acc if k == 1 else acc - 0.05,
        )

    entries = [
        entry(b, kind, bits, ms, size, acc, k)
        for b, kind, bits, ms, size, acc in (
            ("offload-jpeg90", "offload", 0, 2.0, 9000.0, 0.6),
            ("split@x", "split", 4, 3.0, 2800.0, 0.5),
            ("local", "local", 0, 80.0, 0.0, 0.58),
        )
        for k in (1, 4)
    ]
    return Profile(
        "test", "test", (0,), entries, tracker_latency_ms={0: tracker_ms} if tracker_ms else {}
    )


ADAPTIVE = PolicyConfig("adaptive", "adaptive")


def test_an_answer_after_its_frames_deadline_still_measures_the_link():
    # The real client hands an answer that came after its frame's deadline (bytes, network
    # time) to the scheduler (observe_late_answer); the DES does too. 9 kB frames on a 0.5
    # Mbit/s uplink take ~144 ms to cross: every one is cut at its 100 ms deadline, and
    # each answer then reports its transfer.
    class Late(Fixed):
        def __init__(self) -> None:
            super().__init__(OFFLOAD)
            self.late: list[tuple[int, float]] = []

        def observe_late_answer(self, payload_bytes: int, network_ms: float) -> None:
            self.late.append((payload_bytes, network_ms))

    made: list[Late] = []

    def factory(client, clock):  # type: ignore[no-untyped-def]
        made.append(Late())
        return made[-1]

    cfg = config(clients=1, deadline_ms=100, uplink=constant(0.5, 4.0))
    rows = simulate(cfg, profile(), factory).rows
    cut = [r for r in rows if r.reason == StatusCode.DEADLINE_EXCEEDED.reason]
    late = made[0].late
    assert cut and len(late) >= len(cut) - 2  # the last ones' answers come after the run
    assert {size for size, _ in late} == {8800}
    crossing = 9000 * 8 / 500  # ms, give or take one 1500-byte delivery opportunity
    assert all(crossing - 24 <= ms <= crossing + 24 + 2 * 5 for _, ms in late)


def test_the_des_tracker_is_the_measured_one_where_the_cost_profile_has_it():
    sched = scheduler_profile(tracker_ms=0.9)
    assert tracker_costs(sched) == {"tracker_ms": 0.9}
    measured = profile()
    assert tracker_costs(sched, measured) == {"tracker_ms": 0.9}  # nothing measured
    measured.tracker_ms_samples, measured.tracker_busy_ms_samples = [4.0, 5.0, 9.0], [7.0]
    assert tracker_costs(sched, measured) == {
        "tracker_ms": 5.0,
        "tracker_ms_samples": (4.0, 5.0, 9.0),
        "tracker_busy_ms_samples": (7.0,),
    }
    # A scheduler profile without a tracker plans no tracking: none in the DES either.
    assert tracker_costs(scheduler_profile(tracker_ms=0.0), measured) == {"tracker_ms": 0.0}


def test_adaptive_runs_in_the_des_on_its_scheduler_profiles_costs():
    sched = scheduler_profile()
    costs = adaptive_costs(sched)
    assert set(costs.candidates) == {"offload-jpeg90", "split@x/4bit", "local"}
    cfg = config(clients=2, sla_ms=150, tracker_ms=tracker_ms(sched))
    factory = policy_factory(ADAPTIVE, [OFFLOAD, SPLIT, LOCAL], cfg, costs, scheduler_profile=sched)
    result = simulate(cfg, costs, factory, name="adaptive")
    assert result.summary.frames == 2 * 40
    assert Counter((r.client, r.frame_index) for r in result.rows) == {
        (c, k): 1 for c in range(2) for k in range(40)
    }
    tags = set(accuracy_by_tag(sched))
    assert {r.candidate for r in result.rows if r.source != "dropped"} <= tags
    fast = Counter(r.candidate for r in result.rows if r.t_s < 2 and r.source == "edge")
    assert fast and fast.most_common(1)[0][0].startswith("offload-jpeg90")  # 20 Mbps: JPEG
    slow = [r for r in result.rows if r.t_s >= 3 and r.source != "dropped"]
    assert not any(r.candidate.startswith("offload") for r in slow)  # 0.5 Mbps: not JPEG
    acc = predicted_accuracy(result.rows, accuracy_by_tag(sched), 0.58)
    assert 0.45 <= acc <= 0.6


def test_adaptive_scheduler_profile_comes_from_the_policy_config():
    sched = scheduler_profile()
    config_with_profile = replace(ADAPTIVE, scheduler_profile=sched)
    costs = adaptive_costs(sched)
    cfg = config(clients=1, tracker_ms=2.0)
    factory = policy_factory(config_with_profile, [], cfg, costs)
    assert simulate(cfg, costs, factory).summary.frames == 40


def test_device_slowdown_scales_head_and_local_times_not_jpeg_encoding():
    sched = scheduler_profile()
    plain, slow = adaptive_costs(sched), adaptive_costs(sched, device_slowdown=3.0)
    for label in ("split@x/4bit", "local"):
        assert slow.candidates[label].device_ms == pytest.approx(
            3 * plain.candidates[label].device_ms
        )
        assert max(slow.candidates[label].device_ms_samples) == pytest.approx(
            3 * max(plain.candidates[label].device_ms_samples)
        )
    assert (
        slow.candidates["offload-jpeg90"].device_ms == plain.candidates["offload-jpeg90"].device_ms
    )
    # a measured profile is the run's device already: slowed(...) is what the CLI applies
    measured = profile()
    assert slowed(measured, 2.0).get(LOCAL).device_ms == 160.0
    assert slowed(measured, 2.0).get(OFFLOAD).device_ms == 3.0
    assert slowed(measured, 1.0) is measured
    with pytest.raises(ValueError, match=r"device slowdown must be a number >= 1, got 0\.5"):
        slowed(measured, 0.5)
    # and the DES spends it: local-only frames take 3 x the profile's 80 ms
    cfg = config(clients=1, uplink=constant(20, 4.0))
    rows = simulate(cfg, slow, fixed(LOCAL)).rows
    assert {round(r.latency_ms, 6) for r in rows if r.source == "local"} == {240.0}


def test_measured_costs_win_and_the_scheduler_profile_fills_the_rest():
    sched = scheduler_profile()
    measured = profile()  # labels: offload-jpeg90, split@x/4bit, local
    del measured.candidates["local"]
    measured.candidates["offload-jpeg90"].device_ms = 7.5
    costs = adaptive_costs(sched, measured=measured, device_slowdown=2.0)
    assert costs.candidates["offload-jpeg90"].device_ms == 7.5  # measured, as it is
    assert costs.candidates["split@x/4bit"].uplink_wire_bytes == 3000  # measured
    assert costs.candidates["local"].device_ms == pytest.approx(160.0)  # profile x 2
    assert costs.overhead_ms == measured.overhead_ms
    # a measurement of the branch at its default bit depth covers the entry's only one
    by_branch = CostProfile(
        "m", {"split@x": replace(profile().get(SPLIT), label="split@x", bits=None)}
    )
    merged = adaptive_costs(sched, measured=by_branch)
    assert merged.candidates["split@x/4bit"].uplink_wire_bytes == 3000
    assert merged.candidates["split@x/4bit"].bits == 4


def test_session_budget_leaves_room_for_the_local_fallback():
    sched = scheduler_profile()
    costs = adaptive_costs(sched)
    # the link dies at 1 s: remote frames miss and the local model answers within the SLA
    cfg = config(
        clients=1,
        sla_ms=300,
        deadline_ms=2000,
        uplink=BandwidthTrace.from_steps([(0, 20.0), (1.0, 0.01)], 4.0),
        tracker_ms=2.0,
    )
    factory = policy_factory(ADAPTIVE, [], cfg, costs, scheduler_profile=sched)
    policy = factory(0, lambda: 0.0)
    policy.pick(0, 0.0)
    deadline_ms, fallback = policy.frame_budget(0)
    local_ms, _ = policy.scheduler.fallback_ms()
    assert fallback == "local" and deadline_ms == pytest.approx(300 - 1.25 * local_ms - 2.0)
    rows = simulate(cfg, costs, factory).rows
    fallbacks = [r for r in rows if r.reason == "deadline"]
    assert fallbacks and all(r.source == "local" for r in fallbacks)
    assert max(r.latency_ms for r in fallbacks) < 2000  # not the scenario's 2 s deadline


def test_adaptive_without_usable_costs_or_profile_is_refused():
    sched = scheduler_profile()
    cfg = config(clients=1)
    with pytest.raises(PolicyError, match="policy 'adaptive' \\(adaptive\\) needs a scheduler"):
        policy_factory(ADAPTIVE, [], cfg, profile())
    with pytest.raises(
        PolicyError, match="the cost profile has no candidate 'local' of its scheduler profile"
    ):
        partial = profile()
        del partial.candidates["local"]
        policy_factory(ADAPTIVE, [], cfg, partial, scheduler_profile=sched)
    with pytest.raises(
        PolicyError,
        match=r"^policy 'adaptive': no profile entry is usable \(check the branches filter",
    ):
        only = replace(ADAPTIVE, branches=("split@y",))
        policy_factory(only, [], cfg, adaptive_costs(sched), scheduler_profile=sched)


def test_predicted_accuracy_counts_answered_frames_and_fallbacks_as_local():
    row = FrameRow
    rows = [
        row("a", 0, 0, 0.0, 1.0, "offload-jpeg90", "edge", "", 10.0),
        row("a", 0, 1, 0.2, 1.0, "offload-jpeg90", "local", "deadline", 10.0),
        row("a", 0, 2, 0.4, 1.0, "", "dropped", "busy"),
        row("a", 0, 3, 0.6, 1.0, "split@x/4bit/k4+track", "local", "", 3.0),
    ]
    by_tag = accuracy_by_tag(scheduler_profile(), [Candidate("split@x")])
    assert by_tag["split@x"] == 0.5 and by_tag["split@x/4bit/k4+track"] == pytest.approx(0.45)
    assert predicted_accuracy(rows, by_tag, 0.62) == pytest.approx((0.6 + 0.62 + 0.45) / 3)
    assert math.isnan(predicted_accuracy(rows[2:3], by_tag, 0.62))
    with pytest.raises(KeyError, match="no accuracy for row candidate 'nope'"):
        predicted_accuracy([row("a", 0, 0, 0.0, 1.0, "nope", "edge", "", 1.0)], by_tag, 0.62)


def test_probes_beside_local_frames_cross_the_simulated_link_and_give_up_no_frame():
    # The device's own model fits the SLA on a collapsed link: every frame keeps its
    # local result, probes go beside frames, and when the link returns the scheduler
    # moves to the more accurate JPEG offload within ~2 s.
    sched = scheduler_profile()
    sched = replace(
        sched,
        entries=[
            replace(e, accuracy=(0.7 if e.kind == "offload" else e.accuracy)) for e in sched.entries
        ],
    )
    costs = adaptive_costs(sched)
    trace = BandwidthTrace.from_steps([(0, 0.05), (6.0, 20.0)], 12.0)
    cfg = config(
        clients=1, duration_s=12.0, fps=5, sla_ms=150, deadline_ms=300, uplink=trace,
        tracker_ms=tracker_ms(sched),
    )  # fmt: skip
    built = []

    def factory(client, clock):
        built.append(
            policy_factory(ADAPTIVE, [], cfg, costs, scheduler_profile=sched)(client, clock)
        )
        return built[-1]

    result = simulate(cfg, costs, factory, name="adaptive")
    scheduler = built[0].scheduler
    slow = [r for r in result.rows if 1.0 <= r.t_s < 6.0]
    assert slow and all(r.source == "local" and r.candidate == "local" for r in slow)
    assert scheduler.probes >= 3  # about one a second while local
    assert all(r.payload_bytes == 0 for r in slow)  # a probe is no frame's answer
    # The summary counts them, and their bytes in the uplink though no row holds them.
    s = result.summary
    assert s.probes == scheduler.probes and s.probe_mb > 0
    assert s.uplink_mb == pytest.approx(
        sum(r.payload_bytes for r in result.rows) / 1e6 + s.probe_mb
    )
    back = [r.t_s for r in result.rows if r.t_s >= 6.0 and r.source == "edge"]
    assert back and back[0] - 6.0 <= 2.0


def test_accuracy_by_age_fits_a_loss_per_frame_to_the_profiles_intervals():
    by_age = accuracy_by_age(scheduler_profile())
    # Interval 4 is 0.05 under interval 1: the mean over ages 0..3 (1.5 frames) of
    # fresh - loss x age, so the loss is 0.05 / 1.5 per frame.
    assert set(by_age) == {"offload-jpeg90", "split@x/4bit", "local"}
    fresh, loss = by_age["split@x/4bit"]
    assert fresh == 0.5 and loss == pytest.approx(0.05 / 1.5)


def test_predicted_accuracy_scores_tracked_frames_by_the_age_of_their_boxes():
    sched = scheduler_profile()
    by_tag, by_age = accuracy_by_tag(sched), accuracy_by_age(sched)
    loss = 0.05 / 1.5

    def r(k: int, candidate: str, age: int, source: str = "local") -> FrameRow:
        return FrameRow("a", 0, k, 0.2 * k, 1.0, candidate, source, "", 5.0, track_age=age)

    group = [r(0, "local/k4", 0), *(r(k, "local/k4+track", k) for k in (1, 2, 3))]
    # A regular group of 4 scores its entry's accuracy on average, as before.
    assert predicted_accuracy(group, by_tag, 0.58, by_age) == pytest.approx(0.58 - 0.05)
    # Boxes 5 frames old (a slow background detection) score what 5 frames of tracking
    # lose; far older ones score 0, not below.
    assert predicted_accuracy([r(9, "local+track", 5)], by_tag, 0.58, by_age) == pytest.approx(
        0.58 - 5 * loss
    )
    assert predicted_accuracy([r(99, "local+track", 90)], by_tag, 0.58, by_age) == 0.0
    # The same row without an age model keeps its entry's accuracy.
    assert predicted_accuracy([r(9, "local+track", 5)], by_tag, 0.58) == pytest.approx(0.58)
    # A detection is its branch's interval-1 accuracy whatever group it opens.
    edge = r(4, "split@x/4bit/k4", 0, source="edge")
    assert predicted_accuracy([edge], by_tag, 0.58, by_age) == pytest.approx(0.5)


def test_the_des_scheduler_sees_the_videos_content_when_given_it():
    # The real session's scheduler picks by the accuracy of the content bins its answers'
    # boxes fall into; the DES's answers carry no boxes, so without ``content`` its
    # scheduler picked by the overall accuracy and chose other branches than the real one.
    import numpy as np

    from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
    from splitedge.models.types import Detections

    sched = replace(scheduler_profile(), frame_size=(240, 320))
    boxes = Detections(
        np.array([[0, 0, 32, 24]] * 3, np.float32), np.ones(3, np.float32), np.zeros(3, np.int64)
    )
    asked: list[tuple[int, str, int]] = []

    def content(frame_index: int, label: str, age: int) -> Detections:
        asked.append((frame_index, label, age))
        return boxes

    with_video = session_policy(sched, 150.0, fps=5.0, clock=lambda: 0.0, content=content)
    blind = session_policy(sched, 150.0, fps=5.0, clock=lambda: 0.0)
    for policy in (with_video, blind):
        candidate = policy.pick(0, 0.0)
        assert candidate.uses_link  # the first frame goes to the edge (a fresh link)
        # The edge missed the deadline, the device's own model answered: its boxes count.
        missed = FrameOutcome(0, candidate.branch, "local", "deadline", timing=FrameTiming())
        policy.observe(candidate, missed)
    assert asked == [(0, "local", 0)]
    assert with_video.scheduler.content.samples == 1
    assert with_video.scheduler.content.object_count == 3
    assert with_video.scheduler.content.object_size == pytest.approx(32 * 24 / (240 * 320))
    assert blind.scheduler.content.samples == 0
    # A tracked answer: the tracker's boxes from the detection its age says (the real
    # session's scheduler sees those on every tracked frame).
    candidate = replace(with_video.pick(1, 0.2), track=True)
    tracked = FrameOutcome(
        1, candidate.branch, "local", "tracked", timing=FrameTiming(), track_age=1
    )
    with_video.observe(candidate, tracked)
    assert asked[-1] == (1, candidate.label, 1)
    assert with_video.scheduler.content.samples == 2


def test_the_des_hands_each_answers_age_to_the_content_it_sees():
    # Every answered frame of a DES run reaches the scheduler's content with the age of
    # its boxes as the run records it (0: a detection; > 0: tracked).
    sched = replace(scheduler_profile(), frame_size=(240, 320))
    costs = adaptive_costs(sched)
    cfg = config(clients=1, sla_ms=150, tracker_ms=tracker_ms(sched))
    asked: dict[int, int] = {}

    def content(frame_index, label, age):  # type: ignore[no-untyped-def]
        asked[frame_index] = age
        return None

    factory = policy_factory(
        ADAPTIVE, [OFFLOAD, SPLIT, LOCAL], cfg, costs, scheduler_profile=sched, content=content
    )
    rows = simulate(cfg, costs, factory, name="adaptive").rows
    answered = {r.frame_index: r.track_age for r in rows if r.source != "dropped"}
    assert any(age > 0 for age in answered.values())  # the run tracks some frames
    assert {f: a for f, a in asked.items() if f in answered} == answered
