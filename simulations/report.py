"""Per-frame rows, the summary table and the plots of a scenario run (real or simulated).

Both the real runner and the discrete-event simulator produce :class:`FrameRow`
lists, so one CSV layout, one summary and one set of plots serve both. Every
camera frame of a run has a row: a frame the client skipped because it was still
busy with an earlier one is a row with ``source = "dropped"`` and ``reason =
"busy"`` (no latency), so drops are counted, not lost.

Summary per policy: frames captured / answered, p50/p95/p99 latency of answered
frames, SLA violation % (frames late or dropped, over frames captured), local
fallbacks, drops by reason, link probes, uplink MB (the frames' payloads and the
probes' sent beside frames), mean batch size, quality, branch mix.
Plots (matplotlib, Agg): ``timeline.png`` (latency over time per policy, the
uplink trace's mean rate per 500 ms under it), ``branches.png`` (branch over
time per policy), ``latency_cdf.png`` (CDF per policy).
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.simulations.traces import BandwidthTrace

__all__ = [
    "FrameRow",
    "PolicySummary",
    "format_summary",
    "plot_all",
    "read_csv",
    "summarize",
    "windowed_rate",
    "write_csv",
    "write_summary",
]


@dataclass
class FrameRow:
    """One camera frame of one client under one policy; times in ms, sizes in bytes."""

    policy: str
    client: int
    frame_index: int
    t_s: float  # capture time since the run (and its traces) started
    uplink_mbps: float  # the trace's rate at t_s
    candidate: str  # label of what the policy picked: branch[/Nbit]
    source: str  # edge | local | dropped
    reason: str = ""  # busy, deadline, edge-unavailable, edge-error:..., or "" (answered)
    latency_ms: float = math.nan  # capture to result; NaN for frames never started
    device_ms: float = 0.0  # head + encode
    network_ms: float = 0.0  # round trip minus server time
    server_ms: float = 0.0
    queue_ms: float = 0.0
    tail_ms: float = 0.0
    local_ms: float = 0.0
    batch_size: int = 0
    payload_bytes: int = 0
    detections: int = -1  # -1: not scored (DES, or segmentation)
    gt_objects: int = -1
    true_positives: int = -1
    quality: float = math.nan  # per-frame recall at IoU 0.5 (detection) or fg IoU (segmentation)
    sla_met: bool = False
    # Frames between this one and the detection whose boxes its answer carries: 0 for a
    # detection, >= 1 for a tracked answer; -1 where not recorded (the real runner's
    # policies but adaptive, whose session records it).
    track_age: int = -1

    @property
    def answered(self) -> bool:
        return self.source != "dropped"


_FIELDS = [f.name for f in fields(FrameRow)]
_TYPES = {f.name: f.type for f in fields(FrameRow)}


def write_csv(rows: Iterable[FrameRow], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    return path


def read_csv(path: str | Path) -> list[FrameRow]:
    """Rows back from :func:`write_csv` (types restored)."""
    out = []
    with Path(path).open(newline="") as f:
        for record in csv.DictReader(f):
            values: dict[str, Any] = {}
            for name, text in record.items():
                kind = _TYPES[name]
                if kind == "int":
                    values[name] = int(text)
                elif kind == "float":
                    values[name] = float(text)
                elif kind == "bool":
                    values[name] = text == "True"
                else:
                    values[name] = text
            out.append(FrameRow(**values))
    return out


@dataclass
class PolicySummary:
    policy: str
    frames: int  # captured
    answered: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    sla_violation_pct: float
    fallbacks: int  # answered locally because the edge missed
    drops: dict[str, int]  # reason -> count
    uplink_mb: float
    mean_batch: float
    quality: float  # mean per-frame quality of answered frames (NaN if not scored)
    map50: float = math.nan  # COCO mAP@0.5 over the run's answers (runner only)
    # COCO mAP@0.5 over every frame captured, an answer past the SLA (or none) counting
    # as no boxes: what an application that waits at most the SLA gets (runner only).
    map50_in_sla: float = math.nan
    branch_mix: dict[str, int] | None = None
    # Frames an adaptive scheduler sent only to measure the link (beside a frame or in
    # its place), and the bytes of those beside a frame: no row holds them, uplink_mb does.
    probes: int = 0
    probe_mb: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def summarize(
    rows: Sequence[FrameRow],
    map50_by_policy: Mapping[str, float] | None = None,
    map50_in_sla_by_policy: Mapping[str, float] | None = None,
    probes_by_policy: Mapping[str, tuple[int, int]] | None = None,
) -> list[PolicySummary]:
    """One summary per policy, in the order policies first appear in ``rows``.

    ``probes_by_policy``: policy -> (link probes sent, payload bytes of those sent beside
    a frame), from the adaptive sessions; their bytes count in ``uplink_mb``."""
    order = list(dict.fromkeys(r.policy for r in rows))
    out = []
    for policy in order:
        part = [r for r in rows if r.policy == policy]
        answered = [r for r in part if r.answered]
        lat = np.asarray([r.latency_ms for r in answered], dtype=np.float64)
        drops = Counter(r.reason for r in part if not r.answered)
        scored = [r.quality for r in answered if not math.isnan(r.quality)]
        remote = [r for r in part if r.payload_bytes > 0]
        batches = [r.batch_size for r in answered if r.batch_size > 0]
        probes, probe_bytes = (probes_by_policy or {}).get(policy, (0, 0))
        out.append(
            PolicySummary(
                policy=policy,
                frames=len(part),
                answered=len(answered),
                p50_ms=_pct(lat, 50),
                p95_ms=_pct(lat, 95),
                p99_ms=_pct(lat, 99),
                sla_violation_pct=100.0 * sum(not r.sla_met for r in part) / len(part),
                fallbacks=sum(r.source == "local" and r.reason != "" for r in part),
                drops=dict(sorted(drops.items())),
                uplink_mb=(sum(r.payload_bytes for r in remote) + probe_bytes) / 1e6,
                mean_batch=float(np.mean(batches)) if batches else math.nan,
                quality=float(np.mean(scored)) if scored else math.nan,
                map50=(map50_by_policy or {}).get(policy, math.nan),
                map50_in_sla=(map50_in_sla_by_policy or {}).get(policy, math.nan),
                branch_mix=dict(Counter(r.candidate for r in answered).most_common()),
                probes=probes,
                probe_mb=probe_bytes / 1e6,
            )
        )
    return out


def format_summary(summaries: Sequence[PolicySummary]) -> str:
    """A fixed-width table, one line per policy."""
    headers = (
        "policy",
        "frames",
        "answered",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "sla_viol_%",
        "fallback",
        "probes",
        "uplink_MB",
        "batch",
        "recall",
        "mAP50",
        "mAP50_sla",
        "dropped (why)",
    )
    lines = []
    for s in summaries:
        drops = ", ".join(f"{k} {v}" for k, v in s.drops.items()) or "-"
        lines.append(
            (
                s.policy,
                str(s.frames),
                str(s.answered),
                f"{s.p50_ms:.1f}",
                f"{s.p95_ms:.1f}",
                f"{s.p99_ms:.1f}",
                f"{s.sla_violation_pct:.1f}",
                str(s.fallbacks),
                str(s.probes),
                f"{s.uplink_mb:.2f}",
                f"{s.mean_batch:.2f}",
                f"{s.quality:.3f}",
                f"{s.map50:.3f}",
                f"{s.map50_in_sla:.3f}",
                drops,
            )
        )
    cells = [headers, *lines]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    text = [
        "  ".join(
            c.ljust(w) if i in (0, len(headers) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in text)


def write_summary(summaries: Sequence[PolicySummary], out_dir: str | Path) -> tuple[Path, Path]:
    """``summary.txt`` (the table) and ``summary.csv`` (one row per policy)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    txt = out / "summary.txt"
    txt.write_text(format_summary(summaries) + "\n", encoding="utf-8")
    path = out / "summary.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        names = [f.name for f in fields(PolicySummary)]
        writer.writerow(names)
        for s in summaries:
            row = s.as_dict()
            writer.writerow(
                [
                    ";".join(f"{k}={v}" for k, v in row[n].items())
                    if isinstance(row[n], dict)
                    else row[n]
                    for n in names
                ]
            )
    return txt, path


