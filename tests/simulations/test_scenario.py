"""Scenario files: the examples load, and each kind of bad input gets a precise one-line error."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from splitedge.mobile_client.policy import Candidate
from splitedge.simulations.scenario import (
    ScenarioError,
    ScenarioFileError,
    ScenarioKeyError,
    ScenarioValueError,
    load_scenario,
    parse_candidate,
    scenario_from_dict,
)

EXAMPLES = sorted((Path(__file__).parents[2] / "configs" / "scenarios").glob("*.toml"))
# Recorded Mahimahi traces beside the project (never copied into it): ../shared/traces.
CELLULAR = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "cellular"
FORMATS = "mahimahi, csv, cooked, hsdpa, belgium-4g"


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "model": "echo",
        "branches": ["offload-jpeg90", "split@x/4", "local"],
        "duration_s": 10,
        "uplink": {"kind": "steps", "steps": [[0, 20], [5, 1]]},
        "policies": [{"kind": "offload"}, {"kind": "oracle"}],
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_scenarios_load(path: Path):
    scenario = load_scenario(path)
    assert scenario.policies and scenario.branches
    assert scenario.uplink.duration_s > 0


def test_defaults_and_derived_values():
    s = scenario_from_dict(_doc(sla_ms=200))
    assert s.deadline_ms == 400  # 2 x SLA unless given
    assert s.downlink is s.uplink  # no downlink: the uplink trace both ways
    assert s.uplink.rate_at(6.0) == 1.0
    assert s.branches[1] == Candidate("split@x", 4)
    assert [p.name for p in s.policies] == ["offload", "oracle"]


def test_yaml_and_toml_read_the_same(tmp_path: Path):
    (tmp_path / "s.yaml").write_text(
        "model: echo\nbranches: [local, split@x/2]\nuplink: {kind: constant, rate_mbps: 3}\n"
        "policies:\n  - {kind: local}\n  - {kind: fixed, branch: split@x/2}\n"
    )
    (tmp_path / "s.toml").write_text(
        'model = "echo"\nbranches = ["local", "split@x/2"]\n[uplink]\nkind = "constant"\n'
        'rate_mbps = 3\n[[policies]]\nkind = "local"\n[[policies]]\nkind = "fixed"\n'
        'branch = "split@x/2"\n'
    )
    a, b = load_scenario(tmp_path / "s.yaml"), load_scenario(tmp_path / "s.toml")
    assert a.branches == b.branches and a.policies == b.policies
    assert a.uplink.rate_at(0) == b.uplink.rate_at(0) == 3.0


def test_an_oracle_plans_with_the_quantile_it_is_given():
    q95 = {"kind": "oracle", "name": "oracle-q95", "quantile": 0.95}
    s = scenario_from_dict(_doc(policies=[{"kind": "oracle"}, q95]))
    assert [(p.name, p.quantile) for p in s.policies] == [("oracle", None), ("oracle-q95", 0.95)]


def test_fixed_all_expands_to_every_candidate():
    s = scenario_from_dict(_doc(policies=[{"kind": "fixed-all"}]))
    assert [p.name for p in s.policies] == [
        "fixed:offload-jpeg90",
        "fixed:split@x/4bit",
        "fixed:local",
    ]


def test_trace_file_is_read_relative_to_the_scenario(tmp_path: Path):
    (tmp_path / "up.csv").write_text("time_s,mbps\n0,4\n2,8\n")
    (tmp_path / "s.toml").write_text(
        'model = "echo"\nbranches = ["local"]\n[uplink]\nkind = "file"\npath = "up.csv"\n'
        '[[policies]]\nkind = "local"\n'
    )
    s = load_scenario(tmp_path / "s.toml")
    assert s.uplink.rate_at(3.0) == 8.0


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"model": None}, ScenarioKeyError, "model: required key is missing"),
        ({"bogus": 1}, ScenarioKeyError, "bogus: unknown key"),
        ({"sla_ms": -5}, ScenarioValueError, "sla_ms: expected a number > 0, got -5"),
        ({"clients": "two"}, ScenarioValueError, "clients: expected an integer, got 'two'"),
        ({"clients": 0}, ScenarioValueError, "clients: expected an integer in [1, 64], got 0"),
        ({"branches": []}, ScenarioValueError, "branches: expected a non-empty list"),
        ({"branches": ["split@x/3"]}, ScenarioValueError, "branches[0]: bit depth must be"),
        ({"branches": ["local", "local"]}, ScenarioValueError, "same candidate twice"),
        ({"uplink": {"kind": "wifi"}}, ScenarioValueError, "uplink.kind: expected one of"),
        (
            {"uplink": {"kind": "steps", "steps": [[1, 5]]}},
            ScenarioValueError,
            "uplink.steps[0]: the first step must start at t_s = 0",
        ),
        (
            {"uplink": {"kind": "steps", "steps": [[0, -1]]}},
            ScenarioValueError,
            "uplink.steps[0]: expected [t_s >= 0, mbps > 0]",
        ),
        (
            {"uplink": {"kind": "constant", "rate_mbps": 5, "steps": []}},
            ScenarioKeyError,
            "uplink.steps: unknown key",
        ),
        (
            {"uplink": {"kind": "preset", "name": "6g"}},
            ScenarioValueError,
            "uplink: unknown preset",
        ),
        ({"video": {"width": 8}}, ScenarioValueError, "video.width: expected an integer in"),
        ({"video": {"clip_frames": -1}}, ScenarioValueError, "video.clip_frames: expected an"),
        ({"edge": {"tail_workers": 0}}, ScenarioValueError, "edge.tail_workers"),
        ({"policies": []}, ScenarioValueError, "policies: expected a non-empty list"),
        ({"policies": [{"kind": "greedy"}]}, ScenarioValueError, "policies[0].kind"),
        ({"policies": [{"kind": "fixed"}]}, ScenarioKeyError, "policies[0].branch: required"),
        (
            {"policies": [{"kind": "local"}, {"kind": "local"}]},
            ScenarioValueError,
            "two policies are named 'local'",
        ),
        ({"camera_phase": "random"}, ScenarioValueError, "camera_phase: expected one of"),
        (
            {"policies": [{"kind": "oracle", "quantile": 1.5}]},
            ScenarioValueError,
            "policies[0].quantile: expected a number in [0, 1], got 1.5",
        ),
        (
            {"policies": [{"kind": "offload", "quantile": 0.9}]},
            ScenarioKeyError,
            "policies[0].quantile: unknown key",
        ),
        (
            {"device_slowdown": 0.5},
            ScenarioValueError,
            "device_slowdown: expected a number >= 1, got 0.5",
        ),
        (
            {"device_local_ms": -240},
            ScenarioValueError,
            "device_local_ms: expected a number >= 0, got -240",
        ),
        (
            {"device_slowdown": "6x"},
            ScenarioValueError,
            "device_slowdown: expected a number >= 1, got '6x'",
        ),
    ],
)
def test_bad_values_name_the_key(changes: dict[str, Any], error: type, message: str):
    with pytest.raises(error) as info:
        scenario_from_dict(_doc(**changes), source="s.toml")
    text = str(info.value)
    assert text.startswith("s.toml: ") and message in text, text
    assert "\n" not in text


def test_file_errors(tmp_path: Path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioFileError) as info:
        load_scenario(missing)
    assert str(info.value) == f"scenario file {str(missing)!r} does not exist"
    with pytest.raises(ScenarioFileError, match=r"missing\.yaml' does not exist$"):
        load_scenario(tmp_path / "missing.yaml")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ScenarioFileError, match="unknown scenario file type"):
        load_scenario(tmp_path / "s.json")
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ScenarioFileError, match=r"bad\.toml' is not valid TOML \(.+\)$"):
        load_scenario(tmp_path / "bad.toml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ScenarioFileError, match=r"bad\.yaml' is not valid YAML \(.+\)$"):
        load_scenario(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioValueError, match="top level: expected a table"):
        load_scenario(tmp_path / "list.yaml")
    assert issubclass(ScenarioFileError, ScenarioError)
    assert issubclass(ScenarioError, ValueError)


def test_parse_candidate():
    assert parse_candidate("split@x/8bit") == Candidate("split@x", 8)
    assert parse_candidate("local") == Candidate("local", remote=False)
    with pytest.raises(ValueError, match="local branch takes no bit depth"):
        parse_candidate("local/8")


def test_staggered_cameras_and_client_offsets():
    s = scenario_from_dict(_doc(clients=4, fps=5, client_offset_s=5))
    assert [round(s.phase_s(i), 3) for i in range(4)] == [0.0, 0.05, 0.1, 0.15]
    up1, _ = s.client_traces(1)
    assert up1.rate_at(0.0) == s.uplink.rate_at(5.0) == 1.0
    aligned = scenario_from_dict(_doc(clients=4, camera_phase="aligned"))
    assert aligned.phase_s(3) == 0.0


def _file_scenario(tmp_path: Path, uplink: str) -> Path:
    path = tmp_path / "adaptive.toml"
    path.write_text(
        f'model = "echo"\nbranches = ["local"]\n[uplink]\nkind = "file"\n{uplink}\n'
        '[[policies]]\nkind = "local"\n'
    )
    return path


@pytest.mark.parametrize("name", ["link.up", "link.down", "link", "link.txt"])
def test_mahimahi_trace_needs_no_format_key(tmp_path: Path, name: str):
    (tmp_path / name).write_text("".join(f"{t}\n" for t in (1, 1, 2, 4)))  # 4 packets in 4 ms
    s = load_scenario(_file_scenario(tmp_path, f'path = "{name}"'))
    assert s.uplink.duration_s == 0.004
    assert s.uplink.mean_mbps == pytest.approx(4 * 1500 * 8 / 4e3)


def test_explicit_trace_format_wins(tmp_path: Path):
    (tmp_path / "odd.up").write_text("0 4\n1 8\n")
    s = load_scenario(_file_scenario(tmp_path, 'path = "odd.up"\nformat = "cooked"'))
    assert s.uplink.rate_at(1.5) == 8.0


def test_file_trace_duration_takes_the_first_seconds(tmp_path: Path):
    (tmp_path / "up.csv").write_text("time_s,mbps\n0,4\n2,8\n3,1\n")
    s = load_scenario(_file_scenario(tmp_path, 'path = "up.csv"\nduration_s = 2.5'))
    assert s.uplink.duration_s == 2.5 and s.uplink.rate_at(2.2) == 8.0
    assert s.uplink.rate_at(2.6) == 4.0  # then it loops


@pytest.mark.parametrize(
    ("files", "uplink", "error", "message"),
    [
        (
            {"up.log": "1\n2\n"},
            'path = "up.log"\nformat = "xyz"',
            ScenarioValueError,
            f"uplink.format: unknown trace format 'xyz'; one of {FORMATS}",
        ),
        (
            {"up.log": "1\n2\n"},
            'path = "up.log"\nformat = 3',
            ScenarioValueError,
            f"uplink.format: unknown trace format 3; one of {FORMATS}",
        ),
        (
            {"notes.txt": "hello\n"},
            'path = "notes.txt"',
            ScenarioValueError,
            "uplink.format: cannot tell the format of notes.txt from its name or its first "
            f"lines; set format = one of {FORMATS}",
        ),
        (
            {},
            'path = "gone.up"',
            ScenarioFileError,
            "uplink.path: no such trace file: {dir}/gone.up",
        ),
        (
            {"bad.up": "1\n2\nx\n"},
            'path = "bad.up"',
            ScenarioValueError,
            "uplink.path: {dir}/bad.up:3: expected a non-negative integer millisecond, got 'x'",
        ),
        (
            {"bin.log": b"\xff\xfe\x00"},
            'path = "bin.log"',
            ScenarioValueError,
            "uplink.path: {dir}/bin.log: cannot read trace file: 'utf-8' codec can't decode",
        ),
        (
            {"up.up": "1\n2\n"},
            'path = "up.up"\nfmt = "mahimahi"',
            ScenarioKeyError,
            "uplink.fmt: unknown key",
        ),
    ],
)
def test_trace_file_errors_name_the_scenario_key(
    tmp_path: Path, files: dict[str, Any], uplink: str, error: type, message: str
):
    for name, content in files.items():
        target = tmp_path / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    path = _file_scenario(tmp_path, uplink)
    with pytest.raises(error) as info:
        load_scenario(path)
    text = str(info.value)
    assert text.startswith(f"{path}: " + message.format(dir=tmp_path)), text
    assert "\n" not in text and "fmt=" not in text


def test_recorded_mahimahi_pair_loads_without_format(tmp_path: Path):
    up, down = CELLULAR / "TMobile-UMTS-driving.up", CELLULAR / "TMobile-UMTS-driving.down"
    if not (up.is_file() and down.is_file()):
        pytest.skip(f"recorded traces {up} / {down} are absent (the shared folder is not here)")
    path = tmp_path / "umts.toml"
    path.write_text(
        'model = "echo"\nbranches = ["local"]\nduration_s = 100\n'
        f'[uplink]\nkind = "file"\npath = "{up}"\nduration_s = 100\n'
        f'[downlink]\nkind = "file"\npath = "{down}"\nduration_s = 100\n'
        '[[policies]]\nkind = "local"\n'
    )
    s = load_scenario(path)
    assert s.uplink.duration_s == s.downlink.duration_s == 100.0
    _, up_mbps = s.uplink.mean_rates(1.0, 100.0)
    assert up_mbps[52:60].max() < 0.02 < up_mbps[:25].mean()  # the fade around 30-65 s


def test_device_slowdown_defaults_to_one_and_reads_a_number():
    assert scenario_from_dict(_doc()).device_slowdown == 1.0
    assert scenario_from_dict(_doc(device_slowdown=6)).device_slowdown == 6.0
    assert scenario_from_dict(_doc()).device_local_ms == 0.0  # off: the factor holds
    assert scenario_from_dict(_doc(device_local_ms=240)).device_local_ms == 240.0


def test_video_clips_cut_a_client_video_into_scenes():
    from splitedge.simulations.runner import synthetic_videos

    doc = _doc(clients=2)
    doc["video"] = {"width": 96, "height": 80, "frames": 6, "clip_frames": 3, "seed": 5}
    scenario = scenario_from_dict(doc)
    assert scenario.video.clip_frames == 3
    a, b = synthetic_videos(scenario)
    assert len(a) == len(b) == 6
    # A scene cut: a new backdrop, far more change than between frames of one scene.
    step = [
        float(np.abs(x.image.astype(int) - y.image.astype(int)).mean())
        for x, y in itertools.pairwise(a)
    ]
    assert step[2] > 2 * max(step[0], step[1], step[3], step[4])
    assert not np.array_equal(a[0].image, b[0].image)  # each client its own scenes
