"""The scheduler's online estimators: convergence, reaction, and bad samples."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.mobile_client.estimators import (
    BandwidthEstimator,
    ContentFeatures,
    ContentionEstimator,
    EstimatorError,
    RttEstimator,
    ServerLoadEstimator,
    z_score,
)


def test_bandwidth_converges_to_a_steady_link() -> None:
    bw = BandwidthEstimator()
    rng = np.random.default_rng(0)
    for _ in range(30):
        bw.add(20.0 * rng.uniform(0.97, 1.03))
    assert bw.harmonic_mbps == pytest.approx(20.0, rel=0.03)
    # Small steady errors leave only a small discount.
    assert 18.0 < bw.estimate_mbps <= bw.harmonic_mbps


def test_bandwidth_step_down_is_detected_within_a_few_samples() -> None:
    bw = BandwidthEstimator()
    for _ in range(10):
        bw.add(20.0)
    seen = []
    for _ in range(3):
        bw.add(2.0)
        seen.append(bw.estimate_mbps)
    assert seen[1] < 5.0, f"estimates after the step: {seen}"  # within two samples


def test_a_faster_regime_replaces_the_window_after_two_samples() -> None:
    bw = BandwidthEstimator()
    for _ in range(5):
        bw.add(0.1)  # a deep fade
    bw.add(20.0)  # one fast transfer could be luck: the harmonic mean hardly moves
    assert bw.harmonic_mbps < 0.2 and bw.resets == 0
    bw.add(0.1)  # and it was: the run of fast samples is broken
    bw.add(20.0)
    assert bw.harmonic_mbps < 0.2 and bw.resets == 0
    bw.add(25.0)  # two in a row: the link is back, the fade's samples go
    assert bw.resets == 1
    assert bw.harmonic_mbps == pytest.approx(2 / (1 / 20 + 1 / 25))
    assert bw.estimate_mbps == bw.harmonic_mbps  # no error discount from the old regime
    with pytest.raises(EstimatorError, match="jump_ratio"):
        BandwidthEstimator(jump_ratio=1.0)


def test_error_discount_shrinks_the_estimate_after_a_misprediction() -> None:
    bw = BandwidthEstimator()
    for _ in range(5):
        bw.add(10.0)
    assert bw.estimate_mbps == pytest.approx(10.0)
    bw.add(40.0)  # a surprise in either direction
    assert bw.max_error > 0.5
    assert bw.estimate_mbps < bw.harmonic_mbps / 1.5
    for _ in range(10):  # predicted well again: the discount fades
        bw.add(10.0)
    assert bw.max_error < 0.01
    assert bw.estimate_mbps == pytest.approx(10.0, rel=0.01)


def test_bandwidth_transfer_prediction_and_bad_samples() -> None:
    bw = BandwidthEstimator()
    assert bw.transfer_ms(1000) == float("inf")  # no sample, no prior
    bw.add_transfer(125_000, 100.0)  # 1 Mbit in 100 ms = 10 Mbps
    assert bw.harmonic_mbps == pytest.approx(10.0)
    assert bw.transfer_ms(125_000) == pytest.approx(100.0)
    with pytest.raises(EstimatorError, match="positive"):
        bw.add(0.0)
    with pytest.raises(EstimatorError, match="bytes > 0"):
        bw.add_transfer(100, 0.0)


def test_rtt_mean_variance_and_quantile() -> None:
    rtt = RttEstimator()
    rng = np.random.default_rng(1)
    samples = rng.normal(40.0, 5.0, 400)
    for s in samples:
        rtt.add(float(s))
    assert rtt.mean_ms == pytest.approx(40.0, abs=3.0)
    assert rtt.std_ms == pytest.approx(5.0, rel=0.35)
    q95 = rtt.quantile_ms(0.95)
    assert np.mean(samples[-100:] <= q95) >= 0.85
    assert rtt.min_ms == pytest.approx(min(samples[-64:]))
    with pytest.raises(EstimatorError, match=">= 0"):
        rtt.add(-1.0)
    with pytest.raises(EstimatorError, match="quantile"):
        z_score(1.0)


def test_after_a_restart_the_known_floor_bounds_the_first_samples_spread() -> None:
    # A fresh path: RFC 6298's first deviation, half the round trip. After a fade on a
    # known path, the first sample is as uncertain as its distance from the path's floor.
    fresh = RttEstimator()
    fresh.add(21.0)
    assert fresh.dev_ms == pytest.approx(10.5)
    rtt = RttEstimator()
    for s in (20.0, 21.0, 20.5, 22.0):
        rtt.add(s)
    for s in (400.0, 900.0, 1500.0):  # queued behind a fade's backlog
        rtt.add(s)
    rtt.restart()
    assert rtt.mean_ms == pytest.approx(20.0)  # the floor until a sample comes,
    assert rtt.dev_ms == pytest.approx(2.0)  # with a known path's spread, not RFC 6298's 10
    rtt.add(21.0)
    assert rtt.mean_ms == pytest.approx(21.0)
    assert rtt.dev_ms == pytest.approx(2.1)  # 10 % of the sample: more than 1 ms from the floor
    rtt.restart()
    rtt.add(35.0)  # well above the floor: that distance is the spread
    assert rtt.dev_ms == pytest.approx(15.0)
    rtt.add(21.0)  # and from then on the usual EWMA
    assert rtt.samples == 2 and rtt.mean_ms == pytest.approx(35.0 - 14.0 / 8)


def test_contention_is_sensed_from_slowed_heads() -> None:
    levels = (0, 1, 2)
    head_a = {0: 10.0, 1: 20.0, 2: 40.0}
    head_b = {0: 4.0, 1: 6.0, 2: 10.0}
    est = ContentionEstimator(levels)
    for _ in range(5):
        est.observe(head_a, 10.5)
    assert est.level < 0.2
    assert est.head_ms(head_b) == pytest.approx(4.0, abs=0.2)
    for _ in range(10):  # another app starts: branch A's head now takes 30 ms
        est.observe(head_a, 30.0)
    assert est.level == pytest.approx(1.5, abs=0.1)
    # Black-box transfer: branch B's head is predicted at the same fractional level.
    assert est.head_ms(head_b) == pytest.approx(8.0, abs=0.5)
    arr = est.head_ms_array(np.array([[10.0, 20.0, 40.0], [4.0, 6.0, 10.0]]))
    assert arr == pytest.approx([est.head_ms(head_a), est.head_ms(head_b)])


def test_contention_beyond_the_profile_extrapolates() -> None:
    est = ContentionEstimator((0, 1))
    head = {0: 10.0, 1: 20.0}
    for _ in range(10):
        est.observe(head, 40.0)
    assert est.level > 2.5
    assert est.head_ms(head) == pytest.approx(40.0, rel=0.1)
    # Noisy heads widen the quantile factor.
    rng = np.random.default_rng(2)
    for v in rng.uniform(30, 50, 30):
        est.observe(head, float(v))
    assert est.quantile_factor(0.95) > 1.1


def test_a_profile_without_a_measured_slowdown_still_extrapolates() -> None:
    # Level 1 measured no slower than level 0 (noise): a 6x slower device must still
    # read as far busier, and the array form must predict what the scalar form does.
    est = ContentionEstimator((0, 1))
    flat = {0: 30.0, 1: 30.0}
    for _ in range(10):
        est.observe(flat, 180.0)
    assert est.level > 3.0
    assert est.head_ms(flat) == pytest.approx(180.0, rel=0.1)
    other = {0: 5.0, 1: 5.0}
    arr = est.head_ms_array(np.array([[30.0, 30.0], [5.0, 5.0]]))
    assert arr == pytest.approx([est.head_ms(flat), est.head_ms(other)])
    assert arr[1] == pytest.approx(30.0, rel=0.1)  # the same slowdown, another branch


def test_server_load_learns_spread_and_takes_fresh_reports() -> None:
    srv = ServerLoadEstimator(report_ttl_s=5.0)
    assert srv.server_ms("split@x", now_s=0.0, default_ms=7.0) == 7.0  # unseen: the profile
    rng = np.random.default_rng(4)
    for v in rng.exponential(10.0, 300):  # batching jitter behind other devices
        srv.observe_frame("split@x", queue_ms=float(v), service_ms=10.0)
    mean = srv.server_ms("split@x", now_s=0.0)
    q95 = srv.server_ms("split@x", now_s=0.0, z=1.645)
    assert 14.0 < mean < 26.0
    assert q95 > mean + 8.0  # the spread counts, not only the mean
    assert 5.0 < srv.queue_ms("split@x", now_s=0.0) < 16.0
    srv.report("split@x", now_s=0.0, queue_ms=80.0, tail_p50_ms=25.0, tail_p95_ms=25.0)
    assert srv.queue_ms("split@x", now_s=1.0) == 80.0
    assert srv.server_ms("split@x", now_s=1.0) == 105.0  # the report raises the mean
    assert srv.server_ms("split@x", now_s=10.0) == mean  # the report went stale
    with pytest.raises(EstimatorError, match=">= 0"):
        srv.report("split@x", now_s=0.0, tail_p50_ms=-1.0, tail_p95_ms=1.0)
    with pytest.raises(EstimatorError, match="below its p50"):
        srv.report("split@x", now_s=0.0, tail_p50_ms=30.0, tail_p95_ms=20.0)
    with pytest.raises(EstimatorError, match="both its p50 and its p95"):
        srv.report("split@x", now_s=0.0, tail_p50_ms=30.0)
    with pytest.raises(EstimatorError, match=">= 0"):
        srv.observe_frame("split@x", queue_ms=-1.0, service_ms=1.0)


def test_a_reported_tail_percentile_is_a_spread_not_a_mean() -> None:
    # A server's window of a branch's tails held its cold first run: p50 40 ms, p95 66.
    srv = ServerLoadEstimator()
    srv.report("offload", now_s=0.0, tail_p50_ms=40.0, tail_p95_ms=66.0)
    mean, std = srv.mean_std_ms("offload", now_s=0.0)
    assert mean == 40.0  # the median stands for the mean, not the 95th percentile
    assert std == pytest.approx(26.0 / 1.645, rel=1e-3)  # and p95 - p50 is 1.645 sigma
    assert srv.server_ms("offload", now_s=0.0, z=z_score(0.95)) == pytest.approx(66.0)
    # This device's own frames at 45 ms: they give the mean and the spread now.
    for _ in range(20):
        srv.observe_frame("offload", queue_ms=0.0, service_ms=45.0)
    mean, std = srv.mean_std_ms("offload", now_s=0.0)
    assert mean == pytest.approx(45.0, abs=0.5) and std < 1.0
    # Other devices queue at the server: a slower report raises the mean.
    srv.report("offload", now_s=1.0, queue_ms=30.0, tail_p50_ms=40.0, tail_p95_ms=50.0)
    assert srv.mean_std_ms("offload", now_s=1.0) == (70.0, std)


def test_branches_of_one_server_pool_share_their_frames_timings() -> None:
    srv = ServerLoadEstimator(pools={"offload-jpeg90": "offload", "offload-jpeg50": "offload"})
    srv.observe_frame("offload-jpeg90", queue_ms=0.0, service_ms=80.0)  # one cold run
    for _ in range(30):
        srv.observe_frame("offload-jpeg50", queue_ms=0.0, service_ms=39.0)
        srv.observe_frame("split@x", queue_ms=0.0, service_ms=20.0)
    mean90, std90 = srv.mean_std_ms("offload-jpeg90", now_s=0.0)
    assert (mean90, std90) == srv.mean_std_ms("offload-jpeg50", now_s=0.0)
    assert mean90 == pytest.approx(39.0, abs=1.5) and std90 < 3.0
    assert srv.mean_std_ms("split@x", now_s=0.0)[0] == pytest.approx(20.0)  # its own
    # Reports stay per branch: one branch's slow report does not move its siblings.
    srv.report("offload-jpeg50", now_s=0.0, tail_p50_ms=70.0, tail_p95_ms=80.0)
    assert srv.mean_std_ms("offload-jpeg50", now_s=0.0)[0] == 70.0
    assert srv.mean_std_ms("offload-jpeg90", now_s=0.0)[0] == mean90


def test_content_features_count_size_and_motion() -> None:
    cf = ContentFeatures(alpha=1.0)
    assert cf.as_dict() == {}
    box = np.array([[10, 10, 30, 30], [100, 50, 120, 70]], np.float32)
    cf.update(box, (100, 200), frame_index=0)
    assert cf.object_count == 2
    assert cf.object_size == pytest.approx(400 / 20000)
    cf.update(box + np.array([5, 0, 5, 0]), (100, 200), frame_index=1)
    assert cf.motion == pytest.approx(5 / np.hypot(100, 200))
    with pytest.raises(EstimatorError, match="frame size"):
        cf.update(box, (0, 10))


def test_a_slower_device_slows_every_branch_by_the_same_factor() -> None:
    # Two levels measured on a noisy machine: branch A barely slower at level 1
    # (0.12 ms), branch B 5 ms slower. A device 6x slower than the profiled one must
    # predict B about 6x slower too, not B's own slope times hundreds of levels.
    est = ContentionEstimator((0, 1))
    head_a, head_b = {0: 4.29, 1: 4.41}, {0: 26.0, 1: 31.0}
    for _ in range(10):
        est.observe(head_a, 6 * 4.41)
    assert est.head_ms(head_a) == pytest.approx(6 * 4.41, rel=0.05)
    assert est.head_ms(head_b) == pytest.approx(6 * 31.0, rel=0.05)
    arr = est.head_ms_array(np.array([[4.29, 4.41], [26.0, 31.0]]))
    assert arr == pytest.approx([est.head_ms(head_a), est.head_ms(head_b)])


def test_one_stalled_run_is_capped_and_two_are_believed() -> None:
    # A stall on the first local run (a cold cache, the OS taking the core) read as ten
    # times the profile: it must not set the device's level on its own. The same time
    # twice in a row is a slower device.
    head = {0: 40.0, 1: 60.0}
    est = ContentionEstimator((0, 1))
    est.observe(head, 1100.0)
    assert est.outliers == 1
    assert est.head_ms(head) == pytest.approx(3 * 40.0, rel=0.01)  # capped at 3x
    est.observe(head, 45.0)  # back to normal: the stall is forgotten at the EWMA's pace
    assert est.head_ms(head) < 120.0
    slow = ContentionEstimator((0, 1))
    for _ in range(8):
        slow.observe(head, 240.0)  # a 6x slower device: believed from the second run
    assert slow.outliers == 1
    assert slow.head_ms(head) == pytest.approx(240.0, rel=0.1)
    with pytest.raises(EstimatorError, match="jump_ratio"):
        ContentionEstimator((0, 1), jump_ratio=1.0)
