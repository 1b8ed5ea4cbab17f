"""The adaptive session times its tracker before the first frame, beside the device's own
model, and the scheduler keeps room for that time when the tracker answers after a wait."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from splitedge.mobile_client import Client
from splitedge.mobile_client.adaptive import AdaptiveSession
from splitedge.mobile_client.scheduler import Scheduler
from splitedge.mobile_client.tracker import BoxTracker

from .test_scheduler import LOCAL, OFFLOAD, entry, profile

EVERY4 = entry("local", "local", head_ms=(50.0, 100.0), accuracy=0.4, interval=4)


class _Device:
    """The device's own model, 0.1 s a run; says whether one is running now."""

    has_local = True

    def __init__(self) -> None:
        self.running = threading.Event()
        self.runs = 0

    def local(self, image: np.ndarray) -> None:
        self.runs += 1
        self.running.set()
        time.sleep(0.1)
        self.running.clear()


class _SlowTracker(BoxTracker):
    """Updates take at least 8 ms (a slower device's); records whether the model ran."""

    def __init__(self, device: _Device) -> None:
        super().__init__()
        self.device = device
        self.beside: list[bool] = []

    def update(self, image: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = super().update(image)
        self.beside.append(self.device.running.is_set())
        time.sleep(max(0.0, 0.008 - (time.perf_counter() - start)))
        return out


def _image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)


async def test_the_tracker_is_timed_beside_the_devices_model_before_the_first_frame() -> None:
    device = _Device()
    tracker = _SlowTracker(device)
    sched = Scheduler(profile(LOCAL, EVERY4, OFFLOAD), 200.0, frame_period_ms=200.0)
    session = AdaptiveSession(Client("127.0.0.1:1", "m", backend=device), sched, tracker=tracker)  # type: ignore[arg-type]
    profiled = sched.fallback_ms()[1]
    ms = await session.time_tracker(_image())
    assert ms is not None and ms >= 8.0 > profiled
    assert device.runs == 1 and any(tracker.beside)  # timed while the model ran
    # The first run replaces the profiled prior; the wait keeps 1.5x of it for the tracker.
    assert sched.fallback_ms()[1] == pytest.approx(ms)
    assert sched.background_wait_ms() == pytest.approx(200.0 - (1.5 * ms + 2.0))
    assert not session._can_track()  # nothing to follow until a detection gives boxes


async def test_timing_the_tracker_needs_no_model_and_no_tracker_is_no_timing() -> None:
    device = _Device()
    device.has_local = False  # a device without a model of its own (a thin client)
    sched = Scheduler(profile(LOCAL, EVERY4, OFFLOAD), 200.0)
    session = AdaptiveSession(
        Client("127.0.0.1:1", "m", backend=device), sched, tracker=BoxTracker()
    )  # type: ignore[arg-type]
    assert (await session.time_tracker(_image())) is not None and device.runs == 0
    alone = Scheduler(profile(LOCAL, OFFLOAD), 200.0)  # no interval > 1: no tracker
    plain = AdaptiveSession(Client("127.0.0.1:1", "m", backend=device), alone)  # type: ignore[arg-type]
    assert plain.tracker is None and await plain.time_tracker(_image()) is None
    assert alone.fallback_ms()[1] == pytest.approx(
        Scheduler(profile(LOCAL, OFFLOAD), 200.0).fallback_ms()[1]
    )
