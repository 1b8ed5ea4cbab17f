"""Learned bottleneck: a small student head with a slimmable encoder, and its decoder.

Head network distillation (HND, Matsubara et al.) replaces a teacher's early
backbone, up to a split point, with a student that a weak device can afford; the
student ends in an *encoder* to a few channels (the code that crosses the
network) and the server's *decoder* rebuilds the teacher's split-point feature,
which then feeds the rest of the frozen teacher unchanged.

The split point is a teacher backbone stage at stride 4, 8 or 16 (``split_stride``,
``split_channels``): for the small MobileNetV3 detector its first FPN level
(``features.3``, stride 8, 24 channels), so the decoder's output is at once the FPN's
``"0"`` input and the input of the remaining backbone stages; for a ResNet-50 family
``layer1`` (stride 4, 256 channels), as HND/GHND place it. The code is ``channels``
wide at its widest, slimmable down to ``widths`` (:mod:`.slimmable`), at ``stride``
4, 8 or 16, never finer than the split point (the decoder upsamples by
``stride // split_stride``).

Quantization is in the loop: :func:`fake_quantize` is the codec's per-tensor
min/max quantize-dequantize (:mod:`splitedge.proto.codec`), one tensor per frame,
with a straight-through gradient, so training sees exactly what the wire carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from splitedge.models.slimmable import (
    DEFAULT_WIDTHS,
    SlimmableConv2d,
    SwitchableBatchNorm2d,
    WidthAdaptiveInput,
    channels_at,
    check_widths,
    set_width,
)

CHECKPOINT_FORMAT = "splitedge-bottleneck-v1"
CODE_TENSOR = "z"  # wire name of the bottleneck code
SUPPORTED_BITS = (2, 4, 6, 8)  # what the codec's packer carries
EARLY_CHANNELS = 24  # the head's stride-4 features (the prefilter reads them)
CODE_STRIDES = (4, 8, 16)  # code (and split point) strides the student supports


class BottleneckError(Exception):
    """Base class of this module's errors."""


class BottleneckConfigError(BottleneckError, ValueError):
    """A bottleneck setting outside what the student supports."""


class BottleneckCheckpointError(BottleneckError, ValueError):
    """A student checkpoint that cannot be read or does not match its config."""


@dataclass(frozen=True)
class BottleneckConfig:
    """Shape of a student: code width set, code stride, teacher feature at the split."""

    channels: int = 12  # code channels at width 1.0
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    stride: int = 8  # code stride in input pixels: 8 (= split point) or 16
    split_channels: int = 24  # teacher feature channels at the split point
    split_stride: int = 8  # the split point's stride in input pixels: 4, 8 or 16
    decoder_channels: int = 64
    train_bits: tuple[int, ...] = (8, 4)  # bit depths seen during training

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= 256:
            raise BottleneckConfigError(f"channels must be in 1..256, got {self.channels}")
        try:
            check_widths(self.widths, self.channels)
        except ValueError as exc:
            raise BottleneckConfigError(f"widths: {exc}") from exc
        if (
            self.stride not in CODE_STRIDES
            or self.split_stride not in CODE_STRIDES
            or self.stride < self.split_stride
        ):
            raise BottleneckConfigError(
                f"code stride must be 4, 8 or 16 and at least the split point's (4, 8 or 16), "
                f"got stride={self.stride} split_stride={self.split_stride}"
            )
        if not 1 <= self.split_channels <= 4096:
            raise BottleneckConfigError(
                f"split_channels must be in 1..4096, got {self.split_channels}"
            )
        bad = [b for b in self.train_bits if b not in SUPPORTED_BITS]
        if bad or not self.train_bits:
            raise BottleneckConfigError(
                f"train_bits {list(self.train_bits)} must be a non-empty subset of "
                f"{list(SUPPORTED_BITS)}"
            )

    def code_channels(self, width: float) -> int:
        """Channels of the code at ``width``."""
        return channels_at(width, self.channels)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BottleneckConfig:
        try:
            fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            return cls(**fields)
        except TypeError as exc:
            raise BottleneckCheckpointError(f"bad bottleneck config {data}: {exc}") from exc


