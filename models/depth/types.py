"""Plain data of the depth package: the thin-lens camera and the focal stack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitedge.models.depth.errors import FocusDistanceError, InvalidInputError


@dataclass(frozen=True)
class Camera:
    """Thin-lens parameters needed to predict defocus blur in pixels."""

    focal_length_mm: float
    f_number: float
    pixel_pitch_um: float

    def __post_init__(self) -> None:
        for name in ("focal_length_mm", "f_number", "pixel_pitch_um"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise InvalidInputError(f"camera {name} must be a finite number > 0, got {value!r}")

    @property
    def aperture_mm(self) -> float:
        """Aperture diameter A = f / N."""
        return self.focal_length_mm / self.f_number


def check_focus_distances(focus_distances_m: np.ndarray) -> np.ndarray:
    """Return distances as float64 or raise: they must be finite, > 0, strictly monotonic."""
    dist = np.asarray(focus_distances_m, dtype=np.float64)
    if dist.ndim != 1 or dist.size == 0:
        raise FocusDistanceError(
            f"focus distances must be a non-empty 1-D list, got shape {dist.shape}"
        )
    if not np.all(np.isfinite(dist)) or np.any(dist <= 0):
        raise FocusDistanceError(f"focus distances must be finite and > 0 m, got {dist.tolist()}")
    if dist.size > 1:
        step = np.diff(dist)
        if not (np.all(step > 0) or np.all(step < 0)):
            raise FocusDistanceError(
                f"focus distances must be strictly increasing or decreasing, got {dist.tolist()}"
            )
    return dist


@dataclass
class FocalStack:
    """N slices of one scene, each focused at its own distance.

    ``images`` is (N, H, W, 3) uint8 RGB; ``focus_distances_m`` is (N,) and strictly
    monotonic; ``camera`` is optional (real captures may not know their pitch).
    """

    images: np.ndarray
    focus_distances_m: np.ndarray
    camera: Camera | None = None

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise InvalidInputError(
                f"focal stack images must be (N, H, W, 3) uint8, got {images.shape} {images.dtype}"
            )
        dist = check_focus_distances(self.focus_distances_m)
        if dist.size != images.shape[0]:
            raise InvalidInputError(
                f"focal stack has {images.shape[0]} images but {dist.size} focus distances"
            )
        self.images = images
        self.focus_distances_m = dist

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def focus_diopters(self) -> np.ndarray:
        return 1.0 / self.focus_distances_m
