"""Depth from focus: per-pixel focus measures over a stack, a sub-slice peak, a confidence.

Focus measures (each summed or averaged over a local window):

* ``"sml"``: sum-modified-Laplacian (Nayar & Nakagawa), ``|2I - I_l - I_r| + |2I - I_u - I_d|``;
* ``"lapvar"``: local variance of the Laplacian;
* ``"tenengrad"``: local mean of squared Sobel gradient magnitude.

The focus curve of each pixel peaks at the slice whose focus distance matches the
pixel's depth. The peak is refined between slices by a Gaussian fit (a parabola
through the logarithm of the three samples around the maximum) in dioptre space,
where blur is linear in defocus, so the fit is not skewed by uneven metric spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from splitedge.models.depth.errors import InvalidInputError
from splitedge.models.depth.types import FocalStack

FocusMeasure = Literal["sml", "lapvar", "tenengrad"]
PeakFit = Literal["gaussian", "parabolic", "none"]
FOCUS_MEASURES: tuple[str, ...] = ("sml", "lapvar", "tenengrad")


@dataclass
class DffResult:
    """``depth_m`` (H, W) float32 metres, ``confidence`` (H, W) float32 in [0, 1].

    ``peak_index`` is the fractional slice index of the focus peak; ``focus_volume``
    the (N, H, W) focus measure it was taken from.
    """

    depth_m: np.ndarray
    confidence: np.ndarray
    peak_index: np.ndarray
    focus_volume: np.ndarray


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        if image.shape[2] != 3:
            raise InvalidInputError(f"image must be (H, W) or (H, W, 3), got {image.shape}")
        image = (
            cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            if image.dtype == np.uint8
            else image.mean(axis=2)
        )
    elif image.ndim != 2:
        raise InvalidInputError(f"image must be (H, W) or (H, W, 3), got {image.shape}")
    gray = image.astype(np.float32)
    return gray / 255.0 if image.dtype == np.uint8 else gray


def focus_measure(
    image: np.ndarray, method: FocusMeasure = "sml", window_px: int = 9
) -> np.ndarray:
    """Focus measure map (H, W) float32 >= 0 of one image (uint8 RGB or float gray)."""
    if window_px < 1 or window_px % 2 == 0:
        raise InvalidInputError(f"window_px must be a positive odd number, got {window_px}")
    gray = _gray(image)
    border = cv2.BORDER_REFLECT
    box = (window_px, window_px)
    if method == "sml":
        kx = np.array([[-1.0, 2.0, -1.0]], np.float32)
        ml = np.abs(cv2.filter2D(gray, -1, kx, borderType=border))
        ml += np.abs(cv2.filter2D(gray, -1, kx.T, borderType=border))
        return cv2.boxFilter(ml, -1, box, normalize=False, borderType=border)
    if method == "lapvar":
        lap = cv2.Laplacian(gray, cv2.CV_32F, ksize=1, borderType=border)
        mean = cv2.boxFilter(lap, -1, box, borderType=border)
        mean_sq = cv2.boxFilter(lap * lap, -1, box, borderType=border)
        return np.maximum(mean_sq - mean * mean, 0.0)
    if method == "tenengrad":
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, borderType=border)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, borderType=border)
        return cv2.boxFilter(gx * gx + gy * gy, -1, box, borderType=border)
    raise InvalidInputError(f"unknown focus measure {method!r}; choose one of {FOCUS_MEASURES}")


def focus_volume(
    images: np.ndarray, method: FocusMeasure = "sml", window_px: int = 9
) -> np.ndarray:
    """Focus measure of every slice: (N, H, W) float32."""
    return np.stack([focus_measure(img, method, window_px) for img in images])


def _peak_offset(
    x_prev: np.ndarray,
    x_mid: np.ndarray,
    x_next: np.ndarray,
    y_prev: np.ndarray,
    y_mid: np.ndarray,
    y_next: np.ndarray,
) -> np.ndarray:
    """Vertex of the parabola through three points with uneven x spacing (NaN if convex)."""
    d1 = (y_mid - y_prev) / (x_mid - x_prev)
    d2 = (y_next - y_mid) / (x_next - x_mid)
    curvature = (d2 - d1) / (x_next - x_prev)  # a in y = a x^2 + b x + c
    slope_at_mid = d1 + curvature * (x_mid - x_prev)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = x_mid - slope_at_mid / (2.0 * curvature)
    # A non-concave triple has no maximum between its ends: NaN tells the caller.
    vertex = np.where(curvature < 0, vertex, np.nan)
    return np.clip(vertex, np.minimum(x_prev, x_next), np.maximum(x_prev, x_next))


def peak_from_volume(
    volume: np.ndarray, focus_diopters: np.ndarray, fit: PeakFit = "gaussian"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel focus peak: (dioptres (H, W), fractional slice index (H, W))."""
    n = volume.shape[0]
    idx = np.argmax(volume, axis=0)
    x = np.asarray(focus_diopters, np.float64)
    best = x[idx]
    if fit == "none" or n < 3:
        return best, idx.astype(np.float64)
    if fit not in ("gaussian", "parabolic"):
        raise InvalidInputError(f"unknown peak fit {fit!r}; choose gaussian, parabolic or none")
    inner = np.clip(idx, 1, n - 2)
    take = lambda k: np.take_along_axis(volume, k[None], axis=0)[0].astype(np.float64)  # noqa: E731
    y0, y1, y2 = take(inner - 1), take(inner), take(inner + 1)
    if fit == "gaussian":
        floor = 1e-12
        y0, y1, y2 = (np.log(np.maximum(v, floor)) for v in (y0, y1, y2))
    vertex = _peak_offset(x[inner - 1], x[inner], x[inner + 1], y0, y1, y2)
    vertex = np.where(np.isfinite(vertex), vertex, best)
    # A maximum on an end slice can only lie between that slice and its neighbour;
    # a curve still rising at the end gets the end slice.
    first, last = idx == 0, idx == n - 1
    vertex = np.where(first, np.clip(vertex, min(x[0], x[1]), max(x[0], x[1])), vertex)
    diopters = np.where(last, np.clip(vertex, min(x[-2], x[-1]), max(x[-2], x[-1])), vertex)
    frac = (
        np.interp(diopters, x, np.arange(n))
        if x[0] < x[-1]
        else np.interp(diopters, x[::-1], np.arange(n)[::-1])
    )
    return diopters, frac


