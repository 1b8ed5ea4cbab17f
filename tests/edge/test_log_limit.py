"""LogLimiter: one line per kind per interval, saying how many it held back."""

from __future__ import annotations

import logging

import pytest

from splitedge.edge.log_limit import LogLimiter


def test_one_line_per_kind_per_interval_with_the_count_held_back(caplog):
    now = [100.0]
    limiter = LogLimiter(logging.getLogger("t"), 10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        assert limiter.warning("a", "bad %s", 1)
        assert not any(limiter.warning("a", "bad %s", i) for i in range(2, 6))
        assert limiter.warning("b", "other")  # another kind has its own budget
        now[0] += 10.0
        assert limiter.warning("a", "bad %s", 6)
        assert not limiter.warning("a", "bad %s", 7)
    assert [r.getMessage() for r in caplog.records] == [
        "bad 1",
        "other",
        "bad 6 (4 more like this in the last 10 s not logged)",
    ]


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        LogLimiter(logging.getLogger("t"), 0)
