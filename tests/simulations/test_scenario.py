"""Scenario files: the examples load, and each kind of bad input gets a precise one-line error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    ],
)
def test_bad_values_name_the_key(changes: dict[str, Any], error: type, message: str):
    with pytest.raises(error) as info:
        scenario_from_dict(_doc(**changes), source="s.toml")
    text = str(info.value)
    assert text.startswith("s.toml: ") and message in text, text
    assert "\n" not in text


def test_file_errors(tmp_path: Path):
    with pytest.raises(ScenarioFileError, match="cannot read scenario file"):
        load_scenario(tmp_path / "missing.toml")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ScenarioFileError, match="unknown scenario file type"):
        load_scenario(tmp_path / "s.json")
    (tmp_path / "bad.toml").write_text("model = \n")
    with pytest.raises(ScenarioFileError, match=r"bad\.toml: does not parse"):
        load_scenario(tmp_path / "bad.toml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ScenarioFileError, match=r"bad\.yaml: does not parse"):
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
