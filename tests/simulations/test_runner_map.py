"""The runner's two mAP50s: over answers, and over every frame with late answers as none."""

from __future__ import annotations

import math

import numpy as np
import pytest

from splitedge.models.data import SceneConfig, VideoConfig, generate_clips
from splitedge.models.types import Detections
from splitedge.simulations.runner import _map50


def _perfect(sample) -> Detections:  # type: ignore[no-untyped-def]
    boxes = np.array(
        [[x, y, x + w, y + h] for x, y, w, h in (i.bbox_xywh for i in sample.instances)],
        dtype=np.float32,
    ).reshape(-1, 4)
    n = len(sample.instances)
    labels = np.array([i.class_id for i in sample.instances], dtype=np.int64)
    return Detections(boxes, np.ones(n, dtype=np.float32), labels)


def test_late_answers_count_as_none_only_in_the_sla_map():
    scene = SceneConfig(width=160, height=120, min_object_px=8.0)
    samples = [s for s in generate_clips(scene, VideoConfig(), 3, 8, 8) if s.instances][:6]
    assert len(samples) >= 4
    perfect = [_perfect(s) for s in samples]
    on_time = [(s, p, True) for s, p in zip(samples, perfect, strict=True)]
    assert _map50(on_time) == pytest.approx(1.0)
    assert _map50(on_time, in_sla=True) == pytest.approx(1.0)
    # Half the answers late, one frame dropped (busy): the answers are as good as ever,
    # an application waiting at most the SLA got boxes on half the frames.
    late = [(s, p, i % 2 == 0) for i, (s, p) in enumerate(zip(samples, perfect, strict=True))]
    late[-1] = (samples[-1], None, False)
    assert _map50(late) == pytest.approx(1.0)
    in_sla = _map50(late, in_sla=True)
    assert 0.2 < in_sla < 0.8
    # Every answer late: nothing in time.
    assert _map50([(s, p, False) for s, p, _ in on_time], in_sla=True) == 0.0
    assert math.isnan(_map50([(samples[0], None, False)]))  # no detections at all
