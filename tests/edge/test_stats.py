"""Rolling statistics: percentiles per branch, frame rate and busy fraction over a window."""

from __future__ import annotations

import pytest

from splitedge.edge.stats import ServerStats


def test_percentiles_frames_and_rate():
    stats = ServerStats(window_samples=100, window_s=10.0)
    t0 = stats.started
    for i in range(10):
        # Batches of 2 with tail times 1..10 ms, one every 0.5 s.
        stats.record_batch(
            "m", "b", tail_ms=i + 1.0, batch_size=2, start=t0 + i * 0.5, end=t0 + i * 0.5 + 0.001
        )
    snap = stats.branch("m", "b")
    assert snap.frames == 20 and snap.tail_samples == 20
    assert snap.tail_latency_ms_p50 == pytest.approx(5.5)
    assert 9.0 <= snap.tail_latency_ms_p95 <= 10.0
    assert stats.frames_per_second(now=t0 + 5.0) == pytest.approx(20 / 5.0)
    # 10 s later every completion has left the window.
    assert stats.frames_per_second(now=t0 + 20.0) == 0.0
    assert stats.branch("m", "other").tail_samples == 0


def test_window_keeps_only_recent_samples():
    stats = ServerStats(window_samples=4)
    t = stats.started
    for ms in (100.0, 100.0, 1.0, 1.0, 1.0, 1.0):
        stats.record_batch("m", "b", tail_ms=ms, batch_size=1, start=t, end=t)
    assert stats.branch("m", "b").tail_latency_ms_p95 == 1.0
    assert stats.branch("m", "b").frames == 6


def test_busy_fraction_counts_overlap_with_the_window_per_worker():
    stats = ServerStats(tail_workers=2, window_s=10.0)
    t0 = stats.started
    stats.record_batch("m", "b", tail_ms=4000, batch_size=1, start=t0 + 1.0, end=t0 + 5.0)
    stats.record_batch("m", "c", tail_ms=2000, batch_size=1, start=t0 + 8.0, end=t0 + 10.0)
    # 6 busy seconds over 10 s x 2 workers.
    assert stats.busy_fraction(now=t0 + 10.0) == pytest.approx(0.3)
    # At t0+14 the window starts at t0+4: 1 s of the first run is left, plus 2 s.
    assert stats.busy_fraction(now=t0 + 14.0) == pytest.approx(3.0 / 20.0)
