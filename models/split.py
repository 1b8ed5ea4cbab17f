"""The generic split of a torchvision model into a device head and a server tail.

A family module (:mod:`splitedge.models.detection`, :mod:`splitedge.models.segmentation`)
describes a built torchvision model as :class:`FamilyParts`: its input transform, its
backbone as an ordered list of :class:`Stage` (the children of the backbone's own
``IntermediateLayerGetter`` / ``features`` Sequential, each marked with the feature
key it is returned under), and a *finisher* that runs everything after the backbone
(neck, heads, postprocess to the original frame size).

:class:`TorchvisionSplitModel` turns those parts into branches. Cutting after a stage
gives a :class:`SplitHead` (transform + stages up to the cut) and a :class:`SplitTail`
(the remaining stages + the finisher); both are ``nn.Module`` sharing the model's
weights, so either can be saved or exported on its own. When the backbone returns
several levels (FPN inputs) and the cut is after one of them, the head also ships
the levels already computed: tensor ``feat_<key>`` per level, plus ``x`` (the cut
activation) unless the cut stage is itself a returned level.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from splitedge.models.split_errors import (
    BranchKindError,
    InputError,
    SplitPointError,
    UnknownBranchError,
)
from splitedge.models.types import (
    BranchSpec,
    Detections,
    HeadOutput,
    Prediction,
    SegmentationMask,
    TailInput,
    Task,
    TensorSpec,
)

RawPrediction = dict[str, Tensor]  # {"boxes", "scores", "labels"} or {"mask"}
Size = tuple[int, int]  # (height, width)

# Split branches ship 8-bit quantized tensors unless the scheduler says otherwise.
SPLIT_DEFAULT_BITS = 8
CUT_TENSOR = "x"


def feature_tensor_name(key: str) -> str:
    """Wire name of a backbone level shipped by the head (stable across branches)."""
    return f"feat_{key}"


@dataclass(frozen=True)
class Stage:
    """One backbone child the model can be cut after."""

    name: str  # the split-point name people type: "layer2", "features.6"
    path: str  # module path inside the torchvision model, e.g. "backbone.body.layer2"
    module: nn.Module
    emits: str | None  # key the backbone returns this stage's output under, if any


@dataclass
class FamilyParts:
    """A built torchvision model described so that it can be cut."""

    task: Task
    model: nn.Module  # the unsplit torchvision model, in eval mode
    preprocess: nn.Module  # list of CHW float [0, 1] images -> (batch, resized sizes)
    stages: list[Stage]
    finisher: nn.Module  # (features, resized sizes, original sizes) -> raw predictions
    run_unsplit: Callable[[list[Tensor]], list[RawPrediction]]  # the whole model
    default_split_points: tuple[str, ...]
    min_size: int
    max_size: int
    fixed_input_size: Size | None = None  # set when the transform always resizes to it


class SplitHead(nn.Module):
    """Device side of a split branch: the input transform and the backbone up to the cut."""

    def __init__(self, preprocess: nn.Module, stages: Sequence[Stage]) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.stages = nn.ModuleList(s.module for s in stages)
        self.emits = [s.emits for s in stages]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Run the backbone stages on an already transformed batch."""
        out: dict[str, Tensor] = {}
        for module, emit in zip(self.stages, self.emits, strict=True):
            x = module(x)
            if emit is not None:
                out[feature_tensor_name(emit)] = x
        if self.emits[-1] is None:
            out[CUT_TENSOR] = x
        return out


