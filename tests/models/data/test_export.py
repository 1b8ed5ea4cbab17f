"""COCO export: pycocotools reads it, labels match pixels, folders are reproducible; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from splitedge.models.data import CATEGORIES, DataConfigError, SceneConfig, build_dataset
from splitedge.models.data.cli import main

SMALL = SceneConfig(width=96, height=72, min_object_px=6.0)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# pycocotools' own annToMask trips a NumPy 2 DeprecationWarning inside pycocotools.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_pycocotools_loads_the_export_and_rle_matches_bbox_area_and_semantic(
    image_dataset: Path,
) -> None:
    coco = COCO(str(image_dataset / "annotations.json"))
    assert len(coco.getImgIds()) == 12
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [c["name"] for c in CATEGORIES]
    assert coco.getAnnIds(), "no annotation in 12 frames"
    for annotation in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(annotation)
        assert annotation["iscrowd"] == 0
        assert (
            annotation["area"]
            == int(mask.sum())
            == int(mask_utils.area(annotation["segmentation"]))
        )
        assert list(mask_utils.toBbox(annotation["segmentation"])) == annotation["bbox"]
        stem = Path(coco.imgs[annotation["image_id"]]["file_name"]).stem
        semantic = np.asarray(Image.open(image_dataset / "semantic" / f"{stem}.png"))
        assert np.all(semantic[mask > 0] == annotation["category_id"])


def test_same_seed_gives_byte_identical_folders_and_other_seed_differs(tmp_path: Path) -> None:
    build_dataset(tmp_path / "a", 4, seed=1, scene=SMALL)
    build_dataset(tmp_path / "b", 4, seed=1, scene=SMALL)
    build_dataset(tmp_path / "c", 4, seed=2, scene=SMALL)
    first = _files(tmp_path / "a")
    assert first == _files(tmp_path / "b")
    other = _files(tmp_path / "c")
    assert first.keys() == other.keys()
    assert first["images/000001.png"] != other["images/000001.png"]
    assert first["annotations.json"] != other["annotations.json"]


def test_video_export_adds_video_ids_frame_indices_and_track_ids(video_dataset: Path) -> None:
    document = json.loads((video_dataset / "annotations.json").read_text())
    assert len(document["images"]) == 24
    assert [(im["video_id"], im["frame_index"]) for im in document["images"]] == [
        (v, f) for v, n in ((0, 10), (1, 10), (2, 4)) for f in range(n)
    ]
    video_of = {im["id"]: im["video_id"] for im in document["images"]}
    assert all(a["track_id"] // 1000 == video_of[a["image_id"]] for a in document["annotations"])
    assert document["info"]["video_config"]["frames"] == 10


def test_jpeg_export_writes_jpg_files(tmp_path: Path) -> None:
    build_dataset(tmp_path, 2, seed=1, scene=SMALL, image_format="jpeg")
    names = [
        im["file_name"] for im in json.loads((tmp_path / "annotations.json").read_text())["images"]
    ]
    assert names == ["000001.jpg", "000002.jpg"]
    assert Image.open(tmp_path / "images" / names[0]).format == "JPEG"


def test_existing_dataset_is_kept_unless_overwrite(tmp_path: Path) -> None:
    build_dataset(tmp_path, 3, seed=1, scene=SMALL)
    with pytest.raises(DataConfigError, match="already holds a dataset"):
        build_dataset(tmp_path, 2, seed=1, scene=SMALL)
    build_dataset(tmp_path, 2, seed=1, scene=SMALL, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["000001.png", "000002.png"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 0}, "number of images must be >= 1, got 0"),
        (
            {"num_images": 1, "image_format": "gif"},
            "image format must be one of png, jpeg, got 'gif'",
        ),
    ],
)
def test_bad_export_settings_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(DataConfigError) as caught:
        build_dataset(tmp_path, seed=0, scene=SMALL, **kwargs)
    assert str(caught.value) == message


def test_cli_make_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    argv = ["make", "--out", str(out), "--images", "5", "--seed", "3", "--size", "64x48", "--video"]
    assert main([*argv, "--frames-per-video", "3"]) == 0
    images = json.loads((out / "annotations.json").read_text())["images"]
    assert [(im["width"], im["height"], im["video_id"]) for im in images] == [(64, 48, 0)] * 3 + [
        (64, 48, 1)
    ] * 2
    assert (
        main(["preview", "--data", str(out), "--out", str(tmp_path / "p.png"), "--count", "5"]) == 0
    )
    assert Image.open(tmp_path / "p.png").size == (4 * 64, 2 * 48)
    assert "wrote 5 labelled frames" in capsys.readouterr().out


def test_cli_reports_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["make", "--out", str(tmp_path), "--images", "2", "--size", "16x16"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == "error: width must be in [32, 8192] px, got 16"
    with pytest.raises(SystemExit):
        main(["make", "--out", str(tmp_path), "--images", "2", "--size", "big"])
    assert "argument --size: expected WIDTHxHEIGHT such as 320x240, got 'big'" in (
        capsys.readouterr().err
    )
