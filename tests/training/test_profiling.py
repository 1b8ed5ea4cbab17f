"""Measuring a profile on this device (training/profiling.py) and `splitedge-client profile`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from splitedge.mobile_client.cli import add_profile_parser
from splitedge.mobile_client.profile import (
    AccuracyRecord,
    BranchConfig,
    ProfileError,
    load_profile,
)
from splitedge.training.profiling import cpu_contention, measure_profile


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A reaped child is gone; an unreaped zombie would still answer: check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cpu_contention_starts_and_stops_its_spinners() -> None:
    with cpu_contention(1) as pids:
        assert len(pids) == 1
        assert _alive(pids[0])
    assert not _alive(pids[0])


def _frames(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((48, 64, 3)) * 255).astype(np.uint8) for _ in range(n)]


def test_measure_profile_runs_heads_and_codec() -> None:
    configs = [
        BranchConfig("local"),
        BranchConfig("split@x", 8),
        BranchConfig("split@x", 2),
        BranchConfig("split@x", 8, detection_interval=4),
        BranchConfig("offload-jpeg90", input_size=24),
    ]
    asked: list[str] = []

    def validate(cfg: BranchConfig) -> AccuracyRecord:
        asked.append(cfg.key)
        return AccuracyRecord(0.5 + 0.01 * cfg.bits, {"motion:0": 0.6})

    profile = measure_profile(
        "echo", configs, _frames(), contention_levels=(0, 1), progress=False, validate=validate
    )
    by_key = {e.key: e for e in profile.entries}
    assert asked == [c.key for c in configs]
    assert profile.contention_levels == (0, 1)
    assert set(profile.tracker_latency_ms) == {0, 1}
    # Echo ships the frame as float32: 48*64*3 values; 8-bit is ~4x smaller than float,
    # 2-bit smaller still (zstd on random pixels cannot shrink much more).
    split8 = by_key["split@x/8b/w1/native/k1"].bytes_per_frame.mean
    split2 = by_key["split@x/2b/w1/native/k1"].bytes_per_frame.mean
    assert 48 * 64 * 3 * 0.9 < split8 < 48 * 64 * 3 * 1.2
    assert split2 < split8 / 2
    assert by_key["local/0b/w1/native/k1"].bytes_per_frame.mean == 0
    # The smaller input sends a smaller JPEG than the full frame would.
    assert 0 < by_key["offload-jpeg90/0b/w1/24/k1"].bytes_per_frame.mean < 48 * 64 * 3
    # The detection interval shares its head timing with the k=1 entry.
    k4 = by_key["split@x/8b/w1/native/k4"]
    assert k4.head_latency_ms == by_key["split@x/8b/w1/native/k1"].head_latency_ms
    assert all(q.mean > 0 for e in profile.entries for q in e.head_latency_ms.values())
    assert k4.accuracy == pytest.approx(0.58)
    assert profile.default_switch_cost_ms > 0  # building the model was timed


def test_measure_profile_refuses_unknown_branches_and_widths() -> None:
    with pytest.raises(ProfileError, match="has no branch 'split@zz'"):
        measure_profile("echo", [BranchConfig("split@zz")], _frames(1), progress=False)
    with pytest.raises(ProfileError, match="not slimmable"):
        measure_profile("echo", [BranchConfig("split@x", 8, 0.5)], _frames(1), progress=False)
    with pytest.raises(ProfileError, match=r"accuracy outside \[0, 1\]"):
        measure_profile(
            "echo",
            [BranchConfig("local")],
            _frames(1),
            contention_levels=(0,),
            progress=False,
            validate=lambda cfg: AccuracyRecord(73.0),
        )
    with pytest.raises(ProfileError, match="distinct integers"):
        measure_profile(
            "echo", [BranchConfig("local")], _frames(1), contention_levels=(), progress=False
        )


def test_profile_command_writes_a_loadable_file(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_profile_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "echo.json"
    args = parser.parse_args(
        [
            *("profile", "--model", "echo", "--output", str(out), "--frames", "2"),
            *("--size", "32x24", "--levels", "0", "--intervals", "1,3", "--no-progress"),
        ]
    )
    assert args.func(args) == 0
    profile = load_profile(out)
    # local + offload + split@x at 8 and 4 bits, each at intervals 1 and 3.
    assert len(profile.entries) == 8
    bad = parser.parse_args(["profile", "--model", "echo", "--output", str(out), "--branches", "x"])
    assert bad.func(bad) == 2
