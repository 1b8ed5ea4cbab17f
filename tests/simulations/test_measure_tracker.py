"""The cost profile's tracker: timed alone and beside the device's own model, on the boxes
that model finds (what the DES's adaptive sessions draw tracked frames' times from)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from splitedge.mobile_client.tracker import BoxTracker
from splitedge.models.types import Detections
from splitedge.simulations.profiles import measure_tracker


class _Device:
    """The device's own model: 0.1 s a run, five boxes; says whether it is running."""

    has_local = True

    def __init__(self) -> None:
        self.running = threading.Event()
        self.runs = 0

    def local(self, image: np.ndarray) -> Detections:
        self.runs += 1
        self.running.set()
        time.sleep(0.1)
        self.running.clear()
        boxes = np.array([[10 + 40 * i, 20, 40 + 40 * i, 60] for i in range(5)], np.float32)
        return Detections(boxes, np.full(5, 0.9, np.float32), np.zeros(5, np.int64))


class _Recording(BoxTracker):
    """Records the boxes it is started on and whether the model ran as each update began."""

    def __init__(self, device: _Device | None) -> None:
        super().__init__()
        self.device = device
        self.started_on: list[int] = []
        self.beside: list[bool] = []

    def init(self, image: np.ndarray, boxes: np.ndarray) -> None:
        self.started_on.append(len(boxes))
        super().init(image, boxes)

    def update(self, image: np.ndarray) -> np.ndarray:
        self.beside.append(self.device is not None and self.device.running.is_set())
        return super().update(image)


def _images(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(n)]


def test_the_tracker_is_timed_alone_then_beside_the_model_on_the_boxes_it_finds() -> None:
    device = _Device()
    tracker = _Recording(device)
    alone, busy = asyncio.run(measure_tracker(device, _images(), updates=6, tracker=tracker))
    assert len(alone) == len(busy) == 6
    assert all(t > 0 for t in alone + busy)
    assert set(tracker.started_on) == {5}  # the model's own boxes, not the grid
    # One untimed round, six alone (the model idle), then six while it runs.
    assert tracker.beside == [False] * 7 + [True] * 6


def test_without_a_local_model_the_tracker_is_timed_alone_on_a_grid() -> None:
    class Remote:
        has_local = False

    tracker = _Recording(None)
    alone, busy = asyncio.run(
        measure_tracker(Remote(), _images(), updates=4, boxes=9, tracker=tracker)
    )
    assert len(alone) == 4 and busy == []
    assert set(tracker.started_on) == {9}
    with pytest.raises(ValueError, match="updates >= 1"):
        asyncio.run(measure_tracker(Remote(), _images(), updates=0))
