"""``splitedge-train eval NAME``: re-measure a zoo entry on the fixed-seed validation set.

Accuracy (COCO mAP@[.5:.95] and mAP@.5 for detectors, mIoU for segmenters) runs
the ``local`` branch, or head -> tail of ``--branch`` when given (how a student's
bottleneck branch is scored); latencies are medians at one thread on a validation
frame: the whole model, and the head and tail of the measured split branch. With
``--write`` the numbers are merged into the entry's ``metrics``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.models import zoo
from splitedge.models.types import Prediction, TailInput
from splitedge.training.teacher_data import (
    DEFAULT_VAL_IMAGES,
    detection_metrics,
    segmentation_metrics,
    validation_set,
)

LATENCY_REPEATS = 5


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: first call allocates
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return round(statistics.median(times), 2)


def _through_branch(model: Any, branch: str) -> Callable[[np.ndarray], Prediction]:
    def predict(image: np.ndarray) -> Prediction:
        head = model.run_head(branch, image)
        item = TailInput(head.orig_size, head.input_size, tensors=head.tensors)
        return model.run_tail(branch, [item])[0]

    return predict


def evaluate_entry(
    name: str,
    zoo_dir: str | Path | None = None,
    val_images: int = DEFAULT_VAL_IMAGES,
    branch: str | None = None,
    repeats: int = LATENCY_REPEATS,
) -> dict[str, Any]:
    """Measure entry ``name``; returns the metrics dict (nothing is written)."""
    import torch

    entry = zoo.get_entry(name, zoo_dir)
    if entry.kind == "prefilter":
        raise ValueError(f"zoo entry {name!r} is a prefilter; eval measures detectors/segmenters")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = zoo.load(name, zoo_dir)
        split_branches = [b for b, s in model.branches.items() if s.kind == "split"]
        if branch is not None and branch not in split_branches:
            raise ValueError(
                f"zoo entry {name!r} has no split branch {branch!r}; "
                f"split branches: {', '.join(split_branches) or 'none'}"
            )
        val = validation_set(val_images)
        predict = model.run_local if branch is None else _through_branch(model, branch)
        metrics: dict[str, Any] = {"val_images": val_images}
        if model.task == "detection":
            m = detection_metrics(predict, val)
            metrics |= {"mAP": round(m["map"], 4), "mAP50": round(m["map50"], 4)}
        else:
            m = segmentation_metrics(predict, val, model.num_classes)
            metrics |= {k: round(v, 4) for k, v in m.items()}
        if branch is not None:
            metrics["accuracy_branch"] = branch
        frame = val.samples[0].image
        metrics["local_latency_ms"] = _median_ms(lambda: model.run_local(frame), repeats)
        measured = branch or (split_branches[0] if split_branches else None)
        if measured is not None:
            head = model.run_head(measured, frame)
            item = TailInput(head.orig_size, head.input_size, tensors=head.tensors)
            metrics["latency_branch"] = measured
            metrics["head_latency_ms"] = _median_ms(
                lambda: model.run_head(measured, frame), repeats
            )
            metrics["tail_latency_ms"] = _median_ms(
                lambda: model.run_tail(measured, [item]), repeats
            )
            metrics["head_tensor_bytes_fp32"] = int(sum(t.nbytes for t in head.tensors.values()))
        net = getattr(model, "torch_model", None)
        if net is not None:
            metrics["params"] = int(sum(p.numel() for p in net.parameters()))
        metrics["latency_threads"] = 1
    finally:
        torch.set_num_threads(threads)
    return metrics


def add_parser(subparsers: Any) -> None:
    """Register ``eval`` with ``splitedge-train``."""
    p = subparsers.add_parser(
        "eval",
        help="re-measure a zoo entry on the fixed-seed validation set",
        description="Re-measure a zoo entry (accuracy, latency at 1 thread, params).",
    )
    p.add_argument("name", help="zoo entry name (see models/zoo/*.json)")
    p.add_argument("--val-images", type=int, default=DEFAULT_VAL_IMAGES)
    p.add_argument("--branch", default=None, help="score through this split branch")
    p.add_argument("--repeats", type=int, default=LATENCY_REPEATS, help="latency repeats")
    p.add_argument("--zoo-dir", type=Path, default=None, help="zoo folder (models/zoo)")
    p.add_argument("--write", action="store_true", help="merge the numbers into the entry")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.val_images < 1:
        raise ValueError(f"--val-images must be >= 1, got {args.val_images}")
    metrics = evaluate_entry(args.name, args.zoo_dir, args.val_images, args.branch, args.repeats)
    print(json.dumps({"name": args.name, "metrics": metrics}, indent=2))
    if args.write:
        zoo.record_metrics(args.name, metrics, args.zoo_dir)
        print(f"updated the metrics of zoo entry {args.name!r}")
    return 0
