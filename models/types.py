"""Plain data shared by device and server: branch specs, head outputs, predictions.

Nothing here imports torch, so the device runtime can describe and route branches
(and run offload branches) on a machine without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

BranchKind = Literal["local", "split", "offload"]
Task = Literal["detection", "segmentation", "echo"]


@dataclass(frozen=True)
class TensorSpec:
    """One tensor crossing the split; -1 in ``shape`` means 'depends on the input size'."""

    name: str
    dtype: str  # "float32" | "float16" | "uint8" | "int8"
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BranchSpec:
    """One way to run a model: where the cut is and what crosses the network.

    ``local``: the whole model on the device, nothing crosses.
    ``split``: the device runs the head up to ``split_point`` and ships ``tensors``.
    ``offload``: the device ships the frame as ``image_format`` at ``image_quality``.
    """

    name: str
    kind: BranchKind
    split_point: str = ""
    tensors: tuple[TensorSpec, ...] = ()
    default_bits: int = 0  # 0 = ship float; 8/6/4/2 = quantize to that many bits
    image_format: str = ""  # "jpeg" | "png" | "webp" for offload branches
    image_quality: int = 0


@dataclass
class HeadOutput:
    """What the device's head produced for one frame (split branches)."""

    tensors: dict[str, np.ndarray]
    orig_size: tuple[int, int]  # (height, width) of the camera frame
    input_size: tuple[int, int]  # (height, width) after the head's resize


@dataclass
class TailInput:
    """What the server's tail gets for one frame: head tensors, or a decoded image."""

    orig_size: tuple[int, int]
    input_size: tuple[int, int] = (0, 0)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    image: np.ndarray | None = None  # HxWx3 uint8 RGB for offload branches


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32 xyxy, original image pixels
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64


@dataclass
class SegmentationMask:
    mask: np.ndarray  # (H, W) uint8 class index, original image size


Prediction = Detections | SegmentationMask


class SplitModel(Protocol):
    """A model that knows its branches: head on the device, tail on the server.

    Optional: ``tensor_shapes(branch, input_size) -> {name: shape}``, the exact shapes a
    split branch's tensors have for a preprocessed input of ``input_size``; a model
    that has it lets the edge refuse an inconsistent frame before decoding or batching
    it (else a spec's -1 dimensions accept any size and the tail finds out).
    """

    name: str
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    min_size: int
    max_size: int
    weights_source: str  # a path, a torchvision weights name, or "random-init"
    branches: dict[str, BranchSpec]

    def run_head(self, branch: str, image: np.ndarray) -> HeadOutput:
        """Device side of a split branch; ``image`` is HxWx3 uint8 RGB."""
        ...

    def run_tail(self, branch: str, batch: list[TailInput]) -> list[Prediction]:
        """Server side of a split or offload branch, one prediction per input."""
        ...

    def run_local(self, image: np.ndarray) -> Prediction:
        """The whole model on one frame (the ``local`` branch, and fallback)."""
        ...
