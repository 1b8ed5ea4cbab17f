"""Scenario files: the ``adaptive`` policy (the device's scheduler over a scheduler profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splitedge.mobile_client.profile import (
    BranchConfig,
    BranchProfile,
    Profile,
    Quantiles,
    save_profile,
)
from splitedge.simulations.scenario import (
    PolicyConfig,
    ScenarioFileError,
    ScenarioKeyError,
    ScenarioValueError,
    adaptive_branches,
    load_scenario,
    scenario_from_dict,
)

REPO = Path(__file__).parents[2]


def _entry(branch: str, kind: str, accuracy: float | None, interval: int = 1) -> BranchProfile:
    q = Quantiles(5.0, 5.0, 6.0)
    return BranchProfile(
        config=BranchConfig(branch, 0, 1.0, 0, interval),
        kind=kind,
        load_group="echo",
        head_latency_ms={0: q},
        bytes_per_frame=Quantiles(2000.0, 2000.0, 2100.0)
        if kind != "local"
        else Quantiles(0, 0, 0),
        accuracy=accuracy,
    )


def _profile(
    path: Path, accuracy: float | None = 0.7, branches=("offload-jpeg90", "local")
) -> Path:
    kinds = {"local": "local", "split@x": "split"}
    entries = [_entry(b, kinds.get(b, "offload"), accuracy) for b in branches]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_profile(Profile("echo", "test", (0,), entries, tracker_latency_ms={0: 1.0}), path)
    return path


def _doc(**policy: Any) -> dict[str, Any]:
    return {
        "model": "echo",
        "branches": ["offload-jpeg90", "local"],
        "uplink": {"kind": "constant", "rate_mbps": 5},
        "policies": [{"kind": "adaptive", **policy}, {"kind": "local"}],
    }


def test_adaptive_policy_reads_its_profile_relative_to_the_scenario(tmp_path: Path):
    _profile(tmp_path / "profiles" / "echo.json")
    scenario_dir = tmp_path / "scenarios"
    scenario_dir.mkdir()
    path = scenario_dir / "a.toml"
    path.write_text(
        'model = "echo"\nbranches = ["offload-jpeg90", "local"]\n[uplink]\nkind = "constant"\n'
        'rate_mbps = 5\n[[policies]]\nkind = "adaptive"\nprofile = "../profiles/echo.json"\n'
        "latency_weight = 0.5\n"
        '[[policies]]\nkind = "adaptive"\nname = "edge-only"\nprofile = "../profiles/echo.json"\n'
        'branches = ["offload-jpeg90"]\n'
    )
    scenario = load_scenario(path)
    first, second = scenario.policies
    assert (first.kind, first.name, first.latency_weight) == ("adaptive", "adaptive", 0.5)
    assert first.profile is not None and first.profile.resolve() == (
        tmp_path / "profiles" / "echo.json"
    )
    assert first.scheduler_profile is not None
    assert [e.config.branch for e in first.scheduler_profile.entries] == ["offload-jpeg90", "local"]
    assert first.branches == ()
    assert (second.name, second.latency_weight, second.branches) == (
        "edge-only",
        None,
        ("offload-jpeg90",),
    )


def test_policy_config_stays_backwards_compatible():
    old = PolicyConfig("fixed", "fixed:x", "split@x/4")
    assert (old.profile, old.latency_weight, old.branches, old.scheduler_profile) == (
        None,
        None,
        (),
        None,
    )
    assert old == PolicyConfig("fixed", "fixed:x", "split@x/4") and hash(old)


def test_the_example_adaptive_scenario_loads_the_repository_profile():
    scenario = load_scenario(REPO / "configs" / "scenarios" / "adaptive-step.toml")
    adaptive = [p for p in scenario.policies if p.kind == "adaptive"]
    assert adaptive and all(p.scheduler_profile is not None for p in adaptive)
    assert adaptive[0].profile is not None and adaptive[0].profile.is_file()
    assert scenario.uplink.rate_at(1.0) > 10 > scenario.uplink.rate_at(6.0)


@pytest.mark.parametrize(
    ("policy", "setup", "error", "message"),
    [
        ({}, None, ScenarioKeyError, "policies[0].profile: required for kind adaptive"),
        (
            {"profile": "nope.json"},
            None,
            ScenarioFileError,
            "policies[0].profile: no such scheduler profile file: ",
        ),
        ({"profile": 3}, None, ScenarioValueError, "policies[0].profile: expected a non-empty"),
        ({"profile": "p.json"}, "junk", ScenarioValueError, "policies[0].profile: "),
        (
            {"profile": "p.json"},
            "no-accuracy",
            ScenarioValueError,
            "has no accuracy for 2 of 2 entries (offload-jpeg90/0b/w1/native/k1, local/",
        ),
        (
            {"profile": "p.json", "latency_weight": -1},
            "ok",
            ScenarioValueError,
            "policies[0].latency_weight: expected a number >= 0, got -1",
        ),
        (
            {"profile": "p.json", "branches": ["local", "split@y"]},
            "ok",
            ScenarioValueError,
            "policies[0].branches[1]: 'split@y' is not in the profile; it has: local, offload",
        ),
        (
            {"profile": "p.json", "branches": []},
            "ok",
            ScenarioValueError,
            "policies[0].branches: expected a non-empty list of branch names",
        ),
        (
            {"profile": "p.json", "branch": "local"},
            "ok",
            ScenarioValueError,
            "policies[0].branch: not used by kind adaptive",
        ),
        ({"profile": "p.json", "sla": 3}, "ok", ScenarioKeyError, "policies[0].sla: unknown key"),
    ],
)
def test_bad_adaptive_policies_get_one_precise_line(
    tmp_path: Path, policy: dict[str, Any], setup: str | None, error: type, message: str
):
    if setup == "junk":
        (tmp_path / "p.json").write_text("{not json")
    elif setup is not None:
        _profile(tmp_path / "p.json", accuracy=None if setup == "no-accuracy" else 0.6)
    with pytest.raises(error) as info:
        scenario_from_dict(_doc(**policy), source="s.toml", base_dir=tmp_path)
    text = str(info.value)
    assert text.startswith("s.toml: ") and message in text and "\n" not in text
    if setup == "junk":
        assert "p.json" in text and "not JSON" in text


def test_profile_key_belongs_to_adaptive_only(tmp_path: Path):
    _profile(tmp_path / "p.json")
    doc = _doc(profile="p.json")
    doc["policies"][1]["profile"] = "p.json"
    with pytest.raises(ScenarioKeyError, match=r"policies\[1\]\.profile: unknown key"):
        scenario_from_dict(doc, source="s.toml", base_dir=tmp_path)


def test_adaptive_branches_keeps_what_the_model_serves(tmp_path: Path):
    _profile(tmp_path / "p.json", branches=("offload-jpeg90", "split@x", "local"))
    doc = _doc(profile="p.json")
    doc["policies"].append(
        {"kind": "adaptive", "name": "remote", "profile": "p.json", "branches": ["split@x"]}
    )
    scenario = scenario_from_dict(doc, source="s.toml", base_dir=tmp_path)
    every, _, remote = scenario.policies
    served = {"offload-jpeg90", "local", "split@x"}
    assert adaptive_branches(every, served, source="s.toml", model="echo") == served
    assert adaptive_branches(every, {"local", "other"}, source="s.toml", model="m") == {"local"}
    assert adaptive_branches(remote, served, source="s.toml", model="echo") == {"split@x"}
    with pytest.raises(ScenarioValueError) as info:
        adaptive_branches(remote, {"local", "offload-jpeg90"}, source="s.toml", model="echo")
    text = str(info.value)
    assert text.startswith("s.toml: policy 'remote': profile ") and "\n" not in text
    assert "has no branch model 'echo' serves (profile: split@x; model: local, offload" in text
