"""Read and write bandwidth trace files into :class:`BandwidthTrace`.

Formats (``fmt`` names for :func:`read_trace`, listed in ``FORMATS``):

``mahimahi``
    One integer millisecond per line; each line is one 1500-byte delivery
    opportunity, repeated lines are several packets, the last timestamp is the
    period (the trace loops). Mahimahi's native format, read and written.
``csv``
    Throughput log with the header ``time_s,mbps``; each row's rate holds until
    the next row, the last row for the previous row's interval. ``#`` lines are
    comments; ``# duration_s=<x>`` (written by :func:`write_csv`) sets the period.
``cooked``
    Pensieve's cooked traces: ``time_s mbps`` per line, whitespace separated,
    same step semantics as ``csv``.
``hsdpa``
    Riiser et al. 2013, 3G/HSDPA commute logs (Norway). Six whitespace separated
    columns per line: ``unix_time_s  time_ms  latitude  longitude  bytes  elapsed_ms``
    where ``bytes`` arrived during the ``elapsed_ms`` before the line. Only the last
    two columns are used (rate = bytes / elapsed, one segment per line), so the
    uncertain meaning of the second time column does not matter.
``belgium-4g``
    van der Hooft et al. 2016, 4G/LTE logs (Ghent): ``epoch_ms  ms_since_start
    latitude  longitude  bytes  elapsed_ms`` (extra columns ignored); read like
    ``hsdpa``. Both column layouts are assumed from the datasets' descriptions and
    conversion scripts seen in ABR code; no sample file was available here.

Every reader fails with :class:`TraceFormatError` naming the source and line.

:func:`read_trace` without a format takes it from the suffix (``.csv``; Mahimahi's
``.up``/``.down``), else from the layout of the first lines (:func:`sniff_format`):
a file of one integer per line is Mahimahi whatever its name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from splitedge.simulations.traces import BandwidthTrace, TraceError


class TraceFormatError(TraceError):
    """A trace file that does not parse; the message starts with ``source:line:``."""

    def __init__(self, source: str, line_no: int, message: str) -> None:
        super().__init__(f"{source}:{line_no}: {message}")
        self.source = source
        self.line_no = line_no


def _data_lines(text: str) -> list[tuple[int, str]]:
    return [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def _number(token: str, what: str, source: str, line_no: int) -> float:
    try:
        value = float(token)
    except ValueError as exc:
        raise TraceFormatError(source, line_no, f"{what} {token!r} is not a number") from exc
    if not math.isfinite(value):
        raise TraceFormatError(source, line_no, f"{what} {token!r} is not finite")
    return value


# -- Mahimahi -------------------------------------------------------------------------


def parse_mahimahi(text: str, *, source: str = "<mahimahi>", bin_ms: int = 1) -> BandwidthTrace:
    timestamps: list[int] = []
    last_line_no = 1
    for n, line in _data_lines(text):
        last_line_no = n
        if not (line.isascii() and line.isdigit()):
            raise TraceFormatError(
                source, n, f"expected a non-negative integer millisecond, got {line!r}"
            )
        ts = int(line)
        if timestamps and ts < timestamps[-1]:
            raise TraceFormatError(
                source, n, f"timestamp {ts} ms goes back in time (previous {timestamps[-1]} ms)"
            )
        timestamps.append(ts)
    if not timestamps:
        raise TraceFormatError(source, 1, "no delivery opportunities (empty trace)")
    if timestamps[-1] == 0:
        raise TraceFormatError(
            source, last_line_no, "the last timestamp (the period) must be > 0 ms"
        )
    return BandwidthTrace.from_delivery_ms(
        np.asarray(timestamps, dtype=np.int64), bin_ms=bin_ms, name=Path(source).name
    )


def format_mahimahi(trace: BandwidthTrace) -> str:
    return "\n".join(map(str, trace.to_delivery_ms().tolist())) + "\n"


# -- step logs (CSV, Pensieve cooked) -----------------------------------------------


def _steps_to_trace(
    times: list[float], rates: list[float], duration_s: float | None, source: str
) -> BandwidthTrace:
    t = np.asarray(times) - times[0]
    if duration_s is None:
        last_interval = t[-1] - t[-2] if len(t) > 1 else 1.0
        duration_s = float(t[-1] + last_interval)
    elif duration_s <= t[-1]:
        raise TraceFormatError(
            source, 1, f"duration_s={duration_s} must exceed the last time {t[-1]} s"
        )
    return BandwidthTrace(t, np.asarray(rates), duration_s, Path(source).name)


def _parse_steps(text: str, source: str, *, csv: bool) -> BandwidthTrace:
    times: list[float] = []
    rates: list[float] = []
    duration_s: float | None = None
    header_seen = not csv
    for n, line in _data_lines(text):
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition("=")
            if key.strip() == "duration_s":
                duration_s = _number(value.strip(), "duration_s", source, n)
            continue
        if not header_seen:
            if [c.strip() for c in line.split(",")] != ["time_s", "mbps"]:
                raise TraceFormatError(source, n, f"expected header 'time_s,mbps', got {line!r}")
            header_seen = True
            continue
        fields = [f.strip() for f in line.split(",")] if csv else line.split()
        if len(fields) != 2:
            layout = "time_s,mbps" if csv else "time_s mbps"
            raise TraceFormatError(source, n, f"expected 2 fields ({layout}), got {len(fields)}")
        t = _number(fields[0], "time_s", source, n)
        r = _number(fields[1], "mbps", source, n)
        if times and t <= times[-1]:
            raise TraceFormatError(
                source, n, f"time_s {t} does not increase (previous {times[-1]})"
            )
        if r < 0:
            raise TraceFormatError(source, n, f"mbps {r} is negative")
        times.append(t)
        rates.append(r)
    if not times:
        raise TraceFormatError(source, 1, "no samples")
    return _steps_to_trace(times, rates, duration_s, source)


def parse_csv(text: str, *, source: str = "<csv>") -> BandwidthTrace:
    return _parse_steps(text, source, csv=True)


def parse_cooked(text: str, *, source: str = "<cooked>") -> BandwidthTrace:
    return _parse_steps(text, source, csv=False)


def format_csv(trace: BandwidthTrace) -> str:
    rows = [f"# duration_s={trace.duration_s!r}", "time_s,mbps"]
    rows += [f"{s!r},{r!r}" for s, _, r in trace.segments()]
    return "\n".join(rows) + "\n"


def format_cooked(trace: BandwidthTrace, interval_s: float = 1.0) -> str:
    """Pensieve layout: the mean rate over each ``interval_s`` window."""
    starts, rates = trace.mean_rates(interval_s, trace.duration_s)
    return "".join(f"{s:.6g} {r:.6g}\n" for s, r in zip(starts, rates, strict=True))


# -- measurement logs (HSDPA, Belgium 4G) --------------------------------------------


def _parse_bytes_elapsed(text: str, source: str) -> BandwidthTrace:
    durations_ms: list[float] = []
    rates: list[float] = []
    for n, line in _data_lines(text):
        fields = line.split()
        if len(fields) < 6:
            raise TraceFormatError(
                source, n, f"expected >= 6 columns (..., bytes, elapsed_ms), got {len(fields)}"
            )
        size_bytes = _number(fields[4], "bytes", source, n)
        elapsed_ms = _number(fields[5], "elapsed_ms", source, n)
        if size_bytes < 0:
            raise TraceFormatError(source, n, f"bytes {fields[4]} is negative")
        if elapsed_ms <= 0:
            raise TraceFormatError(source, n, f"elapsed_ms {fields[5]} must be > 0")
        durations_ms.append(elapsed_ms)
        rates.append(size_bytes * 8 / (elapsed_ms * 1000.0))
    if not rates:
        raise TraceFormatError(source, 1, "no samples")
    ends_s = np.cumsum(durations_ms) / 1000.0
    starts_s = np.concatenate(([0.0], ends_s[:-1]))
    return BandwidthTrace(starts_s, np.asarray(rates), float(ends_s[-1]), Path(source).name)


def parse_hsdpa(text: str, *, source: str = "<hsdpa>") -> BandwidthTrace:
    return _parse_bytes_elapsed(text, source)


def parse_belgium_4g(text: str, *, source: str = "<belgium-4g>") -> BandwidthTrace:
    return _parse_bytes_elapsed(text, source)


# -- files ------------------------------------------------------------------------------

_PARSERS: dict[str, Callable[..., BandwidthTrace]] = {
    "mahimahi": parse_mahimahi,
    "csv": parse_csv,
    "cooked": parse_cooked,
    "hsdpa": parse_hsdpa,
    "belgium-4g": parse_belgium_4g,
}
FORMATS = tuple(_PARSERS)
# Mahimahi names its traces X.up / X.down (``mm-link X.up X.down``).
SUFFIX_FORMATS = {".csv": "csv", ".up": "mahimahi", ".down": "mahimahi"}
_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 50


def _is_number(token: str) -> bool:
    try:
        return math.isfinite(float(token))
    except ValueError:
        return False


def sniff_format(text: str) -> str | None:
    """The format whose layout every data line of ``text`` fits, or ``None``.

    Only the layout is checked (the reader then checks every value and names the
    line): one integer per line is ``mahimahi``; a ``time_s,mbps`` header is
    ``csv``; two numbers per line is ``cooked``; six or more columns with numeric
    ``bytes, elapsed_ms`` is ``hsdpa`` (read like ``belgium-4g``).
    """
    lines = [ln for _, ln in _data_lines(text)]
    if not lines:
        return None
    if all(ln.isascii() and ln.isdigit() for ln in lines):
        return "mahimahi"
    rows = [ln for ln in lines if not ln.startswith("#")]
    if not rows:
        return None
    if [c.strip() for c in rows[0].split(",")] == ["time_s", "mbps"]:
        return "csv"
    split = [ln.split() for ln in rows]
    if all(len(f) == 2 and _is_number(f[0]) and _is_number(f[1]) for f in split):
        return "cooked"
    if all(len(f) >= 6 and _is_number(f[4]) and _is_number(f[5]) for f in split):
        return "hsdpa"
    return None


def _head(path: Path) -> str:
    """The first whole lines of a file (at most ``_SNIFF_LINES`` data lines)."""
    try:
        with path.open("rb") as f:
            data = f.read(_SNIFF_BYTES)
            if len(data) == _SNIFF_BYTES and f.read(1):
                data = data[: data.rfind(b"\n") + 1]  # drop the line cut in the middle
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace file: {exc}") from exc
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][:_SNIFF_LINES])


def guess_format(path: str | Path) -> str | None:
    """The format a file's suffix names (``SUFFIX_FORMATS``), else the one its first lines fit.

    ``None`` when neither tells; :class:`TraceError` when the file cannot be read.
    """
    path = Path(path)
    by_suffix = SUFFIX_FORMATS.get(path.suffix.lower())
    return by_suffix or sniff_format(_head(path))


def read_trace(path: str | Path, fmt: str | None = None) -> BandwidthTrace:
    """Read a trace file in format ``fmt`` (one of ``FORMATS``; ``None``: :func:`guess_format`)."""
    path = Path(path)
    if fmt is None:
        fmt = guess_format(path)
        if fmt is None:
            raise TraceError(
                f"{path}: cannot tell the trace format from its name or its first lines; "
                f"name one of {', '.join(FORMATS)}"
            )
    elif fmt not in _PARSERS:
        raise TraceError(f"{path}: unknown trace format {fmt!r}; one of {', '.join(FORMATS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read trace file: {exc}") from exc
    return _PARSERS[fmt](text, source=str(path))


def read_mahimahi(path: str | Path, *, bin_ms: int = 1) -> BandwidthTrace:
    return parse_mahimahi(Path(path).read_text(encoding="utf-8"), source=str(path), bin_ms=bin_ms)


def write_mahimahi(trace: BandwidthTrace, path: str | Path) -> None:
    Path(path).write_text(format_mahimahi(trace), encoding="utf-8")


def write_csv(trace: BandwidthTrace, path: str | Path) -> None:
    Path(path).write_text(format_csv(trace), encoding="utf-8")


def write_cooked(trace: BandwidthTrace, path: str | Path, interval_s: float = 1.0) -> None:
    Path(path).write_text(format_cooked(trace, interval_s), encoding="utf-8")


__all__ = [
    "FORMATS",
    "SUFFIX_FORMATS",
    "TraceFormatError",
    "format_cooked",
    "format_csv",
    "format_mahimahi",
    "guess_format",
    "parse_belgium_4g",
    "parse_cooked",
    "parse_csv",
    "parse_hsdpa",
    "parse_mahimahi",
    "read_mahimahi",
    "read_trace",
    "sniff_format",
    "write_cooked",
    "write_csv",
    "write_mahimahi",
]
