"""Seeded procedural scenes for detection and instance/semantic segmentation.

A scene is six object classes (:data:`CLASS_NAMES`) that differ in outline, colour
distribution (hue ranges overlap between some classes, and one object in ten is
painted in any hue, so colour alone cannot classify) and texture mix, on a
cluttered background (fractal noise, gradients, two-tone patches) with
distractors that are not classes: bars, blobs, ring arcs and half shapes in class
colours, some of them painted *over* objects. Sizes are log-uniform from a few
pixels to about half the frame; the camera then adds lighting, blur and noise.

Generation is split in two so video and tests can reuse it: :func:`sample_scene`
draws a :class:`SceneSpec` (plain numbers), :func:`render_scene` paints it and
derives the labels. Each image has its own random stream
``default_rng([seed, index])``, so image ``k`` of a dataset does not depend on how
many images came before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from splitedge.models.data.camera import CameraSpec, apply_camera, sample_camera
from splitedge.models.data.errors import DataConfigError
from splitedge.models.data.shapes import (
    CLASS_NAMES,
    ShapeSpec,
    full_area_px,
    hsv_colour,
    paint,
    value_noise,
)


@dataclass(frozen=True)
class SceneConfig:
    """What the generator draws. Sizes in pixels; fractions in [0, 1].

    ``min_visibility`` is the visible share of an object's full area (occlusion and
    the frame edge both count) below which it is left out of the annotations;
    ``occluder_fraction`` is the share of distractors painted over the objects.
    """

    width: int = 320
    height: int = 240
    empty_fraction: float = 0.2
    max_objects: int = 8
    max_distractors: int = 8
    min_object_px: float = 8.0
    max_object_frac: float = 0.55
    min_visibility: float = 0.3
    min_area_px: int = 12
    blur_probability: float = 0.35
    occluder_fraction: float = 0.3

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise DataConfigError(message)

        need(32 <= self.width <= 8192, f"width must be in [32, 8192] px, got {self.width}")
        need(32 <= self.height <= 8192, f"height must be in [32, 8192] px, got {self.height}")
        for name in ("empty_fraction", "blur_probability", "occluder_fraction"):
            value = getattr(self, name)
            need(0.0 <= value <= 1.0, f"{name} must be in [0, 1], got {value}")
        need(1 <= self.max_objects <= 64, f"max_objects must be in [1, 64], got {self.max_objects}")
        need(self.max_distractors >= 0, f"max_distractors must be >= 0, got {self.max_distractors}")
        need(
            0.0 < self.min_visibility <= 1.0,
            f"min_visibility must be in (0, 1], got {self.min_visibility}",
        )
        need(self.min_area_px >= 1, f"min_area_px must be >= 1, got {self.min_area_px}")
        need(self.min_object_px >= 2, f"min_object_px must be >= 2, got {self.min_object_px}")
        need(
            self.min_object_px < self.max_object_px,
            f"min_object_px ({self.min_object_px}) must be below max_object_frac * "
            f"min(width, height) = {self.max_object_px:.1f}",
        )

    @property
    def max_object_px(self) -> float:
        return self.max_object_frac * min(self.width, self.height)


@dataclass(frozen=True)
class BackgroundSpec:
    seed: int
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float]
    patch_colour: tuple[float, float, float]
    gradient_angle_rad: float
    gradient_strength: float


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to paint one frame; ``layers`` are painted in order."""

    width: int
    height: int
    background: BackgroundSpec
    layers: tuple[ShapeSpec, ...]
    camera: CameraSpec


@dataclass
class Instance:
    """One annotated object: ``mask`` is its visible pixels, (H, W) bool."""

    class_id: int
    mask: np.ndarray
    bbox_xywh: tuple[int, int, int, int]
    area_px: int
    visibility: float
    track_id: int = 0


