"""Rolling tail latency per (branch, batch size) and its wire form."""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.edge.stats import ServerStats
from splitedge.mobile_client.server_profile import tail_by_batch_size
from splitedge.mobile_client.transport import model_info_from_pb
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.wire import batch_latency_to_pb


def _record(stats: ServerStats, branch: str, batch_size: int, tail_ms: float) -> None:
    t = stats.started
    stats.record_batch("m", branch, tail_ms=tail_ms, batch_size=batch_size, start=t, end=t)


def test_batch_sizes_keep_separate_windows():
    stats = ServerStats(window_samples=100)
    size1 = [float(ms) for ms in range(1, 11)]
    size4 = [40.0, 40.0, 40.0, 100.0]
    # Interleaved, larger batches first: the order of arrival must not matter.
    for i, ms in enumerate(size1):
        if i < len(size4):
            _record(stats, "b", 4, size4[i])
        _record(stats, "b", 1, ms)
    snap = stats.branch("m", "b")
    assert [b.batch_size for b in snap.by_batch_size] == [1, 4]
    one, four = snap.by_batch_size
    assert one.samples == 10 and four.samples == 4  # one sample per tail run
    assert one.tail_latency_ms_p50 == pytest.approx(5.5)
    assert one.tail_latency_ms_p95 == pytest.approx(np.percentile(size1, 95))
    assert four.tail_latency_ms_p50 == pytest.approx(40.0)
    assert four.tail_latency_ms_p95 == pytest.approx(91.0)  # 40 + 0.85 * (100 - 40)
    # The branch-wide window still counts frames: 10 runs of 1 + 4 runs of 4.
    assert snap.tail_samples == 26 and snap.frames == 26
    # Another branch of the model has its own windows.
    _record(stats, "c", 2, 7.0)
    assert [(b.batch_size, b.samples) for b in stats.branch("m", "c").by_batch_size] == [(2, 1)]
    assert [b.batch_size for b in stats.branch("m", "b").by_batch_size] == [1, 4]
    assert stats.branch("m", "never").by_batch_size == ()


def test_each_batch_size_window_is_bounded():
    stats = ServerStats(window_samples=4)
    for ms in (100.0, 100.0, 100.0, 1.0, 2.0, 3.0, 4.0):
        _record(stats, "b", 3, ms)
    _record(stats, "b", 1, 50.0)
    three = {b.batch_size: b for b in stats.branch("m", "b").by_batch_size}[3]
    assert three.samples == 4
    assert three.tail_latency_ms_p95 < 100.0  # the old runs left the window
    assert three.tail_latency_ms_p50 == pytest.approx(2.5)
    for _ in range(1000):
        _record(stats, "b", 1, 50.0)
    windows = stats._branches[("m", "b")].by_batch_size
    assert {size: len(runs) for size, runs in windows.items()} == {1: 4, 3: 4}


def test_batch_size_below_one_is_refused():
    stats = ServerStats()
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        _record(stats, "b", 0, 1.0)


def test_wire_form_is_sorted_and_the_client_reads_p95_per_size():
    stats = ServerStats(window_samples=16)
    for size, ms in ((8, 30.0), (2, 12.0), (1, 10.0), (2, 14.0)):
        _record(stats, "split@x", size, ms)
    entries = batch_latency_to_pb(stats.branch("m", "split@x").by_batch_size)
    assert [e.batch_size for e in entries] == [1, 2, 8]
    assert [e.samples for e in entries] == [1, 2, 1]
    info = pb.ModelInfo(
        name="m",
        branches=[
            pb.BranchInfo(name="split@x", profile=pb.BranchProfile(by_batch_size=entries)),
            # A size listed without samples and a branch never run are left out.
            pb.BranchInfo(
                name="offload",
                profile=pb.BranchProfile(by_batch_size=[pb.BatchLatency(batch_size=1)]),
            ),
        ],
    )
    profile = tail_by_batch_size(model_info_from_pb(info))
    assert profile == {"split@x": {1: 10.0, 2: pytest.approx(13.9), 8: 30.0}}
