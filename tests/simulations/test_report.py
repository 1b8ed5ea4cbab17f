"""Report: CSV round trip, summary arithmetic, plots written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from splitedge.simulations.report import (
    FrameRow,
    format_summary,
    plot_all,
    read_csv,
    summarize,
    write_csv,
    write_summary,
)
from splitedge.simulations.traces import BandwidthTrace


def _rows() -> list[FrameRow]:
    rows = []
    for k in range(10):
        rows.append(
            FrameRow(
                "a", 0, k, k * 0.1, 5.0, "split@x/4bit", "edge", latency_ms=10.0 * (k + 1),
                payload_bytes=1000, batch_size=2, quality=0.5, sla_met=10.0 * (k + 1) <= 50,
            )
        )  # fmt: skip
    rows.append(FrameRow("b", 0, 0, 0.0, 5.0, "", "dropped", "busy"))
    rows.append(
        FrameRow("b", 0, 1, 0.1, 5.0, "offload-jpeg90", "local", "deadline", latency_ms=300.0,
                 payload_bytes=4000)
    )  # fmt: skip
    return rows


def test_csv_round_trip(tmp_path: Path):
    rows = _rows()
    back = read_csv(write_csv(rows, tmp_path / "f.csv"))
    assert len(back) == len(rows)
    for a, b in zip(rows, back, strict=True):
        for name in (
            "policy",
            "client",
            "candidate",
            "source",
            "reason",
            "sla_met",
            "payload_bytes",
        ):
            assert getattr(a, name) == getattr(b, name)
        assert (
            math.isnan(a.latency_ms) and math.isnan(b.latency_ms)
        ) or a.latency_ms == b.latency_ms


def test_summary_counts_drops_fallbacks_and_violations(tmp_path: Path):
    a, b = summarize(_rows(), {"a": 0.25})
    assert (a.frames, a.answered, a.fallbacks, a.drops) == (10, 10, 0, {})
    assert a.p50_ms == pytest.approx(55.0)
    assert a.sla_violation_pct == pytest.approx(50.0)
    assert a.uplink_mb == pytest.approx(0.01) and a.mean_batch == 2.0 and a.map50 == 0.25
    assert (b.frames, b.answered, b.fallbacks, b.drops) == (2, 1, 1, {"busy": 1})
    assert b.sla_violation_pct == 100.0  # one dropped, one late
    assert math.isnan(b.map50) and math.isnan(b.quality)
    table = format_summary([a, b])
    assert table.splitlines()[0].startswith("policy") and "busy 1" in table
    txt, csv_path = write_summary([a, b], tmp_path)
    assert "busy 1" in txt.read_text() and "busy=1" in csv_path.read_text()


def test_plots_are_written(tmp_path: Path):
    trace = BandwidthTrace.from_steps([(0, 20.0), (0.5, 1.0)], 1.0)
    paths = plot_all(_rows(), trace, 50.0, tmp_path, duration_s=1.0)
    assert [p.name for p in paths] == ["timeline.png", "branches.png", "latency_cdf.png"]
    assert all(p.stat().st_size > 5_000 for p in paths)