def fake_quantize(x: Tensor, bits: int) -> Tensor:
    """Codec quantize/dequantize per frame (per-tensor min/max), straight-through gradient.

    Frame ``i`` of the batch is quantized with its own min and max, as the runtime
    encodes each frame's code as one tensor. ``bits`` 0 returns ``x`` unchanged.
    """
    if bits == 0:
        return x
    if bits not in SUPPORTED_BITS:
        raise BottleneckConfigError(f"bits must be 0 or one of {list(SUPPORTED_BITS)}, got {bits}")
    levels = float((1 << bits) - 1)
    dims = tuple(range(1, x.dim()))
    with torch.no_grad():
        lo = x.amin(dim=dims, keepdim=True)
        hi = x.amax(dim=dims, keepdim=True)
        constant = hi == lo
        # The codec rounds its float32 scale up so the maximum stays on the top level.
        scale = torch.where(constant, torch.ones_like(lo), (hi - lo) / levels)
        zero_point = torch.where(constant, -lo, -lo / scale)
        q = torch.clamp(torch.round(x / scale + zero_point), 0.0, levels)
        dequantized = (q - zero_point) * scale
    return x + (dequantized - x).detach()


def _conv_bn(cin: int, cout: int, stride: int, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), act()
    )


class StudentHead(nn.Module):
    """Device side: four small convs to stride 8 (4 or 16 if asked), then the slimmable
    encoder.

    ``early`` (stride 4, :data:`EARLY_CHANNELS` channels) is exposed for the prefilter,
    which sits in front of the encoder as in the paper's design.
    """

    def __init__(self, config: BottleneckConfig) -> None:
        super().__init__()
        self.config = config
        self.early = nn.Sequential(
            _conv_bn(3, 16, 2, nn.Hardswish), _conv_bn(16, EARLY_CHANNELS, 2, nn.ReLU)
        )
        first_stride = 1 if config.stride == 4 else 2
        layers = [_conv_bn(EARLY_CHANNELS, 32, first_stride, nn.ReLU), _conv_bn(32, 48, 1, nn.ReLU)]
        if config.stride == 16:
            layers.append(_conv_bn(48, 48, 2, nn.ReLU))
        self.body = nn.Sequential(*layers)
        self.encoder = nn.Sequential(
            SlimmableConv2d(48, config.channels, 1, config.widths),
            SwitchableBatchNorm2d(config.channels, config.widths),
        )

    def set_width(self, width: float) -> None:
        """Switch the encoder's width in place (no reload)."""
        set_width(self.encoder, width)

    def encode(self, early: Tensor) -> Tensor:
        return self.encoder(self.body(early))

    def forward(self, x: Tensor) -> Tensor:
        """Normalized, padded image batch -> code (float; the codec quantizes it)."""
        return self.encode(self.early(x))


class Decoder(nn.Module):
    """Server side: a code of any width -> the teacher's split-point feature."""

    def __init__(self, config: BottleneckConfig) -> None:
        super().__init__()
        hidden = config.decoder_channels
        self.entry = WidthAdaptiveInput(config.channels, hidden, config.widths)
        self.upsample = config.stride // config.split_stride
        self.body = nn.Sequential(
            nn.ReLU(),
            _conv_bn(hidden, hidden, 1, nn.ReLU),
            nn.Conv2d(hidden, config.split_channels, 1),
        )

    def forward(self, code: Tensor) -> Tensor:
        x = self.entry(code)
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.body(x)


class Student(nn.Module):
    """Head + decoder as trained together; ``forward`` returns the rebuilt split feature."""

    def __init__(self, config: BottleneckConfig) -> None:
        super().__init__()
        self.config = config
        self.head = StudentHead(config)
        self.decoder = Decoder(config)

    def forward(self, x: Tensor, width: float = 1.0, bits: int = 8) -> Tensor:
        self.head.set_width(width)
        return self.decoder(fake_quantize(self.head(x), bits))


def save_student(
    student: Student, path: str | Path, teacher: str, extra: dict[str, Any] | None = None
) -> Path:
    """Write the student (head + decoder state and config) as a weights-only checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "config": student.config.to_json(),
            "teacher": teacher,
            "state_dict": student.state_dict(),
            "extra": dict(extra or {}),
        },
        path,
    )
    return path


def load_student(path: str | Path) -> tuple[Student, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_student`; returns (student in eval, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise BottleneckCheckpointError(f"student checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise BottleneckCheckpointError(f"cannot read student checkpoint {path}: {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise BottleneckCheckpointError(
            f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (written by save_student)"
        )
    student = Student(BottleneckConfig.from_json(blob["config"]))
    try:
        student.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise BottleneckCheckpointError(f"{path}: weights do not match its config: {exc}") from exc
    student.eval()
    return student, {"teacher": str(blob.get("teacher", "")), "extra": blob.get("extra", {})}


def code_size(config: BottleneckConfig, width: float, input_hw: Sequence[int]) -> tuple[int, ...]:
    """Shape of one frame's code at ``width`` for a padded input of ``input_hw``."""
    h, w = (int(-(-int(s) // config.stride)) for s in input_hw)
    return (1, config.code_channels(width), h, w)