# ---------------------------------------------------------------------- plots


RATE_WINDOW_S = 0.5  # plots average a trace over windows a person can read
RATE_FLOOR_MBPS = 0.01  # where windows with no capacity are drawn on a log axis


def plot_all(
    rows: Sequence[FrameRow],
    uplink: BandwidthTrace,
    sla_ms: float,
    out_dir: str | Path,
    *,
    duration_s: float | None = None,
    window_s: float = RATE_WINDOW_S,
) -> list[Path]:
    """Write the three PNGs; returns their paths.

    The uplink is drawn as its mean rate over ``window_s`` windows
    (:func:`windowed_rate`): a Mahimahi trace changes every millisecond.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policies = list(dict.fromkeys(r.policy for r in rows))
    end_s = duration_s or max((r.t_s for r in rows), default=1.0)
    paths = []

    fig, (ax_lat, ax_bw) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for p in policies:
        pts = [r for r in rows if r.policy == p and r.answered]
        ax_lat.scatter([r.t_s for r in pts], [r.latency_ms for r in pts], s=6, label=p)
    ax_lat.axhline(sla_ms, color="red", linestyle="--", linewidth=1, label="SLA")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_yscale("log")
    ax_lat.legend(fontsize=7, loc="upper left", ncol=2)
    _plot_rate(ax_bw, uplink, end_s, window_s)
    ax_bw.set_ylabel(f"uplink Mbps\n({window_s * 1000:g} ms mean)")
    ax_bw.set_xlabel("time (s)")
    fig.tight_layout()
    paths.append(_save(fig, out / "timeline.png", plt))

    fig, axes = plt.subplots(
        len(policies), 1, figsize=(10, 1.2 + 1.3 * len(policies)), sharex=True, squeeze=False
    )
    for ax, p in zip(axes[:, 0], policies, strict=True):
        pts = [r for r in rows if r.policy == p and r.answered]
        labels = sorted({r.candidate for r in pts})
        colours = ["tab:green" if r.source == "edge" else "tab:orange" for r in pts]
        ax.scatter([r.t_s for r in pts], [labels.index(r.candidate) for r in pts], s=5, c=colours)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_ylim(-0.5, max(len(labels), 1) - 0.5)
        ax.set_title(p, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("time (s)  (green: edge answered, orange: ran locally)")
    fig.tight_layout()
    paths.append(_save(fig, out / "branches.png", plt))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for p in policies:
        lat = np.sort([r.latency_ms for r in rows if r.policy == p and r.answered])
        if lat.size:
            ax.step(lat, np.arange(1, lat.size + 1) / lat.size, where="post", label=p)
    ax.axvline(sla_ms, color="red", linestyle="--", linewidth=1, label="SLA")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of answered frames")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(_save(fig, out / "latency_cdf.png", plt))
    return paths


def windowed_rate(
    trace: BandwidthTrace, end_s: float, window_s: float = RATE_WINDOW_S
) -> tuple[np.ndarray, np.ndarray]:
    """``(t_s, mbps)`` to draw: the trace's mean rate over each ``window_s`` from 0 to ``end_s``.

    Each window is one flat step, its start and end both listed (``t_s`` = s0, e0,
    s1, e1, ...); the last window ends at ``end_s``. The trace loops past its period.
    """
    if not (window_s > 0 and end_s > 0):
        raise ValueError(f"windowed_rate needs window_s > 0 and end_s > 0, got {window_s}, {end_s}")
    starts, means = trace.mean_rates(window_s, end_s)
    ends = np.append(starts[1:], end_s)
    return np.column_stack((starts, ends)).reshape(-1), np.repeat(means, 2)


def _plot_rate(ax: Any, trace: BandwidthTrace, end_s: float, window_s: float) -> None:
    t, mbps = windowed_rate(trace, end_s, window_s)
    ax.set_yscale("log")
    if np.all(mbps > 0):
        ax.plot(t, mbps, color="black", linewidth=1)
        return
    # A log axis cannot show a window with no capacity (a deep fade): draw it on a
    # floor below every other window, and say so.
    floor = min(RATE_FLOOR_MBPS, 0.5 * float(mbps[mbps > 0].min(initial=2 * RATE_FLOOR_MBPS)))
    ax.plot(t, np.maximum(mbps, floor), color="black", linewidth=1)
    ax.set_ylim(bottom=0.8 * floor)
    ax.axhline(floor, color="grey", linestyle=":", linewidth=1, label="no capacity")
    ax.legend(fontsize=7, loc="upper right")


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
