"""Procedural detection / segmentation data in COCO format, and the loader for real COCO.

``build_dataset`` writes a seeded dataset folder (still images or video with track
ids); ``CocoDetection`` reads any COCO folder; ``evaluate_detections`` and
``mean_iou`` score predictions. See ``python -m splitedge.models.data.cli --help``.
"""

from splitedge.models.data.camera import CameraSpec, apply_camera
from splitedge.models.data.coco import (
    CocoDetection,
    TorchDetectionDataset,
    detection_collate,
    load_annotations,
    segmentation_to_mask,
)
from splitedge.models.data.errors import (
    AnnotationFileNotFoundError,
    DataConfigError,
    DataError,
    ImageFilesMissingError,
    InvalidBBoxError,
    MalformedAnnotationsError,
    PredictionFormatError,
)
from splitedge.models.data.evaluation import (
    METRIC_NAMES,
    confusion_matrix,
    evaluate_detections,
    mean_iou,
    per_class_iou,
)
from splitedge.models.data.export import (
    CATEGORIES,
    CocoWriter,
    box_annotations,
    build_dataset,
    encode_rle,
)
from splitedge.models.data.shapes import CLASS_NAMES, DISTRACTOR_KINDS, ShapeSpec
from splitedge.models.data.synthetic import (
    Instance,
    Sample,
    SceneConfig,
    SceneSpec,
    generate_image,
    render_scene,
    sample_scene,
)
from splitedge.models.data.video import Track, VideoConfig, generate_clips, generate_video

__all__ = [
    "CATEGORIES",
    "CLASS_NAMES",
    "DISTRACTOR_KINDS",
    "METRIC_NAMES",
    "AnnotationFileNotFoundError",
    "CameraSpec",
    "CocoDetection",
    "CocoWriter",
    "DataConfigError",
    "DataError",
    "ImageFilesMissingError",
    "Instance",
    "InvalidBBoxError",
    "MalformedAnnotationsError",
    "PredictionFormatError",
    "Sample",
    "SceneConfig",
    "SceneSpec",
    "ShapeSpec",
    "TorchDetectionDataset",
    "Track",
    "VideoConfig",
    "apply_camera",
    "box_annotations",
    "build_dataset",
    "confusion_matrix",
    "detection_collate",
    "encode_rle",
    "evaluate_detections",
    "generate_clips",
    "generate_image",
    "generate_video",
    "load_annotations",
    "mean_iou",
    "per_class_iou",
    "render_scene",
    "sample_scene",
    "segmentation_to_mask",
]
