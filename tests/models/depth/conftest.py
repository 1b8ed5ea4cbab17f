"""Shared small scenes and stacks for the depth tests (rendered once per session)."""

from __future__ import annotations

import pytest

from splitedge.models.depth import (
    Camera,
    FocalStack,
    Scene,
    focus_sweep_m,
    make_scene,
    render_focal_stack,
)

# A large-aperture lens scaled to thumbnail pixels: ~9 px of blur per dioptre,
# enough defocus signal for a 96x128 frame.
CAMERA = Camera(focal_length_mm=8.0, f_number=1.4, pixel_pitch_um=5.0)


@pytest.fixture(scope="session")
def camera() -> Camera:
    return CAMERA


@pytest.fixture(scope="session")
def scene() -> Scene:
    return make_scene(96, 128, seed=3, near_m=0.3, far_m=3.0)


@pytest.fixture(scope="session")
def stack(scene: Scene) -> FocalStack:
    return render_focal_stack(
        scene.rgb, scene.depth_m, focus_sweep_m(0.28, 4.0, 10), CAMERA, noise_std=1.0, seed=0
    )
