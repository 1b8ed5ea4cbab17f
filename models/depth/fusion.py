"""Fusing depth from focus with a single-image relative depth prior (HybridDepth's global stage).

A *prior* is any callable ``image -> relative inverse depth`` (H, W): a monocular
network, or a stand-in in tests. Its output is right up to an unknown scale and
shift, ``1/depth = scale * prior + shift``. DFF gives metric depth where the scene
has texture, so the scale and shift are fitted on the confident DFF pixels, in
inverse-depth space, by weighted least squares made robust by a least-median
start and Tukey reweighting: DFF's failures (occlusion edges, weak texture) are
gross outliers, not Gaussian noise. ``fit_scale_shift_plain`` is the published
code's variant (ordinary least squares on every pixel) kept for comparison.
An optional local stage corrects the fitted map with a smooth per-region scale
map, fitted on the same confident pixels by normalised convolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from splitedge.models.depth.dff import DffResult
from splitedge.models.depth.errors import InvalidInputError

Prior = Callable[[np.ndarray], np.ndarray]
_TUKEY_C = 4.685  # 95% efficiency under Gaussian noise


@dataclass(frozen=True)
class ScaleShift:
    """``1/depth_m = scale * prior + shift``; residuals are in dioptres (1/m)."""

    scale: float
    shift: float
    num_pixels: int
    inlier_fraction: float
    residual_rms_diopters: float


@dataclass
class FusionResult:
    depth_m: np.ndarray
    fit: ScaleShift
    prior_relative: np.ndarray
    fit_mask: np.ndarray


def _check_pair(prior_rel: np.ndarray, target: np.ndarray, name: str) -> None:
    if prior_rel.shape != target.shape or prior_rel.ndim != 2:
        raise InvalidInputError(
            f"prior {prior_rel.shape} and {name} {target.shape} must be the same (H, W) shape"
        )


def _weighted_lstsq(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    sw = w.sum()
    if sw <= 0:
        raise InvalidInputError("no pixel has positive weight for the scale/shift fit")
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    var = (w * (x - mx) ** 2).sum()
    if var <= 1e-18 * sw:
        raise InvalidInputError("prior is constant on the fitted pixels; scale is undetermined")
    scale = (w * (x - mx) * (y - my)).sum() / var
    return float(scale), float(my - scale * mx)


def _least_median_start(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, num_pairs: int = 256
) -> tuple[float, float]:
    """Line through the random pixel pair with the least median residual (LMedS).

    It survives up to half the pixels being outliers, which ordinary least squares,
    and IRLS started from it, do not.
    """
    n = x.size
    sub = rng.choice(n, size=min(n, 4000), replace=False)
    xs, ys = x[sub], y[sub]
    i, j = rng.integers(0, n, num_pairs), rng.integers(0, n, num_pairs)
    dx = x[j] - x[i]
    ok = np.abs(dx) > 1e-12 * (np.abs(x).max() + 1e-30)
    if not ok.any():
        return _weighted_lstsq(x, y, np.ones_like(x))
    scale = (y[j] - y[i])[ok] / dx[ok]
    shift = y[i][ok] - scale * x[i][ok]
    med = np.median(np.abs(ys[None, :] - (scale[:, None] * xs[None, :] + shift[:, None])), axis=1)
    best = int(np.argmin(med))
    return float(scale[best]), float(shift[best])


def fit_scale_shift(
    prior_rel: np.ndarray,
    target_inv_depth: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    robust: bool = True,
    max_iterations: int = 20,
    seed: int = 0,
) -> ScaleShift:
    """Fit ``target_inv_depth ≈ scale * prior_rel + shift`` over pixels with weight > 0.

    ``weights`` (e.g. DFF confidence, 0 outside the confident mask) default to 1.
    With ``robust`` the fit starts from a least-median line and is refined by
    Tukey-biweight iteratively reweighted least squares, residuals scaled by MAD.
    """
    _check_pair(prior_rel, target_inv_depth, "target")
    w_all = np.ones(prior_rel.shape) if weights is None else np.asarray(weights, np.float64)
    if w_all.shape != prior_rel.shape:
        raise InvalidInputError(f"weights {w_all.shape} do not match prior {prior_rel.shape}")
    use = (w_all > 0) & np.isfinite(prior_rel) & np.isfinite(target_inv_depth)
    if use.sum() < 2:
        raise InvalidInputError(f"need >= 2 usable pixels for a scale/shift fit, got {use.sum()}")
    x = prior_rel[use].astype(np.float64)
    y = target_inv_depth[use].astype(np.float64)
    w = w_all[use]
    if not robust:
        scale, shift = _weighted_lstsq(x, y, w)
        resid = y - (scale * x + shift)
        return ScaleShift(scale, shift, int(x.size), 1.0, float(np.sqrt(np.mean(resid**2))))

    scale, shift = _least_median_start(x, y, np.random.default_rng(seed))
    tukey = np.ones_like(x)
    for _ in range(max_iterations):
        resid = y - (scale * x + shift)
        sigma = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        sigma = max(sigma, 1e-9 * (np.abs(y).mean() + 1e-12))
        u = resid / (_TUKEY_C * sigma)
        tukey = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        new_scale, new_shift = _weighted_lstsq(x, y, w * tukey)
        converged = abs(new_scale - scale) <= 1e-7 * abs(scale) and abs(
            new_shift - shift
        ) <= 1e-7 * (abs(shift) + abs(scale) * np.abs(x).mean())
        scale, shift = new_scale, new_shift
        if converged:
            break
    inliers = tukey > 0
    resid = y - (scale * x + shift)
    return ScaleShift(
        scale,
        shift,
        int(x.size),
        float(inliers.mean()),
        float(np.sqrt(np.mean(resid[inliers] ** 2))) if inliers.any() else float("nan"),
    )


def fit_scale_shift_plain(prior_rel: np.ndarray, dff_depth_m: np.ndarray) -> ScaleShift:
    """The published code's alignment: ordinary least squares in inverse depth, every pixel."""
    _check_pair(prior_rel, dff_depth_m, "DFF depth")
    return fit_scale_shift(prior_rel, 1.0 / np.maximum(dff_depth_m, 1e-6), robust=False)


