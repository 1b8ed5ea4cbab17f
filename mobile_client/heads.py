"""Head backends: what the device can compute itself.

A backend runs the head of split branches and, when it holds the whole model, the
``local`` branch (also used as fallback when the edge cannot answer in time).
``torch`` wraps a model from :mod:`splitedge.models.registry`; ``onnx`` runs the
split heads the edge exports with ONNX Runtime, no torch
(:mod:`splitedge.mobile_client.onnx_heads`); ``none`` is for devices without a DNN
runtime (offload branches only).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any, Protocol

import numpy as np

from splitedge.models.types import BranchSpec, HeadOutput, Prediction

log = logging.getLogger(__name__)

_REMEDY = "install splitedge[torch] or use an offload branch"
_HEAD_REMEDY = (
    "install splitedge[device] (ONNX heads from the edge) or splitedge[torch], "
    "or use an offload branch"
)
_AUTO_NONE = "neither torch nor onnxruntime is installed (backend auto chose none)"


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
    """No DNN on the device: offload branches only, no local fallback.

    ``reason`` says why, in the words the messages use ("torch is not installed
    (backend auto chose none)", or that ``--backend none`` was asked for).
    """

    name = "none"
    has_local = False

    def __init__(self, reason: str = "this client runs with --backend none") -> None:
        self.reason = reason

    def can_run(self, branch: BranchSpec) -> bool:
        return branch.kind == "offload"

    def why_not(self, branch: BranchSpec) -> str:
        """One line: why ``branch`` cannot run here and what to do about it."""
        return (
            f"branch {branch.name!r} runs its head on this device, but {self.reason}; "
            f"{_HEAD_REMEDY}"
        )

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput:
        raise LocalUnavailable(self.why_not(branch))

    @property
    def no_local_reason(self) -> str:
        """What each ``local`` frame's record says: why there is no model, and the fix."""
        return f"no local model: {self.reason}; {_REMEDY}"

    def local(self, image: np.ndarray) -> Prediction:
        raise LocalUnavailable(self.no_local_reason)


class TorchHeadBackend:
    """The registry's model, run with torch on the device's CPU."""

    name = "torch"
    has_local = True

    def __init__(
        self, model: str, options: dict[str, Any] | None = None, *, threads: int | None = None
    ) -> None:
        import torch

        from splitedge.models.registry import create_model

        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        self.model = create_model(model, **(options or {}))
        self._fingerprints: dict[str, str] | None = None

    def head_fingerprints(self) -> dict[str, str]:
        """Split branch -> SHA-256 of this device's head weights (hashed once), to
        compare with the edge's (``Describe``): a head whose weights differ from those
        the edge's tail was trained with sends codes the tail decodes wrong."""
        if self._fingerprints is None:
            from splitedge.models.fingerprint import head_fingerprints

            self._fingerprints = head_fingerprints(self.model)
        return self._fingerprints

    def can_run(self, branch: BranchSpec) -> bool:
        return branch.kind == "offload" or branch.name in self.model.branches

    def why_not(self, branch: BranchSpec) -> str:
        return (
            f"branch {branch.name!r} is not a branch of the model on this device "
            f"(it has {', '.join(sorted(self.model.branches))}); check --model-option"
        )

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput:
        return self.model.run_head(branch.name, image)

    def local(self, image: np.ndarray) -> Prediction:
        return self.model.run_local(image)


def make_backend(
    kind: str,
    model: str,
    options: dict[str, Any] | None = None,
    *,
    threads: int | None = None,
    head_cache: str | None = None,
    branches: list[str] | None = None,
) -> HeadBackend:
    """``kind`` is ``torch``, ``onnx``, ``none`` or ``auto`` (torch when installed, else
    onnx when onnxruntime is, else none). ``threads`` sets the runtime's intra-op
    threads; ``head_cache`` and ``branches`` (the split branches whose heads to fetch;
    None = all) are the onnx backend's.

    Raises ValueError (one line) for ``torch`` or ``onnx`` on a device without it.
    """
    if kind == "auto":
        if importlib.util.find_spec("torch") is not None:
            kind = "torch"
        elif importlib.util.find_spec("onnxruntime") is not None:
            log.info("torch is not installed: split heads run with onnxruntime (--backend onnx)")
            kind = "onnx"
        else:
            log.info("neither torch nor onnxruntime is installed: offload branches only")
            return NoHeadBackend(_AUTO_NONE)
    if kind == "none":
        return NoHeadBackend()
    if kind == "torch":
        if importlib.util.find_spec("torch") is None:
            raise ValueError(
                "--backend torch: torch is not installed on this device; install "
                "splitedge[torch], or use --backend auto, onnx or none"
            )
        try:
            return TorchHeadBackend(model, options, threads=threads)
        except ModuleNotFoundError as exc:  # torch without torchvision, say
            raise ValueError(
                f"--backend torch: the model needs {exc.name!r}, which is not installed; "
                "install splitedge[torch]"
            ) from None
    if kind == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            raise ValueError(
                "--backend onnx: onnxruntime is not installed on this device; install "
                "splitedge[device] (or python-onnxruntime under Termux)"
            )
        from splitedge.mobile_client.onnx_heads import OnnxHeadBackend

        return OnnxHeadBackend(threads=threads, cache_dir=head_cache, branches=branches)
    raise ValueError(f"unknown head backend {kind!r}; choose auto, torch, onnx or none")


def why_not(backend: HeadBackend, branch: BranchSpec) -> str:
    """One line: why ``backend`` cannot run ``branch`` (its own words when it has them)."""
    explain = getattr(backend, "why_not", None)
    if explain is not None:
        return str(explain(branch))
    return f"branch {branch.name!r} needs a head the {backend.name} backend does not have"
