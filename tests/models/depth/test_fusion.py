"""Scale/shift fitting of a relative prior, robustness to DFF outliers, full fusion."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.models.depth import (
    DffResult,
    InvalidInputError,
    all_in_focus,
    apply_scale_shift,
    depth_from_focus,
    depth_metrics,
    fit_scale_shift,
    fit_scale_shift_plain,
    fuse_depth,
    synthetic_prior,
)

SCALE, SHIFT = 0.37, 0.21  # 1/depth = SCALE * prior + SHIFT


def _dff_result(depth_m: np.ndarray, confidence: np.ndarray) -> DffResult:
    return DffResult(
        depth_m.astype(np.float32), confidence.astype(np.float32), depth_m * 0, depth_m[None]
    )


def test_fit_recovers_scale_and_shift_under_noise(scene) -> None:
    prior = synthetic_prior(scene.depth_m, scale=SCALE, shift=SHIFT, noise_std=0.05, seed=1)
    rel = prior(scene.rgb)
    fit = fit_scale_shift(rel, 1.0 / scene.depth_m)
    assert fit.scale == pytest.approx(SCALE, rel=0.03)
    assert fit.shift == pytest.approx(SHIFT, abs=0.05)
    depth = apply_scale_shift(prior(scene.rgb), fit)
    assert depth_metrics(depth, scene.depth_m).abs_rel < 0.05


def test_robust_fit_beats_plain_fit_with_20_percent_outliers(scene) -> None:
    rng = np.random.default_rng(2)
    rel = synthetic_prior(scene.depth_m, scale=SCALE, shift=SHIFT, noise_std=0.02)(scene.rgb)
    dff = scene.depth_m.copy()
    bad = rng.random(dff.shape) < 0.2
    dff[bad] = rng.uniform(0.3, 5.0, int(bad.sum()))  # gross DFF failures
    robust = fit_scale_shift(rel, 1.0 / dff)
    plain = fit_scale_shift_plain(rel, dff)
    robust_err = abs(robust.scale - SCALE) / SCALE
    plain_err = abs(plain.scale - SCALE) / SCALE
    assert robust_err < 0.02, robust
    assert plain_err > 0.1, plain
    assert 0.7 < robust.inlier_fraction < 0.9
    robust_depth = apply_scale_shift(rel, robust)
    plain_depth = apply_scale_shift(rel, plain)
    assert depth_metrics(robust_depth, scene.depth_m).abs_rel < 0.03
    assert depth_metrics(plain_depth, scene.depth_m).abs_rel > 0.1


def test_fused_depth_beats_dff_alone_on_the_full_image(scene, stack) -> None:
    dff = depth_from_focus(stack)
    prior = synthetic_prior(scene.depth_m, scale=SCALE, shift=SHIFT, noise_std=0.05, seed=3)
    fused = fuse_depth(all_in_focus(stack, dff), dff, prior)
    dff_err = depth_metrics(dff.depth_m, scene.depth_m).abs_rel
    fused_err = depth_metrics(fused.depth_m, scene.depth_m).abs_rel
    assert fused_err < 0.5 * dff_err, (fused_err, dff_err)
    assert fused.fit.scale == pytest.approx(SCALE, rel=0.15)


def test_local_refinement_corrects_a_regional_scale_error(scene) -> None:
    # The prior is off by 25% on the left third, as monocular networks are by region.
    inv = 1.0 / scene.depth_m.astype(np.float64)
    warped = inv.copy()
    warped[:, : inv.shape[1] // 3] *= 1.25
    rel = ((warped - SHIFT) / SCALE).astype(np.float32)
    dff = _dff_result(scene.depth_m, np.ones_like(scene.depth_m))
    global_only = fuse_depth(scene.rgb, dff, lambda img: rel)
    refined = fuse_depth(scene.rgb, dff, lambda img: rel, refine=True)
    err_global = depth_metrics(global_only.depth_m, scene.depth_m).abs_rel
    err_refined = depth_metrics(refined.depth_m, scene.depth_m).abs_rel
    assert err_refined < 0.7 * err_global, (err_refined, err_global)


def test_fusion_errors(scene) -> None:
    rel = np.zeros((4, 4), np.float32)
    with pytest.raises(InvalidInputError, match="same"):
        fit_scale_shift(rel, np.ones((4, 5)))
    with pytest.raises(InvalidInputError, match="constant"):
        fit_scale_shift(rel, np.ones((4, 4)), robust=False)
    low = _dff_result(scene.depth_m, np.zeros_like(scene.depth_m))
    with pytest.raises(InvalidInputError, match="reach confidence"):
        fuse_depth(scene.rgb, low, synthetic_prior(scene.depth_m, scale=1.0, shift=0.0))
    with pytest.raises(InvalidInputError, match="prior built for"):
        synthetic_prior(scene.depth_m, scale=1.0, shift=0.0)(np.zeros((3, 3, 3), np.uint8))
