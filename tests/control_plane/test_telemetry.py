"""Telemetry aggregation and the JSON-lines recorder (no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from splitedge.control_plane.telemetry import (
    FrameRecord,
    TelemetryAggregator,
    TelemetryRecorder,
    TelemetryRecordError,
)
from splitedge.proto.control import client_telemetry_topic, parse_telemetry


class FakeClock:
    def __init__(self) -> None:
        self.t = 10.0

    def __call__(self) -> float:
        return self.t


def test_summary_counts_and_percentiles() -> None:
    clock = FakeClock()
    agg = TelemetryAggregator(clock)
    latencies_ms = [float(x) for x in range(1, 21)]
    for i, latency_ms in enumerate(latencies_ms):
        agg.add(
            FrameRecord(
                branch="split-8b" if i % 4 else "local",
                source="edge" if i % 4 else "local",
                latency_ms=latency_ms,
                sla_miss=latency_ms > 18,
                bandwidth_mbps=10.0 + i,
            )
        )
    agg.add(FrameRecord("split-8b", "dropped", None, True, drop_reason="deadline"))
    agg.add(FrameRecord("none", "dropped", None, False, drop_reason="prefiltered"))
    agg.add(FrameRecord("none", "dropped", None, False))
    clock.t += 2.5
    s = agg.summary("cam-1", sla_ms=18.0, timestamp=1_700_000_000.0)
    assert s.frames == 23
    assert s.window_s == 2.5
    assert s.branch_mix == {"local": 5, "split-8b": 16, "none": 2}
    assert s.source_mix == {"edge": 15, "local": 5, "dropped": 3}
    expected = np.percentile(latencies_ms, [50, 95, 99])
    assert s.latency_ms == pytest.approx(dict(zip(("p50", "p95", "p99"), expected, strict=True)))
    assert s.sla_misses == 3  # 19 ms, 20 ms, and the deadline drop
    assert s.bandwidth_mbps == {"mean": pytest.approx(19.5), "last": 29.0}
    assert s.drop_reasons == {"deadline": 1, "prefiltered": 1, "unspecified": 1}
    assert s.sla_ms == 18.0
    # The summary survives the wire unchanged.
    topic = client_telemetry_topic("cam-1")
    assert parse_telemetry(s.encode(), topic) == s


def test_empty_window_has_no_latency_or_bandwidth() -> None:
    agg = TelemetryAggregator()
    agg.add(FrameRecord("none", "dropped", None, False, drop_reason="prefiltered"))
    s = agg.summary("cam-1")
    assert s.latency_ms == {} and s.bandwidth_mbps == {}
    agg.reset()
    assert agg.summary("cam-1").frames == 0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (FrameRecord("b", "cloud", 1.0, False), "frame source 'cloud' is not one of"),  # type: ignore[arg-type]
        (FrameRecord("b", "edge", -1.0, False), "latency_ms must be finite and >= 0"),
        (FrameRecord("b", "edge", float("nan"), False), "latency_ms must be finite"),
        (FrameRecord("b", "edge", 1.0, False, float("inf")), "bandwidth_mbps must be finite"),
        (FrameRecord("b", "local", None, False), "served local needs latency_ms"),
    ],
)
def test_malformed_records_are_refused(record: FrameRecord, reason: str) -> None:
    agg = TelemetryAggregator()
    with pytest.raises(TelemetryRecordError, match=reason):
        agg.add(record)
    assert agg.frames == 0


def test_recorder_writes_valid_summaries_and_skips_bad_ones(tmp_path: Path) -> None:
    agg = TelemetryAggregator()
    agg.add(FrameRecord("split-8b", "edge", 12.0, False, 20.0))
    summary = agg.summary("cam-1")
    path = tmp_path / "telemetry.jsonl"
    recorder = TelemetryRecorder(link=None, path=path)  # type: ignore[arg-type]
    topic = client_telemetry_topic("cam-1")
    assert recorder.write(topic, summary.encode()) == summary
    assert recorder.write(topic, b"{broken") is None
    assert recorder.write(client_telemetry_topic("cam-9"), summary.encode()) is None
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["topic"] == topic
    assert line["summary"] == summary.to_dict()
    assert (recorder.recorded_count, recorder.rejected_count) == (1, 2)
