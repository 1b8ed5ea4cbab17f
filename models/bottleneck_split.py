"""A split model whose split branches cross a learned, slimmable bottleneck.

:class:`BottleneckSplitModel` implements :class:`splitedge.models.types.SplitModel`
for a student (:mod:`splitedge.models.bottleneck`) distilled from a Faster R-CNN
teacher. Branches:

- ``bottleneck-<C>-w<width>-<bits>bit`` (split): the device runs the student head
  with the encoder at ``width`` and ships tensor ``z`` (``C * width`` channels,
  stride 8 or 16), quantized to ``bits`` by the codec (``BranchSpec.default_bits``);
  the server runs decoder -> the rest of the frozen teacher -> postprocess.
- ``local`` and the teacher's offload branches, run by the teacher itself.

Every width runs on the same weights: switching is an index change in the
encoder's layers, never a reload. ``prefilter(image)`` says whether a frame is
worth sending (True when no prefilter is attached).

Registered as ``bottleneck`` in the model registry (lazily, so listing models needs
no torch); the student checkpoint comes in ``weights=`` (how
:func:`splitedge.models.zoo.load` builds an entry), and the teacher it was
distilled from is recorded in that checkpoint.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from splitedge.models.bottleneck import (
    CODE_STRIDES,
    CODE_TENSOR,
    BottleneckConfig,
    BottleneckConfigError,
    Student,
    load_student,
)
from splitedge.models.registry import create_model, typed_options
from splitedge.models.split import FamilyParts, Size, Stage, image_to_tensor, to_prediction
from splitedge.models.split_errors import BranchKindError, InputError, UnknownBranchError
from splitedge.models.types import (
    BranchSpec,
    HeadOutput,
    Prediction,
    SplitModel,
    TailInput,
    TensorSpec,
)

MODEL_NAME = "bottleneck"
DEFAULT_TEACHER = "zoo:teacher-frcnn-small"
DEFAULT_BRANCH_BITS = (8, 4)


def branch_name(channels: int, width: float, bits: int) -> str:
    """``bottleneck-<C>-w<width>-<bits>bit``, e.g. ``bottleneck-12-w0.5-8bit``."""
    return f"bottleneck-{channels}-w{width:g}-{bits}bit"


@dataclass(frozen=True)
class BranchProfile:
    """Measured costs the edge server's Describe reports (read by ``model_to_pb``)."""

    bytes_per_frame: float = 0.0
    head_latency_ms: float = 0.0
    accuracy: float = 0.0
    accuracy_metric: str = ""


# Where a student replaces the teacher's head by default, per family: early in the
# backbone, at or before the first level the neck/classifier reads (as HND/GHND place it:
# ResNet-50's layer1; MobileNetV3's end of the stride-8 stage; the small teachers' first
# FPN level / LR-ASPP low feature). Families not named here get DEFAULT_RULE.
DEFAULT_SPLIT_AT: dict[str, str] = {
    "fasterrcnn_mobilenet_v3_small_fpn_lite": "features.3",
    "lraspp_mobilenet_v3_small": "features.2",
    "fasterrcnn_mobilenet_v3_large_fpn": "features.6",
    "fasterrcnn_mobilenet_v3_large_320_fpn": "features.6",
    "ssdlite320_mobilenet_v3_large": "features.6",
    "fasterrcnn_resnet50_fpn": "layer1",
    "fasterrcnn_resnet50_fpn_v2": "layer1",
    "retinanet_resnet50_fpn": "layer1",
    "retinanet_resnet50_fpn_v2": "layer1",
    "fcos_resnet50_fpn": "layer1",
    "lraspp_mobilenet_v3_large": "features.4",
    "deeplabv3_mobilenet_v3_large": "features.4",
    "deeplabv3_resnet50": "layer1",
}
DEFAULT_RULE = "the deepest stage at stride <= 8 at or before the first level the tail reads"
_PROBE_HW = (128, 128)


