"""Head backends: what the device can compute itself.

A backend runs the head of split branches and, when it holds the whole model, the
``local`` branch (also used as fallback when the edge cannot answer in time).
``torch`` wraps a model from :mod:`splitedge.models.registry`; ``none`` is for
devices without a DNN runtime (offload branches only). ONNX Runtime plugs in here
as one more backend.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Protocol

import numpy as np

from splitedge.models.types import BranchSpec, HeadOutput, Prediction

log = logging.getLogger(__name__)


class LocalUnavailable(RuntimeError):
    """This backend cannot run that part of the model on the device."""


class HeadBackend(Protocol):
    name: str

    def can_run(self, branch: BranchSpec) -> bool:
        """True when this device can produce the branch's payload itself."""
        ...

    @property
    def has_local(self) -> bool:
        """True when the whole model can run here (local branch and fallback)."""
        ...

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput: ...

    def local(self, image: np.ndarray) -> Prediction: ...


class NoHeadBackend:
    """No DNN on the device: offload branches only, no local fallback."""

    name = "none"
    has_local = False

    def can_run(self, branch: BranchSpec) -> bool:
        return branch.kind == "offload"

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput:
        raise LocalUnavailable(
            f"branch {branch.name!r} needs the model's head on the device; "
            "this client runs with --backend none (install splitedge[torch])"
        )

    def local(self, image: np.ndarray) -> Prediction:
        raise LocalUnavailable("no model on this device (--backend none)")


class TorchHeadBackend:
    """The registry's model, run with torch on the device's CPU."""

    name = "torch"
    has_local = True

    def __init__(self, model: str, options: dict[str, Any] | None = None) -> None:
        from splitedge.models.registry import create_model

        self.model = create_model(model, **(options or {}))

    def can_run(self, branch: BranchSpec) -> bool:
        return branch.kind == "offload" or branch.name in self.model.branches

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput:
        return self.model.run_head(branch.name, image)

    def local(self, image: np.ndarray) -> Prediction:
        return self.model.run_local(image)


def make_backend(kind: str, model: str, options: dict[str, Any] | None = None) -> HeadBackend:
    """``kind`` is ``torch``, ``none`` or ``auto`` (torch when installed, else none)."""
    if kind == "none":
        return NoHeadBackend()
    if kind == "auto" and importlib.util.find_spec("torch") is None:
        log.info("torch is not installed: offload branches only, no local fallback")
        return NoHeadBackend()
    if kind in ("torch", "auto"):
        return TorchHeadBackend(model, options)
    raise ValueError(f"unknown head backend {kind!r}; choose auto, torch or none")
