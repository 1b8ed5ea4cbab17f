"""Client telemetry: per-frame records -> periodic summaries on MQTT, and a recorder.

The frame loop calls :meth:`TelemetryPublisher.record` once per frame (synchronous,
no I/O, never raises for broker trouble). Every ``every_n_frames`` frames the window
is summarised (branch mix, source mix, latency p50/p95/p99 of completed frames, SLA
misses, bandwidth estimate, drop reasons) and published on
``splitedge/v1/client/<client_id>/telemetry`` (QoS 0, not retained: summaries are a
stream, and a lost one only thins the record) from a background task.

:class:`TelemetryRecorder` subscribes to telemetry topics and appends every valid
summary as one JSON line, for ``splitedge-sim`` to replay or plot later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np

from splitedge.control_plane.link import MqttLink
from splitedge.proto.control import (
    CLIENT_TELEMETRY_FILTER,
    FrameSource,
    MessageError,
    TelemetrySummary,
    check_id,
    client_telemetry_topic,
    parse_telemetry,
)

__all__ = [
    "FrameRecord",
    "TelemetryAggregator",
    "TelemetryPublisher",
    "TelemetryRecordError",
    "TelemetryRecorder",
]

log = logging.getLogger(__name__)

_SOURCES: tuple[str, ...] = get_args(FrameSource)


class TelemetryRecordError(ValueError):
    """A frame record is malformed (unknown source, negative latency, ...)."""


@dataclass(frozen=True)
class FrameRecord:
    """What happened to one frame.

    ``source``: where its result came from (``edge``, ``local``) or ``dropped``
    (then ``drop_reason`` says why and ``latency_ms`` may be None).
    """

    branch: str
    source: FrameSource
    latency_ms: float | None
    sla_miss: bool
    bandwidth_mbps: float | None = None
    drop_reason: str | None = None

    def check(self) -> None:
        """Raise :class:`TelemetryRecordError` on a malformed record."""
        if self.source not in _SOURCES:
            raise TelemetryRecordError(
                f"frame source {self.source!r} is not one of {', '.join(_SOURCES)}"
            )
        for name in ("latency_ms", "bandwidth_mbps"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise TelemetryRecordError(f"frame {name} must be finite and >= 0, got {value!r}")
        if self.source != "dropped" and self.latency_ms is None:
            raise TelemetryRecordError(f"a frame served {self.source} needs latency_ms")


class TelemetryAggregator:
    """Accumulates frame records and turns a window of them into a summary (pure)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        """Start a new window."""
        self.frames = 0
        self._started_s = self._clock()
        self._latencies_ms: list[float] = []
        self._bandwidths_mbps: list[float] = []
        self._branches: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._sla_misses = 0

    def add(self, record: FrameRecord) -> None:
        """Count one frame (raises :class:`TelemetryRecordError` if malformed)."""
        record.check()
        self.frames += 1
        self._branches[record.branch] += 1
        self._sources[record.source] += 1
        if record.source == "dropped":
            self._drops[record.drop_reason or "unspecified"] += 1
        elif record.latency_ms is not None:
            self._latencies_ms.append(record.latency_ms)
        if record.bandwidth_mbps is not None:
            self._bandwidths_mbps.append(record.bandwidth_mbps)
        self._sla_misses += int(record.sla_miss)

    def summary(
        self, client_id: str, *, sla_ms: float | None = None, timestamp: float | None = None
    ) -> TelemetrySummary:
        """Summarise the current window (does not reset it)."""
        latency_ms: dict[str, float] = {}
        if self._latencies_ms:
            p50, p95, p99 = np.percentile(np.asarray(self._latencies_ms), [50, 95, 99])
            latency_ms = {"p50": float(p50), "p95": float(p95), "p99": float(p99)}
        bandwidth_mbps: dict[str, float] = {}
        if self._bandwidths_mbps:
            bandwidth_mbps = {
                "mean": float(np.mean(self._bandwidths_mbps)),
                "last": self._bandwidths_mbps[-1],
            }
        return TelemetrySummary(
            client_id=client_id,
            timestamp=time.time() if timestamp is None else timestamp,
            frames=self.frames,
            window_s=max(0.0, self._clock() - self._started_s),
            branch_mix=dict(self._branches),
            source_mix={source: self._sources[source] for source in _SOURCES},
            latency_ms=latency_ms,
            sla_misses=self._sla_misses,
            bandwidth_mbps=bandwidth_mbps,
            drop_reasons=dict(self._drops),
            sla_ms=sla_ms,
        )


class TelemetryPublisher:
    """Publishes a :class:`TelemetrySummary` every ``every_n_frames`` recorded frames."""

    def __init__(
        self,
        link: MqttLink,
        client_id: str,
        every_n_frames: int = 30,
        *,
        sla_ms: float | None = None,
    ) -> None:
        if every_n_frames < 1:
            raise ValueError(f"every_n_frames must be >= 1, got {every_n_frames}")
        self.client_id = check_id("client_id", client_id)
        self.topic = client_telemetry_topic(client_id)
        self.every_n_frames = every_n_frames
        self.sla_ms = sla_ms  # the control plane may change it; it is reported as is
        self.published_count = 0
        self._link = link
        self._aggregator = TelemetryAggregator()
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, record: FrameRecord) -> TelemetrySummary | None:
        """Count one frame; returns the summary when this frame closed a window.

        Must be called from the event loop's thread; publishing happens in the
        background, so the frame loop never waits on the broker.
        """
        self._aggregator.add(record)
        if self._aggregator.frames < self.every_n_frames:
            return None
        return self._close_window()

    def _close_window(self) -> TelemetrySummary:
        summary = self._aggregator.summary(self.client_id, sla_ms=self.sla_ms)
        self._aggregator.reset()
        task = asyncio.get_running_loop().create_task(
            self._publish(summary), name=f"telemetry {self.client_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return summary

    async def _publish(self, summary: TelemetrySummary) -> None:
        if await self._link.publish(self.topic, summary.encode(), qos=0, retain=False):
            self.published_count += 1

    async def flush(self) -> TelemetrySummary | None:
        """Publish a partial window now (if any frames) and wait for pending publishes."""
        summary = self._close_window() if self._aggregator.frames else None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return summary


class TelemetryRecorder:
    """Writes every valid telemetry summary it hears as one JSON line to ``path``.

    Line format: ``{"received_at": unix_s, "topic": ..., "summary": {...}}``.
    Invalid messages are counted in ``rejected_count`` and logged, never written.
    """

    def __init__(
        self, link: MqttLink, path: str | Path, topic_filter: str = CLIENT_TELEMETRY_FILTER
    ) -> None:
        self.path = Path(path)
        self.topic_filter = topic_filter
        self.recorded_count = 0
        self.rejected_count = 0
        self._link = link

    def write(self, topic: str, payload: bytes) -> TelemetrySummary | None:
        """Validate one message and append it; None (logged) if invalid."""
        try:
            summary = parse_telemetry(payload, topic)
        except MessageError as exc:
            self.rejected_count += 1
            log.warning("telemetry on %s not recorded: %s", topic, exc)
            return None
        line: dict[str, Any] = {
            "received_at": time.time(),
            "topic": topic,
            "summary": summary.to_dict(),
        }
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n")
        self.recorded_count += 1
        return summary

    async def run(self) -> None:
        """Record until cancelled."""
        async with self._link.subscribe(self.topic_filter, qos=0) as subscription:
            async for message in subscription:
                self.write(message.topic, message.payload)
