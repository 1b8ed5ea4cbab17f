"""A learned, slimmable bottleneck for the LR-ASPP teacher segmenter.

The segmentation counterpart of :mod:`splitedge.models.bottleneck_split`. The split
point is the segmenter's *low* feature (``features.2`` of the dilated
MobileNetV3-Small, stride 8, 24 channels: the LR-ASPP head's ``low`` input), so the
student (:class:`splitedge.models.bottleneck.Student`, unchanged) rebuilds exactly
what the head reads there. Server side: decoder -> the frozen teacher's remaining
backbone stages (``features.3`` .. ``features.12``, the head's ``high`` input) ->
LR-ASPP head on ``{"low": decoded, "high": ...}`` -> upsample to the resized input
-> argmax mask resized to the original frame with nearest neighbour, the same
finisher the teacher's own split branches use (:mod:`splitedge.models.segmentation`).

Branches: ``local`` and the teacher's offload branches (run by the teacher) and
``bottleneck-<C>-w<width>-<bits>bit`` (task ``segmentation``). The code stride is 8
(the split point's own); segmentation inputs are not padded, so a frame resized to
``H x W`` ships a ``ceil(H/8) x ceil(W/8)`` code.

Registered as ``bottleneck-seg`` in the model registry (lazily).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from splitedge.models.bottleneck import (
    BottleneckConfig,
    BottleneckConfigError,
)
from splitedge.models.bottleneck_split import (
    DEFAULT_BRANCH_BITS,
    BottleneckSplitModel,
    optional_prefilter,
    parse_branch_bits,
    read_profiles,
    student_parts,
)
from splitedge.models.registry import create_model, typed_options
from splitedge.models.split import Size, stages_from_layer_getter
from splitedge.models.types import SplitModel

MODEL_NAME = "bottleneck-seg"
DEFAULT_TEACHER = "zoo:teacher-lraspp-small"
LOW_KEY = "low"  # the LR-ASPP head's inputs, as the backbone returns them
HIGH_KEY = "high"
CODE_STRIDE = 8


class SegTeacherRest(nn.Module):
    """The frozen LR-ASPP teacher after its ``low`` feature: stages -> head inputs -> logits."""

    def __init__(self, teacher_model: nn.Module) -> None:
        super().__init__()
        stages = stages_from_layer_getter(teacher_model.backbone, "backbone")
        emits = [s.emits for s in stages]
        if LOW_KEY not in emits or HIGH_KEY not in emits:
            raise BottleneckConfigError(
                f"teacher backbone returns {[e for e in emits if e]}, an LR-ASPP head needs "
                f"{LOW_KEY!r} and {HIGH_KEY!r}"
            )
        index = emits.index(LOW_KEY)
        self.split_stage = stages[index].name  # "features.2" on MobileNetV3-Small
        self.front = nn.ModuleList(s.module for s in stages[: index + 1])
        last = emits.index(HIGH_KEY)
        self.stages = nn.ModuleList(s.module for s in stages[index + 1 : last + 1])
        self.classifier = teacher_model.classifier

    def teacher_split_feature(self, batch: Tensor) -> Tensor:
        """The teacher's own ``low`` feature (the HND target)."""
        x = batch
        for module in self.front:
            x = module(x)
        return x

    def forward(self, low: Tensor) -> OrderedDict[str, Tensor]:
        """``low`` (the split feature) -> both inputs of the LR-ASPP head."""
        x = low
        for module in self.stages:
            x = module(x)
        return OrderedDict([(LOW_KEY, low), (HIGH_KEY, x)])


def seg_teacher_rest(teacher: SplitModel) -> SegTeacherRest:
    """:class:`SegTeacherRest` of a built LR-ASPP teacher (a torchvision split model)."""
    torch_model = getattr(teacher, "torch_model", None)
    if torch_model is None or not hasattr(torch_model, "classifier"):
        raise BottleneckConfigError(f"teacher {teacher.name!r} is not a torchvision LR-ASPP")
    return SegTeacherRest(torch_model).eval()


def build_seg_teacher(teacher: str, teacher_options: dict[str, Any] | None = None) -> SplitModel:
    """A segmenter teacher by registry name or ``zoo:<entry>``."""
    model = create_model(teacher, **dict(teacher_options or {}))
    if model.task != "segmentation":
        raise BottleneckConfigError(
            f"teacher {teacher!r} is a {model.task} model, not segmentation"
        )
    return model


def check_seg_config(config: BottleneckConfig) -> None:
    if config.stride != CODE_STRIDE:
        raise BottleneckConfigError(
            f"segmentation students use code stride {CODE_STRIDE}, got {config.stride}"
        )


class SegBottleneckSplitModel(BottleneckSplitModel):
    """Implements :class:`SplitModel` for a student of an LR-ASPP teacher.

    Reuses the detector model's branches, width switching, head, tail batching and
    input checks; only the parts that know the task (preprocess, rest, finisher,
    code size) differ.
    """

    task = "segmentation"

    def _task_parts(self, teacher: SplitModel) -> tuple[Any, Any, Any, str]:
        from splitedge.models.segmentation import SegmentationFinisher, SegmentationPreprocess

        check_seg_config(self.config)
        torch_model = teacher.torch_model  # type: ignore[attr-defined]
        rest = seg_teacher_rest(teacher)
        preprocess = SegmentationPreprocess(teacher.min_size, teacher.max_size)
        return (
            preprocess,
            rest,
            SegmentationFinisher(torch_model.classifier, None),
            rest.split_stage,
        )

    def _code_hw(self, input_size: Sequence[int]) -> tuple[int, ...]:
        # Segmentation inputs are not padded: the code is ceil(size / stride).
        return tuple(-(-int(s) // CODE_STRIDE) for s in input_size)

    def tail_forward(
        self, code: Tensor, image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[dict[str, Tensor]]:
        """Decoder -> teacher stages -> LR-ASPP head -> masks of the original frames."""
        return self.finisher(self.rest(self.student.decoder(code)), image_sizes, orig_sizes)


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
) -> SplitModel:
    """Student from ``weights`` (a :func:`~splitedge.models.bottleneck.save_student`
    checkpoint) or seeded random init, on the teacher recorded there (else
    :data:`DEFAULT_TEACHER`)."""
    parts = student_parts(
        weights, teacher, DEFAULT_TEACHER, teacher_options, channels, widths, CODE_STRIDE, init_seed
    )
    teacher_model = build_seg_teacher(parts.teacher, parts.teacher_options)
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
    )
