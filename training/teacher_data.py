"""Synthetic training and validation data for the teachers, drawn on the fly.

Training frames come from :func:`splitedge.models.data.generate_image` with the
training data seed; the validation set is a fixed seed far from it, held in memory
with an in-memory COCO ground truth, so ``splitedge-train eval`` and the training
runs score on the same frames without a dataset folder. Augmentation: horizontal
and vertical flips (every synthetic class is drawn at random rotations, so a flip
keeps the label) and scale jitter (done by the model's own transform, see the
recipes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from splitedge.models.data import CATEGORIES, Sample, SceneConfig, generate_image, mean_iou
from splitedge.models.data import evaluate_detections as coco_evaluate
from splitedge.models.types import Detections, Prediction, SegmentationMask

VAL_DATA_SEED = 424_242  # the fixed validation set (never a training seed)
DEFAULT_VAL_IMAGES = 64


@dataclass(frozen=True)
class DetectionTarget:
    boxes_xyxy: np.ndarray  # (N, 4) float32 pixels
    labels: np.ndarray  # (N,) int64 class ids 1..6


def target_of(sample: Sample) -> DetectionTarget:
    boxes = [(x, y, x + w, y + h) for (x, y, w, h) in (inst.bbox_xywh for inst in sample.instances)]
    return DetectionTarget(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray([inst.class_id for inst in sample.instances], dtype=np.int64),
    )


def flip(
    image: np.ndarray, semantic: np.ndarray, target: DetectionTarget, horizontal: bool
) -> tuple[np.ndarray, np.ndarray, DetectionTarget]:
    """Mirror a frame, its class map and its boxes."""
    h, w = image.shape[:2]
    axis = 1 if horizontal else 0
    boxes = target.boxes_xyxy.copy()
    if horizontal:
        boxes[:, [0, 2]] = w - target.boxes_xyxy[:, [2, 0]]
    else:
        boxes[:, [1, 3]] = h - target.boxes_xyxy[:, [3, 1]]
    return (
        np.ascontiguousarray(np.flip(image, axis)),
        np.ascontiguousarray(np.flip(semantic, axis)),
        DetectionTarget(boxes, target.labels),
    )


def training_batch(
    scene: SceneConfig, data_seed: int, step: int, batch_size: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray, DetectionTarget]]:
    """Batch ``step``: frames step*batch .. +batch of the training seed, randomly flipped."""
    out = []
    for i in range(batch_size):
        sample = generate_image(scene, data_seed, step * batch_size + i)
        image, semantic, target = sample.image, sample.semantic, target_of(sample)
        if rng.random() < 0.5:
            image, semantic, target = flip(image, semantic, target, horizontal=True)
        if rng.random() < 0.5:
            image, semantic, target = flip(image, semantic, target, horizontal=False)
        out.append((image, semantic, target))
    return out


@dataclass
class ValidationSet:
    samples: list[Sample]
    coco_gt: dict[str, Any]


def validation_set(
    num_images: int = DEFAULT_VAL_IMAGES,
    scene: SceneConfig | None = None,
    data_seed: int = VAL_DATA_SEED,
) -> ValidationSet:
    """The fixed-seed validation frames and their COCO ground truth (bbox)."""
    scene = scene or SceneConfig()
    samples = [generate_image(scene, data_seed, i) for i in range(num_images)]
    images, annotations = [], []
    for image_id, sample in enumerate(samples, start=1):
        h, w = sample.image.shape[:2]
        images.append({"id": image_id, "width": int(w), "height": int(h), "file_name": ""})
        for inst in sample.instances:
            x, y, bw, bh = (float(v) for v in inst.bbox_xywh)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(inst.class_id),
                    "bbox": [x, y, bw, bh],
                    "area": float(inst.area_px),
                    "iscrowd": 0,
                }
            )
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    return ValidationSet(samples, gt)


def detection_metrics(
    predict: Callable[[np.ndarray], Prediction], val: ValidationSet
) -> dict[str, float]:
    """COCO bbox metrics of ``predict`` (frame -> Detections) on the validation set."""
    predictions = []
    for image_id, sample in enumerate(val.samples, start=1):
        det = predict(sample.image)
        if not isinstance(det, Detections):
            raise TypeError(f"expected Detections, the model returned {type(det).__name__}")
        predictions.append(
            {"image_id": image_id, "boxes": det.boxes, "scores": det.scores, "labels": det.labels}
        )
    metrics = coco_evaluate(val.coco_gt, predictions)
    return {k: float(v) for k, v in metrics.items()}


def segmentation_metrics(
    predict: Callable[[np.ndarray], Prediction], val: ValidationSet, num_classes: int
) -> dict[str, float]:
    """Mean IoU (and pixel accuracy) of ``predict`` (frame -> SegmentationMask)."""
    preds, gts = [], []
    for sample in val.samples:
        mask = predict(sample.image)
        if not isinstance(mask, SegmentationMask):
            raise TypeError(
                f"expected a SegmentationMask, the model returned {type(mask).__name__}"
            )
        preds.append(mask.mask)
        gts.append(sample.semantic)
    pixel_acc = float(np.mean([np.mean(p == g) for p, g in zip(preds, gts, strict=True)]))
    return {"mIoU": mean_iou(preds, gts, num_classes), "pixel_accuracy": pixel_acc}


def scene_of(sizes: Sequence[int]) -> SceneConfig:
    """Scene config for a (height, width) frame size."""
    height, width = (int(s) for s in sizes)
    return SceneConfig(width=width, height=height)
