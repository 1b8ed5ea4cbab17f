"""Thin-lens CoC, the layered renderer, and hand-held motion."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.models.depth import (
    Camera,
    InvalidInputError,
    apply_hand_motion,
    circle_of_confusion_px,
    disc_kernel,
    focus_sweep_m,
    make_scene,
    render_focal_stack,
    render_slice,
)
from splitedge.models.depth.dff import focus_measure


def test_coc_matches_hand_calculation() -> None:
    cam = Camera(focal_length_mm=50.0, f_number=2.0, pixel_pitch_um=10.0)
    # A = 25 mm; c = 25 mm * 50/(2000-50) * |4000-2000|/4000 = 0.32051 mm = 32.05 px.
    coc = circle_of_confusion_px(4.0, 2.0, cam)
    assert coc == pytest.approx(25.0 * 50.0 / 1950.0 * 0.5 / 0.010, rel=1e-9)
    assert coc == pytest.approx(32.0513, abs=1e-3)


def test_coc_zero_at_focus_and_grows_with_distance_from_it(camera) -> None:
    depths = np.array([2.0, 2.5, 3.0, 4.0, 6.0, 10.0])
    coc = circle_of_confusion_px(depths, 2.0, camera)
    assert coc[0] == 0.0
    assert np.all(np.diff(coc) > 0)
    near = circle_of_confusion_px(np.array([2.0, 1.5, 1.0, 0.5]), 2.0, camera)
    assert np.all(np.diff(near) > 0)


def test_coc_rejects_focus_inside_focal_length(camera) -> None:
    with pytest.raises(InvalidInputError, match="focal length"):
        circle_of_confusion_px(1.0, 0.005, camera)


def test_disc_kernel_is_normalised_and_widens() -> None:
    assert disc_kernel(0.3).max() == pytest.approx(1.0)  # below a pixel: a delta
    widths = [int((disc_kernel(d).sum(axis=0) > 1e-6).sum()) for d in (2.0, 6.0, 12.0)]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    for d in (0.5, 3.3, 9.0):
        assert disc_kernel(d).sum() == pytest.approx(1.0, abs=1e-5)


def test_rendered_sharpness_peaks_at_focus_and_falls_monotonically(camera) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    depth = np.full((48, 48), 1.0, np.float32)
    focus = [1.0, 0.8, 0.6, 0.45, 0.35]  # ever further from the plane at 1 m
    sharp = [
        focus_measure(render_slice(rgb, depth, f, camera), "tenengrad")[12:36, 12:36].mean()
        for f in focus
    ]
    assert np.all(np.diff(sharp) < 0), sharp
    in_focus = render_slice(rgb, depth, 1.0, camera)
    assert np.abs(in_focus * 255 - rgb).max() <= 1.0  # at the focus distance: untouched


def _two_layer() -> tuple[np.ndarray, np.ndarray]:
    """Left: a noisy foreground at 0.5 m. Right: flat grey background at 3 m."""
    rng = np.random.default_rng(1)
    rgb = np.full((64, 96, 3), 128, np.uint8)
    rgb[:, :48] = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    depth = np.full((64, 96), 3.0, np.float32)
    depth[:, :48] = 0.5
    return rgb, depth


def test_sharp_foreground_does_not_smear_into_blurred_background(camera) -> None:
    rgb, depth = _two_layer()
    bg_coc = float(circle_of_confusion_px(3.0, 0.5, camera))
    assert bg_coc > 10  # the background is strongly blurred ...
    out = render_slice(rgb, depth, 0.5, camera) * 255
    # ... yet its pixels next to the edge take no foreground texture (foreground CoC = 0).
    background = out[:, 49:]
    assert np.abs(background - 128).max() <= 1.0
    assert np.abs(out[:, :48] - rgb[:, :48]).max() <= 1.0


def test_blurred_foreground_spreads_only_within_its_own_coc(camera) -> None:
    rgb, depth = _two_layer()
    fg_coc = float(circle_of_confusion_px(0.5, 3.0, camera))
    out = render_slice(rgb, depth, 3.0, camera) * 255
    reach = int(np.ceil(fg_coc / 2)) + 1
    beyond = out[:, 48 + reach :]
    assert np.abs(beyond - 128).max() <= 1.0
    # Within the reach the foreground does cover the background partly (occlusion blur).
    assert np.abs(out[:, 48 : 48 + reach // 2] - 128).max() > 5


def test_render_stack_shapes_noise_and_errors(camera) -> None:
    scene = make_scene(32, 40, seed=0)
    fd = focus_sweep_m(0.3, 5.0, 4)
    clean = render_focal_stack(scene.rgb, scene.depth_m, fd, camera)
    noisy = render_focal_stack(scene.rgb, scene.depth_m, fd, camera, noise_std=3.0, seed=1)
    again = render_focal_stack(scene.rgb, scene.depth_m, fd, camera, noise_std=3.0, seed=1)
    assert clean.images.shape == (4, 32, 40, 3) and clean.images.dtype == np.uint8
    assert np.array_equal(noisy.images, again.images)
    diff = noisy.images.astype(float) - clean.images
    assert 2.0 < diff.std() < 4.0
    with pytest.raises(InvalidInputError, match="does not match"):
        render_focal_stack(scene.rgb, scene.depth_m[:10], fd, camera)
    with pytest.raises(InvalidInputError, match="> 0"):
        render_focal_stack(scene.rgb, scene.depth_m * 0, fd, camera)


def test_hand_motion_keeps_anchor_and_moves_the_rest(stack) -> None:
    moved, homographies = apply_hand_motion(stack, seed=4)
    anchor = len(stack) // 2
    assert np.array_equal(moved.images[anchor], stack.images[anchor])
    assert np.allclose(homographies[anchor], np.eye(3))
    others = [i for i in range(len(stack)) if i != anchor]
    assert all(not np.allclose(homographies[i], np.eye(3)) for i in others)
    again, _ = apply_hand_motion(stack, seed=4)
    assert np.array_equal(again.images, moved.images)


def test_scene_is_seeded_and_in_range() -> None:
    a, b = make_scene(48, 64, seed=7), make_scene(48, 64, seed=7)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_m, b.depth_m)
    assert not np.array_equal(a.rgb, make_scene(48, 64, seed=8).rgb)
    assert a.depth_m.dtype == np.float32 and a.depth_m.min() >= 0.3 and a.depth_m.max() <= 5.0
    assert a.weak_texture_mask.any()
