"""AbsRel, RMSE and delta1 against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.models.depth import InvalidInputError, abs_rel, delta1, depth_metrics, rmse_m


def test_metrics_match_hand_values_and_skip_invalid_ground_truth() -> None:
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # 0 = no ground truth
    pred = np.array([[1.1, 3.0], [4.0, 9.0]])
    m = depth_metrics(pred, gt)
    assert m.num_pixels == 3
    assert m.abs_rel == pytest.approx((0.1 + 0.5 + 0.0) / 3)
    assert m.rmse_m == pytest.approx(np.sqrt((0.01 + 1.0 + 0.0) / 3))
    assert m.delta1 == pytest.approx(2 / 3)
    assert abs_rel(pred, gt) == m.abs_rel and rmse_m(pred, gt) == m.rmse_m
    assert delta1(pred, gt, np.array([[True, False], [True, True]])) == 1.0


def test_metrics_errors() -> None:
    with pytest.raises(InvalidInputError, match="does not match"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 3)))
    with pytest.raises(InvalidInputError, match="no valid"):
        depth_metrics(np.ones((2, 2)), np.zeros((2, 2)))
