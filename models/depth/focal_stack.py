"""Thin-lens focal stack rendering from an RGB-D pair.

Blur is the circle of confusion (CoC) of a thin lens focused at ``s_f``:
``c = A * f / (s_f - f) * |d - s_f| / d`` with ``A = f / N``, converted from the
sensor plane to pixels with the pixel pitch. Rendering is layered: the scene is cut
into depth layers (evenly spaced in dioptres, where CoC is close to linear), each
layer and its alpha mask are blurred with that layer's disc, and layers are
composited back to front, normalised by the accumulated alpha. A single spatially
varying blur would drag sharp foreground colour into a blurred background (and
vice versa) across occlusion edges; layering keeps each surface's blur its own.

A hand-held mode warps each slice with a small seeded homography, as a hand
moving between exposures would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from splitedge.models.depth.errors import InvalidInputError
from splitedge.models.depth.types import Camera, FocalStack, check_focus_distances


def circle_of_confusion_px(
    depth_m: np.ndarray | float, focus_distance_m: float, camera: Camera
) -> np.ndarray:
    """Blur-disc diameter in pixels for scene points at ``depth_m``."""
    f_m = camera.focal_length_mm * 1e-3
    aperture_m = camera.aperture_mm * 1e-3
    if focus_distance_m <= f_m:
        raise InvalidInputError(
            f"focus distance {focus_distance_m} m must exceed the focal length {f_m} m"
        )
    d = np.asarray(depth_m, dtype=np.float64)
    if np.any(d <= 0) or not np.all(np.isfinite(d)):
        raise InvalidInputError("depth must be finite and > 0 m")
    coc_m = aperture_m * f_m / (focus_distance_m - f_m) * np.abs(d - focus_distance_m) / d
    return coc_m / (camera.pixel_pitch_um * 1e-6)


def disc_kernel(diameter_px: float, supersample: int = 8) -> np.ndarray:
    """Normalised, anti-aliased uniform disc (the thin-lens PSF); a delta below ~0.5 px."""
    radius = max(float(diameter_px), 0.0) / 2.0
    half = max(1, math.ceil(radius + 0.5))
    n = 2 * half + 1
    # Sub-pixel samples give partial coverage at the rim, so blur grows smoothly with CoC.
    offs = (np.arange(n * supersample) + 0.5) / supersample - half - 0.5
    yy, xx = np.meshgrid(offs, offs, indexing="ij")
    # A disc of diameter <= 1 px lies inside the centre pixel: a delta, so blur is continuous.
    inside = (xx**2 + yy**2 <= max(radius, 0.5) ** 2).astype(np.float64)
    kernel = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    return (kernel / kernel.sum()).astype(np.float32)


def _check_rgbd(rgb: np.ndarray, depth_m: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidInputError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if depth_m.shape != rgb.shape[:2]:
        raise InvalidInputError(f"depth {depth_m.shape} does not match rgb {rgb.shape[:2]}")
    if not np.all(np.isfinite(depth_m)) or np.any(depth_m <= 0):
        raise InvalidInputError("depth must be finite and > 0 m everywhere")


def depth_layers(depth_m: np.ndarray, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut depth into layers evenly spaced in dioptres.

    Returns (label per pixel, 0 = farthest; mean depth of each layer in metres, NaN if empty).
    """
    if num_layers < 1:
        raise InvalidInputError(f"num_layers must be >= 1, got {num_layers}")
    inv = 1.0 / depth_m.astype(np.float64)
    lo, hi = float(inv.min()), float(inv.max())
    edges = np.linspace(lo, hi, num_layers + 1)
    labels = np.clip(np.searchsorted(edges, inv, side="right") - 1, 0, num_layers - 1)
    sums = np.bincount(labels.ravel(), weights=inv.ravel(), minlength=num_layers)
    counts = np.bincount(labels.ravel(), minlength=num_layers)
    with np.errstate(invalid="ignore", divide="ignore"):
        layer_depth = counts / sums  # depth at the layer's mean dioptre
    return labels, layer_depth


