"""Depth accuracy metrics over valid ground truth: AbsRel, RMSE (m), delta1 (< 1.25)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitedge.models.depth.errors import InvalidInputError


@dataclass(frozen=True)
class DepthMetrics:
    abs_rel: float
    rmse_m: float
    delta1: float
    num_pixels: int


def valid_mask(gt_depth_m: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels with finite, positive ground truth (and inside ``mask`` if given)."""
    valid = np.isfinite(gt_depth_m) & (gt_depth_m > 0)
    if mask is not None:
        if mask.shape != gt_depth_m.shape:
            raise InvalidInputError(f"mask {mask.shape} does not match depth {gt_depth_m.shape}")
        valid &= mask.astype(bool)
    return valid


def depth_metrics(
    pred_depth_m: np.ndarray,
    gt_depth_m: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    min_depth_m: float = 1e-3,
) -> DepthMetrics:
    """Compare a prediction with ground truth on valid pixels.

    Predictions are clamped to ``min_depth_m`` so a zero or negative guess counts
    as a large error instead of a division by zero; non-finite guesses count as
    the clamp too.
    """
    if pred_depth_m.shape != gt_depth_m.shape:
        raise InvalidInputError(
            f"prediction {pred_depth_m.shape} does not match ground truth {gt_depth_m.shape}"
        )
    valid = valid_mask(gt_depth_m, mask)
    count = int(valid.sum())
    if count == 0:
        raise InvalidInputError("no valid ground-truth pixels to evaluate")
    gt = gt_depth_m[valid].astype(np.float64)
    pred = np.nan_to_num(
        pred_depth_m[valid].astype(np.float64), nan=min_depth_m, posinf=min_depth_m
    )
    pred = np.maximum(pred, min_depth_m)
    ratio = np.maximum(pred / gt, gt / pred)
    return DepthMetrics(
        abs_rel=float(np.mean(np.abs(pred - gt) / gt)),
        rmse_m=float(np.sqrt(np.mean((pred - gt) ** 2))),
        delta1=float(np.mean(ratio < 1.25)),
        num_pixels=count,
    )


def abs_rel(
    pred_depth_m: np.ndarray, gt_depth_m: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Mean |pred - gt| / gt over valid pixels."""
    return depth_metrics(pred_depth_m, gt_depth_m, mask).abs_rel


def rmse_m(
    pred_depth_m: np.ndarray, gt_depth_m: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Root mean squared error in metres over valid pixels."""
    return depth_metrics(pred_depth_m, gt_depth_m, mask).rmse_m


def delta1(
    pred_depth_m: np.ndarray, gt_depth_m: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Fraction of valid pixels with max(pred/gt, gt/pred) < 1.25."""
    return depth_metrics(pred_depth_m, gt_depth_m, mask).delta1