def estimate_noise_level(volume: np.ndarray) -> float:
    """Focus response of sensor noise alone, estimated from the stack itself.

    Every pixel is badly defocused in some slice, where its response is mostly noise;
    a low percentile of those per-pixel minima tracks the noise response. A small
    fraction of the strongest response keeps it above zero on noiseless renders.
    """
    per_pixel_min = volume.min(axis=0)
    peak_p99 = float(np.percentile(volume.max(axis=0), 99))
    return max(float(np.percentile(per_pixel_min, 10)), 1e-3 * peak_p99, 1e-12)


def focus_confidence(volume: np.ndarray, noise_level: float | None = None) -> np.ndarray:
    """Confidence in [0, 1]: how much the focus peak stands out, and above what noise.

    Prominence ``(max - mean) / max`` (scaled to reach 1 for a single spike) is 0 for
    a flat curve; the strength term ``(max - mean) / (max - mean + noise_level)``
    discounts peaks no larger than what sensor noise alone produces, which is all a
    textureless patch can offer. ``noise_level`` defaults to
    :func:`estimate_noise_level`.
    """
    n = volume.shape[0]
    peak = volume.max(axis=0).astype(np.float64)
    signal = peak - volume.mean(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        prominence = np.where(peak > 0, signal / peak, 0.0)
    if n > 1:
        prominence = prominence / (1.0 - 1.0 / n)
    if noise_level is None:
        noise_level = estimate_noise_level(volume)
    strength = signal / (signal + noise_level)
    return np.clip(prominence * strength, 0.0, 1.0).astype(np.float32)


def depth_from_focus(
    stack: FocalStack,
    *,
    method: FocusMeasure = "sml",
    window_px: int = 9,
    fit: PeakFit = "gaussian",
    noise_level: float | None = None,
) -> DffResult:
    """Metric depth and confidence from a (registered) focal stack.

    Depth is bounded by the nearest and farthest focus distances: outside them the
    focus curve has no peak to find.
    """
    if len(stack) < 2:
        raise InvalidInputError(f"depth from focus needs >= 2 slices, got {len(stack)}")
    volume = focus_volume(stack.images, method, window_px)
    diopters, frac = peak_from_volume(volume, stack.focus_diopters, fit)
    lo, hi = float(stack.focus_diopters.min()), float(stack.focus_diopters.max())
    depth = 1.0 / np.clip(diopters, lo, hi)
    return DffResult(
        depth_m=depth.astype(np.float32),
        confidence=focus_confidence(volume, noise_level),
        peak_index=frac.astype(np.float32),
        focus_volume=volume,
    )


def all_in_focus(stack: FocalStack, result: DffResult) -> np.ndarray:
    """Composite each pixel from its sharpest slice (uint8 RGB); handy to inspect DFF."""
    idx = np.clip(np.rint(result.peak_index).astype(np.int64), 0, len(stack) - 1)
    h, w = stack.size_hw
    return stack.images[idx, np.arange(h)[:, None], np.arange(w)[None, :]]
