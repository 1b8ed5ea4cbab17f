"""HybridDepth's numerical core: focal stacks, depth from focus, and fusion with a prior.

A device captures a focal stack; the server registers its slices
(:func:`align_focal_stack`), measures depth from focus (:func:`depth_from_focus`)
and scales a single-image relative prior to metric depth with the confident DFF
pixels (:func:`fuse_depth`). Synthetic scenes and a thin-lens renderer
(:func:`make_scene`, :func:`render_focal_stack`) give stacks with known depth.

Names are re-exported lazily (PEP 562): ``from splitedge.models.depth import
load_focal_stack`` on a device loads the focal-stack IO alone, without OpenCV,
which only the server-side stages (alignment, DFF, fusion, rendering) need.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the submodule that defines it
_EXPORTS = {
    "FOCUS_MEASURES": "splitedge.models.depth.dff",
    "AlignmentResult": "splitedge.models.depth.align",
    "AlignmentWarning": "splitedge.models.depth.errors",
    "Camera": "splitedge.models.depth.types",
    "DepthError": "splitedge.models.depth.errors",
    "DepthMetrics": "splitedge.models.depth.metrics",
    "DffResult": "splitedge.models.depth.dff",
    "FocalStack": "splitedge.models.depth.types",
    "FocalStackError": "splitedge.models.depth.errors",
    "FocusDistanceError": "splitedge.models.depth.errors",
    "FocusFileMalformedError": "splitedge.models.depth.errors",
    "FocusFileMissingError": "splitedge.models.depth.errors",
    "FusionResult": "splitedge.models.depth.fusion",
    "InvalidInputError": "splitedge.models.depth.errors",
    "Prior": "splitedge.models.depth.fusion",
    "ScaleShift": "splitedge.models.depth.fusion",
    "Scene": "splitedge.models.depth.scenes",
    "SliceCountMismatchError": "splitedge.models.depth.errors",
    "SliceSizeMismatchError": "splitedge.models.depth.errors",
    "UnreadableImageError": "splitedge.models.depth.errors",
    "abs_rel": "splitedge.models.depth.metrics",
    "align_focal_stack": "splitedge.models.depth.align",
    "all_in_focus": "splitedge.models.depth.dff",
    "apply_hand_motion": "splitedge.models.depth.focal_stack",
    "apply_scale_shift": "splitedge.models.depth.fusion",
    "circle_of_confusion_px": "splitedge.models.depth.focal_stack",
    "corner_error_px": "splitedge.models.depth.align",
    "delta1": "splitedge.models.depth.metrics",
    "depth_from_focus": "splitedge.models.depth.dff",
    "depth_layers": "splitedge.models.depth.focal_stack",
    "depth_metrics": "splitedge.models.depth.metrics",
    "diopters_to_meters": "splitedge.models.depth.units",
    "disc_kernel": "splitedge.models.depth.focal_stack",
    "estimate_noise_level": "splitedge.models.depth.dff",
    "fit_scale_shift": "splitedge.models.depth.fusion",
    "fit_scale_shift_plain": "splitedge.models.depth.fusion",
    "focus_confidence": "splitedge.models.depth.dff",
    "focus_measure": "splitedge.models.depth.dff",
    "focus_sweep_m": "splitedge.models.depth.focal_stack",
    "focus_volume": "splitedge.models.depth.dff",
    "fuse_depth": "splitedge.models.depth.fusion",
    "load_focal_stack": "splitedge.models.depth.io",
    "make_scene": "splitedge.models.depth.scenes",
    "meters_to_diopters": "splitedge.models.depth.units",
    "peak_from_volume": "splitedge.models.depth.dff",
    "random_hand_homography": "splitedge.models.depth.focal_stack",
    "refine_scale_map": "splitedge.models.depth.fusion",
    "refine_with_dff": "splitedge.models.depth.fusion",
    "render_focal_stack": "splitedge.models.depth.focal_stack",
    "render_slice": "splitedge.models.depth.focal_stack",
    "rmse_m": "splitedge.models.depth.metrics",
    "save_focal_stack": "splitedge.models.depth.io",
    "synthetic_prior": "splitedge.models.depth.scenes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
