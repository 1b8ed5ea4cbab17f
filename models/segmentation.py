"""Segmentation families cut for split computing: LR-ASPP and DeepLabV3 (MobileNetV3,
ResNet-50).

torchvision's segmentation models carry no input transform (their weights' recipe
resizes the shorter side to 520 and normalizes with ImageNet statistics), so
:class:`SegmentationPreprocess` does that here, the same way on every path. The
logits are upsampled to the resized input size as the models do, then the argmax
class map is resized to the original frame with nearest neighbour.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation import (
    deeplabv3_mobilenet_v3_large,
    deeplabv3_resnet50,
    lraspp_mobilenet_v3_large,
)

from splitedge.models.split import (
    FamilyParts,
    RawPrediction,
    Size,
    stages_from_layer_getter,
)
from splitedge.models.split_errors import InputError, SplitModelError

# The torchvision weights' recipe (SemanticSegmentation(resize_size=520)).
DEFAULT_MIN_SIZE = 520
DEFAULT_MAX_SIZE = 1024
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(height: int, width: int, min_size: int, max_size: int) -> Size:
    """Shorter side to ``min_size`` unless that makes the longer side exceed ``max_size``."""
    scale = min(min_size / min(height, width), max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class SegmentationPreprocess(nn.Module):
    """Resize (bilinear, antialiased) and normalize a list of same-size images."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        self.min_size = min_size
        self.max_size = max_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: list[Tensor]) -> tuple[Tensor, list[Size]]:
        shapes = {tuple(img.shape[-2:]) for img in images}
        if len(shapes) != 1:
            raise InputError(f"segmentation batches need images of one size, got {sorted(shapes)}")
        h, w = shapes.pop()
        size = resized_size(int(h), int(w), self.min_size, self.max_size)
        batch = torch.stack(images)
        if size != (h, w):
            batch = F.interpolate(
                batch, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        batch = (batch - self.mean) / self.std
        return batch, [size] * len(images)


def masks_from_logits(logits: Tensor, orig_sizes: list[Size]) -> list[RawPrediction]:
    """Per-pixel argmax, resized to each original frame with nearest neighbour."""
    classes = logits.argmax(dim=1, keepdim=True).to(torch.float32)
    masks = []
    for i, size in enumerate(orig_sizes):
        mask = F.interpolate(classes[i : i + 1], size=size, mode="nearest")[0, 0]
        masks.append({"mask": mask.to(torch.uint8)})
    return masks


class SegmentationFinisher(nn.Module):
    """The classifier head, upsampling to the input size, argmax, resize to the frame."""

    def __init__(self, classifier: nn.Module, input_key: str | None) -> None:
        super().__init__()
        self.classifier = classifier
        self.input_key = input_key  # DeepLab's head takes one level, LR-ASPP's the dict

    def forward(
        self, features: OrderedDict[str, Tensor], image_sizes: list[Size], orig_sizes: list[Size]
    ) -> list[RawPrediction]:
        if len(set(image_sizes)) != 1:
            raise InputError(
                f"segmentation batches need one input size, got {sorted(set(image_sizes))}"
            )
        head_input = features if self.input_key is None else features[self.input_key]
        logits = self.classifier(head_input)
        logits = F.interpolate(logits, size=image_sizes[0], mode="bilinear", align_corners=False)
        return masks_from_logits(logits, orig_sizes)


def _parts(
    model: nn.Module,
    keep: frozenset[str],
    input_key: str | None,
    split_points: tuple[str, ...],
    min_size: int | None,
    max_size: int | None,
) -> FamilyParts:
    low = DEFAULT_MIN_SIZE if min_size is None else int(min_size)
    high = max(DEFAULT_MAX_SIZE, low) if max_size is None else int(max_size)
    if low <= 0 or high < low:
        raise SplitModelError(f"need 0 < min_size <= max_size, got min_size={low} max_size={high}")
    preprocess = SegmentationPreprocess(low, high)

    def run_unsplit(images: list[Tensor]) -> list[RawPrediction]:
        batch, _ = preprocess(images)
        logits = model(batch)["out"]
        return masks_from_logits(logits, [(int(i.shape[-2]), int(i.shape[-1])) for i in images])

    return FamilyParts(
        task="segmentation",
        model=model,
        preprocess=preprocess,
        stages=stages_from_layer_getter(model.backbone, "backbone", keep),
        finisher=SegmentationFinisher(model.classifier, input_key),
        run_unsplit=run_unsplit,
        default_split_points=split_points,
        min_size=low,
        max_size=high,
    )


def _no_score_thresh(score_thresh: float | None, family: str) -> None:
    if score_thresh is not None:
        raise SplitModelError(f"{family} is a segmentation model; score_thresh does not apply")


def lraspp_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    _no_score_thresh(score_thresh, "lraspp_mobilenet_v3_large")
    model = lraspp_mobilenet_v3_large(
        weights=weights, weights_backbone=None, num_classes=num_classes
    )
    return _parts(
        model,
        frozenset({"low", "high"}),
        None,
        ("features.3", "features.4", "features.12"),
        min_size,
        max_size,
    )


def deeplabv3_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    _no_score_thresh(score_thresh, "deeplabv3_mobilenet_v3_large")
    # torchvision turns aux_loss on with pretrained weights; the aux head is training-only.
    model = deeplabv3_mobilenet_v3_large(
        weights=weights, weights_backbone=None, num_classes=num_classes
    )
    model.aux_classifier = None
    return _parts(
        model,
        frozenset({"out"}),
        "out",
        ("features.3", "features.6", "features.12"),
        min_size,
        max_size,
    )


def deeplabv3_resnet50_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> FamilyParts:
    _no_score_thresh(score_thresh, "deeplabv3_resnet50")
    model = deeplabv3_resnet50(weights=weights, weights_backbone=None, num_classes=num_classes)
    model.aux_classifier = None  # training-only, as for the MobileNetV3 variant
    return _parts(
        model,
        frozenset({"out"}),
        "out",
        ("layer1", "layer2", "layer3"),
        min_size,
        max_size,
    )
