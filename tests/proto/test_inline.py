"""The one "run it inline if cheap" rule (the device's head + encode, the edge's tails)."""

from __future__ import annotations

import pytest

from splitedge.proto.inline import InlineRule


def test_unmeasured_never_inline_then_the_moving_average_decides():
    rule = InlineRule[str](1.0)
    assert not rule.inline("a") and rule.cost_ms("a") is None
    rule.observe("a", 0.5)
    assert rule.inline("a") and not rule.inline("b")
    for _ in range(10):
        rule.observe("a", 5.0)
    assert not rule.inline("a")
    assert rule.cost_ms("a") == pytest.approx(5.0 - 4.5 * 0.8**10)
    rule.forget("a")
    assert not rule.inline("a") and rule.cost_ms("a") is None


def test_zero_threshold_never_inlines_and_bad_settings_are_refused():
    rule = InlineRule[str](0.0)
    rule.observe("a", 0.0)
    assert not rule.inline("a")
    with pytest.raises(ValueError, match="below_ms"):
        InlineRule[str](-1.0)
    with pytest.raises(ValueError, match="weight"):
        InlineRule[str](1.0, weight=0.0)
