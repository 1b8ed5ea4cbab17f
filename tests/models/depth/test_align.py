"""Registering a hand-held focal stack: sub-pixel residual and recovered DFF accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.models.depth import (
    AlignmentWarning,
    Camera,
    FocalStack,
    InvalidInputError,
    align_focal_stack,
    apply_hand_motion,
    corner_error_px,
    depth_from_focus,
    depth_metrics,
    focus_sweep_m,
    make_scene,
    render_focal_stack,
)

# Slices differ in defocus as well as position; f/2 keeps the extreme slices alike
# enough to register on a 96x128 frame.
HAND_CAMERA = Camera(focal_length_mm=8.0, f_number=2.0, pixel_pitch_um=5.0)


@pytest.fixture(scope="module")
def hand_held():
    scene = make_scene(96, 128, seed=1, near_m=0.5, far_m=3.0)
    static = render_focal_stack(
        scene.rgb, scene.depth_m, focus_sweep_m(0.45, 4.0, 10), HAND_CAMERA, noise_std=1.0
    )
    moved, true_h = apply_hand_motion(static, seed=1)
    return scene, static, moved, true_h


def test_hand_held_stack_is_realigned_below_one_pixel(hand_held) -> None:
    scene, _, moved, true_h = hand_held
    result = align_focal_stack(moved, detector="sift")
    assert result.reference_index == len(moved) // 2
    assert all(m in ("reference", "features+ecc") for m in result.methods), result.methods
    assert np.nanmax(result.residuals_px) < 1.0, result.residuals_px
    errors = [
        corner_error_px(result.homographies[i], true_h[i], scene.depth_m.shape) for i in range(10)
    ]
    assert max(errors) < 1.0, errors
    # Without alignment the same slices are off by pixels.
    assert max(corner_error_px(np.eye(3), h, scene.depth_m.shape) for h in true_h) > 2.0


def test_alignment_recovers_dff_accuracy(hand_held) -> None:
    scene, static, moved, _ = hand_held
    aligned = align_focal_stack(moved).stack

    def confident_abs_rel(stack: FocalStack) -> float:
        result = depth_from_focus(stack)
        return depth_metrics(result.depth_m, scene.depth_m, result.confidence >= 0.5).abs_rel

    err_static, err_moved, err_aligned = map(confident_abs_rel, (static, moved, aligned))
    assert err_moved > 2 * err_static
    assert err_aligned < 1.5 * err_static, (err_static, err_moved, err_aligned)


def test_orb_detector_also_registers(hand_held) -> None:
    scene, _, moved, true_h = hand_held
    result = align_focal_stack(moved, detector="orb")
    errors = [
        corner_error_px(result.homographies[i], true_h[i], scene.depth_m.shape) for i in range(10)
    ]
    assert max(errors) < 1.0, errors


def test_featureless_stack_falls_back_with_a_warning() -> None:
    flat = np.full((3, 48, 64, 3), 120, np.uint8)
    stack = FocalStack(flat, np.array([0.5, 1.0, 2.0]))
    with pytest.warns(AlignmentWarning, match="aligned by"):
        result = align_focal_stack(stack)
    assert result.methods[0] in ("ecc", "identity") and result.methods[1] == "reference"
    assert np.array_equal(result.stack.images, flat)


def test_alignment_bad_arguments(hand_held) -> None:
    _, _, moved, _ = hand_held
    with pytest.raises(InvalidInputError, match="out of range"):
        align_focal_stack(moved, reference_index=10)
    with pytest.raises(InvalidInputError, match="unknown motion model"):
        align_focal_stack(moved, motion="rigid")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="unknown detector"):
        align_focal_stack(moved, detector="akaze")  # type: ignore[arg-type]
