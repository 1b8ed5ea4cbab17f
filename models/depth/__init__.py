"""HybridDepth's numerical core: focal stacks, depth from focus, and fusion with a prior.

A device captures a focal stack; the server registers its slices
(:func:`align_focal_stack`), measures depth from focus (:func:`depth_from_focus`)
and scales a single-image relative prior to metric depth with the confident DFF
pixels (:func:`fuse_depth`). Synthetic scenes and a thin-lens renderer
(:func:`make_scene`, :func:`render_focal_stack`) give stacks with known depth.
"""

from splitedge.models.depth.align import AlignmentResult, align_focal_stack, corner_error_px
from splitedge.models.depth.dff import (
    FOCUS_MEASURES,
    DffResult,
    all_in_focus,
    depth_from_focus,
    estimate_noise_level,
    focus_confidence,
    focus_measure,
    focus_volume,
    peak_from_volume,
)
from splitedge.models.depth.errors import (
    AlignmentWarning,
    DepthError,
    FocalStackError,
    FocusDistanceError,
    FocusFileMalformedError,
    FocusFileMissingError,
    InvalidInputError,
    SliceCountMismatchError,
    SliceSizeMismatchError,
    UnreadableImageError,
)
from splitedge.models.depth.focal_stack import (
    apply_hand_motion,
    circle_of_confusion_px,
    depth_layers,
    disc_kernel,
    focus_sweep_m,
    random_hand_homography,
    render_focal_stack,
    render_slice,
)
from splitedge.models.depth.fusion import (
    FusionResult,
    Prior,
    ScaleShift,
    apply_scale_shift,
    fit_scale_shift,
    fit_scale_shift_plain,
    fuse_depth,
    refine_scale_map,
    refine_with_dff,
)
from splitedge.models.depth.io import load_focal_stack, save_focal_stack
from splitedge.models.depth.metrics import DepthMetrics, abs_rel, delta1, depth_metrics, rmse_m
from splitedge.models.depth.scenes import Scene, make_scene, synthetic_prior
from splitedge.models.depth.types import Camera, FocalStack
from splitedge.models.depth.units import diopters_to_meters, meters_to_diopters

__all__ = [
    "FOCUS_MEASURES",
    "AlignmentResult",
    "AlignmentWarning",
    "Camera",
    "DepthError",
    "DepthMetrics",
    "DffResult",
    "FocalStack",
    "FocalStackError",
    "FocusDistanceError",
    "FocusFileMalformedError",
    "FocusFileMissingError",
    "FusionResult",
    "InvalidInputError",
    "Prior",
    "ScaleShift",
    "Scene",
    "SliceCountMismatchError",
    "SliceSizeMismatchError",
    "UnreadableImageError",
    "abs_rel",
    "align_focal_stack",
    "all_in_focus",
    "apply_hand_motion",
    "apply_scale_shift",
    "circle_of_confusion_px",
    "corner_error_px",
    "delta1",
    "depth_from_focus",
    "depth_layers",
    "depth_metrics",
    "diopters_to_meters",
    "disc_kernel",
    "estimate_noise_level",
    "fit_scale_shift",
    "fit_scale_shift_plain",
    "focus_confidence",
    "focus_measure",
    "focus_sweep_m",
    "focus_volume",
    "fuse_depth",
    "load_focal_stack",
    "make_scene",
    "meters_to_diopters",
    "peak_from_volume",
    "random_hand_homography",
    "refine_scale_map",
    "refine_with_dff",
    "render_focal_stack",
    "render_slice",
    "rmse_m",
    "save_focal_stack",
    "synthetic_prior",
]
