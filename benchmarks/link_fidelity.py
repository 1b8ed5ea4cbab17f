"""Fidelity of the emulated links: do the bytes follow the trace and the delay?

    python -m benchmarks.link_fidelity [--quick]

User-space ``EmulatedLink`` (everything in this process, real loopback sockets):

* throughput: a sender keeps the link's queue full; the receiver's byte count over
  the run (first 0.3 s left out) is compared with what the trace can carry over the
  same span: constant 10 and 100 Mbps, and a step 5 -> 20 -> 5 Mbps (10 s in full
  runs, 3 s with ``--quick``); each step phase is also checked on its own.
* delay: 100-byte ping-pongs at low load over a 100 Mbps trace; the added one-way
  delay is half the median RTT through the link minus half the median RTT direct.
  The model itself adds the wait for the next delivery opportunity (mean 0.06 ms
  at 100 Mbps), which is counted in ``expected_ms``.

Linux netns backend (root only): the same throughput cases through a veth pair
shaped by tc/htb; its delay needs netem, and the table says when it is missing.

Ends with ``throughput_error_pct=<x> delay_error_ms=<y>``: the worst user-space
cases (absolute). Targets: within 5 % and 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import threading
import time

import numpy as np

from benchmarks._stats import machine, table
from splitedge.simulations import traces as T
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.traces import BandwidthTrace

_WARMUP_S = 0.3


class _Marks:
    """(time, cumulative bytes) at each read on the receiving side."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.n: list[int] = []

    def add(self, size: int) -> None:
        self.t.append(time.monotonic())
        self.n.append((self.n[-1] if self.n else 0) + size)

    def bytes_between(self, a: float, b: float) -> int:
        t = np.asarray(self.t)
        n = np.asarray(self.n)
        ia, ib = np.searchsorted(t, a, "right") - 1, np.searchsorted(t, b, "right") - 1
        return int((n[ib] if ib >= 0 else 0) - (n[ia] if ia >= 0 else 0))


def _error_pct(marks: _Marks, trace: BandwidthTrace, origin: float, a: float, b: float) -> float:
    expected_bytes = float(np.diff(trace.cumulative_megabits([a, b]))[0]) * 1e6 / 8
    got = marks.bytes_between(origin + a, origin + b)
    return 100.0 * (got - expected_bytes) / expected_bytes


def _trace_mbps(trace: BandwidthTrace, a: float, b: float) -> float:
    return float(np.diff(trace.cumulative_megabits([a, b]))[0]) / (b - a)


async def _user_throughput(
    trace: BandwidthTrace, run_s: float, phases: list[tuple[float, float]]
) -> tuple[float, float, float, float]:
    """(delivered Mbps, error %, worst phase error %, CPU %) for one bulk run.

    CPU is this whole process: the link's thread plus the sender and the receiver.
    """
    marks = _Marks()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            marks.add(len(data))
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    async with EmulatedLink(upstream, trace, queue_bytes=256_000) as link:
        origin = link.started_at_s
        _, writer = await asyncio.open_connection("127.0.0.1", link.port)
        cpu0, wall0 = time.process_time(), time.monotonic()
        block = b"\x00" * 65536
        while time.monotonic() - origin < run_s + 0.05:
            writer.write(block)
            await writer.drain()
        cpu_pct = 100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
        writer.transport.abort()
    server.close()
    err = _error_pct(marks, trace, origin, _WARMUP_S, run_s)
    worst_phase = max((_error_pct(marks, trace, origin, a, b) for a, b in phases), key=abs)
    got = marks.bytes_between(origin + _WARMUP_S, origin + run_s)
    return got * 8 / (run_s - _WARMUP_S) / 1e6, err, worst_phase, cpu_pct


async def _median_rtt_ms(port: int, n: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rtts = []
    for _ in range(n):
        t = time.perf_counter()
        writer.write(b"p" * 100)
        await reader.readexactly(100)
        rtts.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.003)
    writer.close()
    await writer.wait_closed()
    return statistics.median(rtts)


