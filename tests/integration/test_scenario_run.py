"""`splitedge-sim run` and `des` end to end: real edge process, real links, real clients."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from splitedge.simulations.report import read_csv

pytestmark = pytest.mark.integration

SCENARIO = """
name = "tiny"
model = "echo"
model_options = { tail_delay_ms = 5 }
branches = ["offload-jpeg90", "split@x/2", "local"]
duration_s = 4
clients = 2
fps = 5
sla_ms = 150
delay_ms = 5
warmup_frames = 1
[uplink]
kind = "steps"
steps = [[0, 20], [2, 0.3]]
[downlink]
kind = "constant"
rate_mbps = 20
[video]
width = 96
height = 64
frames = 4
[[policies]]
kind = "offload"
[[policies]]
kind = "oracle"
"""


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splitedge.simulations.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_writes_consistent_csv_summary_and_plots(tmp_path: Path):
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    proc = _cli("run", str(scenario), "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rows = read_csv(out / "frames.csv")
    # Every camera frame of every client under every policy has a row, once.
    keys = Counter((r.policy, r.client, r.frame_index) for r in rows)
    assert set(keys) == {
        (p, c, k) for p in ("offload", "oracle") for c in (0, 1) for k in range(20)
    }
    assert max(keys.values()) == 1
    summary = {r["policy"]: r for r in csv.DictReader((out / "summary.csv").open())}
    for policy in ("offload", "oracle"):
        part = [r for r in rows if r.policy == policy]
        answered = [r for r in part if r.source != "dropped"]
        assert int(summary[policy]["frames"]) == len(part) == 40
        assert int(summary[policy]["answered"]) == len(answered)
        late = sum(not r.sla_met for r in part)
        assert float(summary[policy]["sla_violation_pct"]) == pytest.approx(100 * late / 40)
        for r in answered:
            assert r.latency_ms > 0 and r.quality == r.quality  # scored (echo: recall 0 or 1)
            assert r.sla_met == (r.latency_ms <= 150)
    offload = [r for r in rows if r.policy == "offload" and r.source == "edge"]
    assert {r.candidate for r in offload} == {"offload-jpeg90"}
    # At 0.3 Mbps a ~2 kB JPEG takes ~50 ms more than at 20 Mbps.
    fast = [r.latency_ms for r in offload if r.t_s < 1.8]
    slow = [r.latency_ms for r in offload if r.t_s > 2.2]
    assert fast and slow and min(slow) > max(fast)
    # The oracle never offloads a frame it predicts late: it keeps within the SLA.
    oracle = [r for r in rows if r.policy == "oracle" and r.source != "dropped"]
    assert sum(r.sla_met for r in oracle) >= 0.9 * len(oracle)
    for name in ("timeline.png", "branches.png", "latency_cdf.png"):
        assert (out / name).stat().st_size > 5_000
    assert "p50_ms" in (out / "summary.txt").read_text()
    assert (out / "profile.json").exists()  # the oracle needed one; it was measured

    # The DES replays the same scenario from the measured profile, without a server.
    proc = _cli(
        "des", str(scenario), "--profile", str(out / "profile.json"), "--no-progress",
        "--out", str(tmp_path / "des"), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "offload N=2" in proc.stdout and "oracle N=2" in proc.stdout
    des_rows = read_csv(tmp_path / "des" / "des_frames.csv")
    assert len(des_rows) == len(rows)
    proc = _cli(
        "des", str(scenario), "--profile", str(out / "profile.json"), "--no-progress",
        "--clients", "50,200", "--min-gpus", "--policy", "offload", timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "offload N=50" in proc.stdout and "min_gpus=" in proc.stdout


def test_run_rejects_a_bad_scenario_with_one_line(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(SCENARIO.replace("sla_ms = 150", "sla_ms = -1"))
    proc = _cli("run", str(bad), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("sla_ms: expected a number > 0, got -1")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_run_rejects_a_branch_the_model_lacks(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    text = SCENARIO.replace('"split@x/2"', '"split@layer9/2"').replace(
        'kind = "oracle"', 'kind = "local"'
    )
    bad.write_text(text)
    proc = _cli("run", str(bad), "--no-progress", timeout=120)
    assert proc.returncode == 2
    assert "has no branch 'split@layer9/2bit'" in proc.stderr
