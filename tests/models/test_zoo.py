"""The zoo registry: entries on disk, loading with weights, and each malformed input's error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from splitedge.models import zoo
from splitedge.models.registry import UnknownModelError, create_model
from splitedge.models.small_detectors import SMALL_SEGMENTER, build_small_segmenter


def _valid(name: str = "seg-a") -> dict:
    return {
        "name": name,
        "kind": "teacher-segmenter",
        "builder": SMALL_SEGMENTER,
        "checkpoint": f"{name}.pt",
        "options": {"min_size": 64},
        "recipe": "splitedge-train teacher-segmenter --tiny",
        "metrics": {"mIoU": 0.5},
    }


def _write(folder: Path, name: str, data: object) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def seg_zoo(tmp_path: Path) -> Path:
    """A zoo folder holding one real segmenter entry with a seeded random checkpoint."""
    torch.manual_seed(3)
    torch.save(build_small_segmenter().state_dict(), tmp_path / "seg-a.pt")
    zoo.write_entry(zoo.ZooEntry(**_valid()), tmp_path)
    return tmp_path


def test_entry_round_trip_and_load_uses_the_checkpoint(seg_zoo: Path) -> None:
    (seg_zoo / "depth_prior.json").write_text(json.dumps({"name": "depth_prior"}))
    entries = zoo.list_entries(seg_zoo)
    assert [e.name for e in entries] == ["seg-a"]  # records without "kind" are not entries
    entry = zoo.get_entry("seg-a", seg_zoo)
    assert entry.kind == "teacher-segmenter" and entry.created  # write_entry dates it
    model = zoo.load("seg-a", seg_zoo)
    saved = torch.load(seg_zoo / "seg-a.pt", weights_only=True)
    for key, value in model.torch_model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert model.min_size == 64  # the recorded options reach the builder
    assert model.name == "zoo:seg-a"
    assert model.weights_source == str(seg_zoo / "seg-a.pt")


def test_load_options_override_the_record(seg_zoo: Path) -> None:
    assert zoo.load("seg-a", seg_zoo, min_size=80).min_size == 80
    with pytest.raises(ValueError, match="brings its own weights"):
        zoo.load("seg-a", seg_zoo, weights="other.pt")


def test_record_metrics_merges(seg_zoo: Path) -> None:
    zoo.record_metrics("seg-a", {"head_latency_ms": 1.5}, seg_zoo)
    metrics = json.loads((seg_zoo / "seg-a.json").read_text())["metrics"]
    assert metrics == {"mIoU": 0.5, "head_latency_ms": 1.5}


def test_unknown_entry_names_the_known_ones(seg_zoo: Path) -> None:
    with pytest.raises(
        zoo.UnknownEntryError, match="unknown zoo entry 'nope'; known entries: seg-a"
    ):
        zoo.get_entry("nope", seg_zoo)
    with pytest.raises(zoo.UnknownEntryError):
        zoo.get_entry("../seg-a", seg_zoo)


def test_missing_checkpoint(seg_zoo: Path) -> None:
    (seg_zoo / "seg-a.pt").unlink()
    with pytest.raises(zoo.MissingCheckpointError, match=r"checkpoint .*seg-a.pt is missing"):
        zoo.load("seg-a", seg_zoo)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("builder"), "missing field\\(s\\) builder"),
        (lambda d: d.update(kind="teacher"), "kind 'teacher' is not one of"),
        (lambda d: d.update(name="other"), "does not match the file name 'seg-a'"),
        (lambda d: d.update(options=[1]), "field 'options' must be a JSON object"),
        (lambda d: d.update(checkpoint="/etc/x.pt"), "must be a path inside the zoo folder"),
        (lambda d: d.update(checkpoint="../x.pt"), "must be a path inside the zoo folder"),
        (lambda d: d.update(builder=""), "field 'builder' must be a non-empty string"),
        (lambda d: d.update(colour="red"), "unknown field\\(s\\) colour"),
    ],
)
def test_each_malformed_field_has_its_error(tmp_path: Path, change, message) -> None:
    data = _valid()
    change(data)
    _write(tmp_path, "seg-a", data)
    with pytest.raises(zoo.MalformedEntryError, match=message):
        zoo.get_entry("seg-a", tmp_path)
    with pytest.raises(zoo.MalformedEntryError, match=message):
        zoo.list_entries(tmp_path)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    _write(tmp_path, "seg-a", '{"name": "seg-a",\n "kind": }')
    with pytest.raises(zoo.MalformedEntryError, match="invalid JSON at line 2"):
        zoo.get_entry("seg-a", tmp_path)


def test_non_object_json(tmp_path: Path) -> None:
    _write(tmp_path, "seg-a", [1, 2])
    with pytest.raises(zoo.MalformedEntryError, match="expected a JSON object, got list"):
        zoo.get_entry("seg-a", tmp_path)


def test_record_without_kind_is_not_an_entry(tmp_path: Path) -> None:
    _write(tmp_path, "depth", {"name": "depth"})
    with pytest.raises(zoo.MalformedEntryError, match="missing field\\(s\\) kind"):
        zoo.get_entry("depth", tmp_path)


def test_write_entry_validates_before_writing(tmp_path: Path) -> None:
    bad = zoo.ZooEntry(name="x", kind="robot", builder="b", checkpoint="x.pt")
    with pytest.raises(zoo.MalformedEntryError, match="kind 'robot'"):
        zoo.write_entry(bad, tmp_path)
    assert not (tmp_path / "x.json").exists()


def test_registry_resolves_zoo_prefix() -> None:
    with pytest.raises(zoo.UnknownEntryError, match="unknown zoo entry 'no-such-entry'"):
        create_model("zoo:no-such-entry")
    with pytest.raises(UnknownModelError, match="unknown model 'no-such-model'"):
        create_model("no-such-model")