@dataclass
class Sample:
    """One rendered frame and its labels. ``semantic`` is (H, W) uint8, 0 = background.

    ``semantic`` labels every visible object pixel, including objects left out of
    ``instances`` for low visibility: it is the per-pixel truth, not a summary of
    the instance list. ``hidden_track_ids`` lists the track ids of those left-out
    objects (meaningful in video, where tracks have ids; 0 for still images).
    """

    image: np.ndarray
    semantic: np.ndarray
    instances: list[Instance]
    video_id: int | None = None
    frame_index: int | None = None
    hidden_track_ids: list[int] = field(default_factory=list)


# Per class: hue range in degrees (ranges overlap on purpose), texture probabilities
# in TEXTURES order (flat, stripes, dots, noise), aspect range, shape_param range.
_CLASS_STYLE: dict[
    str, tuple[tuple[float, float], tuple[float, ...], tuple[float, float], tuple[float, float]]
] = {
    "disc": ((-10.0, 50.0), (0.5, 0.0, 0.2, 0.3), (0.6, 1.7), (0.0, 0.0)),
    "rectangle": ((30.0, 110.0), (0.3, 0.5, 0.0, 0.2), (0.4, 2.5), (0.0, 0.0)),
    "triangle": ((90.0, 180.0), (0.4, 0.3, 0.3, 0.0), (0.7, 1.4), (0.0, 0.0)),
    "star": ((20.0, 70.0), (0.6, 0.0, 0.0, 0.4), (0.8, 1.25), (0.35, 0.55)),
    "ring": ((170.0, 260.0), (0.4, 0.3, 0.0, 0.3), (0.7, 1.4), (0.45, 0.72)),
    "cross": ((240.0, 340.0), (0.3, 0.0, 0.4, 0.3), (0.7, 1.4), (0.18, 0.34)),
}
_TEXTURE_NAMES = ("flat", "stripes", "dots", "noise")


def _object_colours(
    rng: np.random.Generator, hue_range: tuple[float, float], texture: str
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    hue = rng.uniform(0.0, 360.0) if rng.random() < 0.1 else rng.uniform(*hue_range)
    saturation, value = rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0)
    colour = hsv_colour(hue, saturation, value)
    if texture == "flat":
        return colour, hsv_colour(hue, saturation, value * 0.6)
    shift = rng.uniform(20.0, 180.0) * rng.choice([-1.0, 1.0])
    return colour, hsv_colour(hue + shift, rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))


def sample_object(
    rng: np.random.Generator, config: SceneConfig, class_id: int, cx: float, cy: float
) -> ShapeSpec:
    """An object of ``class_id`` (1-based) centred at (cx, cy), with a log-uniform size."""
    kind = CLASS_NAMES[class_id - 1]
    hues, texture_p, aspects, params = _CLASS_STYLE[kind]
    texture = str(rng.choice(_TEXTURE_NAMES, p=np.asarray(texture_p) / sum(texture_p)))
    colour, colour2 = _object_colours(rng, hues, texture)
    size_px = float(np.exp(rng.uniform(np.log(config.min_object_px), np.log(config.max_object_px))))
    return ShapeSpec(
        kind=kind,
        cx=cx,
        cy=cy,
        size_px=size_px,
        aspect=float(np.exp(rng.uniform(np.log(aspects[0]), np.log(aspects[1])))),
        angle_rad=float(rng.uniform(0.0, 2 * np.pi)),
        colour=colour,
        colour2=colour2,
        texture=texture,
        texture_freq=float(rng.uniform(2.5, 6.0)),
        texture_seed=int(rng.integers(2**31)),
        shape_param=float(rng.uniform(*params)),
        class_id=class_id,
    )


