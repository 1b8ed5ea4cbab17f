"""CompressionChooser: zstd only while the measured link makes it pay."""

from __future__ import annotations

import pytest

from splitedge.mobile_client.compression import CompressionChooser


def test_fixed_modes_ignore_measurements():
    always, never = CompressionChooser("zstd"), CompressionChooser("raw")
    for chooser in (always, never):
        chooser.observe_compression("b", 40_000, 39_000, 5.0)
        chooser.observe_transfer(40_000, 0.1)
    assert all(always.should_compress("b") for _ in range(100))
    assert not any(never.should_compress("b") for _ in range(100))


def test_auto_compresses_until_both_saving_and_link_are_measured():
    chooser = CompressionChooser()
    assert chooser.should_compress("b") and chooser.pays("b") is None
    chooser.observe_compression("b", 40_000, 37_000, 0.1)
    assert chooser.should_compress("b")  # no transfer measured yet
    chooser.observe_transfer(40_000, 0.3)
    assert chooser.pays("b") is False


def test_a_fast_link_sends_raw_and_probes_every_nth_frame():
    chooser = CompressionChooser(probe_every=4)
    chooser.observe_compression("b", 40_000, 37_000, 0.1)  # 3 kB saved for 0.1 ms
    chooser.observe_transfer(40_000, 0.3)  # > 1 Gbps: 3 kB take ~0.02 ms
    assert chooser.uplink_floor_mbps == pytest.approx(40_000 * 8 / 300)
    decisions = [chooser.should_compress("b") for _ in range(12)]
    assert decisions == [False, False, False, True] * 3
    # Another branch is judged on its own numbers.
    assert chooser.should_compress("other")


def test_a_slow_link_keeps_compressing():
    chooser = CompressionChooser()
    chooser.observe_compression("b", 40_000, 37_000, 0.1)
    chooser.observe_transfer(37_000, 15.0)  # ~20 Mbps: 3 kB take 1.2 ms
    assert chooser.pays("b") is True
    assert all(chooser.should_compress("b") for _ in range(100))


def test_a_payload_that_grows_under_zstd_never_pays():
    chooser = CompressionChooser()
    chooser.observe_compression("b", 1_000, 1_013, 0.01)
    chooser.observe_transfer(1_013, 50.0)  # even on a very slow link
    assert chooser.pays("b") is False


def test_the_floor_is_the_best_recent_rate_and_follows_the_link_down():
    chooser = CompressionChooser(window=3)
    chooser.observe_compression("b", 40_000, 37_000, 0.1)
    chooser.observe_transfer(40_000, 0.3)
    assert chooser.pays("b") is False
    for _ in range(3):  # the link slows to ~20 Mbps: the fast sample leaves the window
        chooser.observe_transfer(37_000, 15.0)
    assert chooser.uplink_floor_mbps == pytest.approx(37_000 * 8 / 15_000)
    assert chooser.pays("b") is True


def test_unusable_transfer_samples_are_ignored():
    chooser = CompressionChooser()
    chooser.observe_transfer(0, 1.0)
    chooser.observe_transfer(1_000, 0.0)
    assert chooser.uplink_floor_mbps is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "lz4"}, "compression must be one of auto, zstd, raw, got 'lz4'"),
        ({"probe_every": 0}, "probe_every and window must be >= 1"),
        ({"window": 0}, "probe_every and window must be >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CompressionChooser(**kwargs)


def test_forgetting_the_link_keeps_the_savings():
    chooser = CompressionChooser()
    chooser.observe_compression("b", 40_000, 37_000, 0.1)
    chooser.observe_transfer(40_000, 0.3)
    assert chooser.pays("b") is False
    chooser.forget_link()  # e.g. another server: its link is not measured yet
    assert chooser.uplink_floor_mbps is None and chooser.pays("b") is None
    assert chooser.should_compress("b")
