"""``splitedge-train ghnd-seg``: distil a bottleneck student from a frozen segmenter.

GHND for the segmenter matches every input of the segmentation head computed from the
decoded split feature (the LR-ASPP teacher's ``low`` and ``high``, DeepLabV3's
``out``) against the teacher's own, plus the split feature itself when the head does
not read it; the loss is their plain sum of mean squared errors. The split stage is
``--split-at`` (default: the family's, the LR-ASPP teacher's low feature). As in
:mod:`splitedge.training.distill`: teacher frozen (eval, no parameter gradients),
quantization in the loop at a bit depth drawn from ``--bits`` per width, sandwich-rule
widths, AdamW with warm-up and cosine decay; the same data, device and checkpoint
options.

Writes ``<out>/<name>.pt`` (the student) and ``<name>.json`` (kind ``student``,
builder ``bottleneck-seg``), so ``zoo:<name>`` serves it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from splitedge.models.bottleneck_seg import MODEL_NAME
from splitedge.training.distill import (
    RunOptions,
    StudentConfig,
    add_student_arguments,
    common_config,
    distill_student,
    run_options,
    save_and_record,
    teacher_segmentation_loss,
)

__all__ = ["SegDistillConfig", "distill_seg", "teacher_segmentation_loss"]

RECIPE = "ghnd-seg"
DEFAULT_NAME = "ghnd-lraspp-small-c12"


@dataclass
class SegDistillConfig(StudentConfig):
    """One segmenter distillation run; the defaults are the committed student's recipe."""

    teacher: str = "zoo:teacher-lraspp-small"
    iterations: int = 1300
    lr: float = 3e-3


TINY = {"iterations": 30, "batch_size": 2, "size_hw": (96, 128), "lr": 3e-3}


def distill_seg(
    config: SegDistillConfig, progress: bool = True, run: RunOptions | None = None
) -> tuple[Any, dict[str, Any]]:
    """Train a segmentation student; returns (student in eval mode, training record)."""
    return distill_student(
        config,
        ghnd=True,
        label=RECIPE,
        task="segmentation",
        stride=None,
        progress=progress,
        run=run,
    )


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
    student, record = distill_seg(config, progress=not args.no_progress, run=run_options(args))
    return save_and_record(
        args,
        config,
        student,
        record,
        builder=MODEL_NAME,
        recipe=recipe_line(config, args.name) + (" --tiny" if args.tiny else ""),
        description=(
            f"GHND student of the segmenter {config.teacher} at {record['split_at']}: "
            f"{config.channels}-channel slimmable bottleneck (widths {list(config.widths)}), "
            f"stride {record['bottleneck']['stride']}"
        ),
    )
