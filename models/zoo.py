"""The model zoo: named, trained entries = builder + checkpoint + recipe + measured metrics.

An entry is two files in ``models/zoo/`` (package data): ``<name>.json`` (the
record, :class:`ZooEntry`) and the checkpoint it names (usually ``<name>.pt``, a
``state_dict``). Adding an entry is committing those two files. JSON files there
without a ``"kind"`` field are other records (the depth prior's) and are skipped.

``load(name)`` builds the entry's registry builder with ``weights=<checkpoint>``
and the recorded options, so it works for every builder taking ``weights=`` (the
teachers here, part B's bottleneck students). The registry resolves
``create_model("zoo:<name>")`` through :func:`load`, which is how ``splitedge-edge
serve --model zoo:<name>`` and the client's ``--model`` get trained weights.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splitedge.models.registry import UnknownModelError
from splitedge.models.types import SplitModel

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
KINDS = ("teacher-detector", "teacher-segmenter", "student", "prefilter")
_REQUIRED = ("name", "kind", "builder", "checkpoint")


class ZooError(Exception):
    """Base class of the zoo's errors (one line a person can act on)."""


class UnknownEntryError(ZooError, UnknownModelError):
    """No entry of that name (an UnknownModelError, so ``create_model`` callers catch it)."""


class MalformedEntryError(ZooError, ValueError):
    """The entry's JSON cannot be read or lacks / mistypes a field."""


class MissingCheckpointError(ZooError, FileNotFoundError):
    """The entry names a checkpoint file that is not there."""


@dataclass
class ZooEntry:
    """One zoo record. ``checkpoint`` is relative to the zoo folder.

    ``builder``: a :func:`splitedge.models.registry.create_model` name;
    ``options``: its keyword arguments besides ``weights``; ``recipe``: the
    ``splitedge-train`` command line that reproduces the checkpoint; ``metrics``:
    measured numbers (``mAP``, ``mAP50``, ``mIoU``, ``head_latency_ms``,
    ``params``, ``bytes_per_frame_mean``, ...); ``training``: how it was made
    (seed, iterations, wall time, machine); ``created``: ISO date.
    """

    name: str
    kind: str
    builder: str
    checkpoint: str
    options: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    description: str = ""

    def checkpoint_path(self, zoo_dir: Path | None = None) -> Path:
        return _dir(zoo_dir) / self.checkpoint

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _dir(zoo_dir: str | os.PathLike[str] | None) -> Path:
    return ZOO_DIR if zoo_dir is None else Path(zoo_dir)


def _parse(path: Path, data: Any) -> ZooEntry:
    where = f"zoo entry {path}"
    if not isinstance(data, dict):
        raise MalformedEntryError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise MalformedEntryError(f"{where}: missing field(s) {', '.join(missing)}")
    for key in _REQUIRED:
        if not isinstance(data[key], str) or not data[key]:
            raise MalformedEntryError(f"{where}: field {key!r} must be a non-empty string")
    if data["kind"] not in KINDS:
        raise MalformedEntryError(
            f"{where}: kind {data['kind']!r} is not one of {', '.join(KINDS)}"
        )
    if data["name"] != path.stem:
        raise MalformedEntryError(
            f"{where}: name {data['name']!r} does not match the file name {path.stem!r}"
        )
    for key in ("options", "metrics", "training"):
        if key in data and not isinstance(data[key], dict):
            raise MalformedEntryError(f"{where}: field {key!r} must be a JSON object")
    if Path(data["checkpoint"]).is_absolute() or ".." in Path(data["checkpoint"]).parts:
        raise MalformedEntryError(
            f"{where}: checkpoint {data['checkpoint']!r} must be a path inside the zoo folder"
        )
    known = set(ZooEntry.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise MalformedEntryError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return ZooEntry(**data)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MalformedEntryError(
            f"zoo entry {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedEntryError(f"zoo entry {path}: cannot be read ({exc})") from exc


def list_entries(zoo_dir: str | os.PathLike[str] | None = None) -> list[ZooEntry]:
    """Every entry of the zoo, sorted by name (a malformed entry raises)."""
    entries = []
    for path in sorted(_dir(zoo_dir).glob("*.json")):
        data = _read_json(path)
        if isinstance(data, dict) and "kind" not in data:
            continue  # another kind of record kept beside the checkpoints
        entries.append(_parse(path, data))
    return entries


def get_entry(name: str, zoo_dir: str | os.PathLike[str] | None = None) -> ZooEntry:
    """The entry called ``name``; :class:`UnknownEntryError` lists the known ones."""
    path = _dir(zoo_dir) / f"{name}.json"
    if "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(e.name for e in list_entries(zoo_dir)) or "none"
        raise UnknownEntryError(f"unknown zoo entry {name!r}; known entries: {known}")
    data = _read_json(path)
    if isinstance(data, dict) and "kind" not in data:
        raise MalformedEntryError(f"zoo entry {path}: missing field(s) kind")
    return _parse(path, data)


def load(name: str, zoo_dir: str | os.PathLike[str] | None = None, **options: Any) -> SplitModel:
    """Build entry ``name`` with its checkpoint; ``options`` override the recorded ones."""
    from splitedge.models.registry import create_model

    entry = get_entry(name, zoo_dir)
    checkpoint = entry.checkpoint_path(_dir(zoo_dir))
    if not checkpoint.is_file():
        raise MissingCheckpointError(
            f"zoo entry {name!r}: checkpoint {checkpoint} is missing "
            f"(reproduce it with: {entry.recipe or 'its recipe'})"
        )
    if "weights" in options:
        raise ValueError(f"zoo entry {name!r} brings its own weights; do not pass weights=")
    model = create_model(entry.builder, **(entry.options | options), weights=str(checkpoint))
    model.name = f"zoo:{entry.name}"
    return model


def write_entry(entry: ZooEntry, zoo_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``entry``'s JSON record (validated first); returns its path."""
    folder = _dir(zoo_dir)
    path = folder / f"{entry.name}.json"
    if not entry.created:
        entry.created = datetime.date.today().isoformat()
    data = entry.to_json()
    _parse(path, json.loads(json.dumps(data)))  # the same checks a reader applies
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def record_metrics(
    name: str, metrics: dict[str, Any], zoo_dir: str | os.PathLike[str] | None = None
) -> ZooEntry:
    """Merge ``metrics`` into entry ``name``'s record and write it back."""
    entry = get_entry(name, zoo_dir)
    entry.metrics = entry.metrics | dict(metrics)
    write_entry(entry, zoo_dir)
    return entry


__all__ = [
    "KINDS",
    "ZOO_DIR",
    "MalformedEntryError",
    "MissingCheckpointError",
    "UnknownEntryError",
    "ZooEntry",
    "ZooError",
    "get_entry",
    "list_entries",
    "load",
    "record_metrics",
    "write_entry",
]
