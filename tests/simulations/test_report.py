"""Report: CSV round trip, summary arithmetic, plots written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from splitedge.simulations import report
from splitedge.simulations.report import (
    FrameRow,
    format_summary,
    plot_all,
    read_csv,
    summarize,
    windowed_rate,
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
    # An adaptive policy's link probes: counted, their bytes beside frames in the uplink.
    (p,) = summarize([r for r in _rows() if r.policy == "a"], probes_by_policy={"a": (3, 6000)})
    assert (p.probes, p.probe_mb) == (3, pytest.approx(0.006))
    assert p.uplink_mb == pytest.approx(a.uplink_mb + 0.006)
    assert (a.probes, a.probe_mb) == (0, 0.0)
    header = format_summary([p]).splitlines()[0].split()
    assert header[header.index("fallback") + 1] == "probes"
    assert format_summary([p]).splitlines()[2].split()[header.index("probes")] == "3"
    txt, csv_path = write_summary([a, b], tmp_path)
    assert "busy 1" in txt.read_text() and "busy=1" in csv_path.read_text()


def test_plots_are_written(tmp_path: Path):
    trace = BandwidthTrace.from_steps([(0, 20.0), (0.5, 1.0)], 1.0)
    paths = plot_all(_rows(), trace, 50.0, tmp_path, duration_s=1.0)
    assert [p.name for p in paths] == ["timeline.png", "branches.png", "latency_cdf.png"]
    assert all(p.stat().st_size > 5_000 for p in paths)


def _millisecond_trace() -> BandwidthTrace:
    # Mahimahi-like: 1 ms at 24 Mbps, 1 ms at 0, repeated for 0.6 s, then 0.4 s of 3 Mbps.
    steps = [(i / 1000, 24.0 if i % 2 == 0 else 0.0) for i in range(600)] + [(0.6, 3.0)]
    return BandwidthTrace.from_steps(steps, 1.0)


def test_windowed_rate_is_the_mean_over_each_window():
    t, mbps = windowed_rate(_millisecond_trace(), end_s=2.25, window_s=0.5)
    # Windows 0-0.5, 0.5-1, ... the last cut at end_s; the trace loops after 1 s.
    assert t.tolist() == pytest.approx([0, 0.5, 0.5, 1, 1, 1.5, 1.5, 2, 2, 2.25])
    by_hand = [12.0, (0.1 * 12 + 0.4 * 3) / 0.5, 12.0, (0.1 * 12 + 0.4 * 3) / 0.5, 12.0]
    assert mbps.tolist() == pytest.approx(np.repeat(by_hand, 2).tolist())
    with pytest.raises(ValueError, match="window_s > 0"):
        windowed_rate(_millisecond_trace(), end_s=1.0, window_s=0.0)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list:
    """The matplotlib figures plot_all saves, in order, kept for inspection."""
    kept: list = []
    save = report._save

    def keep(fig, path, plt):  # type: ignore[no-untyped-def]
        kept.append(fig)
        return save(fig, path, plt)

    monkeypatch.setattr(report, "_save", keep)
    return kept


def test_timeline_draws_the_windowed_mean_not_each_millisecond(tmp_path: Path, figures: list):
    trace = _millisecond_trace()
    plot_all(_rows(), trace, 50.0, tmp_path, duration_s=2.0)
    (line,) = figures[0].axes[1].lines  # the uplink panel of timeline.png
    assert line.get_xdata().tolist() == pytest.approx(windowed_rate(trace, 2.0)[0].tolist())
    assert line.get_ydata().tolist() == pytest.approx(windowed_rate(trace, 2.0)[1].tolist())
    assert max(line.get_ydata()) == pytest.approx(12.0)  # never the 24 Mbps milliseconds


def test_windows_without_capacity_sit_on_a_floor_of_the_log_axis(tmp_path: Path, figures: list):
    fade = BandwidthTrace.from_steps([(0.0, 2.0), (1.0, 0.0), (2.0, 0.05)], 3.0)
    plot_all(_rows(), fade, 50.0, tmp_path, duration_s=3.0)
    ax = figures[0].axes[1]
    drawn = ax.lines[0].get_ydata()
    assert drawn.min() == pytest.approx(0.01) and np.all(drawn > 0)
    assert ax.get_ylim()[0] < 0.01
