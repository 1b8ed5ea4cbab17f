"""Discovery choice logic: least loaded, offline/stale skipped, model filter, failover."""

from __future__ import annotations

import pytest

from splitedge.control_plane.discovery import Discovery, ServerState
from splitedge.proto.control import (
    BranchLatency,
    EdgeStatus,
    edge_status_topic,
    offline_status,
)

WALL_T0 = 1_732_470_000.0


class FakeClock:
    """A hand-driven clock, so staleness is tested without sleeping."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _status(
    server_id: str,
    *,
    depth: int = 0,
    capacity: int = 10,
    tail_p95_ms: float = 10.0,
    models: dict[str, tuple[str, ...]] | None = None,
    wait_ms: float | None = None,
    timestamp: float = WALL_T0,
) -> bytes:
    models = models or {"det": ("split-8b", "offload")}
    return EdgeStatus(
        server_id=server_id,
        online=True,
        timestamp=timestamp,
        address=f"{server_id}:50051",
        models=models,
        queue_depth=depth,
        queue_capacity=capacity,
        tail_ms={
            m: {b: BranchLatency(tail_p95_ms / 2, tail_p95_ms) for b in bs}
            for m, bs in models.items()
        },
        queue_wait_ms=wait_ms,
    ).encode()


@pytest.fixture
def clocks() -> tuple[FakeClock, FakeClock]:
    return FakeClock(100.0), FakeClock(WALL_T0)


def _discovery(clocks: tuple[FakeClock, FakeClock], **kwargs: object) -> Discovery:
    mono, wall = clocks
    return Discovery(stale_after_s=5.0, clock=mono, wall_clock=wall, **kwargs)  # type: ignore[arg-type]


def test_least_loaded_online_server_is_chosen(clocks) -> None:  # type: ignore[no-untyped-def]
    d = _discovery(clocks)
    d.ingest(edge_status_topic("a"), _status("a", depth=4, tail_p95_ms=10.0))
    d.ingest(edge_status_topic("b"), _status("b", depth=1, tail_p95_ms=10.0))
    d.ingest(edge_status_topic("c"), _status("c", depth=0, tail_p95_ms=50.0))
    # a: 4 * 5 + 10 = 30 ms, b: 1 * 5 + 10 = 15 ms, c: 0 + 50 = 50 ms
    assert [s.server_id for s in d.candidates("det")] == ["b", "a", "c"]
    chosen = d.choose("det")
    assert chosen is not None and chosen.server_id == "b"
    assert chosen.queue_ms_estimate == pytest.approx(5.0)
    assert chosen.tail_ms("det", "split-8b") == 10.0
    assert chosen.tail_ms("det", "split-8b", percentile=50) == 5.0
    assert chosen.expected_ms("det", "split-8b") == pytest.approx(15.0)
    assert d.choose("det", exclude=["b"]).server_id == "a"  # type: ignore[union-attr]


def test_server_reported_queue_wait_wins_over_the_estimate(clocks) -> None:  # type: ignore[no-untyped-def]
    d = _discovery(clocks)
    d.ingest(edge_status_topic("a"), _status("a", depth=8, wait_ms=1.0))
    d.ingest(edge_status_topic("b"), _status("b", depth=1))
    state = d.state("a")
    assert state is not None and state.queue_ms_estimate == 1.0
    assert d.choose("det").server_id == "a"  # type: ignore[union-attr]


def test_full_queue_sorts_last(clocks) -> None:  # type: ignore[no-untyped-def]
    d = _discovery(clocks)
    d.ingest(edge_status_topic("a"), _status("a", depth=2, capacity=2, tail_p95_ms=1.0))
    d.ingest(edge_status_topic("b"), _status("b", depth=5, capacity=100, tail_p95_ms=40.0))
    assert d.choose("det").server_id == "b"  # type: ignore[union-attr]


def test_model_and_branch_filter(clocks) -> None:  # type: ignore[no-untyped-def]
    d = _discovery(clocks)
    d.ingest(edge_status_topic("a"), _status("a", models={"seg": ("split-4b",)}))
    d.ingest(edge_status_topic("b"), _status("b", depth=5, models={"det": ("offload",)}))
    assert d.choose("seg").server_id == "a"  # type: ignore[union-attr]
    assert d.choose("det").server_id == "b"  # type: ignore[union-attr]
    assert d.choose("det", "split-8b") is None
    assert d.choose("depth") is None


def test_offline_and_stale_servers_are_skipped(clocks) -> None:  # type: ignore[no-untyped-def]
    mono, wall = clocks
    d = _discovery(clocks)
    d.ingest(edge_status_topic("a"), _status("a"))
    d.ingest(edge_status_topic("b"), _status("b", depth=3))
    d.ingest(edge_status_topic("a"), offline_status("a", WALL_T0, "connection lost").encode())
    assert d.choose("det").server_id == "b"  # type: ignore[union-attr]
    mono.t += 5.5  # b said nothing for longer than stale_after_s
    wall.t += 5.5
    assert d.choose("det") is None
    state = d.state("b")
    assert state is not None and state.online is False and state.address == "b:50051"
    d.ingest(edge_status_topic("b"), _status("b", timestamp=wall.t))
    assert d.choose("det").server_id == "b"  # type: ignore[union-attr]


def test_old_retained_status_starts_out_stale(clocks) -> None:  # type: ignore[no-untyped-def]
    d = _discovery(clocks)
    old = _status("ghost", timestamp=WALL_T0 - 3600)
    d.ingest(edge_status_topic("ghost"), old, retained=True)
    assert d.choose("det") is None
    # The same message live (not retained) counts: device and server clocks may differ.
    d.ingest(edge_status_topic("ghost"), old, retained=False)
    assert d.choose("det").server_id == "ghost"  # type: ignore[union-attr]


def test_invalid_status_is_ignored_and_keeps_last_state(clocks) -> None:  # type: ignore[no-untyped-def]
    d = _discovery(clocks)
    d.ingest(edge_status_topic("a"), _status("a", depth=2))
    assert d.ingest(edge_status_topic("a"), b'{"online": "maybe"}') is None
    assert d.ingest(edge_status_topic("a"), _status("b")) is None  # wrong topic
    assert d.rejected_count == 2
    state = d.state("a")
    assert state is not None and state.online and state.status.queue_depth == 2


def test_sticky_selection_fails_over_and_reports(clocks) -> None:  # type: ignore[no-untyped-def]
    moves: list[tuple[str, str | None, str | None]] = []

    def on_failover(model: str, old: ServerState | None, new: ServerState | None) -> None:
        moves.append((model, old.server_id if old else None, new.server_id if new else None))

    d = _discovery(clocks, on_failover=on_failover)
    d.ingest(edge_status_topic("a"), _status("a", depth=0))
    d.ingest(edge_status_topic("b"), _status("b", depth=2))
    assert d.select("det").server_id == "a"  # type: ignore[union-attr]
    # b becomes less loaded: the sticky choice stays (no flapping) ...
    d.ingest(edge_status_topic("a"), _status("a", depth=6))
    assert d.select("det").server_id == "a"  # type: ignore[union-attr]
    assert moves == []
    # ... until a goes offline: the move happens on ingest, before anyone asks.
    d.ingest(edge_status_topic("a"), offline_status("a", WALL_T0, "shutdown").encode())
    assert moves == [("det", "a", "b")]
    d.ingest(edge_status_topic("b"), offline_status("b", WALL_T0, "connection lost").encode())
    assert moves[-1] == ("det", "b", None)
    assert d.select("det") is None
    d.ingest(edge_status_topic("a"), _status("a"))
    assert moves[-1] == ("det", None, "a")


def test_a_failing_callback_does_not_break_discovery(clocks) -> None:  # type: ignore[no-untyped-def]
    def explode(*_: object) -> None:
        raise RuntimeError("boom")

    d = _discovery(clocks, on_failover=explode)
    d.ingest(edge_status_topic("a"), _status("a"))
    d.ingest(edge_status_topic("b"), _status("b", depth=1))
    assert d.select("det").server_id == "a"  # type: ignore[union-attr]
    d.ingest(edge_status_topic("a"), offline_status("a", WALL_T0, "shutdown").encode())
    assert d.select("det").server_id == "b"  # type: ignore[union-attr]