@dataclass(frozen=True)
class SplitStage:
    """A backbone stage a student can stand in for (output channels and stride measured)."""

    name: str
    path: str
    channels: int
    stride: int


def teacher_parts(teacher: SplitModel) -> FamilyParts:
    """The teacher's :class:`FamilyParts` (its stages, preprocess and finisher)."""
    parts = getattr(teacher, "_parts", None)
    if not isinstance(parts, FamilyParts):
        raise BottleneckConfigError(
            f"teacher {teacher.name!r} is not a torchvision split model; a student needs its "
            "backbone stages"
        )
    return parts


def teacher_family(teacher: SplitModel) -> str:
    """The registry family a teacher was built as (also for a ``zoo:`` teacher)."""
    return str(getattr(teacher, "family", teacher.name))


def split_stages(parts: FamilyParts) -> list[SplitStage]:
    """Stages a student can replace the head up to: those at or before the first level the
    tail reads (a level computed before the cut would have to cross the network too) whose
    output stride is 4, 8 or 16. Measured with one forward pass of a blank frame."""
    first_emit = next(i for i, s in enumerate(parts.stages) if s.emits is not None)
    probe_hw = parts.fixed_input_size or _PROBE_HW
    param = next(parts.model.parameters())
    x = torch.zeros(1, 3, *probe_hw, device=param.device, dtype=param.dtype)
    found = []
    with torch.no_grad():
        for stage in parts.stages[: first_emit + 1]:
            x = stage.module(x)
            stride = round(probe_hw[0] / x.shape[-2])
            if stride in CODE_STRIDES:
                found.append(SplitStage(stage.name, stage.path, int(x.shape[1]), stride))
    return found


def default_split_stage(family: str, choices: Sequence[SplitStage]) -> SplitStage:
    """The family's default split stage (:data:`DEFAULT_SPLIT_AT`, else :data:`DEFAULT_RULE`)."""
    by_name = {c.name: c for c in choices}
    if DEFAULT_SPLIT_AT.get(family) in by_name:
        return by_name[DEFAULT_SPLIT_AT[family]]
    fine = [c for c in choices if c.stride <= 8]
    if not fine and not choices:
        raise BottleneckConfigError(f"{family} has no backbone stage at stride 4, 8 or 16")
    return fine[-1] if fine else choices[0]


def resolve_split_stage(teacher: SplitModel, split_at: str | None) -> SplitStage:
    """``split_at`` (a stage name or module path) checked against the teacher, or its
    family's default; an unknown or unusable stage is one line listing the valid ones."""
    family = teacher_family(teacher)
    choices = split_stages(teacher_parts(teacher))
    default = default_split_stage(family, choices)
    if split_at is None:
        return default
    for choice in choices:
        if split_at in (choice.name, choice.path):
            return choice
    raise BottleneckConfigError(
        f"split stage {split_at!r} is not one a student of {family} can replace; valid "
        f"(stride 4-16, at or before the first level the tail reads): "
        f"{', '.join(c.name for c in choices)} (default {default.name})"
    )


