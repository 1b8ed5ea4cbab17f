"""`splitedge-sim demo` end to end: real edge process, real emulated link, real client."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_and_switches_branch_when_the_link_collapses(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splitedge.simulations.cli",
            "demo",
            "--model",
            "echo",
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
