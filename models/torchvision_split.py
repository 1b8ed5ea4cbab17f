"""torchvision detection and segmentation models as split models, registered by name.

Importing this module registers the families with :mod:`splitedge.models.registry`
without importing torch; each builder imports torch, torchvision and the family
module when called. ``create_model("fasterrcnn_mobilenet_v3_large_fpn",
score_thresh=0.3)`` returns a :class:`~splitedge.models.split.TorchvisionSplitModel`
with branches ``local``, ``split@<layer>`` per split point, ``offload-jpeg<q>`` per
JPEG quality and ``offload-png``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from splitedge.models.registry import Builder, register_model, typed_options
from splitedge.models.types import SplitModel


@dataclass(frozen=True)
class Family:
    """How to build one torchvision family (names only, so no torch import is needed)."""

    module: str  # splitedge module holding the parts function
    parts: str  # function building the model and describing it as FamilyParts
    weights_enums: tuple[str, ...]  # torchvision weights classes this architecture loads
    default_num_classes: int
    ignore_prefixes: tuple[str, ...] = ()  # checkpoint keys the split model does not use


_DETECTION = "splitedge.models.detection"
_SEGMENTATION = "splitedge.models.segmentation"
COCO_NUM_CLASSES = 91  # torchvision's COCO label space, background included
VOC_NUM_CLASSES = 21

FAMILIES: dict[str, Family] = {
    "fasterrcnn_mobilenet_v3_large_fpn": Family(
        _DETECTION,
        "fasterrcnn_mobilenet_parts",
        (
            "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
            "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
        ),
        COCO_NUM_CLASSES,
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": Family(
        _DETECTION,
        "fasterrcnn_mobilenet_320_parts",
        ("FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",),
        COCO_NUM_CLASSES,
    ),
    "fasterrcnn_resnet50_fpn": Family(
        _DETECTION,
        "fasterrcnn_resnet50_parts",
        ("FasterRCNN_ResNet50_FPN_Weights",),
        COCO_NUM_CLASSES,
    ),
    "fasterrcnn_resnet50_fpn_v2": Family(
        _DETECTION,
        "fasterrcnn_resnet50_v2_parts",
        ("FasterRCNN_ResNet50_FPN_V2_Weights",),
        COCO_NUM_CLASSES,
    ),
    "retinanet_resnet50_fpn": Family(
        _DETECTION,
        "retinanet_resnet50_parts",
        ("RetinaNet_ResNet50_FPN_Weights",),
        COCO_NUM_CLASSES,
    ),
    "retinanet_resnet50_fpn_v2": Family(
        _DETECTION,
        "retinanet_resnet50_v2_parts",
        ("RetinaNet_ResNet50_FPN_V2_Weights",),
        COCO_NUM_CLASSES,
    ),
    "fcos_resnet50_fpn": Family(
        _DETECTION, "fcos_resnet50_parts", ("FCOS_ResNet50_FPN_Weights",), COCO_NUM_CLASSES
    ),
    "ssdlite320_mobilenet_v3_large": Family(
        _DETECTION, "ssdlite_parts", ("SSDLite320_MobileNet_V3_Large_Weights",), COCO_NUM_CLASSES
    ),
    "lraspp_mobilenet_v3_large": Family(
        _SEGMENTATION, "lraspp_parts", ("LRASPP_MobileNet_V3_Large_Weights",), VOC_NUM_CLASSES
    ),
    "deeplabv3_mobilenet_v3_large": Family(
        _SEGMENTATION,
        "deeplabv3_parts",
        ("DeepLabV3_MobileNet_V3_Large_Weights",),
        VOC_NUM_CLASSES,
        ignore_prefixes=("aux_classifier.",),
    ),
    "deeplabv3_resnet50": Family(
        _SEGMENTATION,
        "deeplabv3_resnet50_parts",
        ("DeepLabV3_ResNet50_Weights",),
        VOC_NUM_CLASSES,
        ignore_prefixes=("aux_classifier.",),
    ),
}


def _given_class_names(
    class_names: Sequence[str] | None, classes_from: str | None
) -> tuple[str, ...] | None:
    from splitedge.models.class_names import check_class_names, read_coco_categories
    from splitedge.models.split_errors import SplitModelError

    if class_names is not None and classes_from is not None:
        raise SplitModelError("give class_names or classes_from, not both")
    if class_names is not None:
        return check_class_names(class_names)
    if classes_from is not None:
        return read_coco_categories(classes_from)
    return None


@typed_options
def build(
    family: str,
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    split_points: Sequence[str] | None = None,
    jpeg_qualities: Sequence[int] = (90,),
    score_thresh: float | None = None,
    class_names: Sequence[str] | None = None,
    classes_from: str | None = None,
    device: str = "cpu",
    init_seed: int = 0,
) -> SplitModel:
    """Build ``family`` (a key of :data:`FAMILIES`) as a split model on ``device``.

    Weights the builder initialises at random come from ``init_seed`` (without
    touching the caller's RNG), so a device and a server that build the same
    random-init model hold the same weights and a split head matches its tail.

    The model is built with torchvision's own settings for ``family`` (input size, RPN
    proposal counts and thresholds); ``min_size``/``max_size``/``score_thresh`` override
    them. Class names (index 0 is background) come from ``class_names`` (a list), else
    ``classes_from`` (a COCO annotation JSON's ``categories``), else the torchvision
    weights' ``meta["categories"]``, else COCO/VOC names when the count fits, else
    ``class_<i>``; given names fix ``num_classes`` when it is not given.
    """
    import torch

    from splitedge.models.class_names import default_class_names
    from splitedge.models.split import TorchvisionSplitModel
    from splitedge.models.split_errors import SplitModelError, WeightsError
    from splitedge.models.weights import (
        download_errors,
        load_checkpoint,
        resolve_weights,
        warn_random_init,
    )

    recipe = FAMILIES[family]
    choice = resolve_weights(weights, family, recipe.weights_enums)
    categories = choice.categories
    if categories is not None and num_classes is not None and num_classes != len(categories):
        raise WeightsError(
            f"weights {choice.source} have {len(categories)} classes, "
            f"num_classes={num_classes} given"
        )
    names = _given_class_names(class_names, classes_from)
    if num_classes is None:
        known = categories if categories is not None else names
        num_classes = len(known) if known is not None else recipe.default_num_classes
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background included), got {num_classes}")
    if names is not None and len(names) != num_classes:
        given = "class_names" if class_names is not None else f"classes_from {classes_from!r}"
        raise SplitModelError(
            f"{given} has {len(names)} names but the model has {num_classes} classes "
            "(background included: name it first)"
        )
    parts_fn = getattr(importlib.import_module(recipe.module), recipe.parts)
    with download_errors(choice), torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        parts = parts_fn(
            weights=choice.enum,
            num_classes=num_classes,
            min_size=min_size,
            max_size=max_size,
            score_thresh=score_thresh,
        )
    if choice.path is not None:
        load_checkpoint(parts.model, choice.path, family, num_classes, recipe.ignore_prefixes)
    elif choice.enum is None:
        warn_random_init(family)
    target = torch.device(device)
    parts.model.eval().to(target)
    parts.preprocess.eval().to(target)  # its own buffers (segmentation mean/std)
    return TorchvisionSplitModel(
        family,
        parts,
        num_classes=num_classes,
        class_names=names or categories or default_class_names(num_classes),
        weights_source=choice.source,
        split_points=split_points,
        jpeg_qualities=tuple(jpeg_qualities),
        device=target,
    )


def _builder(family: str) -> Builder:
    def builder(**options: Any) -> SplitModel:
        return build(family, **options)

    builder.__name__ = family
    builder.__doc__ = f"Build {family} as a split model; options as :func:`build`."
    return builder


for _family in FAMILIES:
    register_model(_family)(_builder(_family))