def render_slice(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    focus_distance_m: float,
    camera: Camera,
    *,
    num_layers: int = 48,
) -> np.ndarray:
    """One defocused image (H, W, 3) float32 in [0, 1], layered back-to-front."""
    _check_rgbd(rgb, depth_m)
    colour = rgb.astype(np.float32) / 255.0
    labels, layer_depth = depth_layers(depth_m, num_layers)
    acc_rgb = np.zeros_like(colour)
    acc_alpha = np.zeros(depth_m.shape, np.float32)
    for layer in range(num_layers):  # label 0 is the farthest layer
        if not np.isfinite(layer_depth[layer]):
            continue
        alpha = (labels == layer).astype(np.float32)
        coc = float(circle_of_confusion_px(layer_depth[layer], focus_distance_m, camera))
        kernel = disc_kernel(coc)
        blurred_alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_REFLECT)
        blurred_rgb = cv2.filter2D(
            colour * alpha[..., None], -1, kernel, borderType=cv2.BORDER_REFLECT
        )
        # Premultiplied "over": the nearer layer covers what is behind by its blurred alpha.
        keep = 1.0 - blurred_alpha
        acc_rgb = acc_rgb * keep[..., None] + blurred_rgb
        acc_alpha = acc_alpha * keep + blurred_alpha
    # Where a blurred foreground uncovers pixels no layer saw, normalising fills them
    # with the colour of the layers that are there instead of darkening.
    return acc_rgb / np.maximum(acc_alpha, 1e-6)[..., None]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_focal_stack(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    focus_distances_m: Sequence[float] | np.ndarray,
    camera: Camera,
    *,
    num_layers: int = 48,
    noise_std: float = 0.0,
    seed: int = 0,
) -> FocalStack:
    """Render a focal stack; ``noise_std`` is Gaussian sensor noise in 8-bit levels."""
    dist = check_focus_distances(np.asarray(focus_distances_m, dtype=np.float64))
    if noise_std < 0:
        raise InvalidInputError(f"noise_std must be >= 0, got {noise_std}")
    rng = np.random.default_rng(seed)
    slices = []
    for focus_m in dist:
        image = render_slice(rgb, depth_m, float(focus_m), camera, num_layers=num_layers)
        if noise_std > 0:
            image = image + (noise_std / 255.0) * rng.standard_normal(image.shape).astype(
                np.float32
            )
        slices.append(_to_uint8(image))
    return FocalStack(np.stack(slices), dist, camera)


def focus_sweep_m(near_m: float, far_m: float, num_slices: int) -> np.ndarray:
    """Focus distances evenly spaced in dioptres from ``near_m`` to ``far_m``."""
    if not 0 < near_m < far_m or num_slices < 2:
        raise InvalidInputError(
            f"need 0 < near_m < far_m and >= 2 slices, got {near_m}, {far_m}, {num_slices}"
        )
    return 1.0 / np.linspace(1.0 / near_m, 1.0 / far_m, num_slices)


def random_hand_homography(
    shape_hw: tuple[int, int],
    rng: np.random.Generator,
    *,
    max_shift_px: float = 3.0,
    max_rotation_deg: float = 1.0,
    max_scale: float = 0.01,
    max_perspective: float = 2e-5,
) -> np.ndarray:
    """A small homography about the image centre: shift, roll, zoom and a little tilt."""
    h, w = shape_hw
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    theta = math.radians(rng.uniform(-max_rotation_deg, max_rotation_deg))
    s = 1.0 + rng.uniform(-max_scale, max_scale)
    tx, ty = rng.uniform(-max_shift_px, max_shift_px, 2)
    px, py = rng.uniform(-max_perspective, max_perspective, 2)
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1]], np.float64)
    c, sn = math.cos(theta), math.sin(theta)
    core = np.array([[s * c, -s * sn, 0], [s * sn, s * c, 0], [px, py, 1]], np.float64)
    homography = back @ core @ to_centre
    return homography / homography[2, 2]


def apply_hand_motion(
    stack: FocalStack,
    *,
    seed: int = 0,
    anchor_index: int | None = None,
    max_shift_px: float = 3.0,
    max_rotation_deg: float = 1.0,
    max_scale: float = 0.01,
    max_perspective: float = 2e-5,
) -> tuple[FocalStack, np.ndarray]:
    """Warp every slice but ``anchor_index`` (default: the middle one) by a random homography.

    Returns the moved stack and the (N, 3, 3) homographies that map the anchor's
    (i.e. the ground truth's) pixel coordinates to each moved slice's coordinates.
    """
    n = len(stack)
    anchor = n // 2 if anchor_index is None else anchor_index
    if not 0 <= anchor < n:
        raise InvalidInputError(f"anchor_index {anchor} out of range for {n} slices")
    rng = np.random.default_rng(seed)
    h, w = stack.size_hw
    homographies = np.repeat(np.eye(3)[None], n, axis=0)
    moved = stack.images.copy()
    for i in range(n):
        if i == anchor:
            continue
        homographies[i] = random_hand_homography(
            (h, w),
            rng,
            max_shift_px=max_shift_px,
            max_rotation_deg=max_rotation_deg,
            max_scale=max_scale,
            max_perspective=max_perspective,
        )
        # Reflected borders keep the frame full, as a real sensor always sees something.
        moved[i] = cv2.warpPerspective(
            stack.images[i],
            homographies[i],
            (w, h),
            flags=cv2.INTER_LANCZOS4,
            borderMode=cv2.BORDER_REFLECT,
        )
    return FocalStack(moved, stack.focus_distances_m.copy(), stack.camera), homographies
