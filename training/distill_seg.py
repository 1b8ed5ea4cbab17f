"""``splitedge-train ghnd-seg``: distil a bottleneck student from the frozen LR-ASPP segmenter.

GHND for the segmenter matches both inputs of the LR-ASPP head: the decoded split
feature (``low``, ``backbone.2``, stride 8) against the teacher's own, and the
teacher's ``high`` feature (``backbone.12``) computed *from the decoded feature*
against the one computed from the teacher's own; the loss is their plain sum of
mean squared errors. As in :mod:`splitedge.training.distill`: teacher frozen (eval,
no parameter gradients), quantization in the loop at a bit depth drawn from
``--bits`` per width, sandwich-rule widths, AdamW with warm-up and cosine decay.

Writes ``<out>/<name>.pt`` (the student) and ``<name>.json`` (kind ``student``,
builder ``bottleneck-seg``), so ``zoo:<name>`` serves it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from splitedge.models.bottleneck_seg import (
    CODE_STRIDE,
    MODEL_NAME,
    build_seg_teacher,
    seg_teacher_rest,
)
from splitedge.training.distill import (
    StudentConfig,
    add_student_arguments,
    common_config,
    save_and_record,
    train_student,
)

RECIPE = "ghnd-seg"
DEFAULT_NAME = "ghnd-lraspp-small-c12"
GHND_FEATURES = ["backbone.2", "backbone.12"]


@dataclass
class SegDistillConfig(StudentConfig):
    """One segmenter distillation run; the defaults are the committed student's recipe."""

    teacher: str = "zoo:teacher-lraspp-small"
    iterations: int = 1300
    lr: float = 3e-3


TINY = {"iterations": 30, "batch_size": 2, "size_hw": (96, 128), "lr": 3e-3}


def teacher_segmentation_loss(classifier: Any) -> Any:
    """``loss(features, batch, image_sizes, frames)``: cross-entropy of the frozen LR-ASPP
    head's logits on ``features`` (``low``/``high``), upsampled to the batch, against
    the frames' class maps resized (nearest) to the same size."""

    def loss(features: Any, batch: Any, image_sizes: Any, frames: Any) -> Any:
        size = tuple(batch.shape[-2:])
        masks = torch.stack([torch.from_numpy(f[1].astype(np.int64)) for f in frames])
        target = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()
        logits = F.interpolate(
            classifier(features), size=size, mode="bilinear", align_corners=False
        )
        return F.cross_entropy(logits, target)

    return loss


def distill_seg(config: SegDistillConfig, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train a segmentation student; returns (student in eval mode, training record)."""
    from splitedge.models.segmentation import SegmentationPreprocess

    teacher = build_seg_teacher(config.teacher, config.teacher_options)
    rest = seg_teacher_rest(teacher)
    preprocess = SegmentationPreprocess(teacher.min_size, teacher.max_size).eval()
    student, record = train_student(
        config,
        rest,
        preprocess,
        stride=CODE_STRIDE,
        ghnd=True,
        label=RECIPE,
        progress=progress,
        task_loss=teacher_segmentation_loss(rest.classifier) if config.task_weight > 0 else None,
    )
    record["task"] = "segmentation"
    record["ghnd_features"] = list(GHND_FEATURES)
    return student, record


def recipe_line(config: SegDistillConfig, name: str) -> str:
    """The command line that reproduces ``config``."""
    return config.recipe_line(RECIPE, name)


def add_parser(subparsers: Any) -> None:
    """Register ``ghnd-seg`` with ``splitedge-train``."""
    p = subparsers.add_parser(
        RECIPE,
        help="distil a bottleneck student of the LR-ASPP segmenter with GHND (teacher frozen)",
        description=__doc__.split("\n\n")[1],
    )
    add_student_arguments(p, SegDistillConfig(), DEFAULT_NAME, stride=False)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> SegDistillConfig:
    return SegDistillConfig(**common_config(args, TINY, SegDistillConfig.size_hw))


def run(args: argparse.Namespace) -> int:
    """Train, save the checkpoint and (unless ``--no-zoo``) its zoo record."""
    config = config_from_args(args)
    student, record = distill_seg(config, progress=not args.no_progress)
    return save_and_record(
        args,
        config,
        student,
        record,
        builder=MODEL_NAME,
        recipe=recipe_line(config, args.name) + (" --tiny" if args.tiny else ""),
        description=(
            f"GHND student of the segmenter {config.teacher}: {config.channels}-channel "
            f"slimmable bottleneck (widths {list(config.widths)}) at its low feature, stride 8"
        ),
    )
