"""BandwidthTrace: construction, queries, transformations, Mahimahi conversion, generators."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitedge.simulations import traces as T
from splitedge.simulations.traces import BandwidthTrace, InvalidTraceError, TraceError


def test_invalid_traces_are_refused_with_the_reason():
    cases = [
        (([], [], 1.0), "as many start times as rates"),
        (([0.0, 1.0], [1.0], 2.0), "as many start times as rates"),
        (([0.5], [1.0], 2.0), "must start at 0"),
        (([0.0, 1.0, 1.0], [1.0, 2.0, 3.0], 2.0), "segment 2 starts at 1.0 s after 1.0 s"),
        (([0.0, 1.0], [1.0, -2.0], 2.0), "segment 1 has rate -2.0"),
        (([0.0, 1.0], [1.0, 2.0], 1.0), "must exceed the last start"),
        (([0.0], [np.nan], 1.0), "finite"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidTraceError, match=message):
            BandwidthTrace(*args)
    assert issubclass(InvalidTraceError, TraceError)
    assert issubclass(TraceError, ValueError)


def test_sample_loops_and_mean_is_time_weighted():
    tr = T.step([(0.0, 5.0), (2.0, 20.0), (4.0, 5.0)], duration_s=6.0)
    assert tr.sample([0.0, 1.99, 2.0, 3.5, 4.0, 5.99]).tolist() == [5, 5, 20, 20, 5, 5]
    assert tr.rate_at(6.0 + 2.5) == 20.0  # second loop
    assert tr.mean_mbps == pytest.approx((5 * 2 + 20 * 2 + 5 * 2) / 6)


def test_cumulative_and_its_inverse_agree_across_loops():
    tr = T.step([(0.0, 2.0), (1.0, 0.0), (2.0, 6.0)], duration_s=3.0)
    assert tr.cumulative_megabits([1.0, 2.0, 3.0, 4.5]).tolist() == pytest.approx(
        [2.0, 2.0, 8.0, 8.0 + 2.0]
    )
    times = np.array([0.25, 0.9, 2.5, 3.4, 8.3])
    mb = tr.cumulative_megabits(times)
    assert tr.time_of_megabits(mb) == pytest.approx(times)
    # The plateau (rate 0 from 1 s to 2 s) is skipped: 2 Mb are reached at 1 s, not 2 s.
    assert float(tr.time_of_megabits(2.0)) == pytest.approx(1.0)
    assert float(tr.time_of_megabits(8.0)) == pytest.approx(3.0)  # exactly one period
    assert np.isinf(T.constant(0.0, 1.0).time_of_megabits(1.0))


def test_slice_loop_scale_concat():
    tr = T.step([(0.0, 5.0), (2.0, 20.0), (4.0, 5.0)], duration_s=6.0)
    part = tr.slice(1.0, 9.0)  # reaches into the second loop
    assert part.duration_s == 8.0
    assert part.sample([0.5, 1.5, 3.5, 5.5, 7.5]).tolist() == [5, 20, 5, 5, 20]
    looped = tr.loop(3)
    assert looped.duration_s == 18.0 and looped.mean_mbps == pytest.approx(tr.mean_mbps)
    assert tr.scale(0.5).sample([3.0]).tolist() == [10.0]
    both = tr.concat(T.constant(1.0, 4.0))
    assert both.duration_s == 10.0 and both.rate_at(7.0) == 1.0
    with pytest.raises(InvalidTraceError, match="start_s < end_s"):
        tr.slice(3.0, 3.0)
    with pytest.raises(InvalidTraceError, match="times >= 1"):
        tr.loop(0)
    with pytest.raises(InvalidTraceError, match="scale factor"):
        tr.scale(-1.0)


def test_mean_rates_over_windows():
    tr = T.step([(0.0, 4.0), (0.5, 8.0)], duration_s=1.0)
    starts, rates = tr.mean_rates(0.25, 1.5)
    assert starts.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert rates.tolist() == pytest.approx([4, 4, 8, 8, 4, 4])


def test_constant_rate_gives_evenly_spaced_delivery_opportunities():
    # 12 Mbps = one 1500-byte packet per millisecond.
    assert T.constant(12.0, 0.010).to_delivery_ms().tolist() == list(range(1, 11))
    # 24 Mbps: two packets each millisecond.
    assert T.constant(24.0, 0.003).to_delivery_ms().tolist() == [1, 1, 2, 2, 3, 3]
    ts = T.constant(5.0, 10.0).to_delivery_ms()
    assert ts.size == 5e6 * 10 / 8 // 1500  # 4166 whole packets in 10 s
    with pytest.raises(InvalidTraceError, match="less than one 1500-byte packet"):
        T.constant(0.0, 1.0).to_delivery_ms()


def test_mahimahi_timestamps_convert_to_rates_and_back():
    ts = np.array([1, 1, 2, 5, 5, 5, 9])
    tr = BandwidthTrace.from_delivery_ms(ts)
    assert tr.duration_s == pytest.approx(0.009)
    assert tr.rate_at(0.0005) == pytest.approx(24.0)  # two packets in ms 1
    assert tr.rate_at(0.0045) == pytest.approx(36.0)  # three in ms 5
    assert tr.to_delivery_ms().tolist() == ts.tolist()
    # Binning averages: 7 packets over 9 ms, in 3 ms bins.
    coarse = BandwidthTrace.from_delivery_ms(ts, bin_ms=3)
    assert coarse.mean_mbps == pytest.approx(7 * 1500 * 8 / 9000)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=200))
def test_mahimahi_round_trip_is_exact(values):
    ts = np.sort(np.asarray(values, dtype=np.int64))
    assert BandwidthTrace.from_delivery_ms(ts).to_delivery_ms().tolist() == ts.tolist()


def test_bad_delivery_timestamps_are_refused():
    with pytest.raises(InvalidTraceError, match="non-decreasing"):
        BandwidthTrace.from_delivery_ms(np.array([1, 3, 2]))
    with pytest.raises(InvalidTraceError, match="period"):
        BandwidthTrace.from_delivery_ms(np.array([0, 0]))
    with pytest.raises(InvalidTraceError, match="integers"):
        BandwidthTrace.from_delivery_ms(np.array([1.5]))
    with pytest.raises(InvalidTraceError, match="at least one"):
        BandwidthTrace.from_delivery_ms(np.array([], dtype=np.int64))


def test_square_wave_and_random_walk():
    sq = T.square_wave(1.0, 3.0, period_s=2.0, duration_s=5.0)
    assert sq.sample([0.5, 1.5, 2.5, 3.5, 4.5]).tolist() == [3, 1, 3, 1, 3]
    rw = T.random_walk(10.0, 2.0, 0.1, 60.0, min_mbps=5.0, max_mbps=15.0, seed=3)
    assert rw.rate_mbps.min() >= 5.0 and rw.rate_mbps.max() <= 15.0
    assert np.ptp(rw.rate_mbps) > 1.0  # it does walk
    again = T.random_walk(10.0, 2.0, 0.1, 60.0, min_mbps=5.0, max_mbps=15.0, seed=3)
    assert np.array_equal(rw.rate_mbps, again.rate_mbps)
    with pytest.raises(InvalidTraceError, match="duty"):
        T.square_wave(1.0, 2.0, 1.0, 4.0, duty=1.0)


def test_same_seed_same_trace_other_seed_other_trace():
    a, b, c = (T.preset("lte", 120.0, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.start_s, b.start_s) and np.array_equal(a.rate_mbps, b.rate_mbps)
    assert not np.array_equal(a.rate_mbps[:50], c.rate_mbps[:50])


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("3g", 1.25, 1.55), ("fcc", 1.25, 1.55), ("lte", 10.0, 50.0), ("5g-mmwave", 100.0, 900.0)],
)
def test_preset_means_land_in_their_stated_ranges(name, low, high):
    for seed in (0, 1):
        tr = T.preset(name, 4 * 3600.0, seed=seed)
        assert low <= tr.mean_mbps <= high, (name, seed, tr.mean_mbps)


def test_mmwave_preset_has_deep_fades():
    tr = T.preset("5g-mmwave", 600.0, seed=0)
    _, rates = tr.mean_rates(0.1, 600.0)
    assert (rates < 5.0).mean() > 0.01  # blockage: near zero for some of the time
    assert rates.max() > 300.0


def test_unknown_preset_names_the_choices():
    with pytest.raises(InvalidTraceError, match=r"unknown preset 'wifi'.*3g"):
        T.preset("wifi")
