"""The model registry: names people can type -> builders.

``create_model(name, **options)`` returns an object implementing
:class:`splitedge.models.types.SplitModel`; ``list_models()`` lists the names.
Builders import torch lazily so listing works on a device without it.

Options typed on a command line reach builders as :func:`splitedge.proto.options.parse_value`
types them, so ``split_points=features.9`` arrives as the string ``"features.9"``. A builder
decorated with :func:`typed_options` reads its own annotations and fixes that once, for
every caller: a single value given for a sequence option (``Sequence[str]``,
``list[int]``, ``tuple[float, ...]``) becomes a one-item list, and an element or value of
the wrong type is an :class:`OptionTypeError` naming the option.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from splitedge.models.types import SplitModel

Builder = Callable[..., SplitModel]
F = TypeVar("F", bound=Callable[..., Any])
_BUILDERS: dict[str, Builder] = {}
ZOO_PREFIX = "zoo:"  # create_model("zoo:<entry>") loads a trained entry of splitedge.models.zoo


class UnknownModelError(KeyError):
    """No model of that name: no builder is registered under it.

    The package's one unknown-model error; subclasses say where the name was missing
    (``models.zoo.UnknownEntryError``, ``mobile_client.server_profile.ModelNotServedError``).
    """

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0])


class OptionTypeError(ValueError):
    """A builder option of the wrong type; one line naming it (``option 'jpeg_qualities':
    expected an integer or a list of integers, got 'high'``)."""


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_SEQUENCES = (Sequence, list, tuple)


def _accepts(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _option_rule(hint: Any) -> tuple[tuple[type, ...], type | None] | None:
    """An annotation -> (scalar types it accepts, element type of its sequence form), or
    None when it holds a type this check does not know (a path, a table, Any: let the
    builder judge)."""
    members = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType)
        else (hint,)
    )
    scalars: list[type] = []
    element: type | None = None
    for member in members:
        if member is type(None) or member in _TYPE_NAMES:
            scalars.append(member)
        elif typing.get_origin(member) in _SEQUENCES:
            args = [a for a in typing.get_args(member) if a is not Ellipsis]
            if len(args) != 1 or args[0] not in _TYPE_NAMES or element is not None:
                return None
            element = args[0]
        else:
            return None
    return tuple(scalars), element


_PLAIN = (bool, int, float, str, list, tuple, type(None))  # what text and TOML can give


def _check_option(name: str, value: Any, rule: tuple[tuple[type, ...], type | None]) -> Any:
    scalars, element = rule
    if type(value) not in _PLAIN:  # a Path, a torch.device, numpy: the builder's to judge
        return value
    if any(_accepts(kind, value) for kind in scalars if kind is not type(None)):
        return value
    if value is None and type(None) in scalars:
        return value
    if element is None:
        expected = " or ".join(_TYPE_NAMES[k] for k in scalars if k is not type(None))
        raise OptionTypeError(f"option {name!r}: expected {expected}, got {value!r}")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not _accepts(element, item):
            raise OptionTypeError(
                f"option {name!r}: expected {_TYPE_NAMES[element]} or a list of "
                f"{_PLURAL[element]}, got {value!r}"
            )
    return items


def typed_options(builder: F) -> F:
    """Decorator: check and shape ``builder``'s keyword options by its annotations.

    A single value for a sequence option becomes a one-item list (``split_points=
    "features.9"`` -> ``["features.9"]``, ``jpeg_qualities=50`` -> ``[50]``); an int is
    a float; a bool is never a number; any other mismatch is an :class:`OptionTypeError`.
    Options whose annotation names other types (paths, tables, ``Any``), values that
    text or TOML cannot give (a ``Path``, a ``torch.device``) and unknown names are left
    to the builder.
    """

    @functools.cache
    def rules() -> dict[str, tuple[tuple[type, ...], type | None]]:
        signature = inspect.signature(builder, eval_str=True)
        found = {}
        for name, param in signature.parameters.items():
            if param.annotation is inspect.Parameter.empty:
                continue
            rule = _option_rule(param.annotation)
            if rule is not None:
                found[name] = rule
        return found

    @functools.wraps(builder)
    def wrapper(*args: Any, **options: Any) -> Any:
        table = rules()
        for name, value in options.items():
            if name in table:
                options[name] = _check_option(name, value, table[name])
        return builder(*args, **options)

    return typing.cast(F, wrapper)


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