async def _user_delay(delays_ms: list[float], n: int) -> list[tuple[float, float, float]]:
    handlers: set[asyncio.Task] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    trace = T.constant(100.0)
    opportunity_wait_ms = 0.5 * 1500 * 8 / 100e6 * 1000
    base_ms = await _median_rtt_ms(port, n)
    rows = []
    for delay_ms in delays_ms:
        async with EmulatedLink(("127.0.0.1", port), trace, delay_ms=delay_ms) as link:
            rtt_ms = await _median_rtt_ms(link.port, n)
        rows.append((delay_ms, delay_ms + opportunity_wait_ms, (rtt_ms - base_ms) / 2))
    server.close()
    await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), timeout=5)
    return rows


def _netns_throughput(trace: BandwidthTrace, run_s: float) -> tuple[float, float, bool]:
    from splitedge.simulations.netns import NetnsLink

    marks = _Marks()
    with NetnsLink(trace, T.constant(50.0)) as link:
        origin = time.monotonic()  # the rate thread starts at the same moment
        server = link.socket("edge")
        server.bind((link.edge_address, 0))
        server.listen(1)

        def sink() -> None:
            conn, _ = server.accept()
            while data := conn.recv(1 << 16):
                marks.add(len(data))
            conn.close()

        reader = threading.Thread(target=sink)
        reader.start()
        client = link.socket("device")
        client.connect((link.edge_address, server.getsockname()[1]))
        block = b"\x00" * 65536
        while time.monotonic() - origin < run_s + 0.05:
            client.sendall(block)
        client.close()
        reader.join(timeout=10)
        server.close()
        delay_ok = link.delay_supported
    got = marks.bytes_between(origin + _WARMUP_S, origin + run_s)
    err = _error_pct(marks, trace, origin, _WARMUP_S, run_s)
    return got * 8 / (run_s - _WARMUP_S) / 1e6, err, delay_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (~15 s in all)")
    args = parser.parse_args()
    run_s = 3.0 if args.quick else 10.0
    third = run_s / 3
    step = T.step([(0.0, 5.0), (third, 20.0), (2 * third, 5.0)], duration_s=run_s)
    # Phases leave 0.3 s after each change out: TCP needs a moment to fill the new rate.
    phases = [(_WARMUP_S, third), (third + 0.3, 2 * third), (2 * third + 0.3, run_s)]
    cases = [
        ("constant 10 Mbps", T.constant(10.0, run_s), [(_WARMUP_S, run_s)]),
        ("constant 100 Mbps", T.constant(100.0, run_s), [(_WARMUP_S, run_s)]),
        ("step 5->20->5 Mbps", step, phases),
    ]
    print(f"# link fidelity ({'quick' if args.quick else 'full'}), {machine()}")
    print("\n## user-space EmulatedLink: throughput (bulk TCP, queue 256 kB)")
    rows, worst_tp = [], 0.0
    for name, trace, case_phases in cases:
        mbps, err, phase_err, cpu = asyncio.run(_user_throughput(trace, run_s, case_phases))
        worst_tp = max(worst_tp, abs(err), abs(phase_err))
        expected = _trace_mbps(trace, _WARMUP_S, run_s)
        rows.append((name, f"{run_s:g}", expected, mbps, err, phase_err, f"{cpu:.0f}"))
    print(
        table(["case", "run_s", "trace_mbps", "got_mbps", "err_%", "worst_phase_%", "cpu_%"], rows)
    )

    print("\n## user-space EmulatedLink: added one-way delay at low load (100 Mbps trace)")
    n = 15 if args.quick else 40
    delay_rows = asyncio.run(_user_delay([0.0, 10.0, 50.0], n))
    worst_delay = max(abs(got - exp) for _, exp, got in delay_rows)
    print(
        table(
            ["delay_ms", "expected_ms", "measured_ms", "err_ms"],
            [(d, exp, got, got - exp) for d, exp, got in delay_rows],
        )
    )

    print("\n## Linux netns + tc (htb) backend")
    from splitedge.simulations.netns import netns_unavailable_reason

    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}")
    else:
        rows = []
        delay_supported = False
        for name, trace, _ in (cases[0], cases[2]):
            mbps, err, delay_supported = _netns_throughput(trace, run_s)
            rows.append((name, f"{run_s:g}", _trace_mbps(trace, _WARMUP_S, run_s), mbps, err))
        print(table(["case", "run_s", "trace_mbps", "got_mbps", "err_%"], rows))
        if not delay_supported:
            print("delay: unsupported (this kernel has no netem qdisc); not measured")
    print(f"\nthroughput_error_pct={worst_tp:.2f} delay_error_ms={worst_delay:.2f}")


if __name__ == "__main__":
    main()
