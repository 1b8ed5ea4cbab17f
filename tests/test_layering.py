"""The rooms depend on each other one way: proto -> models -> control_plane -> edge |
mobile_client -> training -> simulations, and the runtime rooms never import the
offline tooling.

Every ``import`` / ``from ... import`` in every module of a room is read from its
syntax tree, at module level and inside functions alike (a lazy import is still a
dependency), and checked against the rooms it may use. The device runtime
(``mobile_client``), the edge server (``edge``) and the networks (``models``) must not
import ``splitedge.training``; ``edge`` and ``mobile_client`` never import each other;
the MQTT plane (``control_plane``) is shared by both, so it imports neither.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# room -> the other rooms its modules may import.
MAY_IMPORT: dict[str, set[str]] = {
    "proto": set(),
    "models": {"proto"},
    "control_plane": {"proto"},
    "edge": {"proto", "models", "control_plane"},
    "mobile_client": {"proto", "models", "control_plane"},
    "training": {"proto", "models", "control_plane", "mobile_client"},
    "simulations": {"proto", "models", "control_plane", "edge", "mobile_client", "training"},
}

# The one door from the runtime into the offline tooling: ``splitedge-client profile``
# runs the profiler, imported inside the command's handler so that no other command
# (and nothing that streams frames) loads it. (module path, imported module).
DOORS = {("mobile_client/cli.py", "splitedge.training.profiling")}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module, line, inside_a_function)`` for each absolute splitedge import in ``path``."""
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                # ``from splitedge import training`` names the room in the alias.
                if child.module == "splitedge":
                    names = [f"splitedge.{alias.name}" for alias in child.names]
                else:
                    names = [child.module]
            found.extend((n, child.lineno, in_function) for n in names if n.startswith("splitedge"))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, in_function or nested)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


def _modules() -> list[Path]:
    return sorted(
        path
        for room in MAY_IMPORT
        for path in (ROOT / room).rglob("*.py")
        if "__pycache__" not in path.parts and not path.name.endswith(("_pb2.py", "_pb2_grpc.py"))
    )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_imports_only_the_rooms_below_it(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    room = rel.split("/")[0]
    allowed = MAY_IMPORT[room] | {room}
    bad = []
    for module, line, in_function in _imports(path):
        parts = module.split(".")
        target = parts[1] if len(parts) > 1 else ""
        if target not in MAY_IMPORT or target in allowed:
            continue
        if (rel, module) in DOORS and in_function:
            continue
        bad.append(f"{rel}:{line} imports {module} ({room} may import: {sorted(allowed)})")
    assert not bad, "\n".join(bad)


def test_no_relative_imports_hide_a_dependency() -> None:
    relative = [
        f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
        for path in _modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, f"relative imports (use absolute ones): {relative}"


def test_each_door_is_still_used_and_stays_inside_a_function() -> None:
    for rel, module in DOORS:
        uses = [(m, fn) for m, _, fn in _imports(ROOT / rel) if m == module]
        assert uses, f"{rel} no longer imports {module}; drop it from DOORS"
        assert all(fn for _, fn in uses), f"{rel} imports {module} at module level"


def test_the_runtime_loads_no_training_code() -> None:
    # What a device and a server import to stream frames, and the CLIs' parsers.
    code = (
        "import sys\n"
        "import splitedge.mobile_client.cli, splitedge.mobile_client.client\n"
        "import splitedge.mobile_client.scheduler, splitedge.mobile_client.profile\n"
        "import splitedge.edge.cli, splitedge.models.registry, splitedge.models.zoo\n"
        "splitedge.mobile_client.cli.build_parser()\n"
        "print(sorted(m for m in sys.modules if m.startswith('splitedge.training')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_every_room_is_covered() -> None:
    packaged = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    packaged |= {"proto"}  # no __init__.py on purpose (tests/test_packaging.py)
    assert packaged - {"benchmarks", "tests"} == set(MAY_IMPORT)


def test_the_walker_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from splitedge.edge.config import MqttConfig\n"
        "def f():\n    import splitedge.mobile_client.client\n"
        "from splitedge import simulations\n"
    )
    assert _imports(probe) == [
        ("splitedge.edge.config", 3, False),
        ("splitedge.mobile_client.client", 5, True),
        ("splitedge.simulations", 6, False),
    ]
