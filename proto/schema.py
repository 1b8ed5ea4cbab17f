"""One reader for the documents people and tools write: scenario files (TOML/YAML) and
branch profiles (JSON).

:class:`Section` wraps one table (a JSON object) with typed getters; every error is one
line naming the dotted key (``policies[0].latency_weight: expected a number >= 0, got
-1``), raised as the caller's own exception class so each room keeps its error
hierarchy. It lives in ``proto`` beside :mod:`splitedge.proto.options` because every
room may import it (tests/test_layering.py); it parses parsed data and does no I/O.
The MQTT message schemas (:mod:`splitedge.proto.control`) validate the wire and keep
their own checks; the edge's TOML is read against its dataclasses (``edge.config``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["REQUIRED", "SchemaError", "Section"]


class SchemaError(ValueError):
    """A document that does not fit its schema; one line naming the dotted key."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a getter's default: the key must be there

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
    type(None): "null",
}


class Section:
    """Typed access to one table; remembers which keys were read so that
    :meth:`finish` can refuse the rest.

    Args:
        data: the parsed table (any Mapping); anything else is an error naming ``where``.
        where: its dotted key (``""`` = the top level), e.g. ``policies[0]``.
        source: prefixed to every message (a file name), ``""`` for none.
        error: raised for a wrong value; ``key_error`` for a missing or unknown key
            (default ``error``).
        table: what a table is called in messages (``"an object"`` for JSON).
    """

    def __init__(
        self,
        data: Any,
        where: str = "",
        *,
        source: str = "",
        error: type[ValueError] = SchemaError,
        key_error: type[ValueError] | None = None,
        table: str = "a table",
    ) -> None:
        self.where = where
        self.source = source
        self.error = error
        self.key_error = key_error or error
        self.table = table
        if not isinstance(data, Mapping):
            raise error(
                f"{self._prefix}{where or 'top level'}: expected {table}, got {_kind(data)}"
            )
        self.data: dict[str, Any] = dict(data)
        self.used: set[str] = set()

    @property
    def _prefix(self) -> str:
        return f"{self.source}: " if self.source else ""

    # ------------------------------------------------------------ naming and failing

    def key(self, name: str) -> str:
        """The dotted key of ``name`` in this section."""
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> ValueError:
        """The error (to raise) for a bad value at ``name``."""
        return self.error(f"{self._prefix}{self.key(name)}: {message}")

    def fail_key(self, name: str, message: str) -> ValueError:
        """The error (to raise) for a missing or unexpected key ``name``."""
        return self.key_error(f"{self._prefix}{self.key(name)}: {message}")

    # ------------------------------------------------------------ getters

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        """The value as parsed (or ``default``); marks ``name`` as read."""
        self.used.add(name)
        if name not in self.data:
            if required or default is REQUIRED:
                raise self.fail_key(name, "required key is missing")
            return default
        return self.data[name]

    def get(self, name: str, types: type | tuple[type, ...], default: Any = REQUIRED) -> Any:
        """The value, which must be one of ``types`` (a bool is never an int or float)."""
        value = self.raw(name, default)
        if value is default and name not in self.data:
            return value
        kinds = types if isinstance(types, tuple) else (types,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(
                self._type_name(t) for t in kinds if not (t is int and float in kinds)
            )
            raise self.fail(name, f"expected {names}, got {_show(value)}")
        return value

    def _type_name(self, kind: type) -> str:
        return self.table if kind is dict else _TYPE_NAMES.get(kind, kind.__name__)

    def number(
        self,
        name: str,
        default: Any = REQUIRED,
        *,
        minimum: float = -math.inf,
        maximum: float = math.inf,
        exclusive: bool = False,
    ) -> float:
        """A finite number in ``[minimum, maximum]`` (``(minimum, ...]`` if ``exclusive``)."""
        value = self.raw(name, default)
        ok = _is_number(value) and math.isfinite(value)
        ok = ok and (value > minimum if exclusive else value >= minimum) and value <= maximum
        if not ok:
            raise self.fail(
                name, f"expected a number{_bounds(minimum, maximum, exclusive)}, got {_show(value)}"
            )
        return float(value)

    def integer(
        self, name: str, default: Any = REQUIRED, *, minimum: int = 0, maximum: int = 10**9
    ) -> int:
        """An integer in ``[minimum, maximum]`` (a float such as 2.0 is not one)."""
        value = self.raw(name, default)
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise self.fail(name, f"expected an integer, got {_show(value)}")
        if not minimum <= value <= maximum:
            raise self.fail(name, f"expected an integer in [{minimum}, {maximum}], got {value}")
        return value

    def string(self, name: str, default: Any = "", *, required: bool = False) -> str:
        """A string; with ``required`` it must be there and non-empty."""
        value = self.raw(name, default, required=required)
        if not isinstance(value, str) or (required and not value):
            raise self.fail(name, f"expected a non-empty string, got {_show(value)}")
        return value

    def choice(self, name: str, choices: Sequence[Any], default: Any = None) -> Any:
        """One of ``choices`` (required when ``default`` is None)."""
        value = self.raw(name, default, required=default is None)
        if isinstance(value, bool) or value not in choices:
            shown = ", ".join(str(c) for c in choices)
            raise self.fail(name, f"expected one of {shown}, got {_show(value)}")
        return value

    def number_list(self, name: str, default: Any = REQUIRED) -> list[float]:
        """A list of finite numbers."""
        values = self.get(name, list, default)
        for i, v in enumerate(values):
            if not (_is_number(v) and math.isfinite(v)):
                raise self.fail(f"{name}[{i}]", f"expected a number, got {_show(v)}")
        return [float(v) for v in values]

    def int_list(self, name: str, default: Any = REQUIRED, *, minimum: int = 0) -> list[int]:
        """A list of integers >= ``minimum``."""
        values = self.get(name, list, default)
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise self.fail(f"{name}[{i}]", f"expected an integer >= {minimum}, got {_show(v)}")
        return list(values)

    def section(self, name: str, *, required: bool = False) -> Section:
        """The nested table ``name`` (empty when absent and not ``required``)."""
        return Section(
            self.raw(name, {}, required=required),
            self.key(name),
            source=self.source,
            error=self.error,
            key_error=self.key_error,
            table=self.table,
        )

    def int_keyed(self, *, minimum: float = -math.inf) -> dict[int, float]:
        """This table as ``{level: number}``, its keys non-negative integers ("0", "1", ...)."""
        self.check_int_keys()
        return {int(k): self.number(k, minimum=minimum) for k in self.data}

    def check_int_keys(self) -> None:
        for k in self.data:
            if not k.isdigit():
                raise self.fail_key(k, f"keys must be non-negative integers, got {k!r}")

    def finish(self) -> None:
        """Refuse every key no getter read."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            also = f" (also: {', '.join(unknown[1:])})" if unknown[1:] else ""
            raise self.fail_key(unknown[0], f"unknown key{also}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(minimum: float, maximum: float, exclusive: bool) -> str:
    low = minimum > -math.inf
    high = maximum < math.inf
    if low and high:
        return f" in {'(' if exclusive else '['}{minimum:g}, {maximum:g}]"
    if low:
        return f" {'>' if exclusive else '>='} {minimum:g}"
    if high:
        return f" <= {maximum:g}"
    return ""


def _kind(value: Any) -> str:
    return type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
