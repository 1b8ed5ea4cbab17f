"""Real focal stacks on disk: a folder of images plus ``focus.json``.

Layout::

    stack/
      focus.json     {"unit": "m" | "diopter",
                      "focus_distances": [0.3, 0.5, ...],
                      "images": ["slice_000.png", ...],          # optional
                      "intrinsics": {"focal_length_mm": 4.4,      # optional
                                     "f_number": 1.8, "pixel_pitch_um": 1.4}}
      slice_000.png ...

Without ``images`` the folder's image files are taken in name order. Every way a
folder can be wrong raises its own :class:`FocalStackError` subclass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from splitedge.models.depth.errors import (
    FocusDistanceError,
    FocusFileMalformedError,
    FocusFileMissingError,
    InvalidInputError,
    SliceCountMismatchError,
    SliceSizeMismatchError,
    UnreadableImageError,
)
from splitedge.models.depth.types import Camera, FocalStack, check_focus_distances
from splitedge.models.depth.units import diopters_to_meters, meters_to_diopters

FOCUS_FILE = "focus.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
UNITS = ("m", "diopter")


def _read_json(folder: Path) -> dict:
    path = folder / FOCUS_FILE
    if not path.is_file():
        raise FocusFileMissingError(f"{path}: no {FOCUS_FILE} in the focal stack folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:  # JSON/Unicode errors, absurd nesting or ints
        raise FocusFileMalformedError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise FocusFileMalformedError(
            f"{path}: top level must be an object, got {type(doc).__name__}"
        )
    return doc


def _distances_m(doc: dict, path: Path) -> np.ndarray:
    unit = doc.get("unit")
    if unit not in UNITS:
        raise FocusFileMalformedError(f"{path}: 'unit' must be one of {UNITS}, got {unit!r}")
    raw = doc.get("focus_distances")
    if not isinstance(raw, list) or not raw:
        raise FocusFileMalformedError(f"{path}: 'focus_distances' must be a non-empty list")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        raise FocusFileMalformedError(f"{path}: 'focus_distances' must hold numbers only")
    values = np.asarray(raw, dtype=np.float64)
    try:
        metres = values if unit == "m" else diopters_to_meters(values)
        return check_focus_distances(metres)
    except FocusDistanceError as exc:
        raise FocusDistanceError(f"{path}: {exc}") from exc


def _camera(doc: dict, path: Path) -> Camera | None:
    intr = doc.get("intrinsics")
    if intr is None:
        return None
    keys = ("focal_length_mm", "f_number", "pixel_pitch_um")
    if not isinstance(intr, dict) or any(k not in intr for k in keys):
        raise FocusFileMalformedError(f"{path}: 'intrinsics' must be an object with {keys}")
    try:
        return Camera(**{k: intr[k] for k in keys})
    except InvalidInputError as exc:
        raise FocusFileMalformedError(f"{path}: {exc}") from exc


def _image_paths(doc: dict, folder: Path, path: Path) -> list[Path]:
    names = doc.get("images")
    if names is None:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FocusFileMalformedError(f"{path}: 'images' must be a list of file names")
    return [folder / n for n in names]


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as exc:
        raise UnreadableImageError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise UnreadableImageError(f"{path}: cannot decode image ({exc})") from exc


def load_focal_stack(folder: str | Path) -> FocalStack:
    """Load a focal stack folder; raises a precise :class:`FocalStackError` on bad input."""
    folder = Path(folder)
    doc = _read_json(folder)
    json_path = folder / FOCUS_FILE
    distances = _distances_m(doc, json_path)
    camera = _camera(doc, json_path)
    paths = _image_paths(doc, folder, json_path)
    if len(paths) != distances.size:
        raise SliceCountMismatchError(
            f"{folder}: {len(paths)} images but {distances.size} focus distances"
        )
    images = [_read_image(p) for p in paths]
    first = images[0].shape[:2]
    for p, img in zip(paths, images, strict=True):
        if img.shape[:2] != first:
            raise SliceSizeMismatchError(
                f"{p}: slice is {img.shape[0]}x{img.shape[1]}, first slice is {first[0]}x{first[1]}"
            )
    return FocalStack(np.stack(images), distances, camera)


def save_focal_stack(stack: FocalStack, folder: str | Path, *, unit: str = "m") -> Path:
    """Write lossless PNG slices and ``focus.json``; returns the folder."""
    if unit not in UNITS:
        raise InvalidInputError(f"unit must be one of {UNITS}, got {unit!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"slice_{i:03d}.png" for i in range(len(stack))]
    for name, img in zip(names, stack.images, strict=True):
        Image.fromarray(img).save(folder / name)
    values = stack.focus_distances_m if unit == "m" else meters_to_diopters(stack.focus_distances_m)
    doc: dict = {"unit": unit, "focus_distances": [float(v) for v in values], "images": names}
    if stack.camera is not None:
        cam = stack.camera
        doc["intrinsics"] = {
            "focal_length_mm": cam.focal_length_mm,
            "f_number": cam.f_number,
            "pixel_pitch_um": cam.pixel_pitch_um,
        }
    (folder / FOCUS_FILE).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return folder
