"""Weights for the torchvision split models: a checkpoint file, a torchvision name, or none.

``weights`` is either a path to a ``state_dict`` checkpoint (loaded with
``torch.load(..., weights_only=True)``; ``{"model": state_dict}`` is accepted too)
or a torchvision weights name such as
``"FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT"``, resolved with
``torchvision.models.get_weight`` and handed to torchvision's own builder (which
downloads into the torch hub cache; offline it only works when the file is cached).
Every failure is a one-line :class:`~splitedge.models.split_errors.WeightsError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitedge.models.split_errors import WeightsError

logger = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
_WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+$")
_SHOWN_KEYS = 3


@dataclass(frozen=True)
class WeightsChoice:
    """What ``weights=`` resolved to; ``source`` is recorded as ``weights_source``."""

    source: str
    enum: Any = None  # a torchvision WeightsEnum member, for torchvision names
    path: Path | None = None  # a checkpoint file

    @property
    def categories(self) -> tuple[str, ...] | None:
        if self.enum is None:
            return None
        return tuple(self.enum.meta["categories"])


def resolve_weights(
    weights: str | os.PathLike[str] | None, family: str, accepted: Sequence[str]
) -> WeightsChoice:
    """Classify ``weights`` and resolve a torchvision name to its enum member.

    ``accepted`` lists the weights enum class names built by ``family``'s architecture.
    """
    if weights is None:
        return WeightsChoice(RANDOM_INIT)
    text = os.fspath(weights)
    if not _WEIGHTS_NAME.match(text) or Path(text).exists():
        return WeightsChoice(text, path=Path(text))
    from torchvision.models import get_weight

    try:
        enum = get_weight(text)
    except (ValueError, KeyError, AttributeError) as exc:
        raise WeightsError(f"unknown torchvision weights name {text!r} ({exc})") from exc
    if type(enum).__name__ not in accepted:
        raise WeightsError(
            f"weights {text!r} are for another architecture; {family} accepts "
            f"{', '.join(n + '.*' for n in accepted)}"
        )
    return WeightsChoice(f"{type(enum).__name__}.{enum.name}", enum=enum)


@contextmanager
def download_errors(choice: WeightsChoice) -> Iterator[None]:
    """Turn a failed hub download or a bad cached file into a :class:`WeightsError`."""
    if choice.enum is None:
        yield
        return
    try:
        yield
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        import torch

        cache = Path(torch.hub.get_dir()) / "checkpoints"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"could not load torchvision weights {choice.source} from {choice.enum.url} "
            f"({reason}); put the file in {cache} or pass a checkpoint path"
        ) from exc


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file -> its state_dict (only tensors are unpickled)."""
    import torch

    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike here
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"checkpoint {path} is not a readable torch state_dict: {reason}"
        ) from exc
    if isinstance(loaded, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise WeightsError(
            f"checkpoint {path} holds a {type(loaded).__name__}, not a state_dict of tensors "
            "(or {'model': state_dict})"
        )
    return loaded


def _examples(keys: set[str]) -> str:
    shown = ", ".join(repr(k) for k in sorted(keys)[:_SHOWN_KEYS])
    return shown + (", ..." if len(keys) > _SHOWN_KEYS else "")


def load_checkpoint(
    model: Any, path: Path, family: str, num_classes: int, ignore_prefixes: Sequence[str] = ()
) -> None:
    """Load ``path`` into ``model``; every mismatch is reported before anything loads."""
    state = {
        k: v for k, v in read_checkpoint(path).items() if not k.startswith(tuple(ignore_prefixes))
    }
    expected = model.state_dict()
    # A checkpoint saved from a FrozenBatchNorm2d model (torchvision's pretrained
    # recipe) has no batch counters; they do not change inference.
    missing = {k for k in expected if k not in state and not k.endswith("num_batches_tracked")}
    unexpected = set(state) - set(expected)
    where = f"checkpoint {path} does not fit {family} (num_classes={num_classes})"
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_examples(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_examples(unexpected)})")
        raise WeightsError(f"{where}: {'; '.join(parts)}")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{where}: {key!r} has shape {list(tensor.shape)}, the model expects "
                f"{list(expected[key].shape)} (is num_classes right?)"
            )
    model.load_state_dict(state, strict=False)


def warn_random_init(family: str) -> None:
    logger.warning(
        "%s: no weights given, using RANDOM INITIALISATION; its predictions are meaningless "
        "(pass weights=<checkpoint path or torchvision weights name>)",
        family,
    )
