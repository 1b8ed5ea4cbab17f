"""Raster primitives of the synthetic scenes: noise, shape masks, textures, colours.

Everything is evaluated on a pixel grid in one vectorised pass. Shapes and textures
are defined in *local* coordinates ``(u, v)``, the pixel offset from the shape's
centre rotated by its angle and divided by its half-extent along each axis, so a
shape of any size, aspect and rotation is one formula on ``(u, v)``; textures
computed on the same ``(u, v)`` rotate and scale with the shape.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("disc", "rectangle", "triangle", "star", "ring", "cross")
"""Object classes; class id = index + 1 (0 is background in the semantic maps)."""

DISTRACTOR_KINDS: tuple[str, ...] = ("line", "blob", "arc", "partial")
"""Clutter that is never annotated: bars, irregular blobs, ring arcs, half shapes."""

TEXTURES: tuple[str, ...] = ("flat", "stripes", "dots", "noise")

# Half-extent of the window around a shape, in units of its larger half-axis: the
# rectangle's corners reach 0.8 * sqrt(2) ~ 1.13, every other shape stays inside 1.
_WINDOW_REACH = 1.15


@dataclass(frozen=True)
class ShapeSpec:
    """One shape to paint: an object (``class_id`` > 0) or a distractor (0).

    ``size_px`` is the nominal diameter before the aspect stretch; ``aspect`` > 1
    widens along the local u axis. ``shape_param`` is the inner radius of a ring or
    star, the arm half-width of a cross, the arc's angular extent (rad) or the cut
    offset of a partial shape. ``base_kind`` names the class shape a ``partial``
    distractor is cut from.
    """

    kind: str
    cx: float
    cy: float
    size_px: float
    aspect: float
    angle_rad: float
    colour: tuple[float, float, float]
    colour2: tuple[float, float, float]
    texture: str
    texture_freq: float
    texture_seed: int
    shape_param: float = 0.0
    class_id: int = 0
    track_id: int = 0
    base_kind: str = ""

    def half_axes_px(self) -> tuple[float, float]:
        root = float(np.sqrt(self.aspect))
        radius = self.size_px / 2.0
        return radius * root, radius / root


def value_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 5) -> np.ndarray:
    """Fractal value noise in [0, 1], (height, width) float32: octaves of upsampled grids."""
    total = np.zeros((height, width), np.float32)
    amplitude, weight = 1.0, 0.0
    for octave in range(octaves):
        cells = 3 * 2**octave
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        weight += amplitude
        amplitude *= 0.55
    total /= weight
    low, high = float(total.min()), float(total.max())
    return (total - low) / max(high - low, 1e-6)


def sample_grid(grid: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a small square ``grid`` at local coords in [-1, 1] (clamped)."""
    n = grid.shape[0] - 1
    gx = np.clip((u + 1.0) * 0.5 * n, 0.0, n - 1e-4)
    gy = np.clip((v + 1.0) * 0.5 * n, 0.0, n - 1e-4)
    ix, iy = gx.astype(np.int32), gy.astype(np.int32)
    fx, fy = gx - ix, gy - iy
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def hsv_colour(hue_deg: float, saturation: float, value: float) -> tuple[float, float, float]:
    """RGB in [0, 1] from a hue in degrees (any real, wrapped) and saturation/value in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, saturation, value)
    return (r, g, b)


def local_coords(
    spec: ShapeSpec, height: int, width: int
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """The shape's window clipped to the frame, as (y0, y1, x0, x1), and (u, v) on it.

    The window may be empty (y0 == y1 or x0 == x1) when the shape lies off frame.
    """
    ax, ay = spec.half_axes_px()
    reach = _WINDOW_REACH * max(ax, ay) + 1.0
    x0 = max(int(np.floor(spec.cx - reach)), 0)
    x1 = min(int(np.ceil(spec.cx + reach)), width)
    y0 = max(int(np.floor(spec.cy - reach)), 0)
    y1 = min(int(np.ceil(spec.cy + reach)), height)
    x1, y1 = max(x1, x0), max(y1, y0)
    # Pixel centres sit at integer + 0.5, so a shape centred on a pixel corner is symmetric.
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - np.float32(spec.cx)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - np.float32(spec.cy)
    cos, sin = np.float32(np.cos(spec.angle_rad)), np.float32(np.sin(spec.angle_rad))
    u = (cos * dx + sin * dy) / np.float32(ax)
    v = (-sin * dx + cos * dy) / np.float32(ay)
    return (y0, y1, x0, x1), u, v


def full_area_px(spec: ShapeSpec) -> float:
    """Pixel area of the whole shape, ignoring the frame edge (for visibility ratios)."""
    ax, ay = spec.half_axes_px()
    reach = _WINDOW_REACH * max(ax, ay) + 1.0
    side = int(np.ceil(2 * reach)) + 2
    centred = replace(spec, cx=side / 2.0, cy=side / 2.0)
    _, u, v = local_coords(centred, side, side)
    return float(shape_mask(centred, u, v).sum())


def shape_mask(spec: ShapeSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean inside-test of ``spec``'s outline at local coordinates ``(u, v)``."""
    kind = spec.base_kind if spec.kind == "partial" else spec.kind
    if kind == "disc":
        mask = u * u + v * v <= 1.0
    elif kind in ("rectangle", "line"):
        mask = (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    elif kind == "triangle":
        # Equilateral, inscribed in the unit circle: three half-planes at distance 0.5.
        mask = np.ones(u.shape, bool)
        for angle in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
            mask &= u * np.float32(np.cos(angle)) + v * np.float32(np.sin(angle)) <= 0.5
    elif kind == "star":
        radius = np.hypot(u, v)
        phase = (np.arctan2(v, u) * (5 / (2 * np.pi)) + 0.25) % 1.0
        tip = np.abs(2.0 * phase - 1.0)  # 1 at the five tips, 0 between them
        mask = radius <= spec.shape_param + (1.0 - spec.shape_param) * tip**1.6
    elif kind in ("ring", "arc"):
        radius = np.hypot(u, v)
        inner = spec.shape_param if kind == "ring" else 0.8
        mask = (radius <= 1.0) & (radius >= inner)
        if kind == "arc":
            mask &= np.abs(np.arctan2(v, u)) <= spec.shape_param
    elif kind == "cross":
        arm = spec.shape_param
        mask = ((np.abs(u) <= arm) & (np.abs(v) <= 0.9)) | ((np.abs(u) <= 0.9) & (np.abs(v) <= arm))
    elif kind == "blob":
        grid = np.random.default_rng(spec.texture_seed).random((6, 6), dtype=np.float32)
        wobble = sample_grid(grid, u, v)
        mask = u * u + v * v <= 0.35 + 0.65 * wobble
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    if spec.kind == "partial":
        mask &= u <= spec.shape_param
    return mask


def texture_weight(spec: ShapeSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-pixel mix weight in [0, 1] between ``colour`` (0) and ``colour2`` (1)."""
    freq = np.float32(spec.texture_freq)
    if spec.texture == "flat":
        # A soft shading ramp so even flat objects are not a single constant colour.
        return np.clip(0.12 * (u + v) + 0.12, 0.0, 1.0).astype(np.float32)
    if spec.texture == "stripes":
        return (np.sin(freq * np.pi * (u + 0.4 * v)) > 0).astype(np.float32)
    if spec.texture == "dots":
        fu, fv = (u * freq) % 1.0 - 0.5, (v * freq) % 1.0 - 0.5
        return (fu * fu + fv * fv < 0.09).astype(np.float32)
    if spec.texture == "noise":
        cells = max(int(freq), 2)
        grid = np.random.default_rng(spec.texture_seed).random((cells + 1, cells + 1))
        return sample_grid(grid.astype(np.float32), u, v)
    raise ValueError(f"unknown texture {spec.texture!r}")


def paint(
    spec: ShapeSpec, height: int, width: int
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """Rasterise ``spec`` on a (height, width) frame: window, boolean mask, RGB patch.

    The RGB patch is float32 (h, w, 3) in [0, 1] over the (clipped) window; only the
    pixels under the mask are meaningful.
    """
    window, u, v = local_coords(spec, height, width)
    if u.size == 0:
        return window, np.zeros(u.shape, bool), np.zeros((*u.shape, 3), np.float32)
    mask = shape_mask(spec, u, v)
    weight = texture_weight(spec, u, v)[..., None]
    c1 = np.asarray(spec.colour, np.float32)
    c2 = np.asarray(spec.colour2, np.float32)
    return window, mask, c1 * (1.0 - weight) + c2 * weight