class TeacherRest(nn.Module):
    """The frozen teacher after the split: remaining backbone stages -> the levels the
    finisher reads (every FPN input, the segmentation head's inputs), keyed as it expects."""

    def __init__(self, stages: Sequence[Stage], split: SplitStage) -> None:
        super().__init__()
        names = [s.name for s in stages]
        index = names.index(split.name)
        last = max(i for i, s in enumerate(stages) if s.emits is not None)
        self.split_stage = split.name
        self.split_channels = split.channels
        self.split_stride = split.stride
        self.split_emit = stages[index].emits
        self.front = nn.ModuleList(s.module for s in stages[: index + 1])
        self.stages = nn.ModuleList(s.module for s in stages[index + 1 : last + 1])
        self.emits = [s.emits for s in stages[index + 1 : last + 1]]
        # What GHND matches: the split feature and every level computed after it.
        self.feature_paths = [stages[index].path] + [
            s.path for s in stages[index + 1 : last + 1] if s.emits is not None
        ]

    def teacher_split_feature(self, batch: Tensor) -> Tensor:
        """The teacher's own split-point feature (the HND target)."""
        x = batch
        for module in self.front:
            x = module(x)
        return x

    def forward(self, split_feature: Tensor) -> OrderedDict[str, Tensor]:
        """Split-point feature -> every level the finisher reads, in its order."""
        features: OrderedDict[str, Tensor] = OrderedDict()
        if self.split_emit is not None:
            features[self.split_emit] = split_feature
        x = split_feature
        for module, emit in zip(self.stages, self.emits, strict=True):
            x = module(x)
            if emit is not None:
                features[emit] = x
        return features


def teacher_rest(teacher: SplitModel, split_at: str | None = None) -> TeacherRest:
    """:class:`TeacherRest` of a built torchvision teacher, cut at ``split_at`` (a stage
    name; None: the family's default, :func:`resolve_split_stage`)."""
    split = resolve_split_stage(teacher, split_at)
    return TeacherRest(teacher_parts(teacher).stages, split).eval()


def build_teacher(
    teacher: str, teacher_options: dict[str, Any] | None = None, task: str | None = "detection"
) -> SplitModel:
    """A teacher by registry name or ``zoo:<entry>`` (seeded random init when untrained);
    ``task`` (None: any) is the task it must have."""
    model = create_model(teacher, **dict(teacher_options or {}))
    if task is not None and model.task != task:
        raise BottleneckConfigError(f"teacher {teacher!r} is a {model.task} model, not {task}")
    return model


