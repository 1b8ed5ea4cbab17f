"""A profile's per-branch accuracy is what a real run scores on the same frames.

Issue 12: in a real run (``splitedge-sim run``, the runner's video: 16 frames of one
scene, seed 0) the GHND student's ``bottleneck-12-w0.5-4bit`` code scored mAP@.5
0.092 where its profile said 0.395. The path was not at fault: scored on the
runner's own frames, the profile's validator gives the run's number exactly (0.099
on those 16 frames); the profile's 0.395 is an average over 32 other scenes, and this
scene's defocus blur is the student's weak spot. So the profile command must be able
to score the frames a run plays (``--accuracy-seed``, ``--accuracy-clip-frames``,
recorded in the profile), and on those frames its numbers must be the real
client -> codec -> edge -> tail path's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from splitedge.mobile_client import CameraFrame, Client
from splitedge.mobile_client.cli import add_profile_parser
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.profile import AccuracyVideo, load_profile
from splitedge.simulations.runner import _map50, synthetic_videos
from splitedge.simulations.scenario import scenario_from_dict

pytestmark = pytest.mark.integration

MODEL = "zoo:ghnd-frcnn-small-c12"
FRAMES = 6  # one scene, as the runner plays it (seed 0: the defocused scene)
BRANCHES = {"bottleneck-12-w0.5-4bit": "4b/w0.5", "offload-jpeg90": "0b/w1"}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _runner_frames() -> list:
    scenario = scenario_from_dict(
        {
            "name": "same-frames",
            "model": MODEL,
            "branches": list(BRANCHES),
            "uplink": {"kind": "constant", "rate_mbps": 5},
            "policies": [{"kind": "offload"}],
            "video": {"width": 320, "height": 240, "frames": FRAMES, "seed": 0},
        }
    )
    (video,) = synthetic_videos(scenario)
    return video


def _profile(path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_profile_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            *("profile", "--model", MODEL, "--output", str(path), "--no-progress"),
            *("--branches", ",".join(BRANCHES), "--bits", "branch", "--size", "320x240"),
            *("--frames", "1", "--levels", "0", "--accuracy-frames", str(FRAMES)),
            *("--accuracy-seed", "0", "--accuracy-clip-frames", str(FRAMES)),
        ]
    )
    assert args.func(args) == 0


async def test_profile_accuracy_equals_a_real_edge_run_on_the_runners_frames(
    edge_factory, tmp_path: Path
) -> None:
    _profile(tmp_path / "profile.json")
    profile = load_profile(tmp_path / "profile.json")
    assert profile.accuracy_video == AccuracyVideo(0, FRAMES, FRAMES, 320, 240, "mAP50")

    video = _runner_frames()
    edge = edge_factory("--model", MODEL)
    backend = TorchHeadBackend(MODEL)
    real = {}
    async with Client(edge.address, MODEL, backend=backend, deadline_ms=0) as client:
        for branch in BRANCHES:
            scored = []
            for i, sample in enumerate(video):
                outcome = await client.submit(CameraFrame(i, sample.image, 0), branch)
                assert outcome.source == "edge", outcome.reason
                scored.append((sample, outcome.prediction, True))
            real[branch] = _map50(scored)  # the runner's own mAP@.5
    for branch, middle in BRANCHES.items():
        entry = profile.entry(f"{branch}/{middle}/native/k1")
        assert entry.accuracy == pytest.approx(real[branch], abs=1e-3), (branch, real)