def apply_scale_shift(
    prior_rel: np.ndarray,
    fit: ScaleShift,
    *,
    min_depth_m: float = 0.05,
    max_depth_m: float = 100.0,
) -> np.ndarray:
    """Metric depth (H, W) float32 from the prior; inverse depth is clamped to the range."""
    if not 0 < min_depth_m < max_depth_m:
        raise InvalidInputError(
            f"need 0 < min_depth_m < max_depth_m, got {min_depth_m}, {max_depth_m}"
        )
    inv = fit.scale * prior_rel.astype(np.float64) + fit.shift
    inv = np.clip(np.nan_to_num(inv, nan=1.0 / max_depth_m), 1.0 / max_depth_m, 1.0 / min_depth_m)
    return (1.0 / inv).astype(np.float32)


def refine_scale_map(
    depth_m: np.ndarray,
    dff_depth_m: np.ndarray,
    weights: np.ndarray,
    *,
    sigma_px: float = 12.0,
    max_log_correction: float = 0.5,
    outlier_log_ratio: float = 0.3,
) -> np.ndarray:
    """Local stage: multiply depth by a smooth scale map fitted on weighted DFF pixels.

    The log ratio DFF / depth is averaged with a Gaussian of ``sigma_px`` by
    normalised convolution; where few confident pixels are near, the correction
    fades to none instead of extrapolating. Pixels whose ratio differs by more
    than ``outlier_log_ratio`` from the global median are left out, as DFF errors.
    """
    if not (depth_m.shape == dff_depth_m.shape == weights.shape):
        raise InvalidInputError("depth, DFF depth and weights must share one (H, W) shape")
    log_ratio = np.log(np.maximum(dff_depth_m, 1e-6) / np.maximum(depth_m, 1e-6)).astype(np.float32)
    w = np.clip(weights, 0, None).astype(np.float32)
    if (w > 0).any():
        centre = float(np.median(log_ratio[w > 0]))
        w = np.where(np.abs(log_ratio - centre) <= outlier_log_ratio, w, 0.0).astype(np.float32)
    support = cv2.GaussianBlur(w, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    num = cv2.GaussianBlur(w * log_ratio, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    mean_log = num / np.maximum(support, 1e-12)
    # Support near the typical level gets the full correction, sparse support little.
    level = float(np.percentile(support, 90)) + 1e-12
    trust = support / (support + 0.25 * level)
    correction = np.clip(mean_log * trust, -max_log_correction, max_log_correction)
    return (depth_m * np.exp(correction)).astype(np.float32)


def fuse_depth(
    image: np.ndarray,
    dff: DffResult,
    prior: Prior,
    *,
    confidence_threshold: float = 0.5,
    robust: bool = True,
    refine: bool = False,
    min_depth_m: float = 0.05,
    max_depth_m: float = 100.0,
) -> FusionResult:
    """Metric depth from a relative prior, scaled by the confident DFF pixels.

    ``image`` is what the prior sees (e.g. the all-in-focus image or one slice).
    """
    prior_rel = np.asarray(prior(image), dtype=np.float32)
    _check_pair(prior_rel, dff.depth_m, "DFF depth")
    mask = dff.confidence >= confidence_threshold
    if mask.sum() < 2:
        raise InvalidInputError(
            f"only {int(mask.sum())} DFF pixels reach confidence {confidence_threshold}; "
            "lower the threshold or capture a stack with more texture"
        )
    weights = np.where(mask, dff.confidence, 0.0)
    fit = fit_scale_shift(prior_rel, 1.0 / dff.depth_m.astype(np.float64), weights, robust=robust)
    depth = apply_scale_shift(prior_rel, fit, min_depth_m=min_depth_m, max_depth_m=max_depth_m)
    if refine:
        depth = refine_scale_map(depth, dff.depth_m, weights)
    return FusionResult(depth_m=depth, fit=fit, prior_relative=prior_rel, fit_mask=mask)


def refine_with_dff(
    depth_m: np.ndarray,
    dff: DffResult,
    weights: np.ndarray,
    *,
    sigma_px: float = 6.0,
    num_bins: int = 12,
) -> np.ndarray:
    """Local stage: a prior-guided scale correction, then a confidence blend with DFF.

    A monocular prior errs per object (a box put at the wrong depth), so its error
    in log depth is close to constant over each object and jumps at its edges.
    The log ratio DFF / fused depth is therefore averaged by a joint bilateral
    normalised convolution: near in the image (Gaussian ``sigma_px``) *and* near in
    the fused log depth (``num_bins`` range bins, interpolated as in a bilateral
    grid), weighted by DFF confidence. Unlike an isotropic smoothing it neither
    bleeds one object's correction into its neighbours nor discards large
    corrections as outliers. Where few confident pixels are near, the correction
    fades out. Last, each pixel moves towards DFF in log depth by its confidence,
    since a confident DFF pixel is sharper than any prior.
    """
    if not (depth_m.shape == dff.depth_m.shape == weights.shape):
        raise InvalidInputError("depth, DFF depth and weights must share one (H, W) shape")
    log_depth = np.log(np.maximum(depth_m, 1e-6)).astype(np.float32)
    log_ratio = np.log(np.maximum(dff.depth_m, 1e-6)).astype(np.float32) - log_depth
    lo, hi = np.percentile(log_depth, [1, 99])
    guide = np.clip((log_depth - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0) * (num_bins - 1)
    w = np.clip(weights, 0, None).astype(np.float32)
    correction = np.zeros_like(log_depth)
    support = np.zeros_like(log_depth)
    for k in range(num_bins):
        # Hat weights: each pixel belongs to its two nearest bins, linearly.
        member = np.clip(1.0 - np.abs(guide - k), 0.0, None).astype(np.float32)
        if not member.any():
            continue
        wk = w * np.exp(-0.5 * (guide - k) ** 2).astype(np.float32)
        num = cv2.GaussianBlur(wk * log_ratio, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
        den = cv2.GaussianBlur(wk, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
        correction += member * num / np.maximum(den, 1e-12)
        support += member * den
    level = float(np.percentile(support, 90)) + 1e-12
    trust = support / (support + 0.1 * level)
    refined = log_depth + correction * trust
    alpha = np.clip(dff.confidence, 0.0, 1.0).astype(np.float32)
    blended = alpha * np.log(np.maximum(dff.depth_m, 1e-6)) + (1.0 - alpha) * refined
    return np.exp(blended).astype(np.float32)
