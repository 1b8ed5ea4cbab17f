"""Profile files: round trip, one precise error per kind of bad file, content bins."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from splitedge.mobile_client.profile import (
    AccuracyVideo,
    BranchConfig,
    BranchProfile,
    Profile,
    ProfileConsistencyError,
    ProfileFieldError,
    ProfileReadError,
    ProfileVersionError,
    Quantiles,
    content_bins,
    load_profile,
    request_bits,
    save_profile,
)


def _profile() -> Profile:
    def entry(branch: str, kind: str, bits: int, k: int, acc: float) -> BranchProfile:
        return BranchProfile(
            config=BranchConfig(branch, bits, 1.0, 320, k),
            kind=kind,
            load_group="m",
            head_latency_ms={0: Quantiles(10, 9, 14), 1: Quantiles(20, 19, 30)},
            bytes_per_frame=Quantiles(5000, 4900, 6000) if kind != "local" else Quantiles(0, 0, 0),
            tail_latency_ms={1: 8.0, 4: 20.0},
            accuracy=acc,
            accuracy_by_bin={"motion:0": acc + 0.02, "motion:2": acc - 0.1},
        )

    return Profile(
        model="m",
        device="test",
        contention_levels=(0, 1),
        entries=[
            entry("local", "local", 0, 1, 0.6),
            entry("split@a", "split", 8, 1, 0.7),
            entry("split@a", "split", 8, 4, 0.65),
        ],
        tracker_latency_ms={0: 1.0, 1: 2.0},
        switch_cost_ms={"m": {"n": 250.0}},
        default_switch_cost_ms=300.0,
        frame_size=(240, 320),
    )


def _write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def doc() -> dict[str, Any]:
    return _profile().to_json()


def test_round_trip(tmp_path: Path) -> None:
    profile = _profile()
    save_profile(profile, tmp_path / "p.json")
    loaded = load_profile(tmp_path / "p.json")
    assert loaded == profile
    assert loaded.entry("split@a/8b/w1/320/k4").config.detection_interval == 4
    assert loaded.switch_ms("m", "n") == 250.0
    assert loaded.switch_ms("n", "m") == 300.0  # not in the table: the default
    assert loaded.switch_ms("m", "m") == 0.0
    with pytest.raises(KeyError, match="no profile entry"):
        loaded.entry("nope")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileReadError, match="cannot read profile"):
        load_profile(tmp_path / "missing.json")


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"version": 1,\n "model": ')
    with pytest.raises(ProfileReadError, match=r"not JSON \(line 2"):
        load_profile(path)


def test_a_profile_that_is_not_text_or_absurdly_nested_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ProfileReadError, match=r"p\.json: not JSON \(not UTF-8 text"):
        load_profile(path)
    path.write_text("[" * 100_000)
    with pytest.raises(ProfileReadError, match=r"p\.json: not JSON"):
        load_profile(path)


def test_no_version(tmp_path: Path, doc: dict[str, Any]) -> None:
    del doc["version"]
    with pytest.raises(ProfileVersionError, match="no 'version'"):
        load_profile(_write(tmp_path, doc))


def test_unsupported_version(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["version"] = 99
    with pytest.raises(ProfileVersionError, match="version 99 is not supported"):
        load_profile(_write(tmp_path, doc))


def test_top_level_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(ProfileFieldError, match="top level: expected an object"):
        load_profile(_write(tmp_path, [1, 2]))


def test_missing_field(tmp_path: Path, doc: dict[str, Any]) -> None:
    del doc["entries"][1]["bytes_per_frame"]
    with pytest.raises(ProfileFieldError, match=r"entries\[1\]\.bytes_per_frame: required"):
        load_profile(_write(tmp_path, doc))


def test_wrong_type(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["entries"][0]["head_latency_ms"]["0"]["mean"] = "fast"
    message = r"head_latency_ms\.0\.mean: expected a number >= 0, got 'fast'"
    with pytest.raises(ProfileFieldError, match=message):
        load_profile(_write(tmp_path, doc))


def test_bool_is_not_a_number(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["entries"][0]["bits"] = True
    with pytest.raises(ProfileFieldError, match=r"entries\[0\]\.bits: expected"):
        load_profile(_write(tmp_path, doc))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("accuracy", 1.5, r"accuracy: expected a number in \[0, 1\], got 1.5"),
        ("detection_interval", 0, r"detection_interval: expected a number >= 1, got 0"),
        ("bits", 3, r"bits: expected one of 0, 2, 4, 6, 8, got 3"),
        ("kind", "cloud", r"kind: expected one of local, split, offload"),
        ("width", 2.0, r"width: expected a number in \[0.001, 1\], got 2.0"),
    ],
)
def test_value_out_of_range(
    tmp_path: Path, doc: dict[str, Any], field: str, value: Any, message: str
) -> None:
    doc["entries"][1][field] = value
    with pytest.raises(ProfileFieldError, match=message):
        load_profile(_write(tmp_path, doc))


def test_p95_below_p50(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["entries"][1]["bytes_per_frame"] = {"mean": 10, "p50": 10, "p95": 5}
    with pytest.raises(ProfileFieldError, match="p95 5 is below p50 10"):
        load_profile(_write(tmp_path, doc))


def test_non_integer_level_key(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["entries"][0]["tail_latency_ms"] = {"one": 3.0}
    with pytest.raises(ProfileFieldError, match="keys must be non-negative integers"):
        load_profile(_write(tmp_path, doc))


def test_duplicate_entry(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["entries"].append(copy.deepcopy(doc["entries"][1]))
    with pytest.raises(ProfileConsistencyError, match="'split@a/8b/w1/320/k1' appears twice"):
        load_profile(_write(tmp_path, doc))


def test_missing_contention_level(tmp_path: Path, doc: dict[str, Any]) -> None:
    del doc["entries"][2]["head_latency_ms"]["1"]
    with pytest.raises(ProfileConsistencyError, match=r"contention level\(s\) \[1\]"):
        load_profile(_write(tmp_path, doc))


def test_no_entries(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["entries"] = []
    with pytest.raises(ProfileConsistencyError, match="lists no branch"):
        load_profile(_write(tmp_path, doc))


def test_accuracy_video_round_trips_and_older_files_have_none(
    tmp_path: Path, doc: dict[str, Any]
) -> None:
    video = AccuracyVideo(seed=0, frames=40, clip_frames=40, width=320, height=240)
    profile = _profile()
    profile.accuracy_video = video
    save_profile(profile, tmp_path / "v.json")
    assert load_profile(tmp_path / "v.json").accuracy_video == video
    del doc["accuracy_video"]  # a profile written before the field existed
    assert load_profile(_write(tmp_path, doc)).accuracy_video is None
    doc["accuracy_video"] = {"seed": 0, "frames": 0, "clip_frames": 16, "width": 3, "height": 2}
    with pytest.raises(ProfileFieldError, match=r"accuracy_video\.frames"):
        load_profile(_write(tmp_path, doc))
    doc["accuracy_video"] = {"seed": 1.5, "frames": 8, "clip_frames": 8, "width": 3, "height": 2}
    with pytest.raises(ProfileFieldError, match=r"accuracy_video\.seed: expected an integer"):
        load_profile(_write(tmp_path, doc))


def test_bad_bin_edges(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["bin_edges"]["motion"] = [0.02, 0.005]
    with pytest.raises(ProfileFieldError, match="ascending"):
        load_profile(_write(tmp_path, doc))


def test_error_names_the_file(tmp_path: Path, doc: dict[str, Any]) -> None:
    doc["contention_levels"] = [0, 0]
    path = _write(tmp_path, doc)
    with pytest.raises(ProfileConsistencyError, match=f"^{path}: contention_levels"):
        load_profile(path)


def test_content_bins() -> None:
    edges = {"object_count": (2.0, 6.0), "motion": (0.005, 0.02)}
    assert content_bins({"object_count": 1, "motion": 0.03}, edges) == (
        "object_count:0",
        "motion:2",
    )
    assert content_bins({"object_count": 6}, edges) == ("object_count:2",)


def test_request_bits_is_the_one_conversion_from_entry_bits() -> None:
    # BranchConfig: 0 = not quantized; Candidate / Client.submit: None = the branch's default.
    assert request_bits("split", 8) == 8
    assert request_bits("split", 0) == 0  # float tensors, not the branch's default depth
    assert request_bits("offload", 0) is None
    assert request_bits("local", 0) is None


def test_adaptive_session_sends_a_float_split_entry_unquantized() -> None:
    import dataclasses

    import numpy as np

    from splitedge.mobile_client.adaptive import _prepared
    from splitedge.mobile_client.scheduler import Decision
    from splitedge.mobile_client.sources import CameraFrame

    frame = CameraFrame(0, np.zeros((32, 32, 3), np.uint8), 0)
    split = Decision("split@x", 0, 1, False, 10.0, 0.5, "fits")
    assert _prepared(frame, split, "split") == (frame, 0)  # was None: the branch's default
    assert _prepared(frame, dataclasses.replace(split, bits=8), "split")[1] == 8
    offload = Decision("offload-jpeg90", 0, 1, False, 10.0, 0.5, "fits")
    assert _prepared(frame, offload, "offload")[1] is None
