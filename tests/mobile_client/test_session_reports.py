"""What the adaptive session hands the scheduler from a server's load reports."""

from __future__ import annotations

import logging

import pytest

from splitedge.mobile_client import Client
from splitedge.mobile_client.adaptive import AdaptiveSession
from splitedge.mobile_client.scheduler import Scheduler
from splitedge.proto.status import BranchLoad, ServerStatus

from .test_scheduler import LOCAL, OFFLOAD, profile


def _status(p50: float, p95: float) -> ServerStatus:
    load = BranchLoad("echo", "offload-jpeg90", tail_latency_ms_p50=p50, tail_latency_ms_p95=p95)
    return ServerStatus("edge-x", "cpu", 0, 8, branches=(load,))


def test_reports_give_the_tail_median_and_skip_figures_that_cannot_be_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = Scheduler(profile(LOCAL, OFFLOAD), 150.0)
    session = AdaptiveSession(Client("127.0.0.1:1", "echo"), scheduler, status_every_s=0)
    session._report(_status(40.0, 66.0), 0.0, queue_ms=None)
    assert scheduler.server.mean_std_ms("offload-jpeg90", 0.0)[0] == 40.0  # p50, not p95
    # A server whose p95 is below its p50 (broken or hostile): the figures are ignored,
    # the last good ones stand, the session goes on, and it says so once, not every poll.
    with caplog.at_level(logging.WARNING):
        for now in (1.0, 2.0):
            session._report(_status(90.0, 10.0), now, queue_ms=None)
    assert scheduler.server.mean_std_ms("offload-jpeg90", 2.0)[0] == 40.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "offload-jpeg90" in warnings[0] and "below its p50" in warnings[0]
