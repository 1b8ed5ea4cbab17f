"""Dioptre <-> metre conversion: focus is linear in dioptres, depth is reported in metres."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from splitedge.models.depth.errors import FocusDistanceError


def _positive(values: ArrayLike, unit: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        # 0 dioptres is focus at infinity, which has no finite metric depth.
        raise FocusDistanceError(f"{unit} values must be finite and > 0, got {arr.ravel()[:8]}")
    return arr


def meters_to_diopters(distance_m: ArrayLike) -> np.ndarray:
    """1 / distance; raises :class:`FocusDistanceError` on non-positive input."""
    return 1.0 / _positive(distance_m, "metre")


def diopters_to_meters(power_diopters: ArrayLike) -> np.ndarray:
    """1 / dioptres; raises :class:`FocusDistanceError` on non-positive input."""
    return 1.0 / _positive(power_diopters, "dioptre")