def sample_distractor(rng: np.random.Generator, config: SceneConfig) -> ShapeSpec:
    """A non-class shape: a bar, a blob, a ring arc or a class shape cut in half."""
    kind = str(rng.choice(["line", "blob", "arc", "partial"], p=[0.3, 0.3, 0.2, 0.2]))
    short = min(config.width, config.height)
    mimic = CLASS_NAMES[int(rng.integers(len(CLASS_NAMES)))]
    hues = _CLASS_STYLE[mimic][0]
    texture = str(rng.choice(_TEXTURE_NAMES))
    colour, colour2 = _object_colours(rng, hues, texture)
    size_px = float(rng.uniform(10.0, 0.4 * short))
    aspect, shape_param = float(rng.uniform(0.6, 1.6)), 0.0
    if kind == "line":
        length_px, thickness_px = rng.uniform(0.2, 0.9) * short, rng.uniform(1.5, 5.0)
        aspect = float(length_px / thickness_px)
        size_px = float(2.0 * np.sqrt(length_px * thickness_px) / 1.6)
    elif kind == "arc":
        shape_param = float(rng.uniform(0.5, 2.5))
    elif kind == "partial":
        shape_param = float(rng.uniform(-0.3, 0.2))
    return ShapeSpec(
        kind=kind,
        cx=float(rng.uniform(0, config.width)),
        cy=float(rng.uniform(0, config.height)),
        size_px=size_px,
        aspect=aspect,
        angle_rad=float(rng.uniform(0.0, 2 * np.pi)),
        colour=colour,
        colour2=colour2,
        texture=texture,
        texture_freq=float(rng.uniform(2.5, 6.0)),
        texture_seed=int(rng.integers(2**31)),
        shape_param=shape_param,
        base_kind=mimic if kind == "partial" else "",
    )


def sample_background(rng: np.random.Generator) -> BackgroundSpec:
    hue = rng.uniform(0.0, 360.0)
    return BackgroundSpec(
        seed=int(rng.integers(2**31)),
        colour_a=hsv_colour(hue, rng.uniform(0.0, 0.5), rng.uniform(0.15, 0.6)),
        colour_b=hsv_colour(
            hue + rng.uniform(-60, 60), rng.uniform(0.0, 0.6), rng.uniform(0.4, 0.9)
        ),
        patch_colour=hsv_colour(rng.uniform(0, 360), rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.9)),
        gradient_angle_rad=float(rng.uniform(0.0, 2 * np.pi)),
        gradient_strength=float(rng.uniform(0.0, 0.5)),
    )


def render_background(spec: BackgroundSpec, height: int, width: int) -> np.ndarray:
    """Float32 (H, W, 3) in [0, 1]: two-colour fractal noise, two-tone patches, a gradient."""
    rng = np.random.default_rng(spec.seed)
    blend = value_noise(rng, height, width)[..., None]
    image = np.asarray(spec.colour_a, np.float32) * (1 - blend)
    image += np.asarray(spec.colour_b, np.float32) * blend
    patches = value_noise(rng, height, width, octaves=3) > 0.62
    image[patches] = 0.5 * image[patches] + 0.5 * np.asarray(spec.patch_colour, np.float32)
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    ramp = np.cos(spec.gradient_angle_rad) * xs + np.sin(spec.gradient_angle_rad) * ys
    image *= (1.0 + np.float32(spec.gradient_strength) * ramp)[..., None]
    return np.clip(image, 0.0, 1.0)


def sample_scene(rng: np.random.Generator, config: SceneConfig, empty: bool) -> SceneSpec:
    """Draw one scene; ``empty`` scenes have distractors but no object of interest."""
    objects: list[ShapeSpec] = []
    if not empty:
        for _ in range(int(rng.integers(1, config.max_objects + 1))):
            class_id = int(rng.integers(1, len(CLASS_NAMES) + 1))
            cx, cy = rng.uniform(0, config.width), rng.uniform(0, config.height)
            objects.append(sample_object(rng, config, class_id, float(cx), float(cy)))
    under: list[ShapeSpec] = []
    over: list[ShapeSpec] = []
    for _ in range(int(rng.integers(0, config.max_distractors + 1))):
        layer = over if rng.random() < config.occluder_fraction else under
        layer.append(sample_distractor(rng, config))
    return SceneSpec(
        width=config.width,
        height=config.height,
        background=sample_background(rng),
        layers=(*under, *objects, *over),
        camera=sample_camera(rng, config.blur_probability),
    )


