"""Score a trained student on the user's validation split, the way the edge runs it.

Each split branch runs head -> codec (its default bit depth, zstd) -> decoded tensor
-> tail, frame by frame, exactly the bytes a device would ship; the teacher's own
``run_local`` is scored beside it. Detection: COCO mAP through pycocotools
(:func:`splitedge.models.data.evaluate_detections`, the project's one road to a
detection score); segmentation: mean IoU (:func:`splitedge.models.data.mean_iou`).
The result goes into the zoo record's ``metrics``: ``val`` (data, images, teacher
score) and ``branches`` (score and mean bytes per frame of each branch), which the
edge's Describe reports as each branch's profile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from splitedge.models.data import evaluate_detections, mean_iou
from splitedge.models.types import Detections, SegmentationMask, SplitModel, TailInput
from splitedge.proto import codec
from splitedge.training.student_data import IGNORE_INDEX, Split, class_map


def _ground_truth(coco: Any, n: int) -> dict[str, Any]:
    images = coco.images[:n]
    annotations = [a for per_image in coco.annotations[:n] for a in per_image]
    categories = [{"id": i, "name": name} for i, name in coco.categories.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def _wire(tensors: dict[str, np.ndarray], bits: int) -> tuple[dict[str, np.ndarray], int]:
    decoded, size = {}, 0
    for name, array in tensors.items():
        encoded = codec.encode_tensor(array, name, bits=bits)  # zstd-packed, as sent
        size += encoded.size_bytes
        decoded[name] = codec.decode_tensor(encoded)
    return decoded, size


def evaluate_student(model: SplitModel, split: Split, max_images: int) -> dict[str, Any]:
    """``{"val": {...}, "branches": {branch: {metric, bytes_per_frame_mean}}}`` of
    ``model`` (a bottleneck split model) on the first ``max_images`` of ``split``."""
    segmentation = model.task == "segmentation"
    coco = split.open(with_masks=segmentation)
    n = min(len(coco), max_images)
    frames = [coco.load_image(i) for i in range(n)]
    branches = [b for b, s in model.branches.items() if s.kind == "split"]
    if segmentation:
        truth = [class_map(coco, i, coco.target(i), model.num_classes) for i in range(n)]

        def score(predictions: list[Any]) -> dict[str, float]:
            masks = [p.mask for p in predictions]
            return {"mIoU": round(mean_iou(masks, truth, model.num_classes, IGNORE_INDEX), 4)}
    else:
        gt = _ground_truth(coco, n)

        def score(predictions: list[Any]) -> dict[str, float]:
            results = [
                {
                    "image_id": coco.image_id(i),
                    "boxes": p.boxes,
                    "scores": p.scores,
                    "labels": p.labels,
                }
                for i, p in enumerate(predictions)
            ]
            m = evaluate_detections(gt, results)
            return {"mAP": round(m["map"], 4), "mAP50": round(m["map50"], 4)}

    expected = SegmentationMask if segmentation else Detections
    teacher = [model.run_local(f) for f in frames]
    out: dict[str, Any] = {
        "val": {"data": str(split.ann_file), "images": n, "teacher": score(teacher)},
        "branches": {},
    }
    for branch in branches:
        bits = model.branches[branch].default_bits
        predictions, sizes = [], []
        for frame in frames:
            head = model.run_head(branch, frame)
            wire, size = _wire(head.tensors, bits)
            (pred,) = model.run_tail(branch, [TailInput(head.orig_size, head.input_size, wire)])
            assert isinstance(pred, expected)
            predictions.append(pred)
            sizes.append(size)
        out["branches"][branch] = {
            **score(predictions),
            "bytes_per_frame_mean": round(float(np.mean(sizes)), 1),
        }
    return out
