"""Accuracy measures: COCO mAP through pycocotools, and mean IoU for semantic maps.

``evaluate_detections`` is the one road to a detection score, for generated and
real COCO data alike, so numbers in the zoo and in papers are comparable.
pycocotools prints progress on stdout; that is swallowed here.
Metrics that COCO reports as -1 (no ground truth in that size range) come back as
NaN, so averaging them by mistake shows instead of silently lowering a score.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from splitedge.models.data.coco import load_annotations
from splitedge.models.data.errors import PredictionFormatError
from splitedge.models.data.export import encode_rle

METRIC_NAMES: tuple[str, ...] = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
"""The twelve numbers of ``COCOeval.summarize()``, in its order."""


def _load_gt(coco_gt: str | Path | Mapping[str, Any] | COCO) -> COCO:
    if isinstance(coco_gt, COCO):
        return coco_gt
    document = load_annotations(coco_gt) if isinstance(coco_gt, (str, Path)) else coco_gt
    gt = COCO()
    gt.dataset = copy.deepcopy(dict(document))
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _to_results(
    predictions: Sequence[Mapping[str, Any]], known_ids: set[int], iou_type: str
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for i, prediction in enumerate(predictions):
        needed = ("image_id", "boxes", "scores", "labels") + (
            ("masks",) if iou_type == "segm" else ()
        )
        lacking = [key for key in needed if key not in prediction]
        if lacking:
            raise PredictionFormatError(f"prediction {i} lacks {', '.join(lacking)}")
        image_id = int(prediction["image_id"])
        if image_id not in known_ids:
            raise PredictionFormatError(
                f"prediction {i} refers to image id {image_id}, not in ground truth"
            )
        boxes = (
            np.asarray(prediction["boxes"], np.float64).reshape(-1, 4)
            if len(prediction["boxes"])
            else np.zeros((0, 4))
        )
        scores = np.asarray(prediction["scores"], np.float64).reshape(-1)
        labels = np.asarray(prediction["labels"]).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise PredictionFormatError(
                f"prediction {i} (image {image_id}) has {len(boxes)} boxes, {len(scores)} scores "
                f"and {len(labels)} labels; they must match"
            )
        masks = np.asarray(prediction["masks"]) if iou_type == "segm" else None
        if masks is not None and (masks.ndim != 3 or len(masks) != len(boxes)):
            raise PredictionFormatError(
                f"prediction {i} (image {image_id}) masks have shape {masks.shape}, "
                f"expected ({len(boxes)}, H, W)"
            )
        for k, (box, score, label) in enumerate(zip(boxes, scores, labels, strict=True)):
            x0, y0, x1, y1 = (float(v) for v in box)
            result: dict[str, Any] = {
                "image_id": image_id,
                "category_id": int(label),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "score": float(score),
            }
            if masks is not None:
                result["segmentation"] = encode_rle(masks[k] > 0)
            results.append(result)
    return results


def evaluate_detections(
    coco_gt: str | Path | Mapping[str, Any] | COCO,
    predictions: Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
) -> dict[str, float]:
    """COCO metrics of ``predictions`` against ``coco_gt`` (a path, a parsed dict or a COCO).

    Each prediction is ``{"image_id", "boxes" (N, 4) xyxy pixels, "scores" (N,),
    "labels" (N,) category ids}`` plus ``"masks"`` (N, H, W) for ``iou_type="segm"``.
    Returns :data:`METRIC_NAMES` plus ``ap_<category name>`` (AP at IoU .50:.95 per
    class, NaN for a class without ground truth). No detections at all score 0.
    """
    if iou_type not in ("bbox", "segm"):
        raise PredictionFormatError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt = _load_gt(coco_gt)
    results = _to_results(predictions, set(gt.getImgIds()), iou_type)
    categories = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    if not results:
        # pycocotools cannot load an empty result list; nothing detected means nothing found.
        return {name: 0.0 for name in METRIC_NAMES} | {f"ap_{n}": 0.0 for n in categories.values()}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics = {
        name: float("nan") if value < 0 else float(value)
        for name, value in zip(METRIC_NAMES, evaluator.stats, strict=True)
    }
    # precision: [iou thresholds, recall points, categories, area ranges, max dets]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    for k, category_id in enumerate(evaluator.params.catIds):
        valid = precision[:, :, k][precision[:, :, k] > -1]
        metrics[f"ap_{categories[category_id]}"] = (
            float(valid.mean()) if valid.size else float("nan")
        )
    return metrics


def confusion_matrix(
    pred_masks: np.ndarray | Sequence[np.ndarray],
    gt_masks: np.ndarray | Sequence[np.ndarray],
    num_classes: int,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """(num_classes, num_classes) int64 pixel counts, rows = ground truth, cols = prediction."""
    if num_classes < 1:
        raise PredictionFormatError(f"num_classes must be >= 1, got {num_classes}")
    preds = [
        np.asarray(m) for m in (pred_masks if isinstance(pred_masks, Sequence) else [pred_masks])
    ]
    gts = [np.asarray(m) for m in (gt_masks if isinstance(gt_masks, Sequence) else [gt_masks])]
    if len(preds) != len(gts):
        raise PredictionFormatError(
            f"{len(preds)} predicted masks but {len(gts)} ground-truth masks"
        )
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        if pred.shape != gt.shape:
            raise PredictionFormatError(
                f"mask {i}: prediction shape {pred.shape} != ground truth {gt.shape}"
            )
        keep = gt != ignore_index if ignore_index is not None else np.ones(gt.shape, bool)
        p, g = pred[keep].astype(np.int64), gt[keep].astype(np.int64)
        for name, values in (("prediction", p), ("ground truth", g)):
            if values.size and (values.min() < 0 or values.max() >= num_classes):
                raise PredictionFormatError(
                    f"mask {i}: {name} has class {int(values.max())} outside [0, {num_classes - 1}]"
                )
        matrix += np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(
            num_classes, -1
        )
    return matrix


def per_class_iou(
    pred_masks: np.ndarray | Sequence[np.ndarray],
    gt_masks: np.ndarray | Sequence[np.ndarray],
    num_classes: int,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """IoU of each class (background 0 included); NaN where a class is in neither map."""
    matrix = confusion_matrix(pred_masks, gt_masks, num_classes, ignore_index)
    hits = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / union, np.nan)


def mean_iou(
    pred_masks: np.ndarray | Sequence[np.ndarray],
    gt_masks: np.ndarray | Sequence[np.ndarray],
    num_classes: int,
    ignore_index: int | None = 255,
) -> float:
    """Mean IoU over the classes present in the prediction or the ground truth.

    Masks are (H, W) class-index maps, or sequences / stacks of them; pixels equal
    to ``ignore_index`` in the ground truth do not count.
    """
    ious = per_class_iou(pred_masks, gt_masks, num_classes, ignore_index)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")
