"""The Linux netns + tc backend: real namespaces, a real veth pair, kernel shaping."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from splitedge.simulations import traces as T
from splitedge.simulations.netns import (
    DelayUnsupportedError,
    NetnsError,
    NetnsLink,
    cleanup_stale,
    netns_unavailable_reason,
)

_reason = netns_unavailable_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.netns,
    pytest.mark.skipif(_reason is not None, reason=f"netns backend unavailable: {_reason}"),
]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _bulk_mbps(link: NetnsLink, warmup_s: float, measure_s: float) -> float:
    """Send from the device namespace to the edge namespace; goodput after warm-up."""
    server = link.socket("edge")
    server.bind((link.edge_address, 0))
    server.listen(1)
    marks: list[tuple[float, int]] = []

    def sink() -> None:
        conn, _ = server.accept()
        total = 0
        while data := conn.recv(1 << 16):
            total += len(data)
            marks.append((time.monotonic(), total))
        conn.close()

    reader = threading.Thread(target=sink)
    reader.start()
    client = link.socket("device")
    client.connect((link.edge_address, server.getsockname()[1]))
    block = b"\x33" * 65536
    t0 = time.monotonic()
    while time.monotonic() - t0 < warmup_s + measure_s + 0.1:
        client.sendall(block)
    client.close()
    reader.join(timeout=10)
    server.close()
    start = next(m for m in marks if m[0] >= t0 + warmup_s)
    end = next(m for m in reversed(marks) if m[0] <= t0 + warmup_s + measure_s)
    return (end[1] - start[1]) * 8 / (end[0] - start[0]) / 1e6


def test_namespaces_exist_while_open_and_are_deleted_after():
    with NetnsLink(T.constant(20.0)) as link:
        names = set(link.namespaces.values())
        assert names <= _namespaces()
        # Traffic stays inside: the edge address is not reachable from our namespace.
        route = subprocess.run(
            ["ip", "route", "get", link.edge_address], capture_output=True, text=True
        )
        assert link.interfaces["device"] not in route.stdout
    assert not names & _namespaces()


def test_kernel_shaping_follows_a_constant_trace():
    with NetnsLink(T.constant(10.0)) as link:
        mbps = _bulk_mbps(link, warmup_s=0.5, measure_s=1.5)
    assert mbps == pytest.approx(10.0, rel=0.08)


def test_rate_changes_at_the_trace_change_points():
    trace = T.step([(0.0, 5.0), (0.4, 25.0)], duration_s=30.0)
    with NetnsLink(trace, T.constant(3.0)) as link:
        before = link.rates_now()
        time.sleep(0.7)
        after = link.rates_now()
        assert link.rate_changes >= 3
    assert before["device"] == pytest.approx(5.0, rel=0.01)
    assert after["device"] == pytest.approx(25.0, rel=0.01)
    assert after["edge"] == pytest.approx(3.0, rel=0.01)


def test_delay_without_netem_is_refused_and_cleaned_up():
    with NetnsLink(T.constant(5.0)) as probe:
        if probe.delay_supported:
            pytest.skip("this kernel has netem; delay is supported")
    before = _namespaces()
    link = NetnsLink(T.constant(5.0), delay_ms=20.0)
    with pytest.raises(DelayUnsupportedError, match=r"delay_ms=20.0 .* netem"), link:
        pass
    assert not set(link.namespaces.values()) & _namespaces()
    assert _namespaces() == before


def test_bad_parameters_and_stale_namespaces():
    with pytest.raises(NetnsError, match="delay_ms >= 0"):
        NetnsLink(T.constant(1.0), delay_ms=-1.0)
    with pytest.raises(NetnsError, match="below 10 ms"):
        NetnsLink(T.constant(1.0), update_interval_s=0.001)
    orphan = "se999999999x0-dev"  # a pid that cannot exist
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    assert orphan in cleanup_stale()
    assert orphan not in _namespaces()
