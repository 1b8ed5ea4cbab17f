"""A small monocular network predicting relative inverse depth, and the prior that wraps it.

The fusion stage (:func:`splitedge.models.depth.fuse_depth`) takes any *prior*: a
callable ``image (H, W, 3) uint8 -> relative inverse depth (H, W)``, right up to an
unknown scale and shift. Users with the weights can plug in MiDaS or Depth Anything;
the project ships :class:`NetworkPrior`, a tiny U-Net (~0.3 M parameters) trained by
``splitedge-train depth-prior`` on the synthetic scenes of
:mod:`splitedge.models.depth.scenes`, with the scale-and-shift-invariant loss of
MiDaS (Ranftl et al.) on inverse depth.

torch is imported lazily, inside functions, so ``splitedge.models.depth`` stays
importable on a device without it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splitedge.models.depth.errors import DepthError, InvalidInputError

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_WIDTH",
    "NetworkPrior",
    "PriorCheckpointError",
    "build_prior_net",
    "count_parameters",
    "ssi_loss",
]

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "zoo" / "depth_prior_tiny.pt"
DEFAULT_WIDTH = 16  # channels of the first level; each deeper level doubles, up to 4x
_LEVELS = 4  # resolutions 1/2 (stride-2 stem), 1/4, 1/8, 1/16
_PAD_MULTIPLE = 2**_LEVELS  # the input is padded to a multiple of 16


class PriorCheckpointError(DepthError):
    """A prior checkpoint is missing, unreadable, or does not fit the network."""


@functools.cache
def _module_class() -> type:
    """The network class, defined on first use so that torch is imported lazily."""
    import torch
    from torch import nn

    def block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    class TinyDepthUNet(nn.Module):
        """U-Net: a stride-2 stem, 4 levels (1/2 .. 1/16), 3 up (bilinear + skip), 1 channel.

        The output is predicted at 1/2 resolution and upsampled: full-resolution
        levels cost most of the compute of a U-Net this small, and a prior only has
        to get the shape right, since fusion rescales it and DFF supplies the detail.
        At 1/16 a 96x128 frame is 6x8 cells, so the bottleneck sees the whole frame,
        which a layout cue (floor below, wall behind) needs.
        """

        def __init__(self, width: int = DEFAULT_WIDTH) -> None:
            super().__init__()
            chans = [width * min(2**i, 4) for i in range(_LEVELS)]
            self.width = width
            self.down = nn.ModuleList(
                block(c_in, c_out, stride=2 if i == 0 else 1)
                for i, (c_in, c_out) in enumerate(zip([3, *chans[:-1]], chans, strict=True))
            )
            self.up = nn.ModuleList(
                block(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(_LEVELS - 1))
            )
            self.head = nn.Conv2d(chans[0], 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            size_hw = x.shape[-2:]
            skips = []
            for i, down in enumerate(self.down):
                if i:
                    x = nn.functional.max_pool2d(x, 2)
                x = down(x)
                skips.append(x)
            for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
                x = nn.functional.interpolate(
                    x, size=skip.shape[-2:], mode="bilinear", align_corners=False
                )
                x = up(torch.cat([x, skip], dim=1))
            out = nn.functional.interpolate(
                self.head(x), size=size_hw, mode="bilinear", align_corners=False
            )
            return out[:, 0]

    return TinyDepthUNet


def build_prior_net(width: int = DEFAULT_WIDTH) -> Any:
    """A fresh, randomly initialised prior network (a ``torch.nn.Module``)."""
    if width < 1:
        raise InvalidInputError(f"prior network width must be >= 1, got {width}")
    return _module_class()(width)


def count_parameters(net: Any) -> int:
    """Number of trainable parameters of a torch module."""
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) uint8 RGB -> (B, 3, H, W) float32 centred on 0."""
    import torch

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise InvalidInputError(
            f"prior input must be (H, W, 3) or (B, H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}"
        )
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return x / 255.0 - 0.5


