"""The adaptive scheduler on synthetic profiles and simulated outcomes (no server).

The environment below turns a decision into the FrameOutcome a client would have
recorded: head time from the profile x a device slowdown, payload over a link
of a given bandwidth plus RTT, the server's time, optional noise, or an edge
that is unreachable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
import pytest

from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.profile import BranchConfig, BranchProfile, Profile, Quantiles
from splitedge.mobile_client.scheduler import Decision, Scheduler, SchedulerError, pareto_frontier
from splitedge.models.types import Detections
from splitedge.proto.status import ServerTiming, StatusCode


def entry(
    branch: str,
    kind: str,
    *,
    head_ms: tuple[float, float] = (10.0, 20.0),
    size_bytes: float = 5000.0,
    accuracy: float = 0.7,
    bits: int = 8,
    interval: int = 1,
    group: str = "m",
    tail_ms: float = 5.0,
    by_bin: dict[str, float] | None = None,
) -> BranchProfile:
    return BranchProfile(
        config=BranchConfig(branch, bits if kind == "split" else 0, 1.0, 0, interval),
        kind=kind,
        load_group=group,
        head_latency_ms={lv: Quantiles(ms, ms, ms * 1.1) for lv, ms in enumerate(head_ms)},
        bytes_per_frame=Quantiles(size_bytes, size_bytes, size_bytes)
        if kind != "local"
        else Quantiles(0, 0, 0),
        tail_latency_ms={1: tail_ms} if kind != "local" else {},
        accuracy=accuracy,
        accuracy_by_bin=by_bin or {},
    )


def jpeg(
    quality: int,
    size_bytes: float,
    accuracy: float,
    *,
    head_ms: tuple[float, float] = (2.0, 4.0),
    tail_ms: float = 5.0,
) -> BranchProfile:
    """An ``offload-jpeg<quality>`` entry."""
    return entry(
        f"offload-jpeg{quality}", "offload", head_ms=head_ms, size_bytes=size_bytes,
        accuracy=accuracy, tail_ms=tail_ms,
    )  # fmt: skip


def profile(*entries: BranchProfile, switch_ms: float = 0.0) -> Profile:
    return Profile(
        model="m",
        device="test",
        contention_levels=(0, 1),
        entries=list(entries),
        tracker_latency_ms={0: 2.0, 1: 4.0},
        default_switch_cost_ms=switch_ms,
        frame_size=(240, 320),
    )


LOCAL = entry("local", "local", head_ms=(50.0, 100.0), accuracy=0.5)
SPLIT = entry("split@a", "split", head_ms=(10.0, 20.0), size_bytes=12_500, accuracy=0.7)
OFFLOAD = entry("offload-jpeg90", "offload", head_ms=(2.0, 4.0), size_bytes=125_000, accuracy=0.8)


@dataclass
class Env:
    """A simulated device + link + server; ``noise`` is a lognormal sigma on the network."""

    bandwidth_mbps: float = 10.0
    rtt_ms: float = 20.0
    slowdown: float = 1.0
    server_ms: float = 5.0
    edge_up: bool = True
    noise: float = 0.0
    jitter_ms: float = 0.0  # mean of an exponential extra network delay
    server_jitter_ms: float = 0.0  # mean of an exponential extra server delay (batching)
    head_noise: float = 0.0  # lognormal sigma on device times
    # Client-side delay in total_ms that no stage of the breakdown shows (event-loop and
    # thread hops, GC pauses): exponential with this mean, heavy enough to beat a fixed
    # margin, invisible to every estimator.
    hidden_ms: float = 0.0
    byte_scale: float = 1.0  # this camera's payloads / the profile's (its scenes' detail)

    def outcome(self, sched: Scheduler, d: Decision, rng: np.random.Generator) -> FrameOutcome:
        e = sched.candidates[d.index]
        if d.track:
            ms = sched.profile.tracker_latency_ms[0] * self.slowdown
            return FrameOutcome(
                d.frame_index, d.branch, "local", timing=FrameTiming(local_ms=ms, total_ms=ms)
            )
        head = e.head_latency_ms[0].mean * self.slowdown
        if self.head_noise:
            head *= float(rng.lognormal(0.0, self.head_noise))
        if not e.remote:
            total = head + self._hidden(rng)
            return FrameOutcome(
                d.frame_index, d.branch, "local", timing=FrameTiming(local_ms=head, total_ms=total)
            )
        size = int(e.bytes_per_frame.mean * self.byte_scale)
        if not self.edge_up:
            local = LOCAL.head_latency_ms[0].mean * self.slowdown
            t = FrameTiming(head_ms=head, local_ms=local, total_ms=head + local + 1.0)
            return FrameOutcome(d.frame_index, d.branch, "local", "edge-unavailable", None, t, size)
        network = self.rtt_ms + size * 8 / (self.bandwidth_mbps * 1000)
        if self.noise:
            network *= float(rng.lognormal(0.0, self.noise))
        if self.jitter_ms:
            network += float(rng.exponential(self.jitter_ms))
        server = self.server_ms
        if self.server_jitter_ms:
            server += float(rng.exponential(self.server_jitter_ms))
        t = FrameTiming(
            head_ms=head,
            network_ms=network,
            roundtrip_ms=network + server,
            server=ServerTiming(server_total_ms=server, tail_ms=server),
            total_ms=head + network + server + self._hidden(rng),
        )
        return FrameOutcome(d.frame_index, d.branch, "edge", "", None, t, size)

    def _hidden(self, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.hidden_ms)) if self.hidden_ms else 0.0


def run(
    sched: Scheduler, env: Env, frames: int, *, seed: int = 0, t0: float = 0.0, fps: float = 30.0
) -> list[Decision]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        d = sched.pick(t0 + i / fps)
        sched.observe(d, env.outcome(sched, d, rng))
        if d.probe is not None:  # sent beside the frame: measured, never waited for
            sched.observe_probe(d.probe, env.outcome(sched, d.probe, rng))
        out.append(d)
    return out


def warmed(p: Profile, env: Env, sla_ms: float, frames: int = 40, **kwargs: object) -> Scheduler:
    sched = Scheduler(p, sla_ms, **kwargs)  # type: ignore[arg-type]
    run(sched, env, frames)
    return sched


# ------------------------------------------------------------------ Pareto frontier


def test_pareto_frontier_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        lat = rng.integers(1, 20, 30).astype(float)  # integers: plenty of ties
        acc = rng.integers(0, 10, 30) / 10
        front = set(pareto_frontier(lat, acc).tolist())
        dominated = {
            i
            for i in range(30)
            for j in range(30)
            if lat[j] <= lat[i] and acc[j] >= acc[i] and (lat[j] < lat[i] or acc[j] > acc[i])
        }
        non_dominated = set(range(30)) - dominated
        # Exact duplicates keep one representative.
        assert front <= non_dominated
        assert {(lat[i], acc[i]) for i in front} == {(lat[i], acc[i]) for i in non_dominated}
    assert pareto_frontier(np.zeros(0), np.zeros(0)).size == 0


# ------------------------------------------------------------------ decisions


def test_picks_the_most_accurate_feasible_branch_then_the_fastest() -> None:
    p = profile(LOCAL, SPLIT, OFFLOAD)
    env = Env(bandwidth_mbps=10.0, rtt_ms=20.0)
    # Offload needs ~125 ms (100 ms transfer), split ~45 ms, local ~50 ms.
    sched = warmed(p, env, sla_ms=100.0, learn_margin=False)
    d = sched.pick(10.0)
    assert d.branch == "split@a" and d.bits == 8 and not d.track
    assert d.predicted_latency_ms <= 100.0 / 1.3
    assert d.predicted_accuracy == pytest.approx(0.7)
    per_frame = sched.predict()[1]
    assert per_frame[2] > 100 / 1.3 >= per_frame[1]  # offload infeasible, split feasible

    sched.set_sla(20.0)  # nothing fits: the fastest (split, ~45 ms)
    d = sched.pick(10.1)
    assert d.reason == "none-feasible-fastest"
    assert d.index == int(np.argmin(sched.predict()[1]))


def test_live_sla_change_takes_effect_on_the_next_decision() -> None:
    p = profile(LOCAL, SPLIT, OFFLOAD)
    sched = warmed(p, Env(), sla_ms=100.0, learn_margin=False)
    assert sched.pick(5.0).branch == "split@a"
    sched.set_sla(400.0)  # e.g. from a control-topic callback
    d = sched.pick(5.1)  # mid-period: no waiting for the next re-decision
    assert d.branch == "offload-jpeg90"
    sched.set_weights(accuracy=1.0, latency=1.0)  # now latency costs: split's gain wins
    assert sched.pick(5.2).branch == "split@a"


def test_edge_loss_falls_back_to_local_and_retries_later() -> None:
    p = profile(LOCAL, SPLIT)
    env = Env()
    sched = warmed(p, env, sla_ms=100.0)
    assert sched.pick(2.0).branch == "split@a"
    env.edge_up = False
    decisions = run(sched, env, 10, t0=2.1)
    assert decisions[0].branch == "split@a"  # the frame that found the edge gone
    assert all(d.branch == "local" for d in decisions[1:])
    assert decisions[1].reason == "edge-down-local"
    assert sched.edge_down
    env.edge_up = True
    later = run(sched, env, 5, t0=2.1 + 10 / 30 + 2.5)  # after the 2 s retry backoff
    assert later[0].branch == "split@a"
    assert not sched.edge_down
    sched.set_edge_available(False)  # discovery says the edge left
    assert sched.pick(5.2).branch == "local"


@pytest.mark.parametrize(
    ("reason", "down"),
    [
        (StatusCode.RESOURCE_EXHAUSTED.reason, True),  # the edge answered an error
        (StatusCode.INTERNAL.reason, True),
        ("edge-unavailable", True),  # no answer at all
        (StatusCode.DEADLINE_EXCEEDED.reason, False),  # late: the link, not the edge
    ],
)
def test_an_edge_error_marks_the_edge_down_and_a_late_frame_does_not(reason, down) -> None:  # type: ignore[no-untyped-def]
    sched = warmed(profile(LOCAL, SPLIT), Env(), sla_ms=100.0)
    d = sched.pick(2.0)
    assert d.branch == "split@a"
    t = FrameTiming(head_ms=10.0, local_ms=50.0, total_ms=61.0)
    sched.observe(d, FrameOutcome(d.frame_index, d.branch, "local", reason, None, t, 12_500))
    assert sched.edge_down is down


def test_contention_sensed_from_slowed_heads_changes_the_branch() -> None:
    local = entry("local", "local", head_ms=(30.0, 90.0), accuracy=0.75)
    split = entry("split@a", "split", head_ms=(10.0, 20.0), size_bytes=12_500, accuracy=0.7)
    env = Env()
    sched = warmed(profile(local, split), env, sla_ms=80.0, learn_margin=False)
    sched.pick(5.0)  # over a second since the last remote frame: this one may be a probe
    assert sched.current is not None and sched.current.config.branch == "local"
    env.slowdown = 2.5  # another app loads the CPU: local now takes 75 ms
    decisions = run(sched, env, 20, t0=5.1)
    assert sched.contention.level > 0.5
    assert decisions[-1].branch == "split@a"


def test_detect_then_track_within_a_detection_interval() -> None:
    tracked = replace(SPLIT, config=replace(SPLIT.config, detection_interval=4), accuracy=0.72)
    sched = Scheduler(profile(LOCAL, SPLIT, tracked), 100.0, learn_margin=False)
    decisions = run(sched, Env(), 12)
    assert [d.track for d in decisions[:8]] == [False, True, True, True] * 2
    assert all(d.interval == 4 for d in decisions)
    assert decisions[1].predicted_latency_ms == pytest.approx(2.0)  # the tracker's cost
    assert decisions[0].predicted_latency_ms > 20.0


@pytest.mark.parametrize(
    ("tracked_accuracy", "frames_first", "expected_interval"),
    [
        (0.705, True, 1),  # a sliver better only as a group: single frames win
        (0.705, False, 4),  # amortised only (ApproxDet): the group's accuracy wins
        (0.9, True, 4),  # clearly better: tracking is worth late detection frames
    ],
)
def test_frames_first_keeps_detection_frames_in_time(
    tracked_accuracy: float, frames_first: bool, expected_interval: int
) -> None:
    # Offload every 4th frame: its detection frames take ~127 ms at 10 Mbps (over the
    # 100 ms SLA) while the group averages ~33 ms; the split fits every frame (~45 ms).
    offload_k4 = replace(
        OFFLOAD,
        config=replace(OFFLOAD.config, detection_interval=4),
        accuracy=tracked_accuracy,
    )
    sched = Scheduler(
        profile(LOCAL, SPLIT, offload_k4), 100.0, learn_margin=False, frames_first=frames_first
    )
    sched.observe_rtt(20.0)
    decisions = run(sched, Env(bandwidth_mbps=10.0), 24)
    assert decisions[-1].interval == expected_interval
    assert decisions[-1].branch == ("split@a" if expected_interval == 1 else "offload-jpeg90")


@pytest.mark.parametrize(
    ("period_ms", "expected_branch"), [(None, "offload-jpeg90"), (100.0, "split@a")]
)
def test_frames_missed_during_long_detections_count(
    period_ms: float | None, expected_branch: str
) -> None:
    # Offload every 4th frame is more accurate (0.8) and fits as a group, but at 10 fps
    # each ~148 ms detection misses the next camera frame: 4 of 5 frames get a result,
    # worth 0.64 < the split's 0.7 on every frame. Without a known period nothing is missed.
    offload_k4 = replace(
        OFFLOAD, config=replace(OFFLOAD.config, detection_interval=4), accuracy=0.8
    )
    sched = Scheduler(
        profile(LOCAL, SPLIT, offload_k4), 100.0, learn_margin=False, frame_period_ms=period_ms
    )
    sched.observe_rtt(20.0)
    decisions = run(sched, Env(bandwidth_mbps=10.0), 24)
    assert decisions[-1].branch == expected_branch
    with pytest.raises(SchedulerError, match="frame period"):
        sched.set_frame_period(0.0)


def test_a_recovered_link_is_noticed_through_tiny_payloads() -> None:
    # On a 0.4 Mbit/s link only a 500-byte branch fits. When the link comes back, those
    # payloads cross faster than anything measurable: their lower bound lifts the stale
    # estimate until bigger payloads can measure the rate and offloading wins again.
    tiny = entry("split@tiny", "split", size_bytes=500, accuracy=0.6)
    sched = Scheduler(profile(LOCAL, tiny, SPLIT, OFFLOAD), 100.0)
    sched.observe_rtt(20.0)
    env = Env(bandwidth_mbps=0.4)
    low = run(sched, env, 60)
    assert low[-1].branch == "split@tiny"
    env.bandwidth_mbps = 50.0
    high = run(sched, env, 60, t0=3.0)
    assert high[-1].branch == "offload-jpeg90"
    assert sched.bandwidth.estimate_mbps > 10.0


@pytest.mark.parametrize(("mbps", "gap_s"), [(0.2, 1.0), (0.05, 24 / (0.25 * 0.05 * 1000))])
def test_a_device_that_stays_local_probes_the_link_at_a_bounded_cost(
    mbps: float, gap_s: float
) -> None:
    # The link is too slow for anything remote: the device runs locally, and nothing
    # would measure the link again. One small frame a second does, and on a link so
    # slow that 3 kB a second would take more than a quarter of it, fewer.
    jpeg20 = entry("offload-jpeg20", "offload", head_ms=(2.0, 4.0), size_bytes=3000, accuracy=0.6)
    p = profile(LOCAL, SPLIT, OFFLOAD, jpeg20)
    sched = Scheduler(p, 100.0, probe_every_frames=10_000, learn_margin=False)
    sched.observe_rtt(20.0)
    decisions = run(sched, Env(bandwidth_mbps=mbps), 600)  # 20 s at 30 frames/s
    probes = [d.probe for d in decisions if d.probe is not None]
    assert sched.current is not None and sched.current.config.branch == "local"
    # The device's detection fits the SLA: probes go beside its frames, which keep
    # the device's result (no frame is given up to a less accurate branch).
    assert all(d.branch == "local" for d in decisions[30:])
    assert {d.branch for d in probes} == {"offload-jpeg20"}  # the cheapest free switch
    assert all(p.reason == "probe" and p.remote for p in probes)
    assert len(probes) == sched.probes
    assert 20 / gap_s - 3 <= len(probes) <= 20 / gap_s + 1
    gaps = np.diff([d.frame_index for d in probes]) / 30.0
    assert gaps.min() >= gap_s * 0.95


@pytest.mark.parametrize("start", ["local", "tracked"])
def test_a_recovered_link_is_back_on_the_fresh_choice_within_two_seconds(start: str) -> None:
    # After a deep fade the scheduler holds either the device's own model or a small
    # remote branch tracked between detections; either way, within 2 s of the link's
    # return it picks what a fresh scheduler on the good link picks.
    small = entry("split@small", "split", size_bytes=1500, accuracy=0.62, interval=4)
    local = replace(LOCAL, accuracy=0.65 if start == "local" else 0.5)
    jpeg20 = entry("offload-jpeg20", "offload", head_ms=(2.0, 4.0), size_bytes=3000, accuracy=0.6)
    jpeg90 = replace(OFFLOAD, bytes_per_frame=Quantiles(28_000, 28_000, 30_000))  # 320x240
    p = profile(local, small, jpeg20, jpeg90)
    good = Env(bandwidth_mbps=40.0)
    fresh = warmed(p, good, 150.0, frames=60)
    assert fresh.current is not None and fresh.current.config.branch == "offload-jpeg90"
    sched = Scheduler(p, 150.0, frame_period_ms=200.0)  # a 5 frames/s camera
    sched.observe_rtt(20.0)
    env = Env(bandwidth_mbps=0.1)
    run(sched, env, 50, fps=5.0)  # 10 s of fade
    held = sched.current
    assert held is not None
    assert held.config.branch == ("local" if start == "local" else "split@small")
    env.bandwidth_mbps = 40.0
    after = run(sched, env, 10, t0=10.0, fps=5.0)  # 2 s
    back = [i for i, d in enumerate(after) if d.branch == "offload-jpeg90" and not d.track]
    assert back, [d.key for d in after]
    assert sched.current.config.branch == "offload-jpeg90"


def test_after_a_regime_change_the_choice_is_a_fresh_starts_without_hysteresis() -> None:
    # On a 5 Mbit/s link the mid-size JPEG is the best that fits. The link jumps to 40:
    # the big JPEG now fits the SLA, but not with the hysteresis band's room to spare, so
    # a scheduler holding the mid one would keep it. A faster regime is a new link: the
    # decision after it is the one a fresh start makes.
    mid = entry("offload-jpeg50", "offload", head_ms=(2.0, 4.0), size_bytes=30_000, accuracy=0.7)
    big = replace(OFFLOAD, bytes_per_frame=Quantiles(330_000, 330_000, 330_000))  # 66 ms at 40
    p = profile(LOCAL, mid, big)
    kwargs = {"learn_margin": False, "margin": 1.0, "hysteresis_band": 0.2}
    fast = Env(bandwidth_mbps=40.0)
    # What the estimates of a scheduler that has only known the fast link predict.
    known = Scheduler(p, 100.0, **kwargs)  # type: ignore[arg-type]
    known.observe_rtt(20.0)
    run(known, fast, 60)
    detect, _, _ = known.predict()
    budget = 100.0 * known.margins["remote"]
    assert budget * 0.8 < detect[known.candidates.index(big)] <= budget  # fits, not comfortably
    sched = Scheduler(p, 100.0, **kwargs)  # type: ignore[arg-type]
    sched.observe_rtt(20.0)
    run(sched, Env(bandwidth_mbps=5.0), 60)
    assert sched.current is not None and sched.current.config.branch == "offload-jpeg50"
    resets = sched.bandwidth.resets
    after = run(sched, fast, 6, t0=2.0)
    assert sched.bandwidth.resets == resets + 1
    assert [d.branch for d in after][-3:] == ["offload-jpeg90"] * 3
    # Away from regime changes the hysteresis holds: the scheduler that has only known
    # the fast link started on the mid JPEG (before it had measured the link) and keeps it.
    run(known, fast, 200, t0=2.0)
    assert known.bandwidth.resets == 0
    assert known.current is not None and known.current.config.branch == "offload-jpeg50"


def test_the_decisions_while_a_new_regime_settles_start_afresh() -> None:
    # A 100 ms path: after a fade the round trip restarts with a spread of a tenth of it,
    # which keeps the big JPEG out of the first decision on the recovered link. The
    # spread then settles within a few frames and the big JPEG fits, though not with
    # the hysteresis band's room to spare. The decisions made while the new regime's
    # window fills (and the first with it full) pick as a fresh start would: the big
    # JPEG, not the mid one the first post-fade decision took on unsettled estimates.
    mid = entry("offload-jpeg50", "offload", head_ms=(2.0, 4.0), size_bytes=30_000, accuracy=0.7)
    big = replace(OFFLOAD, bytes_per_frame=Quantiles(330_000, 330_000, 330_000))  # 66 ms at 40
    p = profile(LOCAL, mid, big)
    sched = Scheduler(p, 180.0, learn_margin=False, margin=1.0, hysteresis_band=0.2)
    for _ in range(20):
        sched.observe_rtt(100.0)  # a steady path
    run(sched, Env(bandwidth_mbps=10.0, rtt_ms=100.0), 60)
    assert sched.current is not None and sched.current.config.branch == "offload-jpeg50"
    resets = sched.bandwidth.resets
    fast = Env(bandwidth_mbps=40.0, rtt_ms=100.0)
    first = run(sched, fast, 3, t0=2.0)
    assert sched.bandwidth.resets == resets + 1
    assert first[-1].branch == "offload-jpeg50"  # the big one does not fit yet
    detect, _, _ = sched.predict()
    assert detect[sched.candidates.index(big)] > 180.0
    after = run(sched, fast, 12, t0=2.1)
    detect, _, _ = sched.predict()
    assert 0.8 * 180.0 < detect[sched.candidates.index(big)] <= 180.0  # fits, not comfortably
    assert sched.current is not None and sched.current.config.branch == "offload-jpeg90"
    assert after[-1].branch == "offload-jpeg90"


def test_a_faster_link_gives_the_remote_path_back_its_starting_margin() -> None:
    # In a fade, remote frames ran over their predictions by a delay no estimator sees:
    # the learned remote margin shrank well under ApproxDet's 1/1.3 and the device went
    # local. Once the estimator takes the recovered link, those misses say nothing of it:
    # the remote margin is at least the starting one again, and the device is on the
    # full JPEG a fresh start picks, not held local (or on a light JPEG) until the
    # margin has crept back, which took the demo 6 s.
    light = jpeg(20, 3000, 0.6, tail_ms=60.0)
    big = jpeg(90, 28_000, 0.8, tail_ms=60.0)
    p = profile(LOCAL, light, big)
    sched = Scheduler(p, 150.0, frame_period_ms=200.0)
    sched.observe_rtt(20.0)
    fade = Env(bandwidth_mbps=2.0, rtt_ms=20.0, server_ms=60.0, hidden_ms=40.0)
    run(sched, fade, 100, fps=5.0)
    assert sched.margins["remote"] < 0.9 / 1.3  # the fade's misses shrank it
    assert sched.current is not None and sched.current.config.branch == "local"
    fast = Env(bandwidth_mbps=40.0, rtt_ms=20.0, server_ms=60.0)
    resets = sched.bandwidth.resets
    after = run(sched, fast, 15, t0=20.0, fps=5.0)
    assert sched.bandwidth.resets == resets + 1
    assert sched.margins["remote"] >= 1 / 1.3 - 1e-9
    fresh = Scheduler(p, 150.0, frame_period_ms=200.0)
    fresh.observe_rtt(20.0)
    assert run(fresh, fast, 15, fps=5.0)[-1].branch == "offload-jpeg90"
    # Within 2 s (10 frames) of the return: the first link check, then the full JPEG.
    assert [d.branch for d in after[10:]] == ["offload-jpeg90"] * 5, after


def test_a_faster_link_seen_through_a_small_payload_is_checked_with_a_larger_one() -> None:
    # The device held a small code through a fade. On the recovered link its 1.5 kB
    # cross within the round trip's jitter: a lower bound on the rate, which lifts the
    # estimate a bound at a time. The checks that follow send larger payloads, cheap at
    # that bound (within probe_share of the SLA): large enough to time.
    small = entry("split@small", "split", size_bytes=1500, accuracy=0.62, interval=4)
    jpeg20 = entry("offload-jpeg20", "offload", head_ms=(2.0, 4.0), size_bytes=3000, accuracy=0.6)
    jpeg90 = replace(OFFLOAD, bytes_per_frame=Quantiles(28_000, 28_000, 30_000))  # 320x240
    huge = entry("offload-png", "offload", head_ms=(2.0, 4.0), size_bytes=400_000, accuracy=0.81)
    p = profile(replace(LOCAL, accuracy=0.5), small, jpeg20, jpeg90, huge)

    def checks(sla_ms: float) -> list[Decision]:
        sched = Scheduler(p, sla_ms, frame_period_ms=200.0)
        sched.observe_rtt(20.0)
        env = Env(bandwidth_mbps=0.1)
        run(sched, env, 50, fps=5.0)  # 10 s of fade
        assert sched.current is not None and sched.current.config.branch == "split@small"
        env.bandwidth_mbps = 40.0
        after = run(sched, env, 10, t0=10.0, fps=5.0)
        # Beside a device frame, or in a frame's place.
        return [d.probe or d for d in after if d.probe is not None or d.reason == "probe"]

    # One fast small payload is not trusted (after a quiet spell it can ride a shaper's
    # burst allowance in a fade): the first check re-sends it. Once a second sample has
    # moved the estimator to the faster regime, the check climbs, at most 4x the bytes
    # that gave the bound per step and cheap at that bound: never the 400 kB PNG.
    probes = checks(150.0)
    assert [d.branch for d in probes][:2] == ["split@small", "offload-jpeg90"], probes
    tight = checks(60.0)  # 30 kB is not cheap within a quarter of a 60 ms SLA at 12 Mbit/s
    assert [d.branch for d in tight][:2] == ["split@small", "offload-jpeg20"], tight
    assert all(d.branch != "offload-png" for d in probes + tight)


def test_a_small_payload_late_by_round_trip_jitter_does_not_lower_the_rate() -> None:
    # A 40 Mbit/s link whose round trips wander by several ms (a busy host). A 3 kB frame
    # takes 0.6 ms to cross; answered 6 ms over the floor it would read as 4 Mbit/s. That
    # is the round trip's jitter (within 2 sigma and half the 20 ms floor), not the link:
    # it must not lower the estimate. A 300 kB
    # frame 60 ms over the floor is the link itself (40 Mbit/s), and one 240 ms over
    # it says the link slowed to 10 Mbit/s.
    jpeg20 = entry("offload-jpeg20", "offload", head_ms=(2.0, 4.0), size_bytes=3000, accuracy=0.6)
    big = replace(OFFLOAD, bytes_per_frame=Quantiles(300_000, 300_000, 300_000))
    sched = Scheduler(profile(LOCAL, jpeg20, big), 500.0)
    sched.observe_rtt(20.0)
    run(sched, Env(bandwidth_mbps=40.0, rtt_ms=20.0), 30)
    assert sched.bandwidth.estimate_mbps == pytest.approx(40.0, rel=0.05)
    for rtt in (26.0, 21.0, 27.0, 20.0, 25.0, 28.0):
        sched.observe_rtt(rtt)
    assert 2 * sched.rtt.std_ms > 6.0  # the jitter band the 3 kB frame falls in

    def answer(d: Decision, network_ms: float) -> FrameOutcome:
        size = int(sched.candidates[d.index].bytes_per_frame.mean)
        t = FrameTiming(head_ms=2.0, network_ms=network_ms,
                        server=ServerTiming(server_total_ms=5.0),
                        total_ms=network_ms + 7.0)  # fmt: skip
        return FrameOutcome(d.frame_index, d.branch, "edge", "", None, t, size)

    small = sched._decision(sched.candidates.index(jpeg20), "probe", False)
    sched.observe(small, answer(small, 20.0 + 6.0))
    assert sched.bandwidth.estimate_mbps == pytest.approx(40.0, rel=0.05)
    large = sched._decision(sched.candidates.index(big), "test", False)
    sched.observe(large, answer(large, 20.0 + 240.0))  # 300 kB in 240 ms: 10 Mbit/s
    assert sched.bandwidth.harmonic_mbps < 30.0
    # A fade: round trips queue (their spread balloons), and the small frame now takes
    # 240 ms over the floor. Past half the floor it is the link, not jitter: 0.1 Mbit/s.
    for rtt in (300.0, 900.0, 60.0, 1500.0):
        sched.observe_rtt(rtt)
    assert 2 * sched.rtt.std_ms > 240.0
    before = sched.bandwidth.harmonic_mbps
    for _ in range(3):
        sched.observe(small, answer(small, 20.0 + 240.0))
    assert sched.bandwidth.harmonic_mbps < before / 2


def test_a_probe_cut_by_its_deadline_but_answered_at_once_checks_the_link_again() -> None:
    # The link came back, but the probe's deadline was tighter than the edge's round trip:
    # the frame fell back on the device. Its answer, arriving just after, crossed a link
    # far faster than the fade's estimate (too fast to time: a lower bound): the next
    # frame checks the link at once instead of a probe period later.
    jpeg20 = entry("offload-jpeg20", "offload", head_ms=(2.0, 4.0), size_bytes=3000, accuracy=0.6)
    p = profile(LOCAL, SPLIT, OFFLOAD, jpeg20)
    sched = Scheduler(p, 100.0, learn_margin=False, frame_period_ms=200.0)
    sched.observe_rtt(20.0)
    run(sched, Env(bandwidth_mbps=0.1), 50, fps=5.0)  # 10 s of fade: the device runs locally
    assert sched.current is not None and sched.current.config.branch == "local"
    before = sched.bandwidth.harmonic_mbps
    t = 10.0
    slow = Env(bandwidth_mbps=0.1)
    for _ in range(20):  # at most a probe interval (5 frames) and a margin
        d = sched.pick(t)
        sched.observe(d, slow.outcome(sched, d, np.random.default_rng(0)))
        t += 0.2
        if d.probe is not None:
            break
    assert d.probe is not None and d.branch == "local"  # the frame stays on the device
    probe = d.probe
    cut = FrameOutcome(
        probe.frame_index, probe.branch, "local", reason="deadline", payload_bytes=3000,
        timing=FrameTiming(head_ms=2.0, total_ms=100.0),
    )  # fmt: skip
    sched.observe_probe(probe, cut)
    assert sched.bandwidth.harmonic_mbps <= before * 1.01  # an upper bound lifts nothing
    violations = sched.violations
    sched.observe_late_answer(3000, 20.3)  # the round trip alone: the bytes took < 1 ms
    nxt = sched.pick(t)
    assert nxt.probe is not None and nxt.probe.remote
    assert sched.violations == violations  # no one waited for a probe
    sched.observe_late_answer(0, 20.0)  # nothing sent: no sample, no error


@pytest.mark.parametrize("learn", [True, False])
def test_payloads_smaller_than_profiled_are_learned_and_let_a_heavier_branch_fit(
    learn: bool,
) -> None:
    # The profile's JPEGs came from a detailed video; this camera's scenes compress to a
    # quarter. Profiled, offload-jpeg90 needs ~125 ms at 5 Mbit/s (96 ms of bytes), past
    # the 77 ms budget; its real 15 kB frames take ~50 ms.
    p = profile(LOCAL, jpeg(20, 10_000, 0.6), jpeg(90, 60_000, 0.8))
    env = Env(bandwidth_mbps=5.0, rtt_ms=20.0, byte_scale=0.25)
    sched = Scheduler(p, 100.0, learn_margin=False, learn_bytes=learn)
    sent = [d.branch for d in run(sched, env, 60)]
    assert sent[0] == "offload-jpeg20"  # what the profile's bytes allow at the start
    scale = sched.payload_scale()
    if learn:
        # jpeg20's frames teach their ratio; jpeg90, not sent yet, takes its kind's, fits,
        # and is chosen; its own frames then confirm it.
        assert "offload-jpeg90" in sent
        assert sent[-10:] == ["offload-jpeg90"] * 10
        assert scale["offload-jpeg90"] == pytest.approx(0.25, rel=0.05)
        assert scale["offload-jpeg20"] == pytest.approx(0.25, rel=0.05)
        assert scale["local"] == 1.0  # no payload, nothing learned
    else:
        assert set(sent) == {"offload-jpeg20"}
        assert set(scale.values()) == {1.0}


def test_a_scene_that_grows_the_payloads_is_followed_within_a_few_frames() -> None:
    p = profile(LOCAL, jpeg(20, 10_000, 0.6), jpeg(90, 60_000, 0.8))
    env = Env(bandwidth_mbps=5.0, rtt_ms=20.0, byte_scale=0.25)
    sched = Scheduler(p, 100.0, learn_margin=False)
    assert run(sched, env, 60)[-1].branch == "offload-jpeg90"
    env.byte_scale = 1.0  # a detailed scene: jpeg90's frames are as profiled again
    sent = [d.branch for d in run(sched, env, 30, t0=2.0)]
    # Its 60 kB frames (~125 ms, past the SLA) teach the ratio; the next decision, within
    # one period of 8 frames, goes back to what fits the detailed scene, and stays.
    switch = sent.index("offload-jpeg20")
    assert 0 < switch <= 8
    assert sent[switch:] == ["offload-jpeg20"] * (len(sent) - switch)
    assert sched.payload_scale()["offload-jpeg90"] > 0.8


def test_content_features_shift_accuracy() -> None:
    # Tracking every 4th frame wins on still scenes and loses on fast motion.
    calm = {"motion:0": 0.78, "motion:2": 0.55}
    tracked = replace(
        SPLIT,
        config=replace(SPLIT.config, detection_interval=4),
        accuracy=0.72,
        accuracy_by_bin=calm,
    )
    sched = Scheduler(profile(LOCAL, SPLIT, tracked), 100.0, learn_margin=False)
    still = Detections(
        np.array([[10, 10, 50, 50]], np.float32), np.ones(1, np.float32), np.ones(1, np.int64)
    )
    for i in range(3):
        sched.observe(sched.pick(i / 30), FrameOutcome(i, "split@a", "local", prediction=still))
    assert sched.pick(1.0).interval == 4
    for i in range(3, 9):  # the object now moves 30 px per frame (~0.075 of the diagonal)
        moving = Detections(still.boxes + 30 * i, still.scores, still.labels)
        d = sched.pick(i / 30)
        sched.observe(d, FrameOutcome(d.frame_index, d.branch, "local", prediction=moving))
    sched.set_sla(100.0)
    d = sched.pick(2.0)
    assert d.interval == 1 and d.branch == "split@a"


def test_added_bin_deltas_never_lift_tracking_above_detecting_every_frame() -> None:
    # Measured overall, tracking loses 0.08; in each of two bins alone it looks better
    # than detecting every frame. Added up, the deltas would rate it 0.9 against 0.72.
    every = replace(SPLIT, accuracy_by_bin={"motion:0": 0.71, "object_count:0": 0.71})
    tracked = replace(
        SPLIT,
        config=replace(SPLIT.config, detection_interval=4),
        accuracy=0.62,
        accuracy_by_bin={"motion:0": 0.76, "object_count:0": 0.76},
    )
    sched = Scheduler(profile(LOCAL, every, tracked), 100.0, learn_margin=False)
    still = Detections(
        np.array([[10, 10, 50, 50]], np.float32), np.ones(1, np.float32), np.ones(1, np.int64)
    )
    for i in range(3):
        sched.observe(sched.pick(i / 30), FrameOutcome(i, "split@a", "local", prediction=still))
    _, _, acc = sched.predict(0.2)
    keys = [c.config.key for c in sched.candidates]
    k1, k4 = keys.index("split@a/8b/w1/native/k1"), keys.index("split@a/8b/w1/native/k4")
    assert acc[k1] == pytest.approx(0.72)  # 0.7 + 0.01 + 0.01
    assert acc[k4] == pytest.approx(0.72)  # capped: not 0.62 + 0.14 + 0.14 = 0.9
    # A lead that the profile measured overall is kept.
    leading = replace(tracked, accuracy=0.75)
    sched = Scheduler(profile(LOCAL, every, leading), 100.0, learn_margin=False)
    _, _, acc = sched.predict(0.0)
    assert acc[k4] == pytest.approx(0.75)


def test_a_bins_deltas_are_shared_by_the_entries_of_one_detection_interval() -> None:
    # Overall the device's model beats the code by 0.1. On still scenes the profile's video
    # rated the code up and the model down: each branch's own delta would put the code
    # first (0.75 against 0.70). A bin moves the entries of one interval alike (their mean
    # delta, -0.025), so the order measured overall stands; "branch" keeps each its own.
    local = entry("local", "local", head_ms=(20.0, 40.0), accuracy=0.8, by_bin={"motion:0": 0.70})
    code = replace(SPLIT, accuracy_by_bin={"motion:0": 0.75})
    tracked = replace(
        SPLIT,
        config=replace(SPLIT.config, detection_interval=4),
        accuracy=0.6,
        accuracy_by_bin={"motion:0": 0.62},
    )
    still = Detections(
        np.array([[10, 10, 50, 50]], np.float32), np.ones(1, np.float32), np.ones(1, np.int64)
    )
    picked = {}
    for mode in ("interval", "branch"):
        sched = Scheduler(profile(local, code, tracked), 100.0, learn_margin=False, bin_deltas=mode)
        for i in range(3):
            d = sched.pick(i / 30)
            sched.observe(d, FrameOutcome(i, d.branch, "local", prediction=still))
        _, _, acc = sched.predict(0.2)
        by_key = {c.config.key: float(a) for c, a in zip(sched.candidates, acc, strict=True)}
        picked[mode] = by_key
    interval, branch = picked["interval"], picked["branch"]
    assert interval["local/0b/w1/native/k1"] == pytest.approx(0.775)
    assert interval["split@a/8b/w1/native/k1"] == pytest.approx(0.675)
    # Alone in its interval, the tracked entry keeps its own delta (+0.02).
    assert interval["split@a/8b/w1/native/k4"] == pytest.approx(0.62)
    assert branch["local/0b/w1/native/k1"] == pytest.approx(0.70)
    assert branch["split@a/8b/w1/native/k1"] == pytest.approx(0.75)
    sched = Scheduler(profile(local, code, tracked), 100.0, learn_margin=False)
    for i in range(3):
        d = sched.pick(i / 30)
        sched.observe(d, FrameOutcome(i, d.branch, "local", prediction=still))
    assert sched.pick(0.2).branch == "local"


def test_an_unknown_bin_deltas_mode_is_refused() -> None:
    with pytest.raises(SchedulerError, match="bin_deltas must be one of interval, branch"):
        Scheduler(profile(LOCAL, SPLIT), 100.0, bin_deltas="per-branch")


# ------------------------------------------------------------------ stability


def test_hysteresis_prevents_flapping_on_a_noisy_stationary_device() -> None:
    # Local (more accurate) hovers right at the SLA: its noisy heads move the sensed
    # contention, so its predicted latency keeps crossing the budget both ways.
    local = entry("local", "local", head_ms=(50.0, 100.0), accuracy=0.8)
    p = profile(local, SPLIT)
    env = Env(head_noise=0.1)
    calm = Scheduler(p, 60.0, learn_margin=False, margin=1.0)
    jumpy = Scheduler(
        p,
        60.0,
        learn_margin=False,
        margin=1.0,
        hysteresis_gain=0.0,
        hysteresis_band=0.0,
        min_period_frames=1,
    )
    run(calm, env, 400, seed=5)
    run(jumpy, env, 400, seed=5)
    assert jumpy.switches >= 15, "the scenario must be one that flaps without hysteresis"
    assert calm.switches <= jumpy.switches / 4


def test_switch_cost_prevents_switching_for_a_negligible_gain() -> None:
    a = entry("split@a", "split", size_bytes=12_500, accuracy=0.70, group="m")
    # +0.05 clears the 0.01 hysteresis but not a 300 ms model load (0.15 at 0.5/s).
    other_model = entry("split@b", "split", size_bytes=15_000, accuracy=0.75, group="other")
    for candidate, expected in (
        (other_model, "split@a"),
        (replace(other_model, load_group="m"), "split@b"),  # same weights: a free switch
        (replace(other_model, accuracy=0.95), "split@b"),  # a gain that pays for the load
    ):
        sched = warmed(profile(a, candidate, switch_ms=300.0), Env(), 50.0, learn_margin=False)
        assert sched.pick(3.0).branch == "split@a"  # b does not fit 50 ms yet
        sched.set_sla(200.0)
        assert sched.pick(3.1).branch == expected, candidate
    cheap = Scheduler(profile(a, other_model, switch_ms=300.0), 50.0, load_gain_per_ms=0.0)
    run(cheap, Env(), 40)
    cheap.set_sla(200.0)
    assert cheap.pick(3.1).branch == "split@b"  # the same gain switches when loads are free


def test_learned_margin_reduces_violations_on_a_noisy_environment() -> None:
    # Delay no estimator sees (exponential, mean 15 ms, in total_ms only): a fixed 1/1.3
    # margin keeps choosing the split and runs late; the learned one sees its predictions
    # fall short and moves to the fast, less accurate local branch.
    tiny = entry("local", "local", head_ms=(15.0, 30.0), accuracy=0.4)
    tiny = replace(tiny, config=replace(tiny.config, width=0.5))
    p = profile(LOCAL, tiny, SPLIT, OFFLOAD)
    results = {}
    for learn in (False, True):
        sched = Scheduler(p, 80.0, learn_margin=learn)
        run(sched, Env(bandwidth_mbps=8.0, rtt_ms=15.0, hidden_ms=15.0), 600, seed=11)
        results[learn] = (sched.violations, sched.margins)
    (fixed_v, fixed_m), (learned_v, learned_m) = results[False], results[True]
    assert fixed_m == {"local": pytest.approx(1 / 1.3), "remote": pytest.approx(1 / 1.3)}
    assert learned_m["remote"] < 0.7 and learned_m["local"] < 0.7
    assert fixed_v >= 30, "the scenario must violate the SLA under the fixed margin"
    assert learned_v <= 0.5 * fixed_v, results


def test_learned_margin_relaxes_when_predictions_are_pessimistic() -> None:
    # A smooth link and an exact profile: the summed per-term quantiles overstate the
    # latency, and the margin grows past ApproxDet's fixed 1/1.3.
    sched = Scheduler(profile(LOCAL, SPLIT, OFFLOAD), 150.0)
    run(sched, Env(bandwidth_mbps=8.0, rtt_ms=15.0), 300)
    assert sched.margins["remote"] > 1 / 1.3


def test_a_bandwidth_collapse_redecides_before_the_period_ends() -> None:
    env = Env(bandwidth_mbps=10.0)
    sched = warmed(profile(LOCAL, SPLIT), env, 100.0, min_period_frames=50)
    assert sched.pick(2.0).branch == "split@a"
    decisions_before = sched.decisions
    env.bandwidth_mbps = 0.5  # 12.5 kB now take 200 ms
    after = run(sched, env, 4, t0=2.1)
    assert after[0].branch == "split@a"  # the frame that met the collapse
    assert any(d.branch == "local" for d in after[1:3])
    assert sched.decisions > decisions_before


def test_sla_changes_from_another_thread_are_safe() -> None:
    sched = Scheduler(profile(LOCAL, SPLIT, OFFLOAD), 100.0)
    env, rng = Env(), np.random.default_rng(0)
    stop = threading.Event()

    def control() -> None:
        while not stop.is_set():
            for sla in (60.0, 400.0):
                sched.set_sla(sla)
                sched.set_weights(latency=0.0)

    thread = threading.Thread(target=control)
    thread.start()
    try:
        for i in range(300):
            d = sched.pick(i / 30)
            sched.observe(d, env.outcome(sched, d, rng))
    finally:
        stop.set()
        thread.join()
    # Which branches ran under which SLA depended on thread timing, and frames of one
    # payload size alone cannot split round trip from rate: one ping (as the client's
    # Status RPC gives) settles it, and the scheduler must then settle where a scheduler
    # that never saw the races would.
    sched.set_sla(400.0)
    sched.observe_rtt(env.rtt_ms)
    assert sched.sla_ms == 400.0 and sched.weights == (1.0, 0.0)
    after = run(sched, env, 30, t0=20.0)
    assert after[-1].branch == "offload-jpeg90"


# ------------------------------------------------------------------ bad input


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(SchedulerError, match="no accuracy for local"):
        Scheduler(profile(replace(LOCAL, accuracy=None), SPLIT), 100.0)
    with pytest.raises(SchedulerError, match="no profile entry is usable"):
        Scheduler(profile(LOCAL), 100.0, branches={"split@zz"})
    tracked = replace(SPLIT, config=replace(SPLIT.config, detection_interval=4))
    untracked = replace(profile(tracked), tracker_latency_ms={})  # no tracker on this device
    with pytest.raises(SchedulerError, match="no profile entry is usable"):
        Scheduler(untracked, 100.0)
    sched = Scheduler(profile(LOCAL, SPLIT), 100.0)
    with pytest.raises(SchedulerError, match="positive number of ms"):
        sched.set_sla(0)
    with pytest.raises(SchedulerError, match="not both 0"):
        sched.set_weights(accuracy=0.0, latency=0.0)
    with pytest.raises(SchedulerError, match="probe_interval_s must be > 0"):
        Scheduler(profile(LOCAL, SPLIT), 100.0, probe_interval_s=0.0)
    for share in (0.0, 1.5, float("nan")):
        with pytest.raises(SchedulerError, match="probe_share must be in"):
            Scheduler(profile(LOCAL, SPLIT), 100.0, probe_share=share)
    for rate in (0.0, 1.5, float("nan")):
        with pytest.raises(SchedulerError, match="bytes_rate must be in"):
            Scheduler(profile(LOCAL, SPLIT), 100.0, bytes_rate=rate)
    for sigmas in (-1.0, float("nan"), float("inf")):
        with pytest.raises(SchedulerError, match="jitter_sigmas must be a number >= 0"):
            Scheduler(profile(LOCAL, SPLIT), 100.0, jitter_sigmas=sigmas)
    with pytest.raises(SchedulerError, match="backlog must be >= 0 bytes"):
        sched.set_backlog(-1)
    foreign = replace(sched.pick(0.0), index=99)
    with pytest.raises(SchedulerError, match="not made by this scheduler"):
        sched.observe(foreign, FrameOutcome(0, "local", "local"))


@pytest.mark.parametrize(
    ("local_ms", "period_ms", "can_track", "plan"),
    [
        (300.0, 200.0, True, "track"),  # a Pi-class model at 5 frames/s: track instead
        (300.0, 200.0, False, "local"),  # nothing to track: the model, late or not
        (300.0, None, True, "local"),  # no camera period known: nothing to lose
        (150.0, 200.0, True, "local"),  # the model fits between two frames
    ],
)
def test_a_fallback_slower_than_the_camera_is_the_tracker_when_there_is_one(
    local_ms: float, period_ms: float | None, can_track: bool, plan: str
) -> None:
    from splitedge.mobile_client.adaptive import detection_budget

    local = entry("local", "local", head_ms=(local_ms, 2 * local_ms), accuracy=0.5)
    p = profile(local, replace(SPLIT, config=replace(SPLIT.config, detection_interval=4)))
    sched = Scheduler(p, 200.0, frame_period_ms=period_ms, learn_margin=False)
    group = sched._decision(1, "test", False)
    # A group planned late (over the SLA): its budget is up to 4 x the SLA, which leaves
    # room for the model after the edge's deadline.
    group = replace(group, predicted_latency_ms=500.0)
    deadline, chosen = detection_budget(sched, group, can_track=can_track)
    assert chosen == plan
    budget = 1.5 * 500.0
    if plan == "local":
        assert deadline == pytest.approx(budget - (1.25 * local_ms + 2.0))
    else:
        assert budget * 0.5 <= deadline < budget


def test_a_branch_not_sent_lately_is_predicted_from_its_siblings_server_time() -> None:
    # The demo's fast phase: the one full JPEG frame sent at the start met a cold server
    # (80 ms), and a slow first ping left the round trip uncertain, so the device went to
    # a lighter JPEG. Every JPEG quality runs the one model at the server: the lighter
    # JPEG's frames (39 ms) tell the full JPEG's server time too. From one old sample with
    # a first sample's spread, the full JPEG never looked comfortable again: a whole phase
    # of a 40 Mbit/s link on the lighter JPEG.
    jpeg50 = jpeg(50, 7300, 0.43, head_ms=(1.0, 2.0), tail_ms=0.0)
    jpeg90 = jpeg(90, 28_000, 0.46, head_ms=(1.0, 2.0), tail_ms=0.0)
    slow_local = entry("local", "local", head_ms=(240.0, 480.0), accuracy=0.46)
    sched = Scheduler(profile(slow_local, jpeg50, jpeg90), 150.0, frame_period_ms=200.0)
    sched.observe_rtt(40.0)  # a first ping slowed by the device's start-up
    first = sched.pick(0.0)
    assert first.branch == "offload-jpeg90"
    cold = Env(bandwidth_mbps=40.0, rtt_ms=22.0, server_ms=80.0)
    sched.observe(first, cold.outcome(sched, first, np.random.default_rng(0)))
    fast = Env(bandwidth_mbps=40.0, rtt_ms=22.0, server_ms=39.0)
    after = [d.branch for d in run(sched, fast, 40, fps=5.0, t0=0.2)]
    assert after[0] == "offload-jpeg50"  # the cold frame's doing
    assert after[20:] == ["offload-jpeg90"] * 20, after  # back within 4 s, and stays
    # The pooled server time is the lighter JPEG's frames', for both qualities.
    mean50, _ = sched.server.mean_std_ms("offload-jpeg50", 10.0)
    assert sched.server.mean_std_ms("offload-jpeg90", 10.0)[0] == mean50
    assert mean50 == pytest.approx(39.0, abs=3.0)


def test_probes_skip_the_device_model_while_it_is_busy() -> None:
    # The device stays local on a dead slow link; the cheapest probe is a split head's
    # 1.2 kB code. While a detection runs in the background the session tracks any frame
    # that needs the device's model, so such a probe would never leave the device (the
    # demo lost a second of recovery so): the probe goes as the JPEG then.
    small_split = entry("split@tiny", "split", head_ms=(10.0, 20.0), size_bytes=1200, accuracy=0.6)
    jpeg20 = entry("offload-jpeg20", "offload", head_ms=(2.0, 4.0), size_bytes=3000, accuracy=0.6)
    sched = Scheduler(profile(LOCAL, small_split, jpeg20), 300.0, probe_interval_s=1.0)
    slow = Env(bandwidth_mbps=0.05, rtt_ms=20.0)
    run(sched, slow, 20, fps=5.0)
    assert sched.current is not None and sched.current.config.branch == "local"

    def probe_after(now: float, busy: bool) -> Decision:
        sched.set_device_busy(busy)
        for i in range(40):
            d = sched.pick(now + i * 0.2)
            probe = d.probe or (d if d.reason == "probe" else None)
            if probe is not None:
                return probe
            sched.observe(d, slow.outcome(sched, d, np.random.default_rng(i)))
        raise AssertionError("no probe in 8 s")

    assert probe_after(10.0, busy=False).branch == "split@tiny"
    assert probe_after(30.0, busy=True).branch == "offload-jpeg20"


def slow_device_profile(*remote: BranchProfile) -> Profile:
    """A Pi-class device (its model 240 ms, a 5 frames/s camera's period is 200 ms), its
    model every frame or every 4th, and ``remote`` entries (default: a small JPEG)."""
    fresh = entry("local", "local", head_ms=(240.0, 480.0), accuracy=0.46)
    every4 = entry("local", "local", head_ms=(240.0, 480.0), accuracy=0.40, interval=4)
    return profile(fresh, every4, *(remote or (jpeg(20, 3000, 0.41),)))


@pytest.mark.parametrize("background", [False, True])
def test_a_slow_devices_own_detections_behind_the_tracker_are_planned_as_such(
    background: bool,
) -> None:
    from splitedge.mobile_client.adaptive import background_wait_ms

    # The session runs such a model in the background: it does not wait 240 ms for it,
    # the tracker answers every frame at once on the newest boxes, which are 2 frames old
    # when they come (the detection spans 2 periods). Planned as one frame at a time
    # instead, detecting every frame cannot fit the SLA and every 4th misses a frame.
    sched = Scheduler(slow_device_profile(), 200.0, frame_period_ms=200.0, learn_margin=False)
    sched.background_local = background
    run(sched, Env(bandwidth_mbps=0.01, rtt_ms=40.0), 6, fps=5.0)
    sched.pick(2.0)
    every = {c.config.detection_interval: i for i, c in enumerate(sched.candidates) if not c.remote}
    current = sched.current
    assert current is not None and current.kind == "local"
    loss = (0.46 - 0.40) / 1.5  # per frame of age: interval 4 is the mean of ages 0..3
    if background:
        # Every frame: ages 2 and 3 (a detection every 2 frames), 2.5 frames of loss.
        assert current.config.detection_interval == 1
        assert sched._pred_acc[every[1]] == pytest.approx(0.46 - 2.5 * loss)
        # Every 4th frame: ages 2..5, 2 frames more than the profile's 0..3.
        assert sched._pred_acc[every[4]] == pytest.approx(0.40 - 2 * loss)
    else:
        assert current.config.detection_interval == 4
        assert sched._pred_acc[every[4]] == pytest.approx(0.40 * 4 / 5)  # 1 in 5 missed
    # The session's side of the same rule: no wait for a detection planned past it.
    d = sched._decision(every[1], "test", False)
    assert d.predicted_latency_ms > sched.background_wait_ms()
    assert background_wait_ms(sched, d, kind="local", can_track=True) == 0.0


def test_a_detection_that_fits_the_wait_is_waited_for() -> None:
    from splitedge.mobile_client.adaptive import background_wait_ms

    fast = entry("local", "local", head_ms=(50.0, 100.0), accuracy=0.46)
    every4 = entry("local", "local", head_ms=(50.0, 100.0), accuracy=0.40, interval=4)
    sched = Scheduler(profile(fast, every4), 200.0, frame_period_ms=200.0, learn_margin=False)
    sched.background_local = True
    d = sched.pick(0.0)
    assert (d.branch, d.interval) == ("local", 1) and d.predicted_accuracy == pytest.approx(0.46)
    wait = background_wait_ms(sched, d, kind="local", can_track=True)
    assert wait == sched.background_wait_ms() == pytest.approx(200.0 - (1.25 * 2.0 + 2.0))
    assert background_wait_ms(sched, d, kind="local", can_track=False) is None


def test_probes_go_beside_detections_behind_the_tracker_and_leave_the_model_alone() -> None:
    # Behind the tracker, the device's model runs one detection after another: a probe
    # in a frame's place would cost that frame its answer, and a split head's probe would
    # wait for the model. It goes beside the frame, as the JPEG.
    small_split = entry("split@tiny", "split", head_ms=(10.0, 20.0), size_bytes=1200, accuracy=0.3)
    sched = Scheduler(
        slow_device_profile(small_split, jpeg(20, 3000, 0.41)), 200.0, frame_period_ms=200.0,
        learn_margin=False, probe_interval_s=1.0,
    )  # fmt: skip
    sched.background_local = True
    slow = Env(bandwidth_mbps=0.01, rtt_ms=40.0)
    probes = []
    for d in run(sched, slow, 40, fps=5.0):
        assert d.reason != "probe"  # never in a frame's place
        if d.probe is not None:
            assert (d.branch, d.interval) == ("local", 1)
            probes.append(d.probe.branch)
    assert probes and set(probes) == {"offload-jpeg20"}


def test_late_answers_queued_one_behind_another_read_the_links_rate() -> None:
    # A fade: two 28 kB frames sent 0.2 s apart onto a 0.1 Mbit/s link, both past their
    # deadlines. The second's bytes waited for the first's (2.24 s) before crossing: that
    # wait is not its transfer. Counted in, the pair read as ~0.07 Mbit/s, and probes
    # spaced by that estimate kept a recovered link unseen for seconds.
    now = [0.0]
    sched = Scheduler(
        profile(LOCAL, SPLIT, OFFLOAD), 200.0, learn_margin=False, clock=lambda: now[0]
    )
    sched.observe_rtt(20.0)
    size = 28_000
    transfer_s = size * 8 / (0.1 * 1e6)
    sent = [1.0, 1.2]
    arrived = [sent[0] + transfer_s + 0.020]  # its bytes, then the round trip
    arrived.append(arrived[0] + transfer_s)  # the second's bytes crossed after the first's
    for s, a in zip(sent, arrived, strict=True):
        now[0] = a
        sched.observe_late_answer(size, (a - s) * 1000.0)
    assert sched.bandwidth.harmonic_mbps == pytest.approx(0.1, rel=0.05)
    # A late answer sent after the link was free again is not shortened.
    now[0] = arrived[1] + 5.0
    sched.observe_late_answer(size, (transfer_s + 0.020) * 1000.0)
    assert sched.bandwidth.harmonic_mbps == pytest.approx(0.1, rel=0.05)


def test_fresh_pick_is_what_a_start_without_hysteresis_picks_and_changes_nothing() -> None:
    # A scheduler that started on the mid JPEG before it had measured the fast link keeps
    # it by hysteresis (the big one fits, not with room to spare). A fresh start with what
    # it has learned picks the big one; told the link is 5 Mbit/s, the mid one.
    mid = entry("offload-jpeg50", "offload", head_ms=(2.0, 4.0), size_bytes=30_000, accuracy=0.7)
    big = replace(OFFLOAD, bytes_per_frame=Quantiles(330_000, 330_000, 330_000))  # 66 ms at 40
    sched = Scheduler(
        profile(LOCAL, mid, big), 100.0, learn_margin=False, margin=1.0, hysteresis_band=0.2
    )
    sched.observe_rtt(20.0)
    run(sched, Env(bandwidth_mbps=40.0), 60)
    held = sched.current
    assert held is not None and held.config.branch == "offload-jpeg50"
    decisions, estimate = sched.decisions, sched.bandwidth.estimate_mbps
    key, accuracy = sched.fresh_pick()
    assert key == big.config.key
    assert accuracy[key] > accuracy[held.key]
    assert sched.fresh_pick(bandwidth_mbps=5.0)[0] == mid.config.key
    assert sched.current is held and sched.decisions == decisions
    assert sched.bandwidth.estimate_mbps == estimate
    with pytest.raises(SchedulerError, match="bandwidth must be > 0 Mbps, got 0"):
        sched.fresh_pick(bandwidth_mbps=0.0)


def test_the_wait_before_the_tracker_keeps_room_for_its_slowest_recent_run() -> None:
    from splitedge.mobile_client.adaptive import detection_budget

    # A Pi-class device's own model (240 ms): past the SLA, the tracker is the fallback.
    own = entry("local", "local", head_ms=(240.0, 260.0), accuracy=0.46)
    every4 = entry("local", "local", head_ms=(240.0, 260.0), accuracy=0.40, interval=4)
    remote4 = replace(OFFLOAD, config=replace(OFFLOAD.config, detection_interval=4))
    sched = Scheduler(
        profile(own, every4, remote4), 200.0, frame_period_ms=200.0, learn_margin=False
    )
    sched.background_local = True
    assert sched.background_wait_ms() == pytest.approx(200.0 - (1.25 * 2.0 + 2.0))
    # Timed before the first frame at 8 ms (profiled: 2): the first run replaces the
    # prior, and the reserve is 1.5x the slowest recent run.
    sched.observe_tracker_ms(8.0)
    assert sched.fallback_ms()[1] == pytest.approx(8.0)
    assert sched.tracker_reserve_ms() == pytest.approx(12.0)
    assert sched.background_wait_ms() == pytest.approx(200.0 - (12.0 + 2.0))
    # A later run moves the mean a step; the reserve keeps the slowest.
    sched.observe_tracker_ms(4.0)
    assert sched.fallback_ms()[1] == pytest.approx(8.0 + 0.2 * (4.0 - 8.0))
    assert sched.tracker_reserve_ms() == pytest.approx(12.0)
    # The edge's deadline for a frame the tracker would answer leaves the same room.
    d = sched._decision(sched.candidates.index(remote4), "test", False)
    deadline, plan = detection_budget(sched, d, can_track=True)
    assert plan == "track" and deadline == pytest.approx(200.0 - (12.0 + 2.0))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(SchedulerError, match="tracker time must be a positive number"):
            sched.observe_tracker_ms(bad)


def _cut_scheduler(cut: bool, pings: tuple[float, ...], device_ms: float = 240.0) -> Scheduler:
    """A Pi-class device (its model past half the SLA: the tracker answers a missed
    deadline), a 28 kB JPEG every frame or every 4th and a small one, on a 4 Mbit/s link
    whose round trips alternate over ``pings``."""
    own = entry("local", "local", head_ms=(device_ms, 2 * device_ms), accuracy=0.46)
    every4 = entry("local", "local", head_ms=(device_ms, 2 * device_ms), accuracy=0.40, interval=4)
    big = jpeg(90, 28_000, 0.60)
    big4 = replace(big, config=replace(big.config, detection_interval=4), accuracy=0.54)
    sched = Scheduler(
        profile(own, every4, big, big4, jpeg(20, 3000, 0.41)), 200.0, frame_period_ms=200.0
    )
    sched.background_local = True
    sched.cut_to_tracker = cut
    for i in range(16):
        sched.observe_rtt(pings[i % len(pings)])
    for _ in range(5):
        sched.bandwidth.add(4.0)
    return sched


def test_a_detection_that_may_miss_its_deadline_is_planned_by_its_chance_of_beating_it() -> None:
    from statistics import NormalDist

    from splitedge.mobile_client.adaptive import detection_budget

    # The 28 kB JPEG every frame: ~162 ms on average, but its 95 % quantile (207 ms) is
    # past SLA x margin. Planned frame by frame, it is out. When a missed deadline is
    # answered by the tracker on time (the session's cut_to_tracker), it answers every
    # frame in time, and it is worth its expected accuracy: its own when it beats the
    # deadline, the tracker's older boxes when cut.
    every = "offload-jpeg90/0b/w1/native/k1"
    assert _cut_scheduler(False, (80.0, 120.0)).fresh_pick()[0] != every
    sched = _cut_scheduler(True, (80.0, 120.0))
    key, acc = sched.fresh_pick()
    assert key == every
    i = [c.key for c in sched.candidates].index(every)
    mean, sd, _ = sched._predict(0.0, None)
    deadline, plan = detection_budget(sched, sched._decision(i, "test", False), can_track=True)
    assert plan == "track" and deadline == pytest.approx(sched._cut_deadline_ms())
    p = NormalDist(mean[i], sd[i]).cdf(deadline)
    assert 0.8 <= p < 0.95
    loss = (0.60 - 0.54) / 1.5  # per frame of age; cut, the boxes are ~1 / p frames old
    assert acc[every] == pytest.approx(p * 0.60 + (1 - p) * (0.60 - loss / p))
    d = sched.pick(0.0)
    assert d.key == every and d.predicted_latency_ms > sched._cut_deadline_ms()
    # A spread that leaves it under an 80 % chance: not planned so.
    assert _cut_scheduler(True, (60.0, 140.0)).fresh_pick()[0] != every
    # A device whose own model answers a miss (at most half the SLA): not planned so.
    assert _cut_scheduler(True, (80.0, 120.0), device_ms=60.0).fresh_pick()[0] != every
    with pytest.raises(SchedulerError, match="cut_min_on_time"):
        Scheduler(profile(LOCAL, OFFLOAD), 200.0, cut_min_on_time=0.0)


def test_a_frame_cut_at_its_deadline_teaches_the_margin_only_that_it_ran_over() -> None:
    # Cut at its deadline, a frame ran at least that long: its latency is censored. One
    # planned with a chance of a cut (predicted past the deadline) would otherwise read as
    # on time and loosen the margin; one cut far past its prediction still tightens it.
    def margin_after(predicted: float, total: float, reason: str) -> float:
        sched = Scheduler(profile(LOCAL, OFFLOAD), 200.0)
        d = replace(sched.pick(0.0), predicted_latency_ms=predicted)
        d = replace(d, index=sched.candidates.index(OFFLOAD), track=False)
        t = FrameTiming(head_ms=2.0, local_ms=3.0, total_ms=total)
        sched.observe(d, FrameOutcome(d.frame_index, d.branch, "local", reason, None, t, 1000))
        return sched.margins["remote"]

    late = StatusCode.DEADLINE_EXCEEDED.reason
    prior = Scheduler(profile(LOCAL, OFFLOAD), 200.0).margins["remote"]
    assert margin_after(210.0, 196.0, late) == prior  # censored: nothing learned
    assert margin_after(210.0, 196.0, "") > prior  # answered at that time: on time
    assert margin_after(100.0, 196.0, late) < prior  # far past its prediction


def test_a_miss_just_after_the_link_measured_fast_waits_for_its_answer() -> None:
    # The link came back after a fade and two fast answers moved the estimator to the
    # faster regime. The next JPEG misses its deadline: the busy edge took 146 ms, not
    # the link. Read as the link's (7 kB not across in 140 ms: under 0.4 Mbit/s) it would
    # pull the new estimate down and keep full frames off the link; the answer, a few
    # ms later, says the bytes crossed at once. Once the new regime has settled, the
    # same miss is again what a fade's onset looks like, and lowers the estimate.
    small = entry("offload-jpeg50", "offload", head_ms=(2.0, 4.0), size_bytes=7400, accuracy=0.7)
    sched = Scheduler(profile(LOCAL, small, OFFLOAD), 150.0, frame_period_ms=200.0)
    sched.observe_rtt(20.0)
    run(sched, Env(bandwidth_mbps=0.1), 50, fps=5.0)
    assert sched.bandwidth.harmonic_mbps < 1.0
    env, rng, t = Env(bandwidth_mbps=40.0), np.random.default_rng(1), 10.0
    resets = sched.bandwidth.resets

    def frame() -> None:
        nonlocal t
        d = sched.pick(t)
        sched.observe(d, env.outcome(sched, d, rng))
        if d.probe is not None:
            sched.observe_probe(d.probe, env.outcome(sched, d.probe, rng))
        t += 0.2

    while sched.bandwidth.resets == resets and t < 20.0:
        frame()
    assert sched.bandwidth.resets > resets and sched._settling

    def miss() -> None:
        d = sched._decision(sched.candidates.index(small), "test", False)
        sched.observe(d, FrameOutcome(
            d.frame_index, d.branch, "local", reason="deadline", payload_bytes=7400,
            timing=FrameTiming(head_ms=2.0, total_ms=142.0),
        ))  # fmt: skip

    before = sched.bandwidth.harmonic_mbps
    assert before > 10.0
    miss()
    assert sched.bandwidth.harmonic_mbps == before
    sched.observe_late_answer(7400, 21.5)  # the round trip alone: the bytes took ~1 ms
    assert sched.bandwidth.harmonic_mbps >= before
    while sched._settling and t < 40.0:
        frame()
    assert not sched._settling
    before = sched.bandwidth.harmonic_mbps
    miss()
    assert sched.bandwidth.harmonic_mbps < before
