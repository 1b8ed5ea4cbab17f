"""Dependencies between the rooms point one way; read from every module's ast.

proto -> models -> control_plane -> edge | mobile_client -> simulations. Every import
counts, wherever it stands (module top, inside a function, under ``TYPE_CHECKING``):
a lazy import is still a dependency. The MQTT plane (``control_plane``) is shared by
both sides, so it may import neither of them, and the edge and the device never
import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# room -> the rooms its modules may import (besides itself)
ALLOWED: dict[str, frozenset[str]] = {
    "proto": frozenset(),
    "models": frozenset({"proto"}),
    "control_plane": frozenset({"proto"}),
    "edge": frozenset({"proto", "models", "control_plane"}),
    "mobile_client": frozenset({"proto", "models", "control_plane"}),
    "simulations": frozenset({"proto", "models", "control_plane", "edge", "mobile_client"}),
}


def _modules(room: str) -> list[Path]:
    return sorted(p for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_rooms(path: Path, source: str | None = None) -> set[tuple[str, int]]:
    """(room, line) for every ``splitedge.<room>`` the module at ``path`` imports."""
    package = ["splitedge", *path.relative_to(ROOT).parent.parts]
    text = path.read_text() if source is None else source
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            # `from splitedge import edge` names the room in the alias, not the module.
            names = [".".join([*module, alias.name]) for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "splitedge" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_room_imports_only_what_it_may(room):
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports splitedge.{other}"
        for path in _modules(room)
        for other, line in sorted(_imported_rooms(path))
        if other != room and other not in ALLOWED[room]
    ]
    assert not wrong, f"{room} may import only {sorted(ALLOWED[room])}: " + "; ".join(wrong)


def test_every_room_is_covered():
    packaged = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    packaged |= {"proto"}  # no __init__.py on purpose (tests/test_packaging.py)
    assert packaged - {"benchmarks", "tests"} == set(ALLOWED)


def test_the_walker_sees_lazy_relative_and_type_checking_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from splitedge.edge.config import MqttConfig\n"
        "def f():\n    import splitedge.mobile_client.client\n"
        "from splitedge import simulations\n"
        "from ..models import zoo\n"
        "from . import link\n"
    )
    found = _imported_rooms(ROOT / "control_plane" / "probe.py", source)
    assert found == {
        ("edge", 3),
        ("mobile_client", 5),
        ("simulations", 6),
        ("models", 7),
        ("control_plane", 8),
    }