def _align_scale_shift(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per image, ``s * pred + t`` with (s, t) the least-squares fit to ``target`` on ``mask``."""
    m = mask.float()
    n = m.sum(dim=(1, 2)).clamp_min(1.0)
    mean_p = (m * pred).sum(dim=(1, 2)) / n
    mean_t = (m * target).sum(dim=(1, 2)) / n
    dp = (pred - mean_p[:, None, None]) * m
    dt = (target - mean_t[:, None, None]) * m
    scale = (dp * dt).sum(dim=(1, 2)) / (dp * dp).sum(dim=(1, 2)).clamp_min(1e-8)
    return scale[:, None, None] * (pred - mean_p[:, None, None]) + mean_t[:, None, None]


def _normalise_target(inv_depth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Shift by the median and divide by the mean absolute deviation, per image.

    Scenes span very different inverse-depth ranges; without this the far, flat
    scenes would hardly count in the loss.
    """
    out = inv_depth.clone()
    for i in range(inv_depth.shape[0]):
        values = inv_depth[i][mask[i]]
        median = values.median()
        mad = (values - median).abs().mean().clamp_min(1e-6)
        out[i] = (inv_depth[i] - median) / mad
    return out


def ssi_loss(
    pred: torch.Tensor,
    inv_depth: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    gradient_weight: float = 0.5,
    scales: int = 4,
) -> torch.Tensor:
    """Scale-and-shift-invariant loss on inverse depth (MiDaS): aligned MSE + gradient matching.

    ``pred`` and ``inv_depth`` are (B, H, W); the prediction is aligned to the
    normalised target by a per-image least-squares scale and shift, so only the
    shape of the inverse-depth map is learnt, which is all a prior can know. The
    gradient term, on the aligned residual at ``scales`` resolutions, sharpens
    depth edges.
    """
    if pred.shape != inv_depth.shape or pred.dim() != 3:
        raise InvalidInputError(
            f"pred {tuple(pred.shape)} and target {tuple(inv_depth.shape)} must be (B, H, W)"
        )
    if mask is None:
        mask = inv_depth > 0
    target = _normalise_target(inv_depth, mask)
    aligned = _align_scale_shift(pred, target, mask)
    m = mask.float()
    residual = (aligned - target) * m
    loss = (residual**2).sum() / m.sum().clamp_min(1.0)
    if gradient_weight > 0:
        grad = pred.new_zeros(())
        r, mm = residual, m
        for _ in range(scales):
            gx = (r[:, :, 1:] - r[:, :, :-1]).abs() * mm[:, :, 1:] * mm[:, :, :-1]
            gy = (r[:, 1:, :] - r[:, :-1, :]).abs() * mm[:, 1:, :] * mm[:, :-1, :]
            grad = grad + (gx.sum() + gy.sum()) / mm.sum().clamp_min(1.0)
            r = r[:, ::2, ::2]
            mm = mm[:, ::2, ::2]
        loss = loss + gradient_weight * grad / scales
    return loss


def _width_from_state(state: dict[str, Any], path: Path) -> int:
    key = "down.0.0.weight"
    weight = state.get(key)
    if weight is None or getattr(weight, "ndim", 0) != 4:
        raise PriorCheckpointError(
            f"{path}: not a depth-prior checkpoint (no 4-D tensor {key!r} in the state_dict)"
        )
    return int(weight.shape[0])


def load_prior_net(checkpoint_path: str | Path, device: str = "cpu") -> Any:
    """Load a state_dict checkpoint into a fresh network in eval mode on ``device``.

    Raises :class:`PriorCheckpointError` with the path and what is wrong.
    """
    import torch

    path = Path(checkpoint_path)
    if not path.is_file():
        raise PriorCheckpointError(f"{path}: prior checkpoint not found")
    try:
        # weights_only: a checkpoint is data, never code to unpickle.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PriorCheckpointError(f"{path}: cannot read prior checkpoint ({first_line})") from exc
    if not isinstance(state, dict):
        raise PriorCheckpointError(f"{path}: expected a state_dict, got a {type(state).__name__}")
    net = build_prior_net(_width_from_state(state, path))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise PriorCheckpointError(f"{path}: state_dict does not fit ({first_line})") from exc
    try:
        return net.to(device).eval()
    except (RuntimeError, AssertionError) as exc:
        raise PriorCheckpointError(f"cannot move the prior to device {device!r} ({exc})") from exc


class NetworkPrior:
    """The prior interface backed by the tiny U-Net: ``prior(image) -> (H, W) float32``.

    The frame is padded (reflected) to a multiple of 8 and the output cropped back,
    so any size of at least 16x16 works. Higher output means nearer. Calls are
    thread-safe for inference (no state changes after loading).
    """

    def __init__(
        self, checkpoint_path: str | Path = DEFAULT_CHECKPOINT, device: str = "cpu"
    ) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.device = device
        self.net = load_prior_net(self.checkpoint_path, device)
        self.num_parameters = count_parameters(self.net)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise InvalidInputError(
                f"prior input must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}"
            )
        h, w = arr.shape[:2]
        if h < _PAD_MULTIPLE or w < _PAD_MULTIPLE:
            raise InvalidInputError(
                f"prior input must be at least {_PAD_MULTIPLE}x{_PAD_MULTIPLE} px, got {h}x{w}"
            )
        pad_h, pad_w = -h % _PAD_MULTIPLE, -w % _PAD_MULTIPLE
        x = images_to_tensor(arr).to(self.device)
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        with torch.inference_mode():
            out = self.net(x)[0, :h, :w]
        return out.float().cpu().numpy()

    def __repr__(self) -> str:
        return f"NetworkPrior({str(self.checkpoint_path)!r}, device={self.device!r})"
