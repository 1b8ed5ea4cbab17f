"""A learned, slimmable bottleneck for a torchvision segmenter (LR-ASPP, DeepLabV3).

The segmentation counterpart of :mod:`splitedge.models.bottleneck_split`. The split
point is a backbone stage at or before the first feature the segmentation head reads
(``split_at``; by default the family's, e.g. the LR-ASPP teacher's *low* feature:
``features.2`` of the dilated MobileNetV3-Small, stride 8, 24 channels), so the
student (:class:`splitedge.models.bottleneck.Student`, unchanged) rebuilds exactly
what the head or the next stages read there. Server side: decoder -> the frozen
teacher's remaining backbone stages (up to the last feature the head reads) -> the
head -> upsample to the resized input -> argmax mask resized to the original frame
with nearest neighbour, the same finisher the teacher's own split branches use
(:mod:`splitedge.models.segmentation`).

Branches: ``local`` and the teacher's offload branches (run by the teacher) and
``bottleneck-<C>-w<width>-<bits>bit`` (task ``segmentation``). The code stride is the
split point's own (segmentation inputs are not padded, so a frame resized to ``H x W``
ships a ``ceil(H/s) x ceil(W/s)`` code).

Registered as ``bottleneck-seg`` in the model registry (lazily).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from splitedge.models.bottleneck import (
    BottleneckConfig,
    BottleneckConfigError,
)
from splitedge.models.bottleneck_split import (
    DEFAULT_BRANCH_BITS,
    BottleneckSplitModel,
    TeacherRest,
    _teacher_and_student,
    build_teacher,
    optional_prefilter,
    parse_branch_bits,
    read_profiles,
    teacher_rest,
)
from splitedge.models.registry import typed_options
from splitedge.models.types import SplitModel

MODEL_NAME = "bottleneck-seg"
DEFAULT_TEACHER = "zoo:teacher-lraspp-small"


def seg_teacher_rest(teacher: SplitModel, split_at: str | None = None) -> TeacherRest:
    """:class:`TeacherRest` of a built torchvision segmenter (default: its family's stage)."""
    if teacher.task != "segmentation":
        raise BottleneckConfigError(f"teacher {teacher.name!r} is not a segmentation model")
    return teacher_rest(teacher, split_at)


def build_seg_teacher(teacher: str, teacher_options: dict[str, Any] | None = None) -> SplitModel:
    """A segmenter teacher by registry name or ``zoo:<entry>``."""
    return build_teacher(teacher, teacher_options, "segmentation")


def check_seg_config(config: BottleneckConfig) -> None:
    if config.stride != config.split_stride:
        raise BottleneckConfigError(
            f"segmentation students use their split point's stride as code stride "
            f"{config.split_stride}, got {config.stride}"
        )


class SegBottleneckSplitModel(BottleneckSplitModel):
    """Implements :class:`SplitModel` for a student of an LR-ASPP teacher.

    Reuses the detector model's branches, width switching, head, tail batching and
    input checks; only the parts that know the task (preprocess, rest, finisher,
    code size) differ.
    """

    task = "segmentation"

    def _task_parts(self, teacher: SplitModel) -> tuple[Any, Any, Any, str]:
        check_seg_config(self.config)
        return super()._task_parts(teacher)


@typed_options
def build_bottleneck_seg(
    *,
    weights: str | None = None,
    teacher: str | None = None,
    teacher_options: dict[str, Any] | None = None,
    channels: int = 12,
    widths: Sequence[float] | None = None,
    branch_bits: Sequence[int] | str = DEFAULT_BRANCH_BITS,
    prefilter: str | None = None,
    init_seed: int = 0,
    device: str = "cpu",
    split_at: str | None = None,
) -> SplitModel:
    """Student from ``weights`` (a :func:`~splitedge.models.bottleneck.save_student`
    checkpoint) or seeded random init, on the teacher and split stage recorded there
    (else :data:`DEFAULT_TEACHER` and the family's default stage)."""
    teacher_model, parts = _teacher_and_student(
        weights,
        teacher,
        DEFAULT_TEACHER,
        teacher_options,
        channels,
        widths,
        None,
        init_seed,
        split_at,
        "segmentation",
    )
    teacher_model.torch_model.to(device)  # type: ignore[attr-defined]
    profiles = read_profiles(Path(weights).with_suffix(".json"), "mIoU", "mIoU") if weights else {}
    return SegBottleneckSplitModel(
        teacher_model,
        parts.student.to(device),
        branch_bits=parse_branch_bits(branch_bits),
        weights_source=parts.source,
        prefilter=optional_prefilter(prefilter),
        profiles=profiles,
        name=MODEL_NAME,
        split_at=parts.split_at,
    )
