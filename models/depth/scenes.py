"""Seeded synthetic RGB-D scenes with known metric depth, for rendering focal stacks.

A scene is a slanted back wall, a slanted floor, a few fronto-parallel boxes and
one weakly textured patch. Textures (multi-octave noise, checkers, stripes) carry
enough high frequencies for focus measures; the weak patch is there on purpose so
tests can check that depth-from-focus reports low confidence where it cannot see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from splitedge.models.depth.errors import InvalidInputError


@dataclass
class Scene:
    """One RGB-D sample: ``rgb`` (H, W, 3) uint8, ``depth_m`` (H, W) float32 metres.

    ``weak_texture_mask`` marks pixels painted with an almost flat colour.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    weak_texture_mask: np.ndarray


def value_noise(
    shape_hw: tuple[int, int], rng: np.random.Generator, octaves: int = 4
) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: detail at every scale, like natural texture."""
    h, w = shape_hw
    out = np.zeros((h, w), np.float32)
    total = 0.0
    for octave in range(octaves):
        cell_px = max(1, 2 ** (octaves - octave))
        grid = rng.random((h // cell_px + 2, w // cell_px + 2)).astype(np.float32)
        layer = cv2.resize(
            grid, (w, h), interpolation=cv2.INTER_LINEAR if cell_px > 1 else cv2.INTER_NEAREST
        )
        amp = 0.6**octave
        out += amp * layer
        total += amp
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def checker(shape_hw: tuple[int, int], cell_px: int, phase_px: int = 0) -> np.ndarray:
    """Checkerboard in {0, 1}."""
    yy, xx = np.mgrid[: shape_hw[0], : shape_hw[1]]
    return (((yy + phase_px) // cell_px + (xx + phase_px) // cell_px) % 2).astype(np.float32)


def stripes(shape_hw: tuple[int, int], period_px: float, angle_rad: float) -> np.ndarray:
    """Sinusoidal stripes in [0, 1] at ``angle_rad``."""
    yy, xx = np.mgrid[: shape_hw[0], : shape_hw[1]].astype(np.float32)
    t = xx * np.cos(angle_rad) + yy * np.sin(angle_rad)
    return 0.5 + 0.5 * np.sin(2 * np.pi * t / period_px).astype(np.float32)


def _colourise(pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map a [0, 1] pattern between two random, clearly different colours."""
    c0 = rng.uniform(0.05, 0.45, 3).astype(np.float32)
    c1 = rng.uniform(0.55, 0.95, 3).astype(np.float32)
    return c0 + pattern[..., None] * (c1 - c0)


def _texture(shape_hw: tuple[int, int], kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "noise":
        pattern = value_noise(shape_hw, rng)
    elif kind == "checker":
        pattern = 0.7 * checker(shape_hw, int(rng.integers(3, 7))) + 0.3 * value_noise(
            shape_hw, rng
        )
    elif kind == "stripes":
        pattern = 0.7 * stripes(shape_hw, float(rng.uniform(4, 9)), float(rng.uniform(0, np.pi)))
        pattern += 0.3 * value_noise(shape_hw, rng)
    else:
        raise InvalidInputError(f"unknown texture kind {kind!r}")
    return _colourise(pattern, rng)


def make_scene(
    height: int = 96,
    width: int = 128,
    *,
    seed: int = 0,
    near_m: float = 0.3,
    far_m: float = 5.0,
    num_boxes: int = 3,
    weak_patch: bool = True,
) -> Scene:
    """Build a seeded scene with depths inside ``[near_m, far_m]``."""
    if height < 16 or width < 16:
        raise InvalidInputError(f"scene must be at least 16x16 px, got {height}x{width}")
    if not 0 < near_m < far_m:
        raise InvalidInputError(f"need 0 < near_m < far_m, got {near_m}, {far_m}")
    rng = np.random.default_rng(seed)
    shape = (height, width)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    u, v = xx / (width - 1), yy / (height - 1)

    # Back wall: slanted left-to-right in inverse depth, close to far_m.
    wall_near = far_m - 0.35 * (far_m - near_m)
    inv = 1.0 / far_m + u * (1.0 / wall_near - 1.0 / far_m) * rng.uniform(0.3, 1.0)
    depth = 1.0 / inv
    rgb = _texture(shape, "noise", rng)

    # Floor: a plane seen from above; its depth shrinks towards the bottom row.
    horizon = rng.uniform(0.55, 0.7)
    floor = v > horizon
    t = np.clip((v - horizon) / (1 - horizon), 0, 1)
    floor_inv = 1.0 / depth + t * (1.0 / (near_m * 1.3) - 1.0 / depth)
    depth = np.where(floor, 1.0 / floor_inv, depth)
    rgb = np.where(floor[..., None], _texture(shape, "checker", rng), rgb)

    # Boxes: fronto-parallel, painted far to near so nearer boxes occlude.
    box_depths = np.sort(rng.uniform(near_m * 1.2, wall_near * 0.9, num_boxes))[::-1]
    kinds = ("noise", "checker", "stripes")
    for i, box_depth in enumerate(box_depths):
        bh = int(rng.uniform(0.25, 0.45) * height)
        bw = int(rng.uniform(0.2, 0.35) * width)
        y0 = int(rng.integers(0, height - bh))
        x0 = int(rng.integers(0, width - bw))
        depth[y0 : y0 + bh, x0 : x0 + bw] = box_depth
        rgb[y0 : y0 + bh, x0 : x0 + bw] = _texture((bh, bw), kinds[i % 3], rng)

    weak = np.zeros(shape, bool)
    if weak_patch:
        # An almost flat patch on the wall, away from the boxes' usual places.
        ph, pw = height // 5, width // 5
        y0 = int(rng.integers(0, max(1, int(horizon * height) - ph)))
        x0 = int(rng.integers(0, width - pw))
        weak[y0 : y0 + ph, x0 : x0 + pw] = True
        flat = rng.uniform(0.3, 0.7, 3).astype(np.float32)
        rgb[weak] = flat + 0.004 * rng.standard_normal((int(weak.sum()), 3)).astype(np.float32)

    rgb_u8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    depth_m = np.clip(depth, near_m, far_m).astype(np.float32)
    return Scene(rgb=rgb_u8, depth_m=depth_m, weak_texture_mask=weak)


def synthetic_prior(
    depth_m: np.ndarray,
    *,
    scale: float,
    shift: float,
    noise_std: float = 0.0,
    seed: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """A stand-in monocular prior: relative inverse depth r with ``scale * r + shift = 1/depth``.

    Returns a callable ``image -> r`` (the fusion interface); the image is only
    checked for size, since the answer is known. ``noise_std`` is in units of r.
    """
    if scale == 0:
        raise InvalidInputError("prior scale must be non-zero")
    rng = np.random.default_rng(seed)
    rel = (1.0 / depth_m.astype(np.float64) - shift) / scale
    rel = rel + noise_std * rng.standard_normal(rel.shape)
    rel = rel.astype(np.float32)

    def prior(image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != rel.shape:
            raise InvalidInputError(f"prior built for {rel.shape}, got image {image.shape[:2]}")
        return rel.copy()

    return prior
