"""Detection families cut for split computing: Faster R-CNN, RetinaNet, FCOS, SSDlite.

Each ``*_parts`` function builds the torchvision model with torchvision's own
builder and describes it as :class:`~splitedge.models.split.FamilyParts`. The
finishers rebuild what the rest of the network needs from the resized sizes alone:
anchors only look at the padded batch shape, so the tail hands them an expanded
zero tensor (no memory) instead of the image.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import (
    FCOS,
    FasterRCNN,
    RetinaNet,
    fasterrcnn_mobilenet_v3_large_320_fpn,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
    fcos_resnet50_fpn,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from splitedge.models.split import (
    FamilyParts,
    RawPrediction,
    Size,
    Stage,
    padded_size,
    stages_from_layer_getter,
)
from splitedge.models.split_errors import SplitModelError

# The transform sizes each torchvision builder applies by default, used only to check a
# user's min_size/max_size before building: the builders are given nothing but the options
# a user set, so every other setting (RPN proposal counts and thresholds of the large and
# the 320 MobileNet variants, ...) stays torchvision's own for that family.
TORCHVISION_SIZES: dict[str, dict[str, int]] = {
    "fasterrcnn_mobilenet_v3_large_fpn": {"min_size": 800, "max_size": 1333},
    "fasterrcnn_mobilenet_v3_large_320_fpn": {"min_size": 320, "max_size": 640},
    "fasterrcnn_resnet50_fpn": {"min_size": 800, "max_size": 1333},
    "fasterrcnn_resnet50_fpn_v2": {"min_size": 800, "max_size": 1333},
    "retinanet_resnet50_fpn": {"min_size": 800, "max_size": 1333},
    "retinanet_resnet50_fpn_v2": {"min_size": 800, "max_size": 1333},
    "fcos_resnet50_fpn": {"min_size": 800, "max_size": 1333},
}
_MOBILENET_320_WEIGHTS = "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights"
SSDLITE_SIZE = 320
SSDLITE_FAMILY = "ssdlite320_mobilenet_v3_large"  # resizes every frame to 320x320


class DetectionPreprocess(nn.Module):
    """The model's own GeneralizedRCNNTransform: normalize, resize, pad to a batch."""

    def __init__(self, transform: GeneralizedRCNNTransform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, images: list[Tensor]) -> tuple[Tensor, list[Size]]:
        image_list, _ = self.transform(images)
        return image_list.tensors, image_list.image_sizes


def _image_list(
    features: OrderedDict[str, Tensor], image_sizes: list[Size], size_divisible: int
) -> ImageList:
    """An ImageList with the padded shape but no pixels: enough for anchors and clipping."""
    first = next(iter(features.values()))
    h, w = padded_size(image_sizes, size_divisible)
    stand_in = torch.zeros((), dtype=first.dtype, device=first.device).expand(
        len(image_sizes), 3, h, w
    )
    return ImageList(stand_in, image_sizes)


class RCNNFinisher(nn.Module):
    """FPN, RPN, RoI heads and box rescaling of a torchvision Faster R-CNN."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.transform = model.transform
        self.fpn = model.backbone.fpn
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads

    def forward(
        self, features: OrderedDict[str, Tensor], image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[RawPrediction]:
        features = self.fpn(features)
        images = _image_list(features, image_sizes, self.transform.size_divisible)
        proposals, _ = self.rpn(images, features)
        detections, _ = self.roi_heads(features, proposals, image_sizes)
        return self.transform.postprocess(detections, image_sizes, orig_sizes)


class _DenseFinisher(nn.Module):
    """Shared by RetinaNet and SSD: head, anchors, the model's own box decoding and NMS."""

    def __init__(self, model: RetinaNet | SSD, neck: nn.Module | None) -> None:
        super().__init__()
        self.transform = model.transform
        self.neck = neck
        self.head = model.head
        self.anchor_generator = model.anchor_generator
        # Attributes read by torchvision's postprocess_detections, which runs with this
        # module as ``self`` so the tail needs no reference to the backbone.
        self.box_coder = model.box_coder
        self.score_thresh = model.score_thresh
        self.nms_thresh = model.nms_thresh
        self.detections_per_img = model.detections_per_img
        self.topk_candidates = model.topk_candidates


