"""Small teacher families for the synthetic data: checkpoints well under 10 MB.

``fasterrcnn_mobilenet_v3_small_fpn_lite``: Faster R-CNN on a MobileNetV3-Small
backbone with a 64-channel FPN over the stride-8/16/32 features (``features.3``,
``features.8``, ``features.12``; the synthetic shapes are as small as 8 px, so the
stride-8 level matters), anchors 16..192 px and a 256-wide box head.
``lraspp_mobilenet_v3_small``: torchvision's LR-ASPP on a dilated MobileNetV3-Small.

Both default to 7 classes (background + the 6 synthetic shapes) and to the
synthetic frame size (min_size 240), and are registered with the model registry
and the split wrapper (:data:`splitedge.models.torchvision_split.FAMILIES`) like
the torchvision families, so they get ``local`` / ``split@<stage>`` / offload
branches. Importing this module does not import torch.

Named intermediate features for distillation (:func:`feature_names`): the
backbone stages are ``backbone.body.<i>`` (the split points ``features.<i>``),
the FPN inputs are the body's returned levels ``"0"``, ``"1"``, ``"2"``.
"""

from __future__ import annotations

from typing import Any

from splitedge.models.registry import register_model
from splitedge.models.torchvision_split import FAMILIES, Family, build
from splitedge.models.types import SplitModel

SMALL_DETECTOR = "fasterrcnn_mobilenet_v3_small_fpn_lite"
SMALL_SEGMENTER = "lraspp_mobilenet_v3_small"
SYNTHETIC_NUM_CLASSES = 7  # background + disc, rectangle, triangle, star, ring, cross
SYNTHETIC_CLASS_NAMES: tuple[str, ...] = (
    "background",
    "disc",
    "rectangle",
    "triangle",
    "star",
    "ring",
    "cross",
)

# MobileNetV3-Small feature indices returned to the FPN: output strides 8, 16, 32.
DETECTOR_RETURN_LAYERS: dict[str, str] = {"3": "0", "8": "1", "12": "2"}
FPN_CHANNELS = 64
BOX_REPRESENTATION = 256
ANCHOR_SIZES_PX = ((16, 24), (32, 48), (64, 96), (128, 192))  # levels 0, 1, 2, pool
DETECTOR_DEFAULTS: dict[str, Any] = {
    "min_size": 240,
    "max_size": 320,
    "rpn_pre_nms_top_n_train": 600,
    "rpn_post_nms_top_n_train": 300,
    "rpn_pre_nms_top_n_test": 300,
    "rpn_post_nms_top_n_test": 150,
    "rpn_batch_size_per_image": 128,
    "box_batch_size_per_image": 128,
    "box_detections_per_img": 50,
    "rpn_score_thresh": 0.0,
}
SEGMENTER_MIN_SIZE = 240
SEGMENTER_MAX_SIZE = 320


def build_small_detector(
    num_classes: int = SYNTHETIC_NUM_CLASSES,
    min_size: int | None = None,
    max_size: int | None = None,
) -> Any:
    """The bare torchvision ``FasterRCNN`` (random init; train it or load a checkpoint)."""
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from splitedge.models.detection import _sizes

    features = mobilenet_v3_small(weights=None).features
    in_channels = [features[int(i)].out_channels for i in DETECTOR_RETURN_LAYERS]
    backbone = BackboneWithFPN(
        features,
        return_layers=dict(DETECTOR_RETURN_LAYERS),
        in_channels_list=in_channels,
        out_channels=FPN_CHANNELS,
        extra_blocks=LastLevelMaxPool(),
    )
    anchors = AnchorGenerator(ANCHOR_SIZES_PX, ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES_PX))
    roi_pool = MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2)
    box_head = TwoMLPHead(FPN_CHANNELS * 7 * 7, BOX_REPRESENTATION)
    kwargs = _sizes(min_size, max_size, DETECTOR_DEFAULTS)
    return FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(BOX_REPRESENTATION, num_classes),
        **kwargs,
    )


def build_small_segmenter(num_classes: int = SYNTHETIC_NUM_CLASSES) -> Any:
    """The bare torchvision ``LRASPP`` on a dilated MobileNetV3-Small (random init)."""
    from torchvision.models import mobilenet_v3_small
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    return _lraspp_mobilenetv3(mobilenet_v3_small(weights=None, dilated=True), num_classes)


def small_detector_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> Any:
    """:class:`~splitedge.models.split.FamilyParts` of the small detector."""
    from splitedge.models.detection import RCNNFinisher, _detection_parts, _set_score_thresh
    from splitedge.models.split import stages_from_layer_getter

    del weights  # no torchvision weights exist for this architecture (Family.weights_enums=())
    model = build_small_detector(num_classes, min_size, max_size)
    _set_score_thresh(model, score_thresh)
    stages = stages_from_layer_getter(model.backbone.body, "backbone.body")
    return _detection_parts(
        model, stages, RCNNFinisher(model), ("features.1", "features.3", "features.8")
    )


def small_segmenter_parts(
    *,
    weights: Any,
    num_classes: int,
    min_size: int | None,
    max_size: int | None,
    score_thresh: float | None,
) -> Any:
    """:class:`~splitedge.models.split.FamilyParts` of the small LR-ASPP."""
    from splitedge.models.segmentation import _no_score_thresh, _parts

    del weights
    _no_score_thresh(score_thresh, SMALL_SEGMENTER)
    model = build_small_segmenter(num_classes)
    low = SEGMENTER_MIN_SIZE if min_size is None else int(min_size)
    return _parts(
        model,
        frozenset({"low", "high"}),
        None,
        ("features.1", "features.2", "features.8"),
        low,
        max(SEGMENTER_MAX_SIZE, low) if max_size is None else int(max_size),
    )


def feature_names(family: str) -> dict[str, list[str]]:
    """Module paths (for ``create_feature_extractor``) worth distilling, by role.

    ``stages``: every backbone stage, in order; ``fpn_inputs`` (detector) / ``heads``
    (segmenter): what the neck or classifier reads. Paths are inside the torchvision
    model (``split_model.torch_model``).
    """
    if family == SMALL_DETECTOR:
        return {
            "stages": [f"backbone.body.{i}" for i in range(13)],
            "fpn_inputs": [f"backbone.body.{i}" for i in DETECTOR_RETURN_LAYERS],
        }
    if family == SMALL_SEGMENTER:
        return {
            "stages": [f"backbone.{i}" for i in range(13)],
            "heads": ["backbone.2", "backbone.12"],
        }
    raise ValueError(
        f"feature_names: unknown small family {family!r}; known: {SMALL_DETECTOR}, "
        f"{SMALL_SEGMENTER}"
    )


_MODULE = "splitedge.models.small_detectors"
SMALL_FAMILIES: dict[str, Family] = {
    SMALL_DETECTOR: Family(_MODULE, "small_detector_parts", (), SYNTHETIC_NUM_CLASSES),
    SMALL_SEGMENTER: Family(_MODULE, "small_segmenter_parts", (), SYNTHETIC_NUM_CLASSES),
}


def _builder(family: str) -> Any:
    def builder(**options: Any) -> SplitModel:
        model = build(family, **options)
        if model.num_classes == SYNTHETIC_NUM_CLASSES:
            model.class_names = SYNTHETIC_CLASS_NAMES
        return model

    builder.__name__ = family
    builder.__doc__ = f"Build {family} as a split model; options as torchvision_split.build."
    return builder


for _family, _recipe in SMALL_FAMILIES.items():
    if _family not in FAMILIES:  # idempotent if the module is imported twice
        FAMILIES[_family] = _recipe
        register_model(_family)(_builder(_family))
