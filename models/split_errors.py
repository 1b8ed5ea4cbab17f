"""Errors raised by the torchvision split wrappers (:mod:`splitedge.models.torchvision_split`).

One small hierarchy so callers (the edge server, the device CLI) can catch
``SplitModelError`` and map each kind to a precise status; every message is one
line a person can act on.
"""

from __future__ import annotations


class SplitModelError(ValueError):
    """Base class: a split model was built or called with something it cannot use."""


class WeightsError(SplitModelError):
    """A checkpoint or torchvision weights name could not be loaded into the model."""


class SplitPointError(SplitModelError):
    """A requested split point is not a layer the backbone can be cut after."""


class UnknownBranchError(KeyError, SplitModelError):
    """No branch of that name; the message names the known branches."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0])


class BranchKindError(SplitModelError):
    """The branch exists but is the wrong kind for the call (e.g. run_head on offload)."""


class InputError(SplitModelError):
    """An image or tail input has the wrong type, dtype, shape or tensors."""
