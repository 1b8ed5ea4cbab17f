"""Slimmable layers: one set of weights that runs at several widths, switched at run time.

After "Slimmable Encoders for Flexible Split DNNs in Bandwidth and Resource
Constrained IoT Systems" (and Yu et al.'s slimmable networks): a
:class:`SlimmableConv2d` keeps the weights of its widest form and, at width ``w``,
uses only its first ``round(w * out_channels)`` filters; a :class:`SwitchableBatchNorm2d`
holds one BatchNorm per width, because the statistics of a 3-channel code are not
those of a 12-channel one. :func:`set_width` walks a module tree and switches every
slimmable layer in place: no reload, no new tensors, only an index changes.

The decoder side uses :class:`WidthAdaptiveInput`: it zero-pads a narrower code to
the widest channel count and picks its BatchNorm by the incoming channel count, so
one tail accepts every width without being told which.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

DEFAULT_WIDTHS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


class WidthError(ValueError):
    """A width that the layer was not built for, or a malformed width set."""


def channels_at(width: float, max_channels: int) -> int:
    """Channels a layer of ``max_channels`` keeps at ``width`` (at least one)."""
    return max(1, round(width * max_channels))


def check_widths(widths: Sequence[float], max_channels: int) -> tuple[float, ...]:
    """Sorted, distinct widths in (0, 1] that give distinct channel counts; raises WidthError."""
    if not widths:
        raise WidthError("the width set is empty")
    ordered = tuple(sorted(float(w) for w in widths))
    if any(not 0.0 < w <= 1.0 for w in ordered):
        raise WidthError(f"widths must be in (0, 1], got {list(ordered)}")
    counts = [channels_at(w, max_channels) for w in ordered]
    if len(set(counts)) != len(counts):
        raise WidthError(
            f"widths {list(ordered)} give repeated channel counts {counts} for "
            f"{max_channels} channels; use fewer widths or more channels"
        )
    return ordered


class _WidthSwitch(nn.Module):
    """Shared bookkeeping: the width set and the active width index."""

    def __init__(self, widths: Sequence[float], max_channels: int) -> None:
        super().__init__()
        self.widths = check_widths(widths, max_channels)
        self.max_channels = max_channels
        self.active = len(self.widths) - 1  # widest until told otherwise

    @property
    def width(self) -> float:
        return self.widths[self.active]

    def switch(self, width: float) -> None:
        try:
            self.active = self.widths.index(float(width))
        except ValueError:
            raise WidthError(
                f"width {width} is not in this layer's width set {list(self.widths)}"
            ) from None


class SlimmableConv2d(_WidthSwitch):
    """A conv whose output channels shrink with the active width (input is full width)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        widths: Sequence[float] = DEFAULT_WIDTHS,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
    ) -> None:
        super().__init__(widths, out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)

    @property
    def out_channels(self) -> int:
        return channels_at(self.width, self.max_channels)

    def forward(self, x: Tensor) -> Tensor:
        n = self.out_channels
        bias = None if self.conv.bias is None else self.conv.bias[:n]
        return F.conv2d(x, self.conv.weight[:n], bias, self.conv.stride, self.conv.padding)


class SwitchableBatchNorm2d(_WidthSwitch):
    """One BatchNorm per width over that width's channels (private statistics per width)."""

    def __init__(self, max_channels: int, widths: Sequence[float] = DEFAULT_WIDTHS) -> None:
        super().__init__(widths, max_channels)
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(channels_at(w, max_channels)) for w in self.widths
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.norms[self.active](x)


class WidthAdaptiveInput(nn.Module):
    """Decoder entry: zero-pad any width's code to full width, conv, width-specific BN.

    The width is read from the input's channel count, so the server needs no side
    channel telling it which encoder width the device ran.
    """

    def __init__(
        self,
        max_channels: int,
        out_channels: int,
        widths: Sequence[float] = DEFAULT_WIDTHS,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.widths = check_widths(widths, max_channels)
        self.max_channels = max_channels
        self.by_channels = {channels_at(w, max_channels): i for i, w in enumerate(self.widths)}
        self.conv = nn.Conv2d(
            max_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in self.widths)

    def forward(self, code: Tensor) -> Tensor:
        channels = int(code.shape[1])
        index = self.by_channels.get(channels)
        if index is None:
            raise WidthError(
                f"code has {channels} channels; this decoder accepts "
                f"{sorted(self.by_channels)} (widths {list(self.widths)})"
            )
        # Zero-padding to full width and convolving equals using only the first
        # `channels` input planes of the weight, which skips the dead multiply-adds.
        out = F.conv2d(code, self.conv.weight[:, :channels], None, 1, self.conv.padding)
        return self.norms[index](out)


def set_width(module: nn.Module, width: float) -> int:
    """Switch every slimmable layer under ``module`` to ``width``; returns how many switched."""
    switched = 0
    for child in module.modules():
        if isinstance(child, _WidthSwitch):
            child.switch(width)
            switched += 1
    if not switched:
        raise WidthError(f"{type(module).__name__} has no slimmable layers to switch")
    return switched
