"""The COCO loader on generated and hand-written (real-COCO-like) folders, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from splitedge.models.data import (
    AnnotationFileNotFoundError,
    CocoDetection,
    ImageFilesMissingError,
    InvalidBBoxError,
    MalformedAnnotationsError,
    TorchDetectionDataset,
    detection_collate,
)


def _coco_like(root: Path, annotations: list[dict[str, Any]], **extra: Any) -> Path:
    """A real-COCO layout: annotations/instances.json and val/ with one 40x30 JPEG."""
    (root / "val").mkdir(parents=True)
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(root / "val" / "a.jpg")
    document = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "car"}, {"id": 18, "name": "dog"}],
        **extra,
    }
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances.json"
    path.write_text(json.dumps(document))
    return path


def _ann(**fields: Any) -> dict[str, Any]:
    return {"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 3, 10, 5], "iscrowd": 0} | fields


def test_generated_dataset_items_match_the_annotation_file(image_dataset: Path) -> None:
    dataset = CocoDetection(image_dataset, with_masks=True, with_semantic=True)
    document = json.loads((image_dataset / "annotations.json").read_text())
    assert len(dataset) == len(document["images"]) == 12
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert image.shape == (72, 96, 3) and image.dtype == np.uint8
        annotations = [a for a in document["annotations"] if a["image_id"] == target["image_id"]]
        expected = np.array([a["bbox"] for a in annotations], np.float32).reshape(-1, 4)
        expected[:, 2:] += expected[:, :2]
        assert target["boxes"].dtype == np.float32 and np.array_equal(target["boxes"], expected)
        assert target["labels"].dtype == np.int64
        assert target["labels"].tolist() == [a["category_id"] for a in annotations]
        assert target["masks"].shape == (len(annotations), 72, 96)
        for mask, label in zip(target["masks"], target["labels"], strict=True):
            assert np.all(target["semantic"][mask > 0] == label)


def test_torch_adapter_gives_torchvision_targets_and_batches(image_dataset: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    dataset = TorchDetectionDataset(CocoDetection(image_dataset, with_masks=True))
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=detection_collate)
    images, targets = next(iter(loader))
    assert len(images) == len(targets) == 3
    assert images[0].shape == (3, 72, 96) and images[0].dtype == torch.float32
    assert float(images[0].min()) >= 0.0 and float(images[0].max()) <= 1.0
    for target in targets:
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["masks"].shape[0] == target["boxes"].shape[0]
        assert target["image_id"].dtype == torch.int64


def test_real_coco_layout_with_polygons_crowd_and_degenerate_boxes(tmp_path: Path) -> None:
    polygon = [[2, 3, 12, 3, 12, 8, 2, 8]]
    annotations = [
        _ann(segmentation=polygon),
        _ann(id=2, category_id=18, bbox=[20, 10, 0, 4], segmentation=[[20, 10, 20, 14, 21, 14]]),
        _ann(id=3, iscrowd=1, segmentation={"size": [30, 40], "counts": [0, 1200]}),
    ]
    path = _coco_like(tmp_path, annotations)
    dataset = CocoDetection(tmp_path, ann_file=path, image_dir="val", with_masks=True)
    image, target = dataset[0]
    assert image.shape == (30, 40, 3)
    assert target["boxes"].tolist() == [[2.0, 3.0, 12.0, 8.0]]  # zero-width and crowd dropped
    assert target["labels"].tolist() == [3]
    assert target["masks"][0, 3:8, 2:12].all() and target["masks"][0].sum() >= 50
    with_crowd = CocoDetection(tmp_path, ann_file=path, image_dir="val", skip_crowd=False)
    assert with_crowd[0][1]["iscrowd"].tolist() == [0, 1]
    assert dataset.categories == {3: "car", 18: "dog"}


def test_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(AnnotationFileNotFoundError) as caught:
        CocoDetection(tmp_path)
    assert str(caught.value) == f"annotation file not found: {tmp_path / 'annotations.json'}"


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "annotations.json").write_text('{"images": [\n  {"id": 1,, }]}')
    with pytest.raises(MalformedAnnotationsError) as caught:
        CocoDetection(tmp_path)
    assert str(caught.value).startswith(
        f"{tmp_path / 'annotations.json'}: not valid JSON (line 2, column"
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "top level must be an object, got list"),
        ({"categories": []}, "lacks 'images'"),
        (
            {"images": [{"id": 1, "width": 4, "height": 4}], "categories": []},
            "images[0] lacks 'file_name'",
        ),
        (
            {"images": [], "categories": [{"id": "x", "name": "a"}]},
            "categories[0] has 'id' of type str",
        ),
    ],
)
def test_missing_or_mistyped_fields(tmp_path: Path, document: Any, message: str) -> None:
    (tmp_path / "annotations.json").write_text(json.dumps(document))
    with pytest.raises(MalformedAnnotationsError, match=None) as caught:
        CocoDetection(tmp_path)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (_ann(image_id=99), "annotation id 1 refers to unknown image id 99"),
        (_ann(category_id=5), "annotation id 1 refers to unknown category id 5"),
    ],
)
def test_dangling_references(tmp_path: Path, annotation: dict[str, Any], message: str) -> None:
    path = _coco_like(tmp_path, [annotation])
    with pytest.raises(MalformedAnnotationsError) as caught:
        CocoDetection(tmp_path, ann_file=path, image_dir="val")
    assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([2, 3, -4, 5], " with negative size (width -4, height 5)"),
        ([2, 3, 4, -0.5], " with negative size (width 4, height -0.5)"),
        ([2, 3, 4], "; expected [x, y, width, height]"),
        ([2, 3, "wide", 5], " with a non-finite or non-number value"),
    ],
)
def test_bad_bboxes(tmp_path: Path, bbox: list[Any], message: str) -> None:
    path = _coco_like(tmp_path, [_ann(id=12, bbox=bbox)])
    with pytest.raises(InvalidBBoxError) as caught:
        CocoDetection(tmp_path, ann_file=path, image_dir="val")
    assert str(caught.value) == f"{path}: annotation id 12 (image 7) has bbox {bbox!r}{message}"


def test_missing_image_files_are_counted_and_named(image_dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(image_dataset, copy)
    for name in ("000002.png", "000005.png", "000006.png", "000009.png"):
        (copy / "images" / name).unlink()
    with pytest.raises(ImageFilesMissingError) as caught:
        CocoDetection(copy)
    assert str(caught.value) == (
        f"4 of 12 image files listed in annotations.json are missing under {copy / 'images'}: "
        "000002.png, 000005.png, 000006.png, ..."
    )


def test_image_size_differing_from_annotations(tmp_path: Path) -> None:
    path = _coco_like(tmp_path, [])
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "val" / "a.jpg")
    dataset = CocoDetection(tmp_path, ann_file=path, image_dir="val")
    with pytest.raises(MalformedAnnotationsError) as caught:
        dataset[0]
    assert (
        str(caught.value) == f"{tmp_path / 'val' / 'a.jpg'} is 10x10 but instances.json says 40x30"
    )


def test_masks_requested_where_there_is_no_segmentation(tmp_path: Path) -> None:
    path = _coco_like(tmp_path, [_ann()])
    dataset = CocoDetection(tmp_path, ann_file=path, image_dir="val", with_masks=True)
    with pytest.raises(MalformedAnnotationsError, match="annotation id 1 has no segmentation"):
        dataset[0]