def render_scene(
    scene: SceneSpec, min_visibility: float = 0.3, min_area_px: int = 12, camera: bool = True
) -> Sample:
    """Paint ``scene`` and label it. Objects whose visible share of their full area is
    below ``min_visibility``, or whose visible area is below ``min_area_px``, are
    painted but not annotated (their track ids go to ``hidden_track_ids``).
    ``camera=False`` skips lighting/blur/noise (for tests that compare pixels).
    """
    height, width = scene.height, scene.width
    canvas = render_background(scene.background, height, width)
    owner = np.full((height, width), -1, np.int32)  # index into scene.layers, -1 = not an object
    windows: dict[int, tuple[int, int, int, int]] = {}
    for index, layer in enumerate(scene.layers):
        (y0, y1, x0, x1), mask, rgb = paint(layer, height, width)
        if not mask.any():
            continue
        canvas[y0:y1, x0:x1][mask] = rgb[mask]
        owner[y0:y1, x0:x1][mask] = index if layer.class_id > 0 else -1
        if layer.class_id > 0:
            windows[index] = (y0, y1, x0, x1)

    semantic = np.zeros((height, width), np.uint8)
    labelled = owner >= 0
    class_ids = np.array([layer.class_id for layer in scene.layers] or [0], np.uint8)
    semantic[labelled] = class_ids[owner[labelled]]

    instances: list[Instance] = []
    hidden: list[int] = []
    for index, layer in enumerate(scene.layers):
        if layer.class_id == 0:
            continue
        instance = _label(layer, index, owner, windows.get(index), min_visibility, min_area_px)
        if instance is None:
            hidden.append(layer.track_id)
        else:
            instances.append(instance)
    image = apply_camera(canvas, scene.camera if camera else CameraSpec())
    return Sample(image=image, semantic=semantic, instances=instances, hidden_track_ids=hidden)


def _label(
    layer: ShapeSpec,
    index: int,
    owner: np.ndarray,
    window: tuple[int, int, int, int] | None,
    min_visibility: float,
    min_area_px: int,
) -> Instance | None:
    if window is None:
        return None
    y0, y1, x0, x1 = window
    visible = owner[y0:y1, x0:x1] == index
    area_px = int(visible.sum())
    visibility = area_px / max(full_area_px(layer), 1.0)
    if area_px < min_area_px or visibility < min_visibility:
        return None
    rows, cols = np.nonzero(visible.any(axis=1))[0], np.nonzero(visible.any(axis=0))[0]
    bbox = (
        x0 + int(cols[0]),
        y0 + int(rows[0]),
        int(cols[-1] - cols[0] + 1),
        int(rows[-1] - rows[0] + 1),
    )
    mask = np.zeros(owner.shape, bool)
    mask[y0:y1, x0:x1] = visible
    return Instance(
        class_id=layer.class_id,
        mask=mask,
        bbox_xywh=bbox,
        area_px=area_px,
        visibility=min(visibility, 1.0),
        track_id=layer.track_id,
    )


def generate_image(config: SceneConfig, seed: int, index: int) -> Sample:
    """Image ``index`` of the dataset with ``seed``: deterministic, independent of others.

    A frame drawn as non-empty whose objects all end up hidden is redrawn (a few
    tries), so the share of empty frames stays at ``config.empty_fraction``.
    """
    rng = np.random.default_rng([seed, index])
    empty = bool(rng.random() < config.empty_fraction)
    for _ in range(8):
        sample = render_scene(
            sample_scene(rng, config, empty), config.min_visibility, config.min_area_px
        )
        if empty or sample.instances:
            break
    return sample