class RetinaNetFinisher(_DenseFinisher):
    """RetinaNet's (and FCOS's: one anchor per location) FPN, head and postprocess."""

    def __init__(self, model: RetinaNet | FCOS) -> None:
        super().__init__(model, model.backbone.fpn)
        self._postprocess = type(model).postprocess_detections

    def forward(
        self, features: OrderedDict[str, Tensor], image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[RawPrediction]:
        levels = list(self.neck(features).values())
        head_outputs = self.head(levels)
        images = _image_list(features, image_sizes, self.transform.size_divisible)
        anchors = self.anchor_generator(images, levels)
        # As RetinaNet.forward: split the flat outputs back into per-level chunks.
        per_level = [x.size(2) * x.size(3) for x in levels]
        anchors_per_location = head_outputs["cls_logits"].size(1) // sum(per_level)
        per_level = [hw * anchors_per_location for hw in per_level]
        split_outputs = {k: list(v.split(per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(per_level)) for a in anchors]
        detections = self._postprocess(self, split_outputs, split_anchors, image_sizes)
        return self.transform.postprocess(detections, image_sizes, orig_sizes)


class SSDFinisher(_DenseFinisher):
    def __init__(self, model: SSD) -> None:
        super().__init__(model, None)

    def forward(
        self, features: OrderedDict[str, Tensor], image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[RawPrediction]:
        levels = list(features.values())
        head_outputs = self.head(levels)
        images = _image_list(features, image_sizes, self.transform.size_divisible)
        anchors = self.anchor_generator(images, levels)
        detections = SSD.postprocess_detections(self, head_outputs, anchors, image_sizes)
        return self.transform.postprocess(detections, image_sizes, orig_sizes)


def _ssdlite_stages(model: SSD) -> list[Stage]:
    """SSDlite's extractor: MobileNetV3 features up to C4's expansion, the rest, extras."""
    extractor = model.backbone
    first, rest = extractor.features[0], extractor.features[1]
    c4 = len(first) - 1  # features[0] = backbone[:c4] + backbone[c4].block[0]
    stages = [
        Stage(
            name=f"features.{i}" if i < c4 else f"features.{c4}.expand",
            path=f"backbone.features.0.{i}",
            module=module,
            emits="0" if i == c4 else None,
        )
        for i, module in enumerate(first)
    ]
    stages.append(Stage(f"features.{c4}.rest", "backbone.features.1", rest, "1"))
    for j, block in enumerate(extractor.extra):
        stages.append(Stage(f"extra.{j}", f"backbone.extra.{j}", block, str(2 + j)))
    return stages


def _sizes(min_size: int | None, max_size: int | None, defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` with the sizes a user set, checked (for models built here from parts)."""
    kwargs = dict(defaults)
    if min_size is not None:
        kwargs["min_size"] = int(min_size)
    if max_size is not None:
        kwargs["max_size"] = int(max_size)
    if kwargs["min_size"] <= 0 or kwargs["max_size"] < kwargs["min_size"]:
        raise SplitModelError(
            f"need 0 < min_size <= max_size, got min_size={kwargs['min_size']} "
            f"max_size={kwargs['max_size']}"
        )
    return kwargs


def _overrides(min_size: int | None, max_size: int | None, builder: str) -> dict[str, Any]:
    """Only the sizes a user set, for a torchvision builder (which keeps its own defaults
    for the rest), checked against that builder's default for the one left out."""
    defaults = TORCHVISION_SIZES[builder]
    try:
        _sizes(min_size, max_size, defaults)
    except SplitModelError as exc:
        raise SplitModelError(
            f"{exc} ({builder} defaults to {defaults['min_size']}/{defaults['max_size']})"
        ) from None
    kwargs: dict[str, Any] = {}
    if min_size is not None:
        kwargs["min_size"] = int(min_size)
    if max_size is not None:
        kwargs["max_size"] = int(max_size)
    return kwargs


def _detection_parts(
    model: nn.Module, stages: list[Stage], finisher: nn.Module, split_points: tuple[str, ...]
) -> FamilyParts:
    transform = model.transform
    fixed = transform.fixed_size
    return FamilyParts(
        task="detection",
        model=model,
        preprocess=DetectionPreprocess(transform),
        stages=stages,
        finisher=finisher,
        run_unsplit=model,
        default_split_points=split_points,
        min_size=int(transform.min_size[0]),
        max_size=int(transform.max_size),
        fixed_input_size=(int(fixed[0]), int(fixed[1])) if fixed is not None else None,
    )


def _set_score_thresh(model: nn.Module, score_thresh: float | None) -> None:
    if score_thresh is None:
        return
    if not 0.0 <= score_thresh <= 1.0:
        raise SplitModelError(f"score_thresh must be in [0, 1], got {score_thresh}")
    if isinstance(model, FasterRCNN):
        model.roi_heads.score_thresh = float(score_thresh)
    else:
        model.score_thresh = float(score_thresh)


def _mobilenet_parts(
    builder: Any,
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    kwargs = _overrides(min_size, max_size, builder.__name__)
    model = builder(weights=weights, weights_backbone=None, num_classes=num_classes, **kwargs)
    _set_score_thresh(model, score_thresh)
    stages = stages_from_layer_getter(model.backbone.body, "backbone.body")
    return _detection_parts(
        model, stages, RCNNFinisher(model), ("features.3", "features.6", "features.12")
    )


def fasterrcnn_mobilenet_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    """The large-FPN model at torchvision's settings for it (800/1333); given the 320
    variant's weights, the 320 model (its verify() accepts only its enum) at its own."""
    builder = (
        fasterrcnn_mobilenet_v3_large_320_fpn
        if type(weights).__name__ == _MOBILENET_320_WEIGHTS
        else fasterrcnn_mobilenet_v3_large_fpn
    )
    return _mobilenet_parts(
        builder,
        weights=weights,
        num_classes=num_classes,
        min_size=min_size,
        max_size=max_size,
        score_thresh=score_thresh,
    )


def fasterrcnn_mobilenet_320_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    """torchvision's low-resolution variant: 320/640, 150 RPN proposals, RPN threshold 0.05."""
    return _mobilenet_parts(
        fasterrcnn_mobilenet_v3_large_320_fpn,
        weights=weights,
        num_classes=num_classes,
        min_size=min_size,
        max_size=max_size,
        score_thresh=score_thresh,
    )


def _resnet50_parts(
    builder: Any,
    finisher: type[nn.Module],
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    kwargs = _overrides(min_size, max_size, builder.__name__)
    model = builder(weights=weights, weights_backbone=None, num_classes=num_classes, **kwargs)
    _set_score_thresh(model, score_thresh)
    stages = stages_from_layer_getter(model.backbone.body, "backbone.body")
    return _detection_parts(model, stages, finisher(model), ("layer1", "layer2"))


def fasterrcnn_resnet50_parts(**options: Any) -> FamilyParts:
    return _resnet50_parts(fasterrcnn_resnet50_fpn, RCNNFinisher, **options)


def fasterrcnn_resnet50_v2_parts(**options: Any) -> FamilyParts:
    """torchvision's improved recipe (ResNet-50 with batch norm in FPN and heads)."""
    return _resnet50_parts(fasterrcnn_resnet50_fpn_v2, RCNNFinisher, **options)


def retinanet_resnet50_parts(**options: Any) -> FamilyParts:
    return _resnet50_parts(retinanet_resnet50_fpn, RetinaNetFinisher, **options)


def retinanet_resnet50_v2_parts(**options: Any) -> FamilyParts:
    return _resnet50_parts(retinanet_resnet50_fpn_v2, RetinaNetFinisher, **options)


def fcos_resnet50_parts(**options: Any) -> FamilyParts:
    return _resnet50_parts(fcos_resnet50_fpn, RetinaNetFinisher, **options)


def ssdlite_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    for label, value in (("min_size", min_size), ("max_size", max_size)):
        if value is not None and value != SSDLITE_SIZE:
            raise SplitModelError(
                f"ssdlite320_mobilenet_v3_large has a fixed {SSDLITE_SIZE}x{SSDLITE_SIZE} input; "
                f"{label}={value} is not supported"
            )
    model = ssdlite320_mobilenet_v3_large(
        weights=weights, weights_backbone=None, num_classes=num_classes
    )
    _set_score_thresh(model, score_thresh)
    stages = _ssdlite_stages(model)
    return _detection_parts(
        model, stages, SSDFinisher(model), ("features.3", "features.6", "features.12")
    )
