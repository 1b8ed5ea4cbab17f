"""Focal stack folders: round trips in metres and dioptres, and one error per mistake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from splitedge.models.depth import (
    Camera,
    FocalStack,
    FocusDistanceError,
    FocusFileMalformedError,
    FocusFileMissingError,
    SliceCountMismatchError,
    SliceSizeMismatchError,
    UnreadableImageError,
    diopters_to_meters,
    load_focal_stack,
    meters_to_diopters,
    save_focal_stack,
)


@pytest.fixture
def small_stack() -> FocalStack:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
    return FocalStack(images, np.array([0.3, 0.7, 2.0]), Camera(4.4, 1.8, 1.4))


@pytest.mark.parametrize("unit", ["m", "diopter"])
def test_round_trip(tmp_path: Path, small_stack: FocalStack, unit: str) -> None:
    save_focal_stack(small_stack, tmp_path, unit=unit)
    assert json.loads((tmp_path / "focus.json").read_text())["unit"] == unit
    loaded = load_focal_stack(tmp_path)
    assert np.array_equal(loaded.images, small_stack.images)
    assert np.allclose(loaded.focus_distances_m, small_stack.focus_distances_m, rtol=1e-12)
    assert loaded.camera == small_stack.camera


def test_images_default_to_sorted_folder_listing(tmp_path: Path, small_stack: FocalStack) -> None:
    save_focal_stack(small_stack, tmp_path)
    doc = json.loads((tmp_path / "focus.json").read_text())
    del doc["images"], doc["intrinsics"]
    (tmp_path / "focus.json").write_text(json.dumps(doc))
    loaded = load_focal_stack(tmp_path)
    assert np.array_equal(loaded.images, small_stack.images) and loaded.camera is None


def test_unit_helpers() -> None:
    assert np.allclose(meters_to_diopters([0.5, 2.0]), [2.0, 0.5])
    assert np.allclose(diopters_to_meters(meters_to_diopters([0.3, 4.0])), [0.3, 4.0])
    with pytest.raises(FocusDistanceError, match="> 0"):
        diopters_to_meters([0.0])


def _edit(folder: Path, **changes) -> None:
    path = folder / "focus.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_missing_json(tmp_path: Path) -> None:
    with pytest.raises(FocusFileMissingError, match=r"no focus\.json"):
        load_focal_stack(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level must be an object"),
        ('{"unit": "ft", "focus_distances": [1]}', "'unit' must be one of"),
        ('{"unit": "m", "focus_distances": []}', "non-empty list"),
        ('{"unit": "m", "focus_distances": [1, "far"]}', "numbers only"),
        ('{"unit": "m", "focus_distances": [1], "images": "a.png"}', "list of file names"),
        ('{"unit": "m", "focus_distances": [1], "intrinsics": {"f_number": 2}}', "intrinsics"),
        (
            '{"unit": "m", "focus_distances": [1], "intrinsics": '
            '{"focal_length_mm": -4, "f_number": 2, "pixel_pitch_um": 1}}',
            "focal_length_mm must be",
        ),
    ],
)
def test_malformed_json(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "focus.json").write_text(text)
    with pytest.raises(FocusFileMalformedError, match=match):
        load_focal_stack(tmp_path)


def test_count_mismatch(tmp_path: Path, small_stack: FocalStack) -> None:
    save_focal_stack(small_stack, tmp_path)
    _edit(tmp_path, focus_distances=[0.3, 0.7])
    with pytest.raises(SliceCountMismatchError, match="3 images but 2 focus distances"):
        load_focal_stack(tmp_path)


def test_unreadable_and_missing_image(tmp_path: Path, small_stack: FocalStack) -> None:
    save_focal_stack(small_stack, tmp_path)
    (tmp_path / "slice_001.png").write_bytes(b"not a png")
    with pytest.raises(UnreadableImageError, match=r"slice_001\.png: cannot decode"):
        load_focal_stack(tmp_path)
    (tmp_path / "slice_001.png").unlink()
    with pytest.raises(UnreadableImageError, match=r"slice_001\.png: image file not found"):
        load_focal_stack(tmp_path)


def test_mismatched_sizes(tmp_path: Path, small_stack: FocalStack) -> None:
    save_focal_stack(small_stack, tmp_path)
    from PIL import Image

    Image.fromarray(np.zeros((10, 16, 3), np.uint8)).save(tmp_path / "slice_002.png")
    with pytest.raises(SliceSizeMismatchError, match=r"slice_002\.png: slice is 10x16"):
        load_focal_stack(tmp_path)


@pytest.mark.parametrize(
    ("unit", "values", "match"),
    [
        ("m", [0.3, 0.2, 2.0], "strictly increasing or decreasing"),
        ("m", [0.3, 0.3, 2.0], "strictly increasing or decreasing"),
        ("m", [0.3, -1.0, 2.0], "> 0"),
        ("diopter", [3.0, 0.0, 1.0], "> 0"),
    ],
)
def test_bad_focus_distances(
    tmp_path: Path, small_stack: FocalStack, unit: str, values: list, match: str
) -> None:
    save_focal_stack(small_stack, tmp_path)
    _edit(tmp_path, unit=unit, focus_distances=values)
    with pytest.raises(FocusDistanceError, match=match):
        load_focal_stack(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 100_000, "not valid JSON"),  # nesting deeper than the parser recurses
        ('{"unit": "m", "focus_distances": [' + "9" * 5000 + "]}", "not valid JSON"),
        (b"\xff\xfe garbage", "not valid JSON"),
    ],
)
def test_hostile_focus_files_are_malformed_not_crashes(
    tmp_path: Path, small_stack: FocalStack, text: str | bytes, match: str
) -> None:
    save_focal_stack(small_stack, tmp_path)
    path = tmp_path / "focus.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(FocusFileMalformedError, match=match):
        load_focal_stack(tmp_path)


def test_an_image_name_with_a_nul_byte_is_unreadable(tmp_path: Path, small_stack: FocalStack):
    save_focal_stack(small_stack, tmp_path)
    _edit(tmp_path, images=["slice_000.png", "a\u0000b.png", "slice_002.png"])
    with pytest.raises(UnreadableImageError, match="cannot decode image"):
        load_focal_stack(tmp_path)
