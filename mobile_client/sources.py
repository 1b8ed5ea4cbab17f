"""Frame sources: a folder of images, a video file, a camera, or synthetic frames.

``open_source(spec)`` turns the CLI's ``--source`` value into an iterator of
:class:`CameraFrame`; video files and cameras need OpenCV (``opencv-python-headless``),
everything else only numpy and Pillow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class SourceError(ValueError):
    """A frame source cannot be opened or read."""


@dataclass
class CameraFrame:
    """One captured frame on the device (the edge's request for it is another type)."""

    index: int
    image: np.ndarray  # HxWx3 uint8 RGB
    capture_ns: int


# Deprecated: the old name, kept for one release so scripts importing it keep working.
Frame = CameraFrame


def open_source(
    spec: str,
    *,
    max_frames: int | None = None,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
) -> Iterator[CameraFrame]:
    """Frames from ``spec``: ``synthetic``, ``camera[:N]``, a folder of images or a video file.

    ``size`` is (width, height) of synthetic frames; ``max_frames`` stops early
    (synthetic and camera sources are endless without it).
    """
    if spec == "synthetic":
        frames = _synthetic(size, seed)
    elif spec == "camera" or spec.startswith("camera:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise SourceError(f"camera index must be a number, got {index!r}")
        frames = _opencv(int(index), f"camera {index}")
    else:
        path = Path(spec)
        if path.is_dir():
            frames = _images(path)
        elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            frames = _opencv(str(path), f"video {path}")
        elif path.is_file():
            raise SourceError(
                f"{path}: not a video file ({', '.join(VIDEO_SUFFIXES)}); "
                "give a folder of images, a video, 'camera[:N]' or 'synthetic'"
            )
        else:
            raise SourceError(
                f"source {spec!r} does not exist; "
                "give a folder of images, a video, 'camera[:N]' or 'synthetic'"
            )
    return _limit(frames, max_frames)


def _limit(frames: Iterator[CameraFrame], max_frames: int | None) -> Iterator[CameraFrame]:
    for frame in frames:
        if max_frames is not None and frame.index >= max_frames:
            return
        yield frame


def _images(folder: Path) -> Iterator[CameraFrame]:
    from PIL import Image, UnidentifiedImageError

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")

    def gen() -> Iterator[CameraFrame]:
        for index, path in enumerate(paths):
            try:
                with Image.open(path) as img:
                    rgb = np.asarray(img.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                raise SourceError(f"{path}: cannot read image ({exc})") from exc
            yield CameraFrame(index, rgb, time.monotonic_ns())

    return gen()


def _opencv(target: int | str, what: str) -> Iterator[CameraFrame]:
    try:
        import cv2
    except ModuleNotFoundError as exc:
        raise SourceError(f"{what} needs OpenCV: pip install opencv-python-headless") from exc
    capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {what}")

    def gen() -> Iterator[CameraFrame]:
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield CameraFrame(index, np.ascontiguousarray(bgr[:, :, ::-1]), time.monotonic_ns())
                index += 1
        finally:
            capture.release()

    return gen()


def _synthetic(size: tuple[int, int], seed: int) -> Iterator[CameraFrame]:
    """Endless frames of a few coloured shapes drifting over a textured background."""
    width, height = size
    if width < 16 or height < 16:
        raise SourceError(f"synthetic frames must be at least 16x16, got {width}x{height}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = (
        96
        + 40 * np.sin(xx / 17.0)[..., None] * np.cos(yy / 23.0)[..., None]
        + rng.normal(0, 12, (height, width, 3))
    ).astype(np.float32)
    n = 3
    pos = rng.uniform([0, 0], [width, height], (n, 2))
    vel = rng.uniform(-4, 4, (n, 2))
    radius = rng.uniform(min(size) * 0.06, min(size) * 0.2, n)
    colour = rng.uniform(0, 255, (n, 3))

    def gen() -> Iterator[CameraFrame]:
        nonlocal pos
        index = 0
        while True:
            img = background.copy()
            for k in range(n):
                inside = (xx - pos[k, 0]) ** 2 + (yy - pos[k, 1]) ** 2 < radius[k] ** 2
                img[inside] = colour[k]
            pos = (pos + vel) % [width, height]
            yield CameraFrame(index, np.clip(img, 0, 255).astype(np.uint8), time.monotonic_ns())
            index += 1

    return gen()


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """``image`` with its short side at ``short_side`` px (unchanged for 0 or equal).

    How a branch's input size is applied everywhere (profiler, accuracy validator,
    adaptive session), so their frames match.
    """
    if short_side <= 0 or min(image.shape[:2]) == short_side:
        return image
    import cv2

    h, w = image.shape[:2]
    f = short_side / min(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