class BottleneckSplitModel:
    """Implements :class:`SplitModel` with the student's bottleneck branches."""

    task = "detection"

    def __init__(
        self,
        teacher: SplitModel,
        student: Student,
        *,
        branch_bits: Sequence[int] = DEFAULT_BRANCH_BITS,
        weights_source: str = "random-init",
        prefilter: Any = None,
        profiles: dict[str, BranchProfile] | None = None,
        name: str = MODEL_NAME,
        split_at: str | None = None,
    ) -> None:
        self.name = name
        self.split_at = split_at
        self.teacher = teacher
        self.student = student.eval()
        self.config: BottleneckConfig = student.config
        self.num_classes = teacher.num_classes
        self.class_names = tuple(teacher.class_names)
        self.min_size = teacher.min_size
        self.max_size = teacher.max_size
        self.weights_source = weights_source
        self.device = getattr(teacher, "device", torch.device("cpu"))
        self.preprocess, self.rest, self.finisher, split_stage = self._task_parts(teacher)
        self.student.to(self.device)
        self.prefilter_model = prefilter
        self.profiles: dict[str, BranchProfile] = dict(profiles or {})
        self._widths: dict[str, float] = {}
        branches: list[BranchSpec] = [teacher.branches["local"]]
        for width in sorted(self.config.widths, reverse=True):
            for bits in branch_bits:
                if bits not in (2, 4, 6, 8):
                    raise BottleneckConfigError(f"branch bits must be 2, 4, 6 or 8, got {bits}")
                name_ = branch_name(self.config.channels, width, bits)
                shape = (1, self.config.code_channels(width), -1, -1)
                branches.append(
                    BranchSpec(
                        name_,
                        "split",
                        split_point=f"student:{split_stage}",
                        tensors=(TensorSpec(CODE_TENSOR, "float32", shape),),
                        default_bits=int(bits),
                    )
                )
                self._widths[name_] = float(width)
        branches += [b for b in teacher.branches.values() if b.kind == "offload"]
        self.branches: dict[str, BranchSpec] = {b.name: b for b in branches}

    def _task_parts(self, teacher: SplitModel) -> tuple[Any, Any, Any, str]:
        """(preprocess, frozen teacher after the split, finisher, split stage): the
        teacher's own preprocess and finisher, whatever its family."""
        parts = teacher_parts(teacher)
        rest = teacher_rest(teacher, self.split_at)
        got = (self.config.split_channels, self.config.split_stride)
        if got != (rest.split_channels, rest.split_stride):
            raise BottleneckConfigError(
                f"student rebuilds {got[0]} channels at stride {got[1]}, but split stage "
                f"{rest.split_stage!r} of {teacher.name} has {rest.split_channels} at stride "
                f"{rest.split_stride} (was it distilled at another --split-at?)"
            )
        transform = getattr(parts.preprocess, "transform", None)
        self._size_divisible = int(getattr(transform, "size_divisible", 1))
        return parts.preprocess, rest, parts.finisher, rest.split_stage

    def _code_hw(self, input_size: Sequence[int]) -> tuple[int, ...]:
        """The code's height and width for a preprocessed input (a detector's transform
        pads to its ``size_divisible``, 32; segmentation inputs are not padded)."""
        d = self._size_divisible
        return tuple(-(-(-(-int(s) // d) * d) // self.config.stride) for s in input_size)

    def tensor_shapes(self, branch: str, input_size: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """The exact shape of each tensor a split branch's head sends for a preprocessed
        input of ``input_size`` (height, width): what the server can check before decoding."""
        spec = self._split_spec(branch)
        channels = spec.tensors[0].shape[1]
        return {CODE_TENSOR: (1, channels, *self._code_hw(input_size))}

    # -- width switching ----------------------------------------------------------------

    def set_width(self, width: float) -> None:
        """Switch the encoder's width in place (what a branch change does; no reload)."""
        self.student.head.set_width(width)

    def branch_width(self, branch: str) -> float:
        self._split_spec(branch)
        return self._widths[branch]

    # -- the SplitModel protocol ----------------------------------------------------------

    def run_head(self, branch: str, image: np.ndarray) -> HeadOutput:
        """Student head + encoder at the branch's width on one frame (float code)."""
        width = self.branch_width(branch)
        with torch.inference_mode():
            batch, sizes = self.preprocess([image_to_tensor(image, self.device)])
            self.set_width(width)
            code = self.student.head(batch)
        h, w = sizes[0]
        return HeadOutput(
            tensors={CODE_TENSOR: code.cpu().numpy().astype(np.float32, copy=False)},
            orig_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(h), int(w)),
        )

    def run_tail(self, branch: str, batch: list[TailInput]) -> list[Prediction]:
        """Decoder + frozen teacher rest + postprocess; offload branches go to the teacher."""
        spec = self._spec(branch)
        if spec.kind == "offload":
            return self.teacher.run_tail(branch, batch)
        if spec.kind != "split":
            raise BranchKindError(f"branch {branch!r} runs on the device; it has no tail")
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(self._check_code(spec, item, i), []).append(i)
        results: list[Prediction | None] = [None] * len(batch)
        with torch.inference_mode():
            for indices in groups.values():
                items = [batch[i] for i in indices]
                code = torch.from_numpy(np.concatenate([t.tensors[CODE_TENSOR] for t in items])).to(
                    self.device, torch.float32
                )
                raw = self.tail_forward(
                    code,
                    [(int(t.input_size[0]), int(t.input_size[1])) for t in items],
                    [(int(t.orig_size[0]), int(t.orig_size[1])) for t in items],
                )
                for i, r in zip(indices, raw, strict=True):
                    results[i] = to_prediction(r)
        return results  # type: ignore[return-value]  # every slot was filled above

    def tail_forward(
        self, code: Tensor, image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[dict[str, Tensor]]:
        """Server side on a dequantized code batch (torch in, raw detections out)."""
        return self.finisher(self.rest(self.student.decoder(code)), image_sizes, orig_sizes)

    def run_local(self, image: np.ndarray) -> Prediction:
        """The teacher on the device (the ``local`` branch and fallback)."""
        return self.teacher.run_local(image)

    def prefilter(self, image: np.ndarray) -> bool:
        """True when the frame may hold an object of interest (send it), False to drop it."""
        if self.prefilter_model is None:
            return True
        return bool(self.prefilter_model.keep(image))

    # -- helpers --------------------------------------------------------------------------

    def _spec(self, branch: str) -> BranchSpec:
        try:
            return self.branches[branch]
        except KeyError:
            raise UnknownBranchError(
                f"unknown branch {branch!r} for model {self.name!r}; "
                f"known branches: {', '.join(self.branches)}"
            ) from None

    def _split_spec(self, branch: str) -> BranchSpec:
        spec = self._spec(branch)
        if branch not in self._widths:
            raise BranchKindError(
                f"branch {branch!r} is a {spec.kind} branch; only bottleneck branches have a head"
            )
        return spec

    def _check_code(self, spec: BranchSpec, item: TailInput, index: int) -> tuple:
        where = f"tail input {index} for branch {spec.name!r}"
        if len(item.orig_size) != 2 or min(item.orig_size) <= 0:
            raise InputError(f"{where}: orig_size {tuple(item.orig_size)} must be two sizes > 0")
        if len(item.input_size) != 2 or min(item.input_size) <= 0:
            raise InputError(f"{where}: input_size {tuple(item.input_size)} must be two sizes > 0")
        if set(item.tensors) != {CODE_TENSOR}:
            raise InputError(f"{where}: got tensors {sorted(item.tensors)}, expected ['z']")
        code = item.tensors[CODE_TENSOR]
        want = spec.tensors[0].shape
        shape = tuple(getattr(code, "shape", ()))
        if (
            not isinstance(code, np.ndarray)
            or len(shape) != 4
            or shape[:2] != want[:2]
            or min(shape) <= 0
        ):
            raise InputError(
                f"{where}: tensor 'z' has shape {list(shape)}, branch expects {list(want)}"
            )
        expect_hw = self._code_hw(item.input_size)
        if shape[2:] != expect_hw:
            raise InputError(
                f"{where}: tensor 'z' is {shape[2]}x{shape[3]}, input {tuple(item.input_size)} "
                f"needs {expect_hw[0]}x{expect_hw[1]} at stride {self.config.stride}"
            )
        return (tuple(item.input_size), shape)


def read_profiles(
    record_path: Path, metric: str = "mAP", metric_name: str = "mAP@[.5:.95]"
) -> dict[str, BranchProfile]:
    """Per-branch profiles from a zoo record's ``metrics.branches`` (empty if absent);
    ``metric`` is the key of each branch's accuracy there."""
    if not record_path.is_file():
        return {}
    try:
        branches = json.loads(record_path.read_text(encoding="utf-8"))["metrics"]["branches"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out = {}
    for name, m in branches.items():
        out[name] = BranchProfile(
            bytes_per_frame=float(m.get("bytes_per_frame_mean", 0.0)),
            head_latency_ms=float(m.get("head_latency_ms", 0.0)),
            accuracy=float(m.get(metric, 0.0)),
            accuracy_metric=metric_name,
        )
    return out


@typed_options
def build_bottleneck(
    *,
    weights: str | None = None,
    teacher: str | None = None,
    teacher_options: dict[str, Any] | None = None,
    channels: int = 12,
    widths: Sequence[float] | None = None,
    stride: int | None = None,
    branch_bits: Sequence[int] = DEFAULT_BRANCH_BITS,
    prefilter: str | None = None,
    init_seed: int = 0,
    device: str = "cpu",
    split_at: str | None = None,
) -> SplitModel:
    """Student from ``weights`` (a checkpoint of :func:`save_student`) or seeded random init.

    The teacher defaults to the one recorded in the checkpoint (else
    :data:`DEFAULT_TEACHER`), and so does the split stage (``split_at``; else the
    teacher family's default, :data:`DEFAULT_SPLIT_AT`); ``prefilter`` is a prefilter
    checkpoint path.
    """
    teacher_model, parts = _teacher_and_student(
        weights,
        teacher,
        DEFAULT_TEACHER,
        teacher_options,
        channels,
        widths,
        stride,
        init_seed,
        split_at,
        "detection",
    )
    teacher_model.torch_model.to(device)  # type: ignore[attr-defined]
    return BottleneckSplitModel(
        teacher_model,
        parts.student.to(device),
        branch_bits=parse_branch_bits(branch_bits),
        weights_source=parts.source,
        prefilter=optional_prefilter(prefilter),
        profiles=read_profiles(Path(weights).with_suffix(".json")) if weights else {},
        split_at=parts.split_at,
    )


def _teacher_and_student(
    weights: str | None,
    teacher: str | None,
    default_teacher: str,
    teacher_options: dict[str, Any] | None,
    channels: int,
    widths: Sequence[float] | None,
    stride: int | None,
    init_seed: int,
    split_at: str | None,
    task: str,
) -> tuple[SplitModel, StudentParts]:
    """The teacher and the student (from ``weights`` or seeded random init shaped to the
    teacher's split stage), both on the teacher's device."""
    parts = student_parts(
        weights, teacher, default_teacher, teacher_options, channels, widths, stride, init_seed
    )
    teacher_model = build_teacher(parts.teacher, parts.teacher_options, task)
    parts.split_at = split_at or parts.split_at
    if weights is None:
        split = resolve_split_stage(teacher_model, parts.split_at)
        parts.split_at = split.name
        code_stride = stride or (split.stride if task == "segmentation" else max(8, split.stride))
        config = BottleneckConfig(
            channels=int(channels),
            widths=tuple(widths) if widths is not None else BottleneckConfig.widths,
            stride=int(code_stride),
            split_channels=split.channels,
            split_stride=split.stride,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            parts.student = Student(config).eval()
    return teacher_model, parts


@dataclass
class StudentParts:
    """What a bottleneck builder needs besides its teacher family."""

    student: Student | None  # None until shaped to the teacher (random init)
    teacher: str
    teacher_options: dict[str, Any]
    source: str  # the checkpoint path, or "random-init"
    split_at: str | None = None  # the teacher stage the student stands in for


def student_parts(
    weights: str | None,
    teacher: str | None,
    default_teacher: str,
    teacher_options: dict[str, Any] | None,
    channels: int,
    widths: Sequence[float] | None,
    stride: int | None,
    init_seed: int,
) -> StudentParts:
    """The student from ``weights`` (with the teacher and split stage it records), or
    no student yet (random init is shaped to the teacher's split stage by the caller)."""
    extra: dict[str, Any] = {}
    student: Student | None = None
    if weights is not None:
        student, meta = load_student(weights)
        teacher = teacher or meta["teacher"] or default_teacher
        extra = meta["extra"]
        source = str(weights)
    else:
        teacher = teacher or default_teacher
        source = "random-init"
    options = dict(teacher_options or extra.get("teacher_options", {}))
    return StudentParts(student, teacher, options, source, extra.get("split_at"))


def parse_branch_bits(branch_bits: Sequence[int] | str) -> tuple[int, ...]:
    """``8/4/2`` (a CLI's key=value option) or a sequence -> bit depths."""
    if isinstance(branch_bits, str):
        return tuple(int(b) for b in branch_bits.split("/") if b)
    return tuple(int(b) for b in branch_bits)


def optional_prefilter(path: str | None) -> Any:
    """The prefilter checkpoint at ``path`` (a path or a zoo file name), or None."""
    if path is None:
        return None
    from splitedge.models.prefilter import load_prefilter

    return load_prefilter(path)
