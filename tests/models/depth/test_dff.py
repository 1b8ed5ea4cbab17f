"""Depth from focus on rendered stacks: accuracy, confidence, focus measures, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from splitedge.models.depth import (
    FOCUS_MEASURES,
    FocalStack,
    InvalidInputError,
    all_in_focus,
    depth_from_focus,
    depth_metrics,
    focus_measure,
    peak_from_volume,
)


@pytest.mark.parametrize("method", FOCUS_MEASURES)
def test_dff_recovers_depth_on_confident_pixels(scene, stack, method) -> None:
    result = depth_from_focus(stack, method=method)
    # Confidence scales differ per measure; compare the more confident half of each.
    confident = result.confidence >= np.median(result.confidence)
    metrics = depth_metrics(result.depth_m, scene.depth_m, confident)
    everywhere = depth_metrics(result.depth_m, scene.depth_m)
    assert metrics.abs_rel < 0.13, metrics
    assert metrics.delta1 > 0.8, metrics
    assert metrics.abs_rel < 0.7 * everywhere.abs_rel
    assert result.depth_m.dtype == np.float32 and result.confidence.dtype == np.float32
    assert result.confidence.min() >= 0.0 and result.confidence.max() <= 1.0


def test_default_threshold_selects_accurate_pixels(scene, stack) -> None:
    result = depth_from_focus(stack)
    confident = result.confidence >= 0.5
    assert confident.mean() > 0.3
    assert depth_metrics(result.depth_m, scene.depth_m, confident).abs_rel < 0.1


def test_subslice_fit_beats_nearest_slice(scene, stack) -> None:
    gaussian = depth_from_focus(stack, fit="gaussian")
    nearest = depth_from_focus(stack, fit="none")
    mask = gaussian.confidence >= 0.5
    err_fit = depth_metrics(gaussian.depth_m, scene.depth_m, mask).abs_rel
    err_none = depth_metrics(nearest.depth_m, scene.depth_m, mask).abs_rel
    assert err_fit < err_none


def test_confidence_is_low_where_texture_is_missing(scene, stack) -> None:
    result = depth_from_focus(stack)
    # The window reaches past the patch border; compare its interior only.
    weak = cv2.erode(scene.weak_texture_mask.astype(np.uint8), np.ones((9, 9))) > 0
    assert weak.sum() > 20
    weak_conf = float(np.median(result.confidence[weak]))
    textured_conf = float(np.median(result.confidence[~scene.weak_texture_mask]))
    assert weak_conf < 0.2
    assert textured_conf > 2 * weak_conf


def test_parabola_vertex_with_uneven_spacing() -> None:
    # Focus values sampled from a Gaussian peaked at 1.3 dioptres on uneven slices.
    diopters = np.array([0.5, 1.0, 1.6, 2.5, 3.0])
    curve = np.exp(-((diopters - 1.3) ** 2) / (2 * 0.4**2))
    volume = np.broadcast_to(curve[:, None, None], (5, 2, 2)).copy()
    peak, frac = peak_from_volume(volume, diopters, "gaussian")
    assert np.allclose(peak, 1.3, atol=1e-9)
    assert np.all((frac > 1) & (frac < 2))


def test_all_in_focus_picks_pixels_from_slices(stack) -> None:
    result = depth_from_focus(stack)
    aif = all_in_focus(stack, result)
    assert aif.shape == stack.images.shape[1:] and aif.dtype == np.uint8


def test_bad_inputs_raise_precise_errors(stack) -> None:
    with pytest.raises(InvalidInputError, match="unknown focus measure"):
        focus_measure(stack.images[0], "entropy")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="positive odd"):
        focus_measure(stack.images[0], "sml", window_px=4)
    with pytest.raises(InvalidInputError, match=">= 2 slices"):
        depth_from_focus(FocalStack(stack.images[:1], stack.focus_distances_m[:1]))
    with pytest.raises(InvalidInputError, match="unknown peak fit"):
        depth_from_focus(stack, fit="cubic")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"\(H, W\)"):
        focus_measure(np.zeros((4, 4, 2), np.uint8))
