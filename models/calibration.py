"""Recompute BatchNorm statistics from sample frames (AdaBN-style).

Useful when a model meets a new input domain, and for random-init models: they
keep unit BatchNorm statistics while activations shrink layer after layer, so
every frame gets the same constant mask and near-equal scores. Recalibrated, the
weights stay as they are but outputs depend on the input again.
"""

from __future__ import annotations

import numpy as np

from splitedge.models.split import TorchvisionSplitModel
from splitedge.models.types import TailInput


def recalibrate_batchnorm(model: TorchvisionSplitModel, frames: list[np.ndarray]) -> None:
    """Replace every BatchNorm's running statistics by those of ``frames`` (one batch)."""
    import torch

    norms = [
        m
        for m in model.torch_model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain average over the calibration batch
        norm.train()
    h, w = frames[0].shape[:2]
    # One batch of several frames: ASPP pooling and SSD's last extra block see 1x1
    # maps per frame, where batch statistics of one frame are degenerate.
    offload = next(name for name, spec in model.branches.items() if spec.kind == "offload")
    try:
        model.run_tail(offload, [TailInput((h, w), image=f) for f in frames])
    finally:
        for norm in norms:
            norm.eval()
