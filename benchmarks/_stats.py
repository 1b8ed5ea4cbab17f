"""Small helpers shared by the benchmarks: percentiles, 95 % intervals, table printing,
argument types."""

from __future__ import annotations

import argparse
import math
import platform
import statistics
from collections.abc import Sequence

import numpy as np


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else 0.0


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    return f"{platform.node()} {cpu} x{os.cpu_count()}, python {platform.python_version()}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def half95(values: Sequence[float]) -> float:
    """Half-width of the 95 % interval of the mean of ``values`` (Student's t; NaN for
    fewer than two)."""
    from scipy.stats import t  # scipy only for the benchmarks that give intervals

    n = len(values)
    if n < 2:
        return math.nan
    return float(t.ppf(0.975, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def count_arg(text: str) -> int:
    """An argparse type: a whole number >= 1 (repeats, seeds)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value