class SplitTail(nn.Module):
    """Server side of a split branch: the remaining backbone stages and the finisher."""

    def __init__(
        self,
        stages: Sequence[Stage],
        shipped: Sequence[str],
        cut_emit: str | None,
        finisher: nn.Module,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(s.module for s in stages)
        self.emits = [s.emits for s in stages]
        self.shipped = list(shipped)  # feature keys the head already computed, in order
        self.cut_emit = cut_emit
        self.finisher = finisher

    def forward(
        self, tensors: dict[str, Tensor], image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[RawPrediction]:
        features: OrderedDict[str, Tensor] = OrderedDict(
            (key, tensors[feature_tensor_name(key)]) for key in self.shipped
        )
        x = tensors[CUT_TENSOR] if self.cut_emit is None else features[self.cut_emit]
        for module, emit in zip(self.stages, self.emits, strict=True):
            x = module(x)
            if emit is not None:
                features[emit] = x
        return self.finisher(features, image_sizes, orig_sizes)


class OffloadTail(nn.Module):
    """Server side of an offload branch: the whole pipeline on a decoded frame."""

    def __init__(self, preprocess: nn.Module, stages: Sequence[Stage], finisher: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.tail = SplitTail(stages, (), None, finisher)

    def forward(self, images: list[Tensor], orig_sizes: list[Size]) -> list[RawPrediction]:
        batch, image_sizes = self.preprocess(images)
        return self.tail({CUT_TENSOR: batch}, image_sizes, orig_sizes)


def stages_from_layer_getter(
    getter: nn.Module, path: str, keep: frozenset[str] | None = None
) -> list[Stage]:
    """Stages of a torchvision ``IntermediateLayerGetter`` (its children, in order).

    Numbered children are MobileNetV3 ``features`` indices and are named
    ``features.<i>``; ResNet children keep their names (``layer1``). ``keep`` limits
    the returned levels to those the finisher reads (DeepLab's ``aux`` is not).
    """
    return_layers = {str(k): str(v) for k, v in getter.return_layers.items()}
    stages = []
    for child, module in getter.named_children():
        emits = return_layers.get(child)
        if keep is not None and emits not in keep:
            emits = None
        name = f"features.{child}" if child.isdigit() else child
        stages.append(Stage(name, f"{path}.{child}", module, emits))
    return stages


def padded_size(image_sizes: Sequence[Size], size_divisible: int) -> Size:
    """The padded batch shape GeneralizedRCNNTransform.batch_images would produce."""
    h = max(s[0] for s in image_sizes)
    w = max(s[1] for s in image_sizes)
    return (
        int(math.ceil(h / size_divisible) * size_divisible),
        int(math.ceil(w / size_divisible) * size_divisible),
    )


def check_image(image: object, where: str = "image") -> None:
    """Raise :class:`InputError` unless ``image`` is a non-empty HxWx3 uint8 array."""
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{where}: expected an HxWx3 uint8 numpy array, got {type(image).__name__}"
        )
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise InputError(
            f"{where}: expected HxWx3 uint8 RGB, got shape {list(image.shape)} dtype {image.dtype}"
        )


def image_to_tensor(image: np.ndarray, device: torch.device) -> Tensor:
    """HxWx3 uint8 RGB numpy -> 3xHxW float32 in [0, 1], as torchvision models expect."""
    check_image(image)
    # torch refuses to share memory with a read-only array (np.asarray of a PIL image).
    array = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
    pixels = torch.from_numpy(array).to(device)
    return pixels.permute(2, 0, 1).float().div_(255.0)


def to_prediction(raw: RawPrediction) -> Prediction:
    """Torch output of a finisher or the unsplit model -> the plain numpy result types."""
    if "mask" in raw:
        return SegmentationMask(mask=raw["mask"].cpu().numpy().astype(np.uint8, copy=False))
    return Detections(
        boxes=raw["boxes"].detach().cpu().numpy().astype(np.float32, copy=False).reshape(-1, 4),
        scores=raw["scores"].detach().cpu().numpy().astype(np.float32, copy=False),
        labels=raw["labels"].detach().cpu().numpy().astype(np.int64, copy=False),
    )


def resolve_split_points(stages: Sequence[Stage], requested: Sequence[str]) -> list[int]:
    """Split-point names (or module paths) -> stage indices; the last stage cannot be cut."""
    by_name = {s.name: i for i, s in enumerate(stages[:-1])}
    by_name.update({s.path: i for i, s in enumerate(stages[:-1])})
    indices = []
    for point in requested:
        if point not in by_name:
            known = ", ".join(s.name for s in stages[:-1])
            raise SplitPointError(
                f"unknown split point {point!r}; this backbone can be cut after: {known}"
            )
        if by_name[point] not in indices:
            indices.append(by_name[point])
    return indices


class TorchvisionSplitModel:
    """Implements :class:`splitedge.models.types.SplitModel` for a torchvision model."""

    def __init__(
        self,
        name: str,
        parts: FamilyParts,
        *,
        num_classes: int,
        class_names: tuple[str, ...],
        weights_source: str,
        split_points: Sequence[str] | None,
        jpeg_qualities: Sequence[int],
        device: torch.device,
    ) -> None:
        self.name = name
        self.family = name  # the registry family; ``name`` may become ``zoo:<entry>``
        self.task: Task = parts.task
        self.num_classes = num_classes
        self.class_names = class_names
        self.min_size = parts.min_size
        self.max_size = parts.max_size
        self.weights_source = weights_source
        self.device = device
        self._parts = parts
        self._heads: dict[str, SplitHead] = {}
        self._tails: dict[str, nn.Module] = {}
        stages = parts.stages
        points = parts.default_split_points if split_points is None else split_points
        branches = [BranchSpec("local", "local")]
        shapes = self._stage_shapes()
        for index in resolve_split_points(stages, points):
            stage = stages[index]
            branch = f"split@{stage.name}"
            head = SplitHead(parts.preprocess, stages[: index + 1])
            shipped = [s.emits for s in stages[: index + 1] if s.emits is not None]
            self._heads[branch] = head
            self._tails[branch] = SplitTail(
                stages[index + 1 :], shipped, stage.emits, parts.finisher
            )
            specs = [
                TensorSpec(feature_tensor_name(s.emits), "float32", shapes[i])
                for i, s in enumerate(stages[: index + 1])
                if s.emits is not None
            ]
            if stage.emits is None:
                specs.append(TensorSpec(CUT_TENSOR, "float32", shapes[index]))
            branches.append(
                BranchSpec(
                    branch,
                    "split",
                    split_point=stage.path,
                    tensors=tuple(specs),
                    default_bits=SPLIT_DEFAULT_BITS,
                )
            )
        offload = OffloadTail(parts.preprocess, stages, parts.finisher)
        for quality in jpeg_qualities:
            if not 1 <= int(quality) <= 100:
                raise ValueError(f"jpeg quality {quality} is outside 1..100")
            branch = f"offload-jpeg{int(quality)}"
            branches.append(
                BranchSpec(branch, "offload", image_format="jpeg", image_quality=int(quality))
            )
            self._tails[branch] = offload
        branches.append(BranchSpec("offload-png", "offload", image_format="png"))
        self._tails["offload-png"] = offload
        self.branches: dict[str, BranchSpec] = {b.name: b for b in branches}

    # -- modules, for export and for holding a head without its tail -----------------

    @property
    def torch_model(self) -> nn.Module:
        """The unsplit torchvision model (what ``run_local`` runs)."""
        return self._parts.model

    def head_module(self, branch: str) -> SplitHead:
        """The device-side module of a split branch."""
        spec = self._branch(branch)
        if spec.kind != "split":
            raise BranchKindError(
                f"branch {branch!r} is an {spec.kind} branch; only split branches have a head"
            )
        return self._heads[branch]

    def tail_module(self, branch: str) -> nn.Module:
        """The server-side module of a split or offload branch."""
        spec = self._branch(branch)
        if spec.kind == "local":
            raise BranchKindError(f"branch {branch!r} runs on the device; it has no tail")
        return self._tails[branch]

    # -- the SplitModel protocol -------------------------------------------------------

    def run_head(self, branch: str, image: np.ndarray) -> HeadOutput:
        """Device side of a split branch; ``image`` is HxWx3 uint8 RGB."""
        head = self.head_module(branch)
        with torch.inference_mode():
            pixels = image_to_tensor(image, self.device)
            batch, image_sizes = head.preprocess([pixels])
            tensors = head(batch)
        out = {name: t.cpu().numpy().astype(np.float32, copy=False) for name, t in tensors.items()}
        h, w = image_sizes[0]
        return HeadOutput(
            tensors=out, orig_size=(image.shape[0], image.shape[1]), input_size=(int(h), int(w))
        )

    def run_tail(self, branch: str, batch: list[TailInput]) -> list[Prediction]:
        """Server side; inputs of equal shapes run as one batch, the others one by one."""
        spec = self._branch(branch)
        tail = self.tail_module(branch)
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(batch):
            key = self._check_tail_input(spec, item, i)
            groups.setdefault(key, []).append(i)
        results: list[Prediction | None] = [None] * len(batch)
        with torch.inference_mode():
            for indices in groups.values():
                items = [batch[i] for i in indices]
                orig_sizes = [(int(t.orig_size[0]), int(t.orig_size[1])) for t in items]
                if spec.kind == "split":
                    tensors = {
                        name: torch.from_numpy(np.concatenate([t.tensors[name] for t in items])).to(
                            self.device, torch.float32
                        )
                        for name in items[0].tensors
                    }
                    image_sizes = [(int(t.input_size[0]), int(t.input_size[1])) for t in items]
                    raw = tail(tensors, image_sizes, orig_sizes)
                else:
                    images = [image_to_tensor(t.image, self.device) for t in items]
                    raw = tail(images, orig_sizes)
                for i, r in zip(indices, raw, strict=True):
                    results[i] = to_prediction(r)
        return results  # type: ignore[return-value]  # every slot was filled above

    def run_local(self, image: np.ndarray) -> Prediction:
        """The unsplit torchvision model on one frame."""
        with torch.inference_mode():
            raw = self._parts.run_unsplit([image_to_tensor(image, self.device)])
        return to_prediction(raw[0])

    # -- helpers ----------------------------------------------------------------------

    def _branch(self, branch: str) -> BranchSpec:
        try:
            return self.branches[branch]
        except KeyError:
            raise UnknownBranchError(
                f"unknown branch {branch!r} for model {self.name!r}; "
                f"known branches: {', '.join(self.branches)}"
            ) from None

    def _check_tail_input(self, spec: BranchSpec, item: TailInput, index: int) -> tuple:
        """Reject a malformed input precisely; return its batching key."""
        where = f"tail input {index} for branch {spec.name!r}"
        if len(item.orig_size) != 2 or min(item.orig_size) <= 0:
            raise InputError(f"{where}: orig_size {tuple(item.orig_size)} must be two sizes > 0")
        if spec.kind == "offload":
            if item.image is None:
                raise InputError(f"{where}: offload branches need an image, got none")
            check_image(item.image, where)
            return ("image", item.image.shape)
        if len(item.input_size) != 2 or min(item.input_size) <= 0:
            raise InputError(f"{where}: input_size {tuple(item.input_size)} must be two sizes > 0")
        expected = {t.name: t for t in spec.tensors}
        if set(item.tensors) != set(expected):
            raise InputError(
                f"{where}: got tensors {sorted(item.tensors)}, expected {sorted(expected)}"
            )
        shapes = []
        for name, want in expected.items():
            array = item.tensors[name]
            shape = tuple(getattr(array, "shape", ()))
            if (
                not isinstance(array, np.ndarray)
                or len(shape) != len(want.shape)
                or any(w != -1 and d != w for d, w in zip(shape, want.shape, strict=True))
            ):
                raise InputError(
                    f"{where}: tensor {name!r} has shape {list(shape)}, expected {list(want.shape)}"
                )
            shapes.append((name, shape))
        return ("tensors", tuple(item.input_size), tuple(shapes))

    def _stage_shapes(self) -> list[tuple[int, ...]]:
        """Per stage output shape for one frame, -1 where it depends on the input size."""
        fixed = self._parts.fixed_input_size
        probe_hw = fixed if fixed is not None else (64, 64)
        x = torch.zeros(1, 3, *probe_hw, device=self.device)
        shapes = []
        with torch.inference_mode():
            for stage in self._parts.stages:
                x = stage.module(x)
                if fixed is not None:
                    shapes.append(tuple(int(d) for d in x.shape))
                else:
                    shapes.append((1, int(x.shape[1]), -1, -1))
        return shapes
