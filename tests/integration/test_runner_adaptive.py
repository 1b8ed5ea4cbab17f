"""The adaptive scheduler as a policy of a real scenario run (`run_scenario`): a real edge
process, a trace-driven emulated link, the device's AdaptiveSession per client."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from splitedge.mobile_client.profile import (
    AccuracyRecord,
    BranchConfig,
    save_profile,
)
from splitedge.simulations.runner import run_scenario, synthetic_videos
from splitedge.simulations.scenario import ScenarioError, load_scenario
from splitedge.training.profiling import measure_profile

pytestmark = pytest.mark.integration

# Accuracy a validation set would give (echo predicts nothing of its own): the edge's
# model beats the device's. The remote entry detects every other frame (k2) and tracks
# in between; the device's runs on every frame.
ACCURACY = {"offload-jpeg90": 0.75, "local": 0.5}
DROP_S = 3.0

SCENARIO = f"""
name = "tiny-adaptive"
model = "echo"
model_options = {{ tail_delay_ms = 5 }}
branches = ["offload-jpeg90", "local"]
duration_s = {2 * DROP_S}
clients = 1
fps = 5
sla_ms = 100
delay_ms = 5
warmup_frames = 1
[uplink]
kind = "steps"
steps = [[0, 20], [{DROP_S}, 0.1]]
[downlink]
kind = "constant"
rate_mbps = 20
[video]
width = 160
height = 120
frames = 4
[[policies]]
kind = "adaptive"
profile = "echo-profile.json"
"""


def _write_profile(tmp_path: Path) -> Path:
    scenario = load_scenario(_scenario_file(tmp_path, profile=False))
    frames = [s.image for s in synthetic_videos(scenario)[0][:3]]
    profile = measure_profile(
        "echo",
        [BranchConfig("offload-jpeg90", detection_interval=2), BranchConfig("local")],
        frames,
        contention_levels=(0,),
        progress=False,
        validate=lambda c: AccuracyRecord(ACCURACY[c.branch]),
    )
    assert profile.tracker_latency_ms, "OpenCV is needed for the tracker"
    path = tmp_path / "echo-profile.json"
    save_profile(profile, path)
    return path


def _scenario_file(tmp_path: Path, *, profile: bool = True) -> Path:
    path = tmp_path / "tiny-adaptive.toml"
    text = SCENARIO
    if not profile:  # a stand-in policy, to read the scenario before the profile exists
        text = text.replace('kind = "adaptive"\nprofile = "echo-profile.json"', 'kind = "local"')
    path.write_text(text)
    return path


async def test_adaptive_policy_leaves_the_edge_after_the_uplink_drops(tmp_path: Path):
    _write_profile(tmp_path)
    scenario = load_scenario(_scenario_file(tmp_path))
    result = await run_scenario(scenario, tmp_path / "out")
    rows = [r for r in result.rows if r.policy == "adaptive"]
    assert sorted(r.frame_index for r in rows) == list(range(30))  # every camera frame, once
    before = [r for r in rows if r.t_s < DROP_S]
    after = [r for r in rows if r.t_s >= DROP_S]
    # Fast link: detections go to the edge every other frame, tracked on the device between.
    detected = [r for r in before if r.candidate == "offload-jpeg90/k2"]
    tracked = [r for r in rows if r.candidate.endswith("+track")]
    assert len(detected) >= 5 and all(r.source == "edge" for r in detected[1:])
    # In time, but a loaded test machine may make one late.
    assert sum(r.sla_met for r in detected[1:]) >= len(detected[1:]) - 1
    assert all(r.payload_bytes > 1000 for r in detected if r.source == "edge")
    assert len(tracked) >= 5
    for r in tracked:
        assert r.candidate == "offload-jpeg90/k2+track"
        assert (r.source, r.reason, r.payload_bytes) == ("local", "", 0)
        assert r.latency_ms > 0 and r.quality == r.quality  # scored like any answered frame
    # Slow link (0.1 Mbit/s: a JPEG takes longer than the SLA): it moves to the device and
    # stays there; only a probe now and then (at most one a second, and only once the
    # link has carried the earlier bytes) crosses the link, and falls back in time.
    moved = next(r for r in after if r.candidate == "local")
    assert moved.t_s < DROP_S + 2.0
    settled = [r for r in after if r.t_s > moved.t_s]
    assert len(settled) >= 5
    probes = [r for r in settled if r.candidate != "local"]
    assert len(probes) <= 1 + (settled[-1].t_s - settled[0].t_s)
    assert all(r.source == "local" for r in settled)
    assert sum(r.payload_bytes for r in settled) <= 7000 * len(probes)
    assert sum(r.sla_met for r in settled) >= len(settled) - 1
    summary = next(s for s in result.summaries if s.policy == "adaptive")
    assert summary.fallbacks == sum(r.source == "local" and r.reason != "" for r in rows)
    # The summary says how many frames went only to measure the link (those in a frame's
    # place among them), and its uplink holds the probes beside frames, which no row does.
    assert summary.probes >= len(probes)
    frames_mb = sum(r.payload_bytes for r in rows) / 1e6
    assert summary.uplink_mb == pytest.approx(frames_mb + summary.probe_mb)
    assert (tmp_path / "out" / "frames.csv").is_file()
    header = (tmp_path / "out" / "summary.txt").read_text().splitlines()[0].split()
    assert header[header.index("fallback") + 1] == "probes"


async def test_a_profile_without_a_branch_the_model_serves_is_refused(tmp_path: Path):
    path = _write_profile(tmp_path)
    text = path.read_text().replace('"offload-jpeg90"', '"offload-png"')  # echo has no PNG
    path.write_text(text)
    scenario = load_scenario(_scenario_file(tmp_path))
    assert scenario.policies[0].scheduler_profile is not None
    config = replace(scenario.policies[0], branches=("offload-png",))
    with pytest.raises(ScenarioError) as info:
        await run_scenario(replace(scenario, policies=(config,)))
    message = str(info.value)
    assert "policy 'adaptive'" in message and "has no branch model 'echo' serves" in message
    assert "(profile: offload-png; model: local, offload-jpeg90, split@x)" in message
    assert "\n" not in message
