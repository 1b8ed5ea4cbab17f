"""Text formats every CLI and config file shares: sizes, KEY=VALUE options, TOML files.

Why here: ``proto`` is the one room every other room may import (tests/test_layering.py),
and these are formats people type, as ``address.py`` beside it holds ``HOST:PORT``.
They are pure parsing; :func:`load_toml` reads the one file it is given, nothing else.

- A size is ``WIDTHxHEIGHT`` (``320x240``) on every ``--size`` flag, device and training
  alike, and :func:`parse_size` returns ``(width, height)``.
- A ``KEY=VALUE`` option's value is typed by one rule (:func:`parse_value`), the same
  for ``--model-option``, ``--teacher-option`` and the edge's ``--model NAME:k=v,...``;
  lists are ``a;b;c`` everywhere.

Errors are :class:`FormatError`, one line naming the flag or file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "MAX_SIDE",
    "FormatError",
    "argparse_type",
    "load_toml",
    "option_arg",
    "parse_option",
    "parse_options",
    "parse_size",
    "parse_size_hw",
    "parse_value",
    "size_arg",
    "size_hw_arg",
    "split_items",
]

MAX_SIDE = 8192  # pixels: 8K is plenty, and 100000x100000 would need 149 GiB

T = TypeVar("T")


class FormatError(ValueError):
    """Text that does not parse; ``str()`` is ``"<flag>: <detail>"`` or ``"<file> <detail>"``,
    one line; ``detail`` alone is what argparse shows after its own ``argument <flag>:``."""

    def __init__(self, what: str, detail: str, sep: str = ": ") -> None:
        super().__init__(f"{what}{sep}{detail}")
        self.what = what
        self.detail = detail


# ---------------------------------------------------------------- sizes


def parse_size(
    text: str, flag: str = "--size", *, minimum: int = 1, maximum: int = MAX_SIDE
) -> tuple[int, int]:
    """``"320x240"`` -> ``(320, 240)``: WIDTHxHEIGHT, each side in [minimum, maximum]."""
    w, sep, h = text.strip().lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise FormatError(flag, f"expected WIDTHxHEIGHT such as 320x240, got {text!r}")
    width, height = int(w), int(h)
    if not (minimum <= width <= maximum and minimum <= height <= maximum):
        raise FormatError(flag, f"each side must be {minimum}-{maximum} pixels, got {text!r}")
    return width, height


def parse_size_hw(
    text: str, flag: str = "--size", *, minimum: int = 1, maximum: int = MAX_SIDE
) -> tuple[int, int]:
    """``"320x240"`` -> ``(240, 320)``: the same WIDTHxHEIGHT text as :func:`parse_size`,
    returned as (height, width), the order tensors and training recipes use."""
    width, height = parse_size(text, flag, minimum=minimum, maximum=maximum)
    return height, width


# ---------------------------------------------------------------- KEY=VALUE options


def parse_value(text: str) -> Any:
    """Type an option value, one rule for every flag and config file.

    ``true``/``false`` (any case) -> bool; an integer -> int; a number -> float;
    ``[...]`` or ``{...}`` -> that JSON; ``"..."`` or ``'...'`` -> the string inside the
    quotes, as it is (how to pass ``a,b.pt``, ``a;b`` or ``7`` as a string); ``a;b;c`` ->
    a list, each item typed by this rule (a trailing ``;`` makes a one-item list:
    ``features.9;``); ``a,b,c`` -> a list too, where commas do not already separate options
    (``--model-option``; in the edge's ``--model NAME:k=v,k2=v2`` write ``a;b``);
    anything else -> the string, stripped. ``""`` stays ``""``.

    A single value is never wrong for a list option: the builder's annotations decide
    (:func:`splitedge.models.registry.typed_options`), so ``split_points=features.9`` and
    ``jpeg_qualities=50`` arrive as one-item lists, and an item of the wrong type is a
    one-line error naming the option.
    """
    value = text.strip()
    if _quoted(value):
        return value[1:-1]
    if value[:1] in ("[", "{"):
        return json.loads(value)  # json.JSONDecodeError (a ValueError) for the caller
    if ";" in value:
        return [_scalar(item) for item in split_items(value, ";")]
    if "," in value:
        return [_scalar(item) for item in split_items(value)]
    return _scalar(value)


def _quoted(value: str) -> bool:
    return len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]


def _scalar(value: str) -> Any:
    if _quoted(value):
        return value[1:-1]
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def split_items(text: str, sep: str = ",") -> list[str]:
    """Split on the ``sep`` outside ``[...]``, ``{...}`` and quotes; blank items dropped."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == sep and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def parse_option(item: str, flag: str) -> tuple[str, Any]:
    """``"num_classes=7"`` -> ``("num_classes", 7)``; values typed by :func:`parse_value`."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FormatError(flag, f"expected KEY=VALUE, got {item!r}")
    try:
        return key, parse_value(value)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{flag} {key}", f"not valid JSON ({exc.msg})") from None


def parse_options(items: Iterable[str], flag: str) -> dict[str, Any]:
    """Repeated ``flag KEY=VALUE`` -> a dict; a key given twice keeps the last value."""
    return dict(parse_option(item, flag) for item in items)


# ---------------------------------------------------------------- argparse


def argparse_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type=`` that shows a :class:`FormatError`'s detail (argparse names the
    flag itself: ``argument --size: expected WIDTHxHEIGHT ...``)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except FormatError as exc:
            raise argparse.ArgumentTypeError(exc.detail) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def size_arg(
    flag: str = "--size", *, minimum: int = 1, maximum: int = MAX_SIDE
) -> Callable[[str], tuple[int, int]]:
    """argparse ``type=`` for a WIDTHxHEIGHT flag; returns ``(width, height)``."""
    return argparse_type(lambda text: parse_size(text, flag, minimum=minimum, maximum=maximum))


def size_hw_arg(
    flag: str = "--size", *, minimum: int = 1, maximum: int = MAX_SIDE
) -> Callable[[str], tuple[int, int]]:
    """argparse ``type=`` for a WIDTHxHEIGHT flag; returns ``(height, width)``."""
    return argparse_type(lambda text: parse_size_hw(text, flag, minimum=minimum, maximum=maximum))


def option_arg(flag: str) -> Callable[[str], tuple[str, Any]]:
    """argparse ``type=`` for a repeated KEY=VALUE flag; returns ``(key, value)``."""
    return argparse_type(lambda text: parse_option(text, flag))


# ---------------------------------------------------------------- TOML


def check_pem(path: str | Path, what: str) -> None:
    """A :class:`FormatError` naming ``what`` unless ``path`` reads as a PEM file (a
    ``-----BEGIN`` line in its first 64 kB). gRPC's own words for a bad credential are
    "Failed to bind" on a server and a silent UNAVAILABLE on every call of a client."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(64 * 1024)
    except OSError as exc:
        raise FormatError(what, f"{str(path)!r} cannot be read ({exc.strerror})") from exc
    if b"-----BEGIN " not in head:
        raise FormatError(what, f"{str(path)!r} is not a PEM file (no -----BEGIN line)")


def load_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read one TOML file; a :class:`FormatError` names it (``config file 'x.toml' ...``)."""
    name = f"{what} {str(path)!r}"
    try:
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FormatError(name, "does not exist", " ") from None
    except OSError as exc:
        raise FormatError(name, f"cannot be read ({exc})", " ") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(name, f"is not valid TOML ({exc})", " ") from exc
