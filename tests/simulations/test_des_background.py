"""The DES runs the adaptive session's background detection as the real session does: a
device slower than its camera answers every frame (the tracker) while it detects."""

from __future__ import annotations

from splitedge.mobile_client.profile import BranchConfig, BranchProfile, Profile, Quantiles
from splitedge.simulations.des import DesConfig, policy_factory, simulate
from splitedge.simulations.des_adaptive import sim_profile
from splitedge.simulations.policies import scheduler_candidates
from splitedge.simulations.scenario import PolicyConfig
from splitedge.simulations.traces import constant


def _slow_device(tracker: bool) -> Profile:
    local = BranchProfile(
        config=BranchConfig("local", 0, 1.0, 0, 1),
        kind="local",
        load_group="m",
        head_latency_ms={0: Quantiles(500.0, 500.0, 520.0)},  # a Pi-class detector
        bytes_per_frame=Quantiles(0, 0, 0),
        accuracy=0.6,
    )
    return Profile("m", "pi", (0,), [local], tracker_latency_ms={0: 3.0} if tracker else {})


def _run(tracker: bool, keep: list | None = None, **des_options):  # type: ignore[no-untyped-def]
    profile = _slow_device(tracker)
    costs = sim_profile(profile, scheduler_candidates(profile))
    link = constant(10.0, 30.0)
    des = DesConfig(
        clients=1, duration_s=20.0, fps=5.0, sla_ms=200.0, deadline_ms=200.0,
        uplink=link, downlink=link, tracker_ms=3.0 if tracker else 0.0, **des_options,
    )  # fmt: skip
    config = PolicyConfig("adaptive", "adaptive", scheduler_profile=profile)
    build = policy_factory(config, [], des, costs)

    def made(client, clock):  # type: ignore[no-untyped-def]
        policy = build(client, clock)
        if keep is not None:
            keep.append(policy)
        return policy

    return simulate(des, costs, made, name="adaptive")


def test_a_device_slower_than_its_camera_tracks_every_frame_while_it_detects():
    rows = _run(tracker=True).rows
    assert len(rows) == 100
    # The first detection is waited for (nothing to track yet) and costs the frames
    # captured meanwhile; from then on every frame is answered in time by the tracker
    # while the 500 ms detections go on in the background.
    busy = [r for r in rows if r.source == "dropped"]
    assert all(r.reason == "busy" and r.t_s < 0.6 for r in busy)
    later = [r for r in rows if r.t_s >= 0.6]
    assert all(r.source == "local" and r.sla_met for r in later)
    assert all(r.candidate.endswith("+track") for r in later)
    assert sum(not r.sla_met for r in rows) <= 1 + len(busy)


def test_tracked_frames_take_the_measured_trackers_time_beside_the_devices_model():
    # With jitter, a tracked frame's device time is a draw from the measured tracker's
    # samples: those taken beside the device's own model while its detection runs. Here
    # the 500 ms detections run back to back, so every frame after the first is tracked
    # beside one; the scheduler learns that time and keeps room for it.
    policies: list = []
    rows = _run(
        True, policies, jitter=True, tracker_ms_samples=(2.0,), tracker_busy_ms_samples=(11.0,)
    ).rows
    later = [r for r in rows if r.t_s >= 0.6]
    assert later and {r.local_ms for r in later} == {11.0}
    assert all(r.sla_met for r in later)
    assert policies[0].scheduler.tracker_reserve_ms() == 1.5 * 11.0
    # Without samples taken beside the model, the ones taken alone; without jitter, the
    # configured time.
    rows = _run(True, jitter=True, tracker_ms_samples=(2.0,)).rows
    assert {r.local_ms for r in rows if r.t_s >= 0.6} == {2.0}
    # Before its first frame a session has timed its tracker beside the model, as the real
    # one does (AdaptiveSession.time_tracker).
    profile = _slow_device(True)
    costs = sim_profile(profile, scheduler_candidates(profile))
    des = DesConfig(
        clients=1, duration_s=1.0, fps=5.0, sla_ms=200.0, deadline_ms=200.0,
        uplink=constant(10.0, 30.0), downlink=constant(10.0, 30.0), tracker_ms=3.0,
        jitter=True, tracker_ms_samples=(2.0,), tracker_busy_ms_samples=(11.0,),
    )  # fmt: skip
    config = PolicyConfig("adaptive", "adaptive", scheduler_profile=profile)
    fresh = policy_factory(config, [], des, costs)(0, lambda: 0.0)
    assert fresh.scheduler.tracker_reserve_ms() == 1.5 * 11.0
    rows = _run(True, tracker_ms_samples=(2.0,), tracker_busy_ms_samples=(11.0,)).rows
    assert {r.local_ms for r in rows if r.t_s >= 0.6} == {3.0}


def test_without_a_tracker_the_slow_device_loses_the_frames_it_detects_through():
    rows = _run(tracker=False).rows
    busy = [r for r in rows if r.reason == "busy"]
    # Each 500 ms detection costs the frames captured while it runs (one or two).
    assert len(busy) > len(rows) - len(busy)
    assert not any(r.candidate.endswith("+track") for r in rows)


def test_tracked_frames_carry_the_age_of_the_boxes_from_the_background_detection():
    # 500 ms detections at 5 frames/s, one after the other: a detection started at frame
    # j (answered by the tracker) ends after frame j+2 was captured, so frames j..j+2
    # carry the boxes of frame j-3: 3, 4 and 5 frames old, never fresh ones.
    rows = _run(tracker=True).rows
    later = [r for r in rows if r.t_s >= 0.6]
    assert {r.track_age for r in later} == {3, 4, 5}
    detected = [r for r in rows if r.source == "local" and not r.candidate.endswith("+track")]
    assert detected and all(r.track_age == 0 for r in detected)
    assert all(r.track_age == -1 for r in rows if r.source == "dropped")


def test_the_sessions_status_rpc_crosses_the_links_and_times_the_round_trip():
    # The adaptive session asks the edge's Status about once a second; on an idle link its
    # round trip goes to the scheduler. The DES carries it over the client's links: on a
    # 10 Mbps link with a 20 ms one-way delay it takes ~40 ms, and one sent as the uplink
    # falls to 2 kbit/s waits for the link (its 150 bytes take ~0.6 s), as the real one
    # queues behind a trace's delivery gap.
    from splitedge.simulations.traces import step

    profile = _slow_device(tracker=True)
    costs = sim_profile(profile, scheduler_candidates(profile))
    up = step([(0.0, 10.0), (4.9, 0.002), (7.0, 10.0)], 10.0)
    des = DesConfig(
        clients=1, duration_s=10.0, fps=5.0, sla_ms=200.0, deadline_ms=200.0,
        uplink=up, downlink=constant(10.0, 10.0), delay_ms=20.0, tracker_ms=3.0,
    )  # fmt: skip
    config = PolicyConfig("adaptive", "adaptive", scheduler_profile=profile)
    build = policy_factory(config, [], des, costs)
    made = []

    def keep(client, clock):  # type: ignore[no-untyped-def]
        made.append(build(client, clock))
        return made[-1]

    simulate(des, costs, keep, name="adaptive")
    pings = made[0].scheduler._pings
    assert len(pings) >= 7  # about one a second over 10 s, none while one is out
    assert min(pings) >= 40.0 and sorted(pings)[len(pings) // 2] < 60.0
    assert max(pings) > 500.0  # the one that met the slow uplink
