"""benchmarks.tracker's measures on a small synthetic video, with ground-truth boxes as
the detections (no model): references and trackers rank as they must."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import tracker as bench
from splitedge.models.data import SceneConfig, VideoConfig, generate_clips
from splitedge.models.types import Detections
from splitedge.simulations.runner import _gt_boxes

CLIP = 12


@pytest.fixture(scope="module")
def video():
    scene = SceneConfig(width=160, height=120, min_object_px=8.0)
    samples = generate_clips(scene, VideoConfig(), 7, 2 * CLIP, CLIP)
    dets = []
    for s in samples:
        boxes = _gt_boxes(s).astype(np.float32)
        dets.append(
            Detections(boxes, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int64))
        )
    return samples, dets


def test_motion_perfect_keeps_every_object_that_stays_and_hold_loses_moving_ones(video):
    samples, dets = video
    perfect = bench.reference_recall(samples, dets, CLIP, perfect=True)
    hold = bench.reference_recall(samples, dets, CLIP, perfect=False)
    assert set(perfect) == set(bench.AGES)
    # Perfect boxes of objects present at t: only objects that enter later are missed.
    assert all(0.5 < perfect[a] <= 1.0 for a in bench.AGES), perfect
    assert all(hold[a] <= perfect[a] for a in bench.AGES)
    assert hold[5] < perfect[5]  # the objects move


@pytest.mark.parametrize("method", ["template", "flow"])
def test_a_tracker_lies_between_hold_and_motion_perfect(video, method: str):
    samples, dets = video
    recall, cost_ms = bench.tracked_recall(samples, dets, CLIP, method, skip_first=False)
    hold = bench.reference_recall(samples, dets, CLIP, perfect=False)
    perfect = bench.reference_recall(samples, dets, CLIP, perfect=True)
    assert recall[5] > hold[5]
    assert all(recall[a] <= perfect[a] + 1e-9 for a in bench.AGES)
    assert cost_ms > 0
    skipped, _ = bench.tracked_recall(samples, dets, CLIP, method, skip_first=True)
    assert np.isnan(skipped[1]) and not np.isnan(skipped[2])  # no update lands on t + 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--methods", "kcf"], "--methods: one or more of template, flow"),
     (["--clip-frames", "5"], "--clip-frames > 5")],
)  # fmt: skip
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
