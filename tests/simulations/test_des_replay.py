"""des_adaptive.replayed_map50: a run's rows scored with the real path's boxes on its frames."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from splitedge.models.types import Detections
from splitedge.simulations.des_adaptive import replay_content, replayed_map50
from splitedge.simulations.report import FrameRow


class _Validator:
    """Each frame's detections: one box whose x is 100 x the config's id + the frame."""

    def __init__(self, n: int) -> None:
        self.video = SimpleNamespace(frames=[np.full((4, 4), i, np.uint8) for i in range(n)])
        self.detected: list[tuple[str, int]] = []
        self.scored: dict[int, Detections] = {}

    def detect(self, config: str, index: int) -> Detections:
        self.detected.append((config, index))
        x = 100.0 * len(config) + index
        return Detections(
            np.array([[x, 0, x + 1, 1]], np.float32), np.array([0.9], np.float32),
            np.array([1], np.int64),
        )  # fmt: skip

    def score(self, predictions: dict[int, Detections]) -> float:
        self.scored = dict(predictions)
        return 0.5


class _Tracker:
    """Moves the boxes 1 px in y per update; records which frames it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.boxes = np.zeros((0, 4), np.float32)

    def init(self, frame: np.ndarray, boxes: np.ndarray) -> None:
        self.calls.append(("init", int(frame[0, 0])))
        self.boxes = boxes.copy()

    def update(self, frame: np.ndarray) -> np.ndarray:
        self.calls.append(("update", int(frame[0, 0])))
        self.boxes[:, [1, 3]] += 1
        return self.boxes


def _row(k: int, candidate: str, source: str = "edge", reason: str = "", age: int = 0):
    return FrameRow("adaptive", 0, k, 0.2 * k, 1.0, candidate, source, reason, 5.0, track_age=age)


CONFIGS = {"local": "L", "offload-jpeg90": "JPEG", "bottleneck-12-w0.5-4bit/4bit": "CODE"}


def test_detections_fallbacks_and_tracked_frames_get_the_real_paths_boxes():
    validator, tracker = _Validator(8), _Tracker()
    rows = [
        _row(0, "offload-jpeg90"),  # a detection at the edge
        _row(1, "", "dropped", "busy", -1),  # no answer: left out
        _row(2, "offload-jpeg90", "local", "deadline"),  # the device's model answered
        _row(3, "local/k4", "local", "", 1),  # background detection of frame 2 not done
        _row(4, "local/k4+track", "local", "", 2),
        _row(5, "local/k4+track", "local", "", 1),  # frame 4's detection restarted it
        _row(6, "bottleneck-12-w0.5-4bit/4bit/k4", "edge"),
        # An edge frame that missed its deadline, the tracker answering with the boxes of
        # frame 5's background detection (local, recorded under frame 5's tracked row).
        _row(7, "offload-jpeg90", "local", "deadline", 2),
    ]
    assert replayed_map50(rows, validator, CONFIGS, tracker_factory=lambda: tracker) == 0.5
    assert sorted(validator.scored) == [0, 2, 3, 4, 5, 6, 7]
    # The fallback ran the local model, the tracked frames carried frame 2's then frame
    # 4's local boxes, the split frame its own code's.
    assert ("L", 2) in validator.detected and ("L", 4) in validator.detected
    assert ("CODE", 6) in validator.detected
    assert tracker.calls == [
        ("init", 0), ("init", 2), ("update", 3), ("update", 4),
        ("init", 4), ("update", 5), ("init", 6), ("init", 5), ("update", 7),
    ]  # fmt: skip
    assert ("L", 5) in validator.detected and ("JPEG", 5) not in validator.detected
    x_local = 100.0 * len("L")
    assert validator.scored[4].boxes[0].tolist() == [x_local + 2, 2, x_local + 3, 3]
    assert validator.scored[5].boxes[0].tolist() == [x_local + 4, 1, x_local + 5, 2]


def test_a_row_of_an_unknown_branch_is_a_precise_error():
    with pytest.raises(KeyError, match="no branch config for row candidate 'offload-jpeg50'"):
        replayed_map50([_row(0, "offload-jpeg50")], _Validator(2), CONFIGS)


def test_no_answer_is_nan():
    assert np.isnan(replayed_map50([_row(0, "", "dropped", "busy", -1)], _Validator(2), CONFIGS))


def test_replay_content_gives_the_branchs_boxes_on_frames_the_video_has():
    validator = _Validator(3)
    content = replay_content(validator, CONFIGS)
    assert content(2, "offload-jpeg90").boxes[0, 0] == 100.0 * len("JPEG") + 2
    assert validator.detected == [("JPEG", 2)]
    # A label no branch config covers, or a frame past the video: nothing, not an error.
    assert content(1, "split@nope") is None
    assert content(3, "local") is None and content(-1, "local") is None
    assert validator.detected == [("JPEG", 2)]


def test_replay_content_moves_a_detections_boxes_to_the_tracked_frames():
    validator, tracker = _Validator(8), _Tracker()
    content = replay_content(validator, CONFIGS, tracker_factory=lambda: tracker)
    x_jpeg, x_local = 100.0 * len("JPEG"), 100.0 * len("L")
    assert content(0, "offload-jpeg90", 0).boxes[0, 0] == x_jpeg  # a detection at the edge
    # Tracked frames: frame 0's JPEG boxes (the branch that detected there, not the
    # label's), moved by one update per frame.
    assert content(1, "local", 1).boxes[0].tolist() == [x_jpeg, 1, x_jpeg + 1, 2]
    assert content(2, "local", 2).boxes[0].tolist() == [x_jpeg, 2, x_jpeg + 1, 3]
    # A background detection of frame 2 ends: the next tracked frame starts from its boxes.
    assert content(2, "local", 0).boxes[0, 0] == x_local + 2
    assert content(4, "local", 2).boxes[0].tolist() == [x_local + 2, 1, x_local + 3, 2]
    # Boxes from a frame this replay never saw detected: the label's own branch.
    assert content(6, "offload-jpeg90", 1).boxes[0, 0] == x_jpeg + 5
    assert tracker.calls == [
        ("init", 0), ("update", 1), ("update", 2), ("init", 2), ("update", 4),
        ("init", 5), ("update", 6),
    ]  # fmt: skip
    # Scores and labels are the detection's.
    tracked = content(7, "offload-jpeg90", 2)
    assert tracked.scores.tolist() == [pytest.approx(0.9)] and tracked.labels.tolist() == [1]
    # Nothing for a label no branch covers (its base unseen) or a frame past the video.
    assert content(7, "split@nope", 1) is None and content(9, "local", 1) is None
