"""The tracker (template matching, the default, and optical flow) follows a moving
synthetic object, flags what it cannot follow and reports its cost."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.mobile_client.tracker import (
    METHODS,
    BoxTracker,
    TrackerError,
    box_iou,
    measure_tracker_ms,
)

H, W, SIDE = 120, 160, 24


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    background = (rng.random((H, W)) * 60 + 40).astype(np.uint8)
    texture = (rng.random((SIDE, SIDE)) * 255).astype(np.uint8)
    return background, texture


def _frame(background: np.ndarray, texture: np.ndarray, x: int, y: int) -> np.ndarray:
    f = background.copy()
    f[y : y + SIDE, x : x + SIDE] = texture
    return np.repeat(f[:, :, None], 3, axis=2)


@pytest.mark.parametrize("method", METHODS)
def test_tracker_follows_a_moving_object(method: str) -> None:
    background, texture = _scene()
    tracker = BoxTracker(method=method)
    tracker.init(_frame(background, texture, 20, 30), np.array([[20, 30, 20 + SIDE, 30 + SIDE]]))
    ious = []
    for i in range(1, 13):
        x, y = 20 + 4 * i, 30 + 2 * i
        boxes = tracker.update(_frame(background, texture, x, y))
        ious.append(box_iou(boxes[0], np.array([x, y, x + SIDE, y + SIDE])))
    assert min(ious) > 0.7, ious
    assert not tracker.lost[0]
    # Not moving the box at all would have lost the object: the tracker did work.
    assert box_iou(np.array([20, 30, 44, 54]), np.array([x, y, x + SIDE, y + SIDE])) < 0.1
    assert tracker.last_cost_ms > 0 and tracker.mean_cost_ms > 0


@pytest.mark.parametrize("method", METHODS)
def test_a_box_without_texture_is_flagged_lost_when_it_cannot_be_followed(method: str) -> None:
    flat = np.full((H, W, 3), 90, np.uint8)
    tracker = BoxTracker(method=method)
    tracker.init(flat, np.array([[10, 10, 40, 40]]))
    tracker.update(np.full((H, W, 3), 200, np.uint8))  # the whole frame changed
    assert tracker.lost[0]


def test_tracker_cost_is_measured() -> None:
    background, texture = _scene(1)
    frames = [_frame(background, texture, 20 + 3 * i, 30) for i in range(4)]
    cost = measure_tracker_ms(frames, np.array([[20, 30, 44, 54]]))
    assert 0 < cost < 100


def test_template_follows_a_small_fast_object_through_sensor_noise() -> None:
    # An 8 px flat square moving 6 px a frame (the synthetic video's fastest) on a
    # textured background, fresh noise on every frame: the padded patch ends on it.
    rng = np.random.default_rng(3)
    background = (rng.random((H, W)) * 120 + 60).astype(np.float32)
    side, speed = 8, 6

    def frame(i: int) -> np.ndarray:
        f = background.copy()
        f[50 : 50 + side, 30 + speed * i : 30 + speed * i + side] = 10
        f += np.random.default_rng(100 + i).normal(0, 8, f.shape)
        return np.repeat(np.clip(f, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)

    tracker = BoxTracker()
    assert tracker.method == "template"  # the default
    tracker.init(frame(0), np.array([[30, 50, 30 + side, 50 + side]], np.float32))
    for i in range(1, 6):
        boxes = tracker.update(frame(i))
        x = 30 + speed * i
        assert box_iou(boxes[0], np.array([x, 50, x + side, 50 + side])) > 0.7, (i, boxes[0])
    assert not tracker.lost[0]


def test_a_template_box_that_leaves_its_search_window_is_flagged_lost_and_stays() -> None:
    background, texture = _scene(2)
    tracker = BoxTracker(search=0.02)  # 4 px of the 200 px diagonal
    tracker.init(_frame(background, texture, 20, 30), np.array([[20, 30, 20 + SIDE, 30 + SIDE]]))
    boxes = tracker.update(_frame(background, texture, 80, 30))  # a 60 px jump
    assert tracker.lost[0]
    assert np.allclose(boxes[0], [20, 30, 20 + SIDE, 30 + SIDE])  # left where it was


def test_tracker_rejects_bad_input() -> None:
    for bad, match in (
        ({"method": "kcf"}, "method must be one of template, flow"),
        ({"scale": 0.0}, "scale"),
        ({"pad": -0.1}, "pad"),
        ({"search": 0.0}, "search"),
        ({"min_match": 2.0}, "min_match"),
    ):
        with pytest.raises(TrackerError, match=match):
            BoxTracker(**bad)
    tracker = BoxTracker()
    with pytest.raises(TrackerError, match="before update"):
        tracker.update(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(TrackerError, match="HxWx3"):
        tracker.init(np.zeros((H, W, 4), np.uint8), np.zeros((0, 4)))
    with pytest.raises(TrackerError, match=r"\(N, 4\)"):
        tracker.init(np.zeros((H, W, 3), np.uint8), np.zeros((2, 3)))
    tracker.init(np.zeros((H, W, 3), np.uint8), np.zeros((0, 4)))
    with pytest.raises(TrackerError, match="frame size changed"):
        tracker.update(np.zeros((H // 2, W, 3), np.uint8))
    with pytest.raises(TrackerError, match="two frames"):
        measure_tracker_ms([np.zeros((H, W, 3), np.uint8)], np.zeros((0, 4)))
