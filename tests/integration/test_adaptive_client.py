"""The adaptive scheduler driving a real client through a trace-driven emulated link to a
real edge server process: it offloads while the link is fast, moves to the device when the
uplink collapses, tracks between detections, and the CLI runs it with --branch auto."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time

import numpy as np
import pytest

from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.adaptive import AdaptiveSession
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.profile import (
    AccuracyRecord,
    BranchConfig,
    save_profile,
)
from splitedge.mobile_client.scheduler import Scheduler
from splitedge.mobile_client.tracker import BoxTracker
from splitedge.models.types import Detections
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.traces import BandwidthTrace, constant
from splitedge.training.profiling import measure_profile

pytestmark = pytest.mark.integration

# Accuracy the validation set would give (echo has none of its own): offload best, local worst.
ACCURACY = {"offload-jpeg90": 0.8, "split@x": 0.7, "local": 0.5}


def _echo_profile(frames, intervals=(1,)):
    configs = [BranchConfig("offload-jpeg90", 0, 1.0, 0, k) for k in intervals] + [
        BranchConfig("local", 0, 1.0, 0, k) for k in intervals
    ]
    return measure_profile(
        "echo",
        configs,
        frames,
        contention_levels=(0,),
        progress=False,
        validate=lambda c: AccuracyRecord(ACCURACY[c.branch] - 0.05 * (c.detection_interval > 1)),
    )


def _echo_edge(edge_factory):  # type: ignore[no-untyped-def]
    """An echo edge, a profile of its branches and a fast (50 Mbps) link trace:
    (profile, (host, port), trace)."""
    frames = [f.image for f in open_source("synthetic", max_frames=4, size=(320, 240))]
    host, _, port = edge_factory("--model", "echo").address.rpartition(":")
    return _echo_profile(frames), (host, int(port)), constant(50.0, 60.0)


async def test_scheduler_leaves_the_edge_when_the_uplink_collapses(edge_factory):
    profile, edge, fast = _echo_edge(edge_factory)
    async with (
        EmulatedLink(edge, fast, fast, delay_ms=5.0) as link,
        Client(f"127.0.0.1:{link.port}", "echo", backend=TorchHeadBackend("echo")) as client,
    ):
        sched = Scheduler(profile, 150.0, min_period_frames=4)
        session = AdaptiveSession(client, sched, status_every_s=0.5)
        stream = open_source("synthetic", max_frames=40, size=(320, 240))
        before = [await session.process(next(stream)) for _ in range(15)]
        # ~30 kB JPEG frames at 0.2 Mbit/s take over a second: nothing remote fits.
        link.set_uplink(BandwidthTrace.from_steps([(0.0, 0.2)], 60.0))
        after = [await session.process(next(stream)) for _ in range(25)]
    assert all(o.source == "edge" for d, o in before[-5:])
    assert before[-1][0].branch == "offload-jpeg90"
    # It stays on the device; a small probe a second may still try the link (and, too
    # slow on it, falls back to the device too).
    chosen = [d for d, _ in after if d.reason != "probe"]
    assert chosen[-1].branch == "local"
    assert all(o.source == "local" for d, o in after[-5:])
    assert sched.switches >= 1
    moved = next(i for i, (d, _) in enumerate(after) if d.branch == "local")
    assert moved <= 6  # one slow frame (or its deadline) is enough to re-decide
    assert [o.frame_id for _, o in before + after] == list(range(40))


class _FirstPick(Scheduler):
    """A scheduler that records the round trip it knew at its first decision."""

    first_rtt_ms: float | None = None

    def pick(self, now_s=None):  # type: ignore[no-untyped-def]
        if self.first_rtt_ms is None:
            self.first_rtt_ms = self.rtt.mean_ms
        return super().pick(now_s)


async def test_the_first_frame_is_decided_on_a_measured_round_trip(edge_factory):
    # 60 ms each way: the scheduler's prior (20 ms) would send the first frame as a full
    # JPEG; the session's first Status RPC, waited for before the first frame, gives the
    # first decision the path's own round trip.
    profile, edge, fast = _echo_edge(edge_factory)
    for status_every_s, measured in ((5.0, True), (0.0, False)):
        async with (
            EmulatedLink(edge, fast, fast, delay_ms=60.0) as link,
            Client(f"127.0.0.1:{link.port}", "echo", backend=TorchHeadBackend("echo")) as client,
        ):
            sched = _FirstPick(profile, 150.0)
            prior_ms = sched.rtt.mean_ms
            session = AdaptiveSession(client, sched, status_every_s=status_every_s)
            stream = open_source("synthetic", max_frames=1, size=(320, 240))
            results = [r async for r in session.run(stream)]
        assert len(results) == 1 and sched.first_rtt_ms is not None
        if measured:
            assert sched.first_rtt_ms >= 120.0 > prior_ms
        else:  # no Status poll asked for: the prior, as before
            assert sched.first_rtt_ms == prior_ms


async def test_tracked_frames_stay_on_the_device(edge_factory):
    model = "zoo:teacher-frcnn-small"
    frames = [f.image for f in open_source("synthetic", max_frames=3, size=(320, 240), seed=2)]
    configs = [BranchConfig("offload-jpeg90", 0, 1.0, 0, 3)]
    profile = measure_profile(
        model, configs, frames, contention_levels=(0,), progress=False,
        validate=lambda c: AccuracyRecord(0.6),
    )  # fmt: skip
    edge = edge_factory("--model", model)
    async with Client(edge.address, model) as client:
        session = AdaptiveSession(client, Scheduler(profile, 2000.0), status_every_s=0)
        stream = open_source("synthetic", max_frames=9, size=(320, 240), seed=2)
        results = [r async for r in session.run(stream)]
    tracked = [(d, o) for d, o in results if d.track]
    detected = [(d, o) for d, o in results if not d.track]
    assert [d.track for d, _ in results] == [False, True, True] * 3
    for (_, det), group in zip(detected, [results[1:3], results[4:6], results[7:9]], strict=True):
        assert det.source == "edge" and isinstance(det.prediction, Detections)
        for _, o in group:
            assert (o.source, o.reason, o.payload_bytes) == ("local", "tracked", 0)
            assert o.timing.local_ms > 0
            assert len(o.prediction.boxes) == len(det.prediction.boxes)
            np.testing.assert_array_equal(o.prediction.labels, det.prediction.labels)
    assert any(len(o.prediction.boxes) > 0 for _, o in tracked)


def _client_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "splitedge.mobile_client.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_branch_auto(edge_factory, tmp_path):
    frames = [f.image for f in open_source("synthetic", max_frames=3, size=(160, 120))]
    path = tmp_path / "echo.json"
    save_profile(_echo_profile(frames, intervals=(1, 2)), path)
    edge = edge_factory("--model", "echo")
    out = tmp_path / "out.jsonl"
    done = _client_cli(
        "run", "--server", edge.address, "--model", "echo", "--branch", "auto",
        "--profile", str(path), "--sla-ms", "500", "--frames", "8", "--size", "160x120",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 8
    assert all(line["decision"]["key"].startswith(line["branch"]) for line in lines)
    assert lines[0]["decision"]["track"] is False and lines[0]["source"] == "edge"
    assert "switches" in done.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--branch auto needs --profile"),
        (("--profile", "/nonexistent.json"), "--profile:"),
        (("--profile", "PROFILE", "--sla-ms", "0"), "needs an SLA"),
        (("--profile", "PROFILE", "--latency-weight", "-1"), "--latency-weight must be >= 0"),
    ],
)
def test_cli_branch_auto_bad_input(extra, message, tmp_path):
    frames = [f.image for f in open_source("synthetic", max_frames=2, size=(64, 48))]
    path = tmp_path / "p.json"
    save_profile(_echo_profile(frames), path)
    extra = tuple(str(path) if e == "PROFILE" else e for e in extra)
    done = _client_cli(
        "run", "--server", "127.0.0.1:9", "--model", "echo", "--branch", "auto", *extra
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


class _SlowLocal(TorchHeadBackend):
    """A device whose own detector takes at least ``local_s`` (a Pi-class one), whatever
    this machine's speed: the run's work, then a sleep for the rest."""

    local_s = 0.6

    def local(self, image):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = super().local(image)
        time.sleep(max(0.0, self.local_s - (time.perf_counter() - start)))
        return out


async def test_a_device_slower_than_its_camera_tracks_while_it_detects(edge_factory):
    # The device's detector takes 0.6 s, the camera gives a frame every 0.2 s and the SLA
    # is 0.2 s. Once a detection has given boxes, the next detections go on in the
    # background: each frame is answered (the tracker's boxes, from the newest finished
    # detection), none waits for a detection past its SLA budget, and the finished
    # detections restart the tracker and reach the scheduler.
    model = "zoo:teacher-frcnn-small"
    frames = [f.image for f in open_source("synthetic", max_frames=3, size=(320, 240), seed=2)]
    configs = [BranchConfig("local", 0, 1.0, 0, 1)]
    profile = measure_profile(
        model, configs, frames, contention_levels=(0,), progress=False,
        validate=lambda c: AccuracyRecord(0.6),
    )  # fmt: skip
    assert profile.tracker_latency_ms  # the tracker's cost is measured with the profile
    edge = edge_factory("--model", model)
    backend = _SlowLocal(model)
    async with Client(edge.address, model, backend=backend) as client:
        sched = Scheduler(profile, 200.0)
        session = AdaptiveSession(client, sched, status_every_s=0, tracker=BoxTracker())
        profiled_ms, _ = sched.fallback_ms()
        stream = open_source("synthetic", max_frames=12, size=(320, 240), seed=2)
        results = [r async for r in session.run(stream, fps=5.0)]
    assert [o.frame_id for _, o in results] == list(range(12))  # every frame answered
    assert all(o.source == "local" for _, o in results)
    first, rest = results[0], results[1:]
    # Nothing to track yet: the first detection is waited for, its boxes start the tracker.
    assert not first[0].track and first[1].reason == "" and len(first[1].prediction.boxes)
    tracked = [(d, o) for d, o in rest if d.track]
    detected = [(d, o) for d, o in rest if not d.track]
    assert session.background_detections >= 2
    assert len(tracked) >= 2 * len(detected)  # a 0.6 s detection spans three frames
    for d, o in tracked:
        assert d.branch == "local" and o.reason == "tracked" and o.payload_bytes == 0
        assert o.timing.local_ms > 0 and o.timing.total_ms >= o.timing.local_ms
        assert set(o.prediction.labels.tolist()) <= set(first[1].prediction.labels.tolist())
    # Each answer records how old its boxes are: 0 for the frame's own detection, one
    # more per frame the tracker carries them, and no older once a background detection
    # ends and restarts the tracker on its own (older) frame.
    assert first[1].track_age == 0
    ages = [o.track_age for _, o in results]
    assert all(o.track_age >= 1 for _, o in tracked), ages
    steps = [b - a for a, b in itertools.pairwise(ages)]
    assert all(step <= 1 for step in steps), ages
    assert any(step <= 0 for step in steps), ages  # a restart, else ages only grow
    # The background detections' own times reached the scheduler: it knows the device is
    # slower than its profile says (no frame waited for them, so none is an SLA miss).
    local_ms, _ = sched.fallback_ms()
    assert local_ms > 2 * profiled_ms
    assert sched.violations <= 1  # only the first frame could have waited for the model
