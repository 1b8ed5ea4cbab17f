"""A frame's deadline covers its write: an edge that stops reading (SIGSTOP) must not
hold a large frame past its deadline while HTTP/2 flow control blocks the write."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from splitedge.mobile_client import Client
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.sources import CameraFrame

pytestmark = pytest.mark.integration

DEADLINE_MS = 1000.0
# Far beyond a timer's lateness on a loaded machine, far below "waits for the edge".
BOUND_MS = 10 * DEADLINE_MS


def _frame(index: int, side: int) -> CameraFrame:
    # Noise, sent raw: side=400 -> 480 kB as an 8-bit split tensor, many times the
    # 64 KiB HTTP/2 windows that a frozen edge never reopens.
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    return CameraFrame(index, image, time.perf_counter_ns())


@contextmanager
def _frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_stalled_edge_large_frame_falls_back_at_its_deadline(edge_factory):
    edge = edge_factory("--model", "echo")
    assert edge.proc is not None
    async with Client(
        edge.address,
        "echo",
        backend=TorchHeadBackend("echo"),
        deadline_ms=DEADLINE_MS,
        compression="raw",
    ) as client:
        warm = await client.submit(_frame(0, 16), "split@x")
        assert warm.source == "edge"
        with _frozen(edge.proc.pid):
            # The old client started the deadline after the write, which never ends
            # while the edge is frozen: it would wait here until SIGCONT.
            large = [
                await asyncio.wait_for(client.submit(_frame(i, 400), "split@x"), 60) for i in (1, 2)
            ]
            small = await asyncio.wait_for(client.submit(_frame(3, 16), "split@x"), 60)
            dropped = await asyncio.wait_for(
                client.submit(_frame(4, 400), "split@x", local_fallback=False), 60
            )
        for outcome in (*large, small):
            assert (outcome.source, outcome.reason) == ("local", "deadline"), outcome
            assert outcome.prediction is not None
        assert (dropped.source, dropped.reason) == ("dropped", "deadline")
        assert large[0].payload_bytes > 400_000
        for outcome in (*large, small, dropped):
            assert outcome.timing.total_ms < BOUND_MS, outcome.timing
        # Thawed, the edge answers again on the same session.
        after = await asyncio.wait_for(client.submit(_frame(5, 16), "split@x", deadline_ms=0), 60)
    assert after.source == "edge", after
