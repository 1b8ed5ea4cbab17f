"""Prefilter: a tiny on-device classifier that drops frames with nothing of interest.

Two designs, both measured (``splitedge-train prefilter --input head|frame``):

- ``head``: as in the bottleneck paper, a tiny conv classifier on the student
  head's own stride-4 features, in front of the encoder; the device computes them
  anyway for a split branch, so the classifier costs one small conv and a pooling.
  Its checkpoint holds a copy of those early layers, so it runs on its own too.
- ``frame``: the same classifier on the frame downsampled to 120x160 (no student
  needed; cheapest, and usable before any head runs).

The threshold is chosen on validation frames (synthetic, with the generator's
share of empty frames) as the largest score keeping recall >= ``target_recall``
(0.99 by default): of the positive frames, at most 1 % may be dropped. A frame
the prefilter drops never touches the uplink; the client records it as
prefiltered. ``uplink_saving`` measures the share of frames (= of uplink bytes, as
every frame of a branch costs about the same) saved on synthetic video.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from splitedge.models.bottleneck import EARLY_CHANNELS, load_student
from splitedge.models.split import check_image

CHECKPOINT_FORMAT = "splitedge-prefilter-v1"
INPUTS = ("head", "frame")
FRAME_HW = (120, 160)  # downsampled frame of the ``frame`` prefilter
HEAD_HW = (240, 320)  # frame size the ``head`` prefilter's early layers see
TARGET_RECALL = 0.99
# The normalization of the teachers' (and students') transform: ImageNet mean/std.
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class PrefilterError(Exception):
    """Base class of this module's errors."""


class PrefilterCheckpointError(PrefilterError, ValueError):
    """A prefilter checkpoint that cannot be read."""


class PrefilterConfigError(PrefilterError, ValueError):
    """A prefilter setting that cannot work."""


def _early_layers() -> nn.Sequential:
    """Same layout as :class:`splitedge.models.bottleneck.StudentHead.early`."""
    from splitedge.models.bottleneck import BottleneckConfig, StudentHead

    return StudentHead(BottleneckConfig()).early


class PrefilterNet(nn.Module):
    """Two small convs -> global mean+max pooling -> one logit ("holds an object")."""

    def __init__(self, input_kind: str) -> None:
        super().__init__()
        if input_kind not in INPUTS:
            raise PrefilterConfigError(f"input must be one of {INPUTS}, got {input_kind!r}")
        self.input_kind = input_kind
        if input_kind == "head":
            self.features = _early_layers()
            for p in self.features.parameters():
                p.requires_grad_(False)  # the student's layers: shared, not retrained here
            cin = EARLY_CHANNELS
            self.hw = HEAD_HW
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
            )
            cin = 16
            self.hw = FRAME_HW
        self.classifier = nn.Sequential(
            nn.Conv2d(cin, 32, 3, 2, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
        )
        self.fc = nn.Linear(64, 1)

    def train(self, mode: bool = True) -> PrefilterNet:
        super().train(mode)
        if self.input_kind == "head":
            self.features.eval()  # frozen BN statistics of the student
        return self

    def forward(self, frames: Tensor) -> Tensor:
        """Float frames in [0, 1] (N, 3, H, W) -> logits (N,)."""
        x = F.interpolate(frames, size=self.hw, mode="bilinear", align_corners=False)
        x = self.classifier(self.features((x - _MEAN) / _STD))
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.fc(pooled).squeeze(1)


def frames_to_tensor(images: Sequence[np.ndarray]) -> Tensor:
    """HxWx3 uint8 frames of one size -> (N, 3, H, W) float in [0, 1]."""
    for i, image in enumerate(images):
        check_image(image, f"prefilter frame {i}")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def threshold_for_recall(
    scores: np.ndarray, labels: np.ndarray, target_recall: float = TARGET_RECALL
) -> float:
    """Largest threshold with recall >= ``target_recall`` (keep = score >= threshold)."""
    if not 0.0 < target_recall <= 1.0:
        raise PrefilterConfigError(f"target_recall must be in (0, 1], got {target_recall}")
    positives = np.sort(np.asarray(scores, np.float64)[np.asarray(labels, bool)])
    if positives.size == 0:
        raise PrefilterConfigError("no positive frames to choose a threshold on")
    may_miss = math.floor((1.0 - target_recall) * positives.size + 1e-9)
    return float(positives[may_miss])


def recall_and_drop(
    scores: np.ndarray, labels: np.ndarray, threshold: float
) -> tuple[float, float]:
    """(recall on positive frames, share of all frames dropped) at ``threshold``."""
    keep = np.asarray(scores) >= threshold
    labels = np.asarray(labels, bool)
    recall = float(keep[labels].mean()) if labels.any() else 1.0
    return recall, float(1.0 - keep.mean())


@dataclass
class Prefilter:
    """A trained prefilter with its threshold: ``keep(image)`` on the device."""

    net: PrefilterNet
    threshold: float
    metrics: dict[str, Any]

    def scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(self.net(frames_to_tensor(images))).numpy()

    def keep(self, image: np.ndarray) -> bool:
        """True: send the frame; False: drop it (record it as prefiltered)."""
        return bool(self.scores([image])[0] >= self.threshold)


def build_net(input_kind: str, student_checkpoint: str | Path | None = None) -> PrefilterNet:
    """A fresh prefilter; ``head`` copies its early layers from a student checkpoint."""
    net = PrefilterNet(input_kind)
    if input_kind == "head":
        if student_checkpoint is None:
            raise PrefilterConfigError("the head prefilter needs --student (a student checkpoint)")
        student, _ = load_student(student_checkpoint)
        net.features.load_state_dict(student.head.early.state_dict())
    return net


def save_prefilter(prefilter: Prefilter, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "input": prefilter.net.input_kind,
            "threshold": float(prefilter.threshold),
            "metrics": dict(prefilter.metrics),
            "state_dict": prefilter.net.state_dict(),
        },
        path,
    )
    return path


def resolve_path(path: str | Path) -> Path:
    """A path as given, else relative to the zoo folder (how zoo options name files)."""
    candidate = Path(path)
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    from splitedge.models.zoo import ZOO_DIR

    return ZOO_DIR / candidate


def load_prefilter(path: str | Path) -> Prefilter:
    """Read a checkpoint of :func:`save_prefilter` (a path, or a file in the zoo folder)."""
    path = resolve_path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise PrefilterCheckpointError(f"prefilter checkpoint {path} {what}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        reason = " ".join(str(exc).split()) or type(exc).__name__  # one line, never empty
        raise PrefilterCheckpointError(
            f"cannot read prefilter checkpoint {path}: {reason[:300]}"
        ) from exc
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise PrefilterCheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    net = PrefilterNet(str(blob["input"]))
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise PrefilterCheckpointError(f"{path}: weights do not match: {exc}") from exc
    return Prefilter(net.eval(), float(blob["threshold"]), dict(blob.get("metrics", {})))
