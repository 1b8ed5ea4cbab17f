"""The spec that travels with an exported head: what the device must do around the graph.

The edge exports a split branch's head to ONNX (``splitedge-edge export``, the
``GetHead`` RPC) and hands the device this spec as JSON beside it: how to turn a
camera frame into the graph's input (resize rule, normalization, padding), what the
graph's outputs are called (the wire tensor names), and what the tail expects of the
sizes the frame carries. Plain data, no torch and no numpy, so both sides read it.

Pre-processing ``kind`` ``rcnn`` is torchvision's ``GeneralizedRCNNTransform`` at
inference: pixels / 255, ``(x - mean) / std`` per channel, bilinear resize
(``align_corners=False``, no antialias) by ``scale = min(min_size / min(h, w),
max_size / max(h, w))`` to ``floor(h * scale) x floor(w * scale)`` (or to
``fixed_size``), then zero padding at the bottom and right up to a multiple of
``size_divisible``. ``orig_size`` is the camera frame's (height, width) and
``input_size`` the resized (height, width) before padding, as in
:class:`splitedge.models.types.HeadOutput`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "HeadSpec", "HeadSpecError", "sha256_hex_ok", "write_atomic"]

FORMAT = "splitedge-head-v1"
PREPROCESS_KINDS = ("rcnn", "seg")
SIZES = {
    "orig_size": "(height, width) of the camera frame, sent as orig_height/orig_width",
    "input_size": "(height, width) after the resize, before padding, sent as "
    "input_height/input_width",
}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class HeadSpecError(ValueError):
    """A head spec that cannot be read or does not describe a usable head (one line)."""


def sha256_hex_ok(text: str) -> bool:
    """True for 64 lowercase hex digits."""
    return bool(_HEX64.fullmatch(text))


@dataclass(frozen=True)
class HeadSpec:
    """One exported head graph; ``branches`` lists every branch that runs it (branches
    that differ only in quantization bits share the graph)."""

    model: str
    graph: str  # the graph's key within the model, e.g. "w0.5"
    branches: tuple[str, ...]
    weights_sha256: str  # hash of the weights the graph was exported from
    onnx_sha256: str  # hash of the graph's bytes
    min_size: int
    max_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size_divisible: int = 32
    fixed_size: tuple[int, int] | None = None  # (height, width) when the model resizes to it
    input_name: str = "image"  # float32 [1, 3, H, W], H and W multiples of size_divisible
    outputs: tuple[str, ...] = ("z",)  # graph outputs in order = wire tensor names
    output_dtype: str = "float32"
    opset: int = 17
    preprocess: str = "rcnn"
    sizes: dict[str, str] = field(default_factory=lambda: dict(SIZES))
    format: str = FORMAT

    def __post_init__(self) -> None:
        problems = []
        if self.format != FORMAT:
            problems.append(f"format {self.format!r} is not {FORMAT!r}")
        if self.preprocess not in PREPROCESS_KINDS:
            problems.append(f"preprocess {self.preprocess!r} is not one of {PREPROCESS_KINDS}")
        if not (0 < self.min_size <= self.max_size):
            problems.append(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            problems.append("mean and std must be 3 numbers each, std > 0")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            problems.append("mean and std must be finite")
        if self.size_divisible < 1:
            problems.append(f"size_divisible must be >= 1, got {self.size_divisible}")
        if self.fixed_size is not None and (len(self.fixed_size) != 2 or min(self.fixed_size) < 1):
            problems.append(f"fixed_size must be (height, width) > 0, got {self.fixed_size}")
        if not self.outputs or not self.branches:
            problems.append("outputs and branches must not be empty")
        if self.output_dtype != "float32":
            problems.append(f"output_dtype {self.output_dtype!r} is not float32")
        for key in ("weights_sha256", "onnx_sha256"):
            if not sha256_hex_ok(getattr(self, key)):
                problems.append(f"{key} is not 64 lowercase hex digits")
        if problems:
            raise HeadSpecError(f"head spec {self.model}/{self.graph}: {problems[0]}")

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """The (height, width) this head resizes a ``height x width`` frame to (as torch)."""
        if self.fixed_size is not None:
            return int(self.fixed_size[0]), int(self.fixed_size[1])
        scale = min(self.min_size / min(height, width), self.max_size / max(height, width))
        if self.preprocess == "seg":  # models.segmentation.resized_size
            return max(1, round(height * scale)), max(1, round(width * scale))
        return math.floor(height * scale), math.floor(width * scale)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        d = self.size_divisible
        return -(-height // d) * d, -(-width // d) * d

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> HeadSpec:
        """Parse and check; a :class:`HeadSpecError` names what is wrong."""
        try:
            raw: Any = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HeadSpecError(f"head spec is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise HeadSpecError(f"head spec must be a JSON object, got {type(raw).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise HeadSpecError(f"head spec: unknown key {unknown[0]!r}")
        try:
            for key in ("branches", "mean", "std", "outputs"):
                if key in raw:
                    raw[key] = tuple(raw[key])
            if raw.get("fixed_size") is not None:
                raw["fixed_size"] = tuple(int(v) for v in raw["fixed_size"])
            return cls(**raw)
        except HeadSpecError:
            raise
        except (TypeError, ValueError) as exc:
            raise HeadSpecError(f"head spec: {exc}") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file in the same
    folder, then ``os.replace``): how both head stores, the edge's and the device's,
    keep a crash from leaving a half-written graph under a hash-checked name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
