"""The model registry: names people can type -> builders.

``create_model(name, **options)`` returns an object implementing
:class:`splitedge.models.types.SplitModel`; ``list_models()`` lists the names.
Builders import torch lazily so listing works on a device without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from splitedge.models.types import SplitModel

Builder = Callable[..., SplitModel]
_BUILDERS: dict[str, Builder] = {}
ZOO_PREFIX = "zoo:"  # create_model("zoo:<entry>") loads a trained entry of splitedge.models.zoo


class UnknownModelError(KeyError):
    """No model of that name: no builder is registered under it.

    The package's one unknown-model error; subclasses say where the name was missing
    (``models.zoo.UnknownEntryError``, ``mobile_client.server_profile.ModelNotServedError``).
    """

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0])


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``name`` (names are unique)."""

    def wrap(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    """All registered model names, sorted, then the zoo's trained entries as ``zoo:<name>``."""
    _load_builtin()
    from splitedge.models.zoo import ZooError, list_entries

    try:
        entries = [ZOO_PREFIX + e.name for e in list_entries()]
    except ZooError:  # a broken zoo record must not hide the builders; load() reports it
        entries = []
    return sorted([*_BUILDERS, *entries])


def create_model(name: str, **options: Any) -> SplitModel:
    """Build the model registered as ``name``; options go to its builder."""
    _load_builtin()
    if name.startswith(ZOO_PREFIX):  # trained zoo entries: builder + checkpoint + options
        from splitedge.models.zoo import load

        return load(name.removeprefix(ZOO_PREFIX), **options)
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}"
        ) from None
    return builder(**options)


@register_model("echo")
def _echo(**options: Any) -> SplitModel:
    from splitedge.models.echo import EchoModel

    return EchoModel(**options)


@register_model("bottleneck")
def _bottleneck(**options: Any) -> SplitModel:
    # Learned-bottleneck students (torch imported only when one is built).
    from splitedge.models.bottleneck_split import build_bottleneck

    return build_bottleneck(**options)


@register_model("bottleneck-seg")
def _bottleneck_seg(**options: Any) -> SplitModel:
    # Learned-bottleneck students of the LR-ASPP segmenter (torch imported lazily).
    from splitedge.models.bottleneck_seg import build_bottleneck_seg

    return build_bottleneck_seg(**options)


_loaded = False


def _load_builtin() -> None:
    """Import the modules whose decorators register the torchvision families."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    # Registered by splitedge.models.torchvision_split (imports torch lazily inside builders).
    try:
        import splitedge.models.torchvision_split
    except ModuleNotFoundError as exc:
        if exc.name != "splitedge.models.torchvision_split":
            raise
    else:
        import splitedge.models.small_detectors  # noqa: F401  (the small teacher families)
