"""``splitedge-sim des`` runs adaptive policies (no longer skips them) and refuses bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from splitedge.mobile_client.profile import (
    BranchConfig,
    BranchProfile,
    Profile,
    Quantiles,
    save_profile,
)
from splitedge.simulations.cli import main
from splitedge.simulations.profiles import CandidateProfile, CostProfile


def _scheduler_profile(path: Path) -> Path:
    def entry(branch: str, kind: str, head_ms: float, size: float, acc: float, k: int):
        return BranchProfile(
            config=BranchConfig(branch, 0, 1.0, 0, k),
            kind=kind,
            load_group="g",
            head_latency_ms={0: Quantiles(head_ms, head_ms, 1.2 * head_ms)},
            bytes_per_frame=Quantiles(size, size, size),
            tail_latency_ms={} if kind == "local" else {1: 10.0},
            accuracy=acc if k == 1 else acc - 0.05,
        )

    entries = [entry("offload-jpeg90", "offload", 2.0, 9000.0, 0.6, k) for k in (1, 4)] + [
        entry("local", "local", 40.0, 0.0, 0.5, k) for k in (1, 4)
    ]
    save_profile(Profile("echo", "test", (0,), entries, tracker_latency_ms={0: 2.0}), path)
    return path


def _cost_profile(path: Path) -> Path:
    offload = CandidateProfile(
        "offload-jpeg90", "offload-jpeg90", None, True, 3.0, payload_bytes=8800,
        uplink_wire_bytes=9000, downlink_wire_bytes=200, tail_ms_by_batch={1: 10.0},
    )  # fmt: skip
    local = CandidateProfile("local", "local", None, False, 30.0)
    return CostProfile("echo", {"offload-jpeg90": offload, "local": local}, overhead_ms=1.0).save(
        path
    )


def _scenario(tmp_path: Path, profile: str = "sched.json", slowdown: float = 1.0) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "des-cli"\nmodel = "echo"\nbranches = ["offload-jpeg90", "local"]\n'
        f"duration_s = 6\nfps = 5\nsla_ms = 150\ndevice_slowdown = {slowdown}\n"
        '[uplink]\nkind = "steps"\nsteps = [[0, 20], [3, 0.3]]\n'
        '[downlink]\nkind = "constant"\nrate_mbps = 20\n'
        f'[[policies]]\nkind = "adaptive"\nprofile = "{profile}"\n'
        '[[policies]]\nkind = "local"\n'
    )
    return path


def test_des_runs_adaptive_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _scheduler_profile(tmp_path / "sched.json")
    cost = _cost_profile(tmp_path / "cost.json")
    code = main(["des", str(_scenario(tmp_path)), "--profile", str(cost), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipping" not in err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if " N=1 " in line}
    assert set(rows) == {"adaptive", "local"}
    assert rows["adaptive"][2] == "30"  # 6 s x 5 fps, every frame in the table
    assert "predicted from its scheduler profile's per-entry accuracies" in out


def test_des_slows_local_costs_by_the_device_slowdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """local: the given (measured) 30 ms as it is; adaptive's costs: the profile x 4."""
    _scheduler_profile(tmp_path / "sched.json")
    cost = _cost_profile(tmp_path / "cost.json")
    scenario = _scenario(tmp_path, slowdown=4.0)
    assert main(["des", str(scenario), "--profile", str(cost), "--no-progress"]) == 0
    out = capsys.readouterr().out
    p50 = {line.split()[0]: float(line.split()[4]) for line in out.splitlines() if " N=1 " in line}
    assert p50["local"] == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", r"policies\[0\]\.profile: no such scheduler profile file: .*nope\.json$"),
        ("junk", r"policies\[0\]\.profile: .*"),
    ],
)
def test_a_broken_adaptive_profile_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
):
    cost = _cost_profile(tmp_path / "cost.json")
    name = "nope.json"
    if setup == "junk":
        name = "junk.json"
        (tmp_path / name).write_text("{not json")
    code = main(["des", str(_scenario(tmp_path, name)), "--profile", str(cost), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("splitedge-sim: error: ")
    assert re.search(message, lines[0])


def test_a_cost_profile_that_is_not_one_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    _scheduler_profile(tmp_path / "sched.json")
    bad = tmp_path / "cost.json"
    bad.write_text("[]")
    code = main(["des", str(_scenario(tmp_path)), "--profile", str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and "cost.json: not a splitedge profile" in err
