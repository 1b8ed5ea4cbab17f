"""`splitedge-sim demo` end to end: real edge process, real emulated link, real client."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_rate_rule_demo_switches_branch_when_the_link_collapses(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splitedge.simulations.cli",
            "demo",
            "--model",
            "echo",
            "--policy",
            "rate-rule",
            "--device-slowdown",
            "1",
            "--rates",
            "40,0.2",
            "--phase-s",
            "3",
            "--fps",
            "10",
            "--sla-ms",
            "300",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "demo.csv").open()))
    assert len(rows) >= 20
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    fast = [r for r in rows if float(r["link_mbps"]) == 40.0]
    slow = [r for r in rows if float(r["link_mbps"]) == 0.2]
    assert fast and slow
    # At 40 Mbps the JPEG offload fits the SLA and is preferred; at 0.2 Mbps its
    # ~20 kB takes ~800 ms, so the last frames of that phase run elsewhere.
    assert [r["branch"] for r in fast[-5:]] == ["offload-jpeg90"] * 5
    assert [r["branch"] for r in slow[-4:]].count("offload-jpeg90") == 0
    assert "phase link_mbps" in proc.stdout and "wrote" in proc.stdout
    # The edge announced itself on the embedded MQTT broker; the client found it there.
    assert "found edge 'demo-edge'" in proc.stdout


def test_demo_rejects_bad_rates():
    proc = subprocess.run(
        [sys.executable, "-m", "splitedge.simulations.cli", "demo", "--rates", "40,-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "rates must be positive" in proc.stderr


def test_adaptive_demo_follows_the_link_with_the_trained_student(tmp_path: Path):
    # The default demo: the GHND student, its measured profile, the scheduler.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splitedge.simulations.cli",
            "demo",
            "--rates",
            "40,0.1,40",
            "--phase-s",
            "5",
            "--no-broker",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert "policy adaptive" in proc.stdout
    rows = list(csv.DictReader((tmp_path / "demo.csv").open()))
    phases = [[r for r in rows if 5 * p <= float(r["t_s"]) < 5 * (p + 1)] for p in range(3)]
    fast, slow, back = (p[-5:] for p in phases)
    # 40 Mbps: full frames go to the edge as JPEG and come back in time.
    assert all(r["branch"].startswith("offload-jpeg") for r in fast), fast
    # 0.1 Mbps: a 7 kB JPEG takes over half a second; what crosses the link now is a
    # bottleneck code or a small JPEG at most every 4th frame, the rest is tracked or local.
    assert all(int(r["payload_bytes"]) <= 8000 for r in slow), slow
    assert sum(int(r["payload_bytes"]) > 0 for r in slow) <= 2, slow
    # Back at 40 Mbps the estimate recovers and full JPEG frames cross again.
    assert any(r["branch"].startswith("offload-jpeg") and int(r["payload_bytes"]) > 5000
               for r in back), back  # fmt: skip
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_adaptive_demo_needs_a_profile(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splitedge.simulations.cli",
            "demo",
            "--model",
            "echo",
            "--no-broker",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no scheduler profile" in proc.stderr and "--policy rate-rule" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
