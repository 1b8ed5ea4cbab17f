"""The camera's imperfections, applied after a scene is painted: light, blur, noise.

Applied in this order, as a real pipeline would: lighting (global gain, colour
cast, vignetting) on scene radiance, then optics (defocus or motion blur), then the
sensor (signal-dependent noise), then the tone curve (gamma) and 8-bit
quantisation. Masks are taken before any of this, so they stay sharp while the
pixels blur, exactly as with hand-labelled real photographs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraSpec:
    """One frame's capture settings. ``blur`` is ``"none"``, ``"defocus"`` or ``"motion"``."""

    gain: float = 1.0
    gamma: float = 1.0
    colour_cast: tuple[float, float, float] = (1.0, 1.0, 1.0)
    vignette: float = 0.0  # fraction of brightness lost in the corners
    blur: str = "none"
    blur_px: float = 0.0  # defocus sigma, or motion streak length
    blur_angle_rad: float = 0.0
    noise_std: float = 0.0  # at full brightness, in [0, 1] units
    noise_seed: int = 0


def sample_camera(rng: np.random.Generator, blur_probability: float) -> CameraSpec:
    """Random capture settings: mostly mild, sometimes dark, bright, blurred or noisy."""
    blur, blur_px = "none", 0.0
    if rng.random() < blur_probability:
        if rng.random() < 0.5:
            blur, blur_px = "defocus", float(rng.uniform(0.6, 2.2))
        else:
            blur, blur_px = "motion", float(rng.uniform(3.0, 9.0))
    return CameraSpec(
        gain=float(np.exp(rng.normal(0.0, 0.25))),
        gamma=float(np.exp(rng.normal(0.0, 0.2))),
        colour_cast=tuple(float(c) for c in rng.uniform(0.88, 1.12, 3)),  # type: ignore[arg-type]
        vignette=float(rng.uniform(0.0, 0.55)),
        blur=blur,
        blur_px=blur_px,
        blur_angle_rad=float(rng.uniform(0.0, np.pi)),
        noise_std=float(rng.uniform(0.005, 0.05)),
        noise_seed=int(rng.integers(2**31)),
    )


def _vignette(height: int, width: int, strength: float) -> np.ndarray:
    ys = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / (height / 2)
    xs = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / (width / 2)
    radius2 = (ys[:, None] ** 2 + xs[None, :] ** 2) / 2.0  # 1 in the corners
    return 1.0 - np.float32(strength) * radius2


def _motion_kernel(length_px: float, angle_rad: float) -> np.ndarray:
    size = int(np.ceil(length_px)) | 1
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    half = (length_px - 1) / 2
    dx, dy = half * np.cos(angle_rad), half * np.sin(angle_rad)
    start = (round(centre - dx), round(centre - dy))
    end = (round(centre + dx), round(centre + dy))
    cv2.line(kernel, start, end, 1.0, 1)
    return kernel / kernel.sum()


def apply_camera(radiance: np.ndarray, camera: CameraSpec) -> np.ndarray:
    """Turn a float32 (H, W, 3) radiance image in [0, 1] into the captured uint8 frame."""
    height, width = radiance.shape[:2]
    image = radiance * (np.float32(camera.gain) * np.asarray(camera.colour_cast, np.float32))
    if camera.vignette > 0:
        image *= _vignette(height, width, camera.vignette)[..., None]
    if camera.blur == "defocus":
        image = cv2.GaussianBlur(image, (0, 0), camera.blur_px, borderType=cv2.BORDER_REFLECT)
    elif camera.blur == "motion":
        kernel = _motion_kernel(camera.blur_px, camera.blur_angle_rad)
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    np.clip(image, 0.0, 1.0, out=image)
    if camera.noise_std > 0:
        rng = np.random.default_rng(camera.noise_seed)
        # Shot noise grows with the signal; a floor stands for read noise in the dark.
        sigma = np.float32(camera.noise_std) * np.sqrt(image + np.float32(0.05))
        image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
        np.clip(image, 0.0, 1.0, out=image)
    image **= np.float32(1.0 / camera.gamma)
    return (image * 255.0 + 0.5).astype(np.uint8)
