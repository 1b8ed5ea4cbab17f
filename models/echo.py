"""A trivial model whose tail does no work: for wire/server overhead measurements.

Its one split branch accepts any float tensor named ``x`` and returns no
detections; its offload branch accepts any JPEG. No torch needed.
"""

from __future__ import annotations

import math
import time

import numpy as np

from splitedge.models.types import (
    BranchSpec,
    Detections,
    HeadOutput,
    Prediction,
    TailInput,
    TensorSpec,
)


def _empty() -> Detections:
    return Detections(
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros((0,), np.float32),
        labels=np.zeros((0,), np.int64),
    )


class EchoModel:
    """Implements :class:`splitedge.models.types.SplitModel` with a no-op tail."""

    task = "echo"
    num_classes = 0
    class_names: tuple[str, ...] = ()
    min_size = 0
    max_size = 0
    weights_source = "none"

    def __init__(self, name: str = "echo", tail_delay_ms: float = 0.0) -> None:
        self.name = name
        # A fixed per-batch tail cost, so tests can provoke queueing and deadlines.
        if not (float(tail_delay_ms) >= 0 and math.isfinite(float(tail_delay_ms))):
            raise ValueError(f"tail_delay_ms must be a finite number >= 0, got {tail_delay_ms}")
        self.tail_delay_ms = float(tail_delay_ms)
        self.branches = {
            "local": BranchSpec("local", "local"),
            "split@x": BranchSpec(
                "split@x", "split", split_point="x", tensors=(TensorSpec("x", "float32", (-1,)),)
            ),
            "offload-jpeg90": BranchSpec(
                "offload-jpeg90", "offload", image_format="jpeg", image_quality=90
            ),
        }

    def run_head(self, branch: str, image: np.ndarray) -> HeadOutput:
        h, w = image.shape[:2]
        return HeadOutput({"x": image.astype(np.float32).ravel()}, (h, w), (h, w))

    def run_tail(self, branch: str, batch: list[TailInput]) -> list[Prediction]:
        if self.tail_delay_ms > 0:
            time.sleep(self.tail_delay_ms / 1000.0)
        return [_empty() for _ in batch]

    def run_local(self, image: np.ndarray) -> Prediction:
        return _empty()
