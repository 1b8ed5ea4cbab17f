"""benchmarks.bin_deltas: splitting a video's per-bin deltas into the part an interval's
entries share and each branch's own, the correlation between videos, bad arguments."""

from __future__ import annotations

import math

import pytest

from benchmarks import bin_deltas as bench


def scored(overall: dict, by_bin: dict, seed: int = 1) -> bench.Scored:
    return bench.Scored(bench.Video(seed, 64, 16), overall, by_bin)


def test_parts_split_a_bins_delta_into_the_intervals_mean_and_each_branchs_rest() -> None:
    s = scored(
        {("a", 1): 0.5, ("b", 1): 0.4, ("a", 4): 0.3},
        {
            ("a", 1): {"motion:0": 0.6, "motion:2": 0.5},
            ("b", 1): {"motion:0": 0.4, "motion:2": 0.4},
            ("a", 4): {"motion:0": 0.5, "motion:2": 0.1},
        },
    )
    branch, relative = bench.parts(s, ["motion:0", "motion:2"])
    # motion:0: deltas +0.1 and 0.0, their mean +0.05; each branch's rest +-0.05.
    assert branch[(("a", 1), "motion:0")] == pytest.approx(0.05)
    assert branch[(("b", 1), "motion:0")] == pytest.approx(-0.05)
    assert branch[(("a", 1), "motion:2")] == pytest.approx(0.0)
    # Alone in interval 4, its delta is all shared: none of it is the branch's own.
    assert branch[(("a", 4), "motion:0")] == pytest.approx(0.0)
    # Tracking's shared part relative to interval 1's: +0.2 - 0.05 on still scenes,
    # -0.2 - 0.0 on fast ones.
    assert relative[(4, "motion:0")] == pytest.approx(0.15)
    assert relative[(4, "motion:2")] == pytest.approx(-0.2)


def test_an_entry_without_a_bin_is_left_out_of_it() -> None:
    s = scored(
        {("a", 1): 0.5, ("b", 1): 0.4},
        {("a", 1): {"motion:0": 0.6}, ("b", 1): {}},
    )
    branch, relative = bench.parts(s, ["motion:0"])
    assert branch == {(("a", 1), "motion:0"): pytest.approx(0.0)}
    assert relative == {}


def test_correlation_over_shared_keys_and_nan_when_too_few() -> None:
    a = {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.0}
    assert bench.correlation(a, {1: 1.0, 2: 2.0, 3: 3.0}) == pytest.approx(1.0)
    assert bench.correlation(a, {1: 3.0, 2: 2.0, 3: 1.0}) == pytest.approx(-1.0)
    assert math.isnan(bench.correlation(a, {1: 1.0, 2: 2.0}))
    assert math.isnan(bench.correlation(a, {1: 1.0, 2: 1.0, 3: 1.0}))  # no spread


def test_videos_parse_and_bad_ones_name_the_item() -> None:
    assert bench.parse_videos("424242:512:16, 1:250:50") == [
        bench.Video(424242, 512, 16),
        bench.Video(1, 250, 50),
    ]
    with pytest.raises(ValueError, match=r"--videos: '1:250' is not SEED:FRAMES:CLIP"):
        bench.parse_videos("424242:512:16,1:250")
    with pytest.raises(ValueError, match="needs seed >= 0, frames >= 1, clip >= 1"):
        bench.parse_videos("424242:512:16,1:0:50")
    with pytest.raises(ValueError, match="at least two videos"):
        bench.parse_videos("424242:512:16")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--videos", "1:2"], "--videos: '1:2' is not SEED:FRAMES:CLIP"),
        (["--intervals", "1,x"], "--intervals: '1,x' is not a comma-separated list"),
        (["--intervals", "0"], "--intervals: '0' is not a comma-separated list"),
        (["--branches", "nope"], "--branches: not in the profile at these intervals: ['nope']"),
        (["--profile", "/nonexistent/p.json"], "--profile: "),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err
