"""Evaluation sanity: COCO mAP through pycocotools, and mean IoU of semantic maps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from splitedge.models.data import (
    METRIC_NAMES,
    CocoDetection,
    PredictionFormatError,
    evaluate_detections,
    mean_iou,
    per_class_iou,
)


def _ground_truth_as_predictions(
    root: Path, shift_px: float = 0.0, masks: bool = False
) -> list[dict[str, Any]]:
    dataset = CocoDetection(root, with_masks=masks)
    predictions = []
    for index in range(len(dataset)):
        target = dataset.target(index)
        prediction = {
            "image_id": target["image_id"],
            "boxes": target["boxes"] + shift_px,
            "scores": np.ones(len(target["boxes"])),
            "labels": target["labels"],
        }
        if masks:
            prediction["masks"] = target["masks"]
        predictions.append(prediction)
    return predictions


def test_ground_truth_as_predictions_scores_one(image_dataset: Path) -> None:
    metrics = evaluate_detections(
        image_dataset / "annotations.json", _ground_truth_as_predictions(image_dataset)
    )
    assert set(METRIC_NAMES) <= metrics.keys()
    assert metrics["map"] == metrics["map50"] == metrics["map75"] == 1.0
    assert metrics["mar_100"] == 1.0
    present = [v for k, v in metrics.items() if k.startswith("ap_") and not math.isnan(v)]
    assert present and all(v == 1.0 for v in present)


def test_ground_truth_masks_as_predictions_score_one_for_segm(image_dataset: Path) -> None:
    predictions = _ground_truth_as_predictions(image_dataset, masks=True)
    assert (
        evaluate_detections(image_dataset / "annotations.json", predictions, "segm")["map"] == 1.0
    )


def test_shifted_boxes_score_lower(image_dataset: Path) -> None:
    gt = image_dataset / "annotations.json"
    slightly = evaluate_detections(gt, _ground_truth_as_predictions(image_dataset, 1.5))["map"]
    badly = evaluate_detections(gt, _ground_truth_as_predictions(image_dataset, 6.0))["map"]
    assert 0.0 <= badly < slightly < 1.0


def test_no_predictions_score_zero(image_dataset: Path) -> None:
    gt = image_dataset / "annotations.json"
    empty_per_image = [
        {"image_id": p["image_id"], "boxes": np.zeros((0, 4)), "scores": [], "labels": []}
        for p in _ground_truth_as_predictions(image_dataset)
    ]
    for predictions in ([], empty_per_image):
        metrics = evaluate_detections(gt, predictions)
        assert metrics["map"] == metrics["map50"] == 0.0


def test_accepts_a_parsed_document_and_keeps_it_intact(image_dataset: Path) -> None:
    import json

    document = json.loads((image_dataset / "annotations.json").read_text())
    before = json.dumps(document)
    assert evaluate_detections(document, _ground_truth_as_predictions(image_dataset))["map"] == 1.0
    assert json.dumps(document) == before


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        ({"image_id": 1, "boxes": [[0, 0, 1, 1]], "scores": [1.0]}, "prediction 0 lacks labels"),
        ({"image_id": 999, "boxes": [], "scores": [], "labels": []}, "refers to image id 999"),
        (
            {"image_id": 1, "boxes": [[0, 0, 1, 1]], "scores": [1.0, 0.5], "labels": [1]},
            "has 1 boxes, 2 scores and 1 labels; they must match",
        ),
    ],
)
def test_malformed_predictions_are_refused(
    image_dataset: Path, prediction: dict[str, Any], message: str
) -> None:
    with pytest.raises(PredictionFormatError, match=None) as caught:
        evaluate_detections(image_dataset / "annotations.json", [prediction])
    assert message in str(caught.value)


def test_mean_iou_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 0, 1, 1], [0, 1, 1, 2]], np.uint8)
    # class 0: hit 3, union 4; class 1: hit 3, union 5; class 2: hit 0, union 1
    expected = np.array([3 / 4, 3 / 5, 0.0])
    assert np.allclose(per_class_iou(pred, gt, 3), expected)
    assert mean_iou(pred, gt, 3) == pytest.approx(expected.mean())
    assert mean_iou([gt, gt], [gt, gt], 6) == 1.0  # absent classes are left out, not zero


def test_mean_iou_ignores_ignore_index_and_is_one_on_generated_maps(image_dataset: Path) -> None:
    dataset = CocoDetection(image_dataset, with_semantic=True)
    maps = [dataset.target(i)["semantic"] for i in range(len(dataset))]
    assert mean_iou(maps, maps, 7) == 1.0
    gt = maps[0].copy()
    gt[:, :10] = 255
    pred = maps[0].copy()
    pred[:, :10] = 3
    assert mean_iou(pred, gt, 7) == 1.0


@pytest.mark.parametrize(
    ("pred", "gt", "message"),
    [
        (
            np.zeros((2, 3)),
            np.zeros((3, 2)),
            "mask 0: prediction shape (2, 3) != ground truth (3, 2)",
        ),
        (np.full((2, 2), 9), np.zeros((2, 2)), "mask 0: prediction has class 9 outside [0, 6]"),
        ([np.zeros((2, 2))], [], "1 predicted masks but 0 ground-truth masks"),
    ],
)
def test_mean_iou_bad_input(pred: Any, gt: Any, message: str) -> None:
    with pytest.raises(PredictionFormatError) as caught:
        mean_iou(pred, gt, 7)
    assert str(caught.value) == message
