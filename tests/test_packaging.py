"""pyproject's explicit package list covers every room folder that holds Python code.

setuptools cannot auto-discover packages behind a ``package-dir`` mapping, so a new
sub-folder (``models/depth/``) left out of ``[tool.setuptools] packages`` would work in
the editable checkout and be missing from the wheel. Walking the folders catches that
without building anything.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("proto", "models", "control_plane", "edge", "mobile_client", "simulations", "training")
# proto/ must not be a regular package: a repo-root `proto` would shadow proto-plus.
NO_INIT = {"proto"}


def _setuptools_config() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _code_folders() -> list[Path]:
    """Every folder under the rooms that directly holds a .py file."""
    folders = []
    for room in ROOMS:
        for folder in [ROOT / room, *sorted((ROOT / room).rglob("*"))]:
            parts = folder.relative_to(ROOT).parts
            if not folder.is_dir() or any(p == "__pycache__" or p.startswith(".") for p in parts):
                continue
            if any(folder.glob("*.py")):
                folders.append(folder)
    return folders


def _package_name(folder: Path) -> str:
    return ".".join(("splitedge", *folder.relative_to(ROOT).parts))


def _resolve(package: str, package_dir: dict[str, str]) -> Path:
    """The folder setuptools builds ``package`` from (longest package-dir prefix wins)."""
    parts = package.split(".")
    for cut in range(len(parts), -1, -1):
        key = ".".join(parts[:cut])
        if key in package_dir:
            return ROOT.joinpath(package_dir[key], *parts[cut:]).resolve()
    return ROOT.joinpath(*parts).resolve()


def test_rooms_exist():
    missing = [room for room in ROOMS if not (ROOT / room).is_dir()]
    assert not missing, f"room folders missing: {missing}"


@pytest.mark.parametrize("folder", _code_folders(), ids=lambda f: str(f.relative_to(ROOT)))
def test_code_folder_is_a_listed_and_mapped_package(folder):
    config = _setuptools_config()
    package = _package_name(folder)
    assert package in config["packages"], (
        f"{folder.relative_to(ROOT)}/ holds Python files but {package!r} is not in "
        "[tool.setuptools] packages in pyproject.toml; the wheel would leave it out"
    )
    resolved = _resolve(package, config.get("package-dir", {}))
    assert resolved == folder.resolve(), (
        f"{package!r} is built from {resolved}, not {folder}; fix [tool.setuptools] package-dir"
    )


def test_listed_packages_exist():
    config = _setuptools_config()
    package_dir = config.get("package-dir", {})
    missing = [p for p in config["packages"] if not _resolve(p, package_dir).is_dir()]
    assert not missing, f"listed in pyproject but no folder: {missing}"


def test_sub_packages_are_regular_packages():
    lacking = [
        str(folder.relative_to(ROOT))
        for folder in _code_folders()
        if folder.relative_to(ROOT).as_posix() not in NO_INIT
        and not (folder / "__init__.py").is_file()
    ]
    assert not lacking, f"folders with Python files but no __init__.py: {lacking}"


def test_proto_folder_has_no_init():
    assert not (ROOT / "proto" / "__init__.py").exists()


def test_proto_definition_ships_as_package_data():
    package_data = _setuptools_config().get("package-data", {})
    patterns = package_data.get("splitedge.proto", [])
    protos = sorted(p.name for p in (ROOT / "proto").glob("*.proto"))
    assert protos, "proto/ holds no .proto file"
    unshipped = [name for name in protos if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert not unshipped, f"not matched by package-data for splitedge.proto: {unshipped}"
