"""The user-space EmulatedLink with real sockets: rate, delay, backpressure, switches, gRPC."""

from __future__ import annotations

import asyncio
import socket
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from splitedge.simulations import traces as T
from splitedge.simulations.link import EmulatedLink, LinkConfigError, LinkError

pytestmark = pytest.mark.integration


class Sink:
    """A TCP server that counts what it receives (optionally reading slowly)."""

    def __init__(self) -> None:
        self.received = 0
        self.eof = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> Sink:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.add(asyncio.current_task())
        while data := await reader.read(1 << 16):
            self.received += len(data)
        self.eof.set()
        writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _blast(writer: asyncio.StreamWriter) -> None:
    block = b"\x5a" * 65536
    while True:
        writer.write(block)
        await writer.drain()


async def _rate_over(sink: Sink, seconds: float) -> float:
    n0, t0 = sink.received, time.monotonic()
    await asyncio.sleep(seconds)
    return (sink.received - n0) * 8 / (time.monotonic() - t0) / 1e6


async def _median_rtt_ms(port: int, n: int = 15) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rtts = []
    for _ in range(n):
        t = time.perf_counter()
        writer.write(b"p" * 100)
        await reader.readexactly(100)
        rtts.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.002)
    writer.close()
    return sorted(rtts)[n // 2]


async def test_delivered_throughput_follows_the_trace():
    async with Sink() as sink, EmulatedLink(sink.address, T.constant(8.0)) as link:
        _, writer = await asyncio.open_connection("127.0.0.1", link.port)
        blast = asyncio.create_task(_blast(writer))
        await asyncio.sleep(0.3)  # past the start, the queue is full
        mbps = await _rate_over(sink, 2.0)
        blast.cancel()
        writer.close()
        stats = link.stats()
    assert mbps == pytest.approx(8.0, rel=0.08)
    assert stats.uplink.bytes_out > 0 and stats.uplink.packets > 0
    assert stats.downlink.bytes_out == 0
    assert stats.connections_total == 1


async def test_one_way_delay_is_added_each_way():
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    upstream = ("127.0.0.1", server.sockets[0].getsockname()[1])
    fast = T.constant(100.0)  # opportunities every 0.12 ms: the delay dominates
    async with EmulatedLink(upstream, fast, delay_ms=0.0) as link:
        base_ms = await _median_rtt_ms(link.port)
    async with EmulatedLink(upstream, fast, delay_ms=15.0) as link:
        rtt_ms = await _median_rtt_ms(link.port)
        link.set_delay_ms(40.0)
        await asyncio.sleep(0.05)
        rtt_after_ms = await _median_rtt_ms(link.port, n=5)
    server.close()
    assert base_ms < 5.0
    # At least the delay each way (the relay's doing); above it, the event loop's wake-up
    # lag on a busy machine (4.5 ms seen beside the full suite), so the upper side is loose.
    assert 30.0 - 1.5 <= rtt_ms - base_ms <= 30.0 + 10.0
    assert 80.0 - 1.5 <= rtt_after_ms - base_ms <= 80.0 + 10.0


async def test_full_queue_pushes_back_on_the_sender():
    queue_bytes = 16_000
    async with (
        Sink() as sink,
        EmulatedLink(sink.address, T.constant(1.0), queue_bytes=queue_bytes) as link,
    ):
        sock = socket.socket()
        # A small send buffer, so the pushback shows in the sender's own buffer rather
        # than in the kernel's (which on loopback can absorb megabytes).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.connect(("127.0.0.1", link.port))
        _, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"\x00" * 2_000_000)  # far more than the link, queue and sockets hold
        await asyncio.sleep(1.0)
        stats = link.stats().uplink
        pending = writer.transport.get_write_buffer_size()
        writer.transport.abort()
    assert stats.queued_bytes <= queue_bytes
    assert stats.backpressure_events >= 1 and stats.backpressure_s > 0.5
    assert pending > 1_000_000  # TCP flow control stopped the sender
    assert sink.received <= 1.0e6 / 8 * 1.2 + queue_bytes  # ~1 s at 1 Mbps got through
    assert stats.queue_delay_ms_max >= 0.8 * queue_bytes * 8 / 1e6 * 1000 * 0.5


async def test_trace_switch_takes_effect_while_running():
    async with Sink() as sink, EmulatedLink(sink.address, T.constant(2.0)) as link:
        _, writer = await asyncio.open_connection("127.0.0.1", link.port)
        blast = asyncio.create_task(_blast(writer))
        await asyncio.sleep(0.3)
        slow = await _rate_over(sink, 1.0)
        link.set_uplink(T.constant(16.0))
        await asyncio.sleep(0.1)
        fast = await _rate_over(sink, 1.0)
        blast.cancel()
        writer.close()
    assert slow == pytest.approx(2.0, rel=0.15)
    assert fast == pytest.approx(16.0, rel=0.1)


async def test_step_trace_and_half_close_reach_the_far_side():
    step = T.step([(0.0, 4.0), (0.5, 16.0)], duration_s=60.0)
    async with Sink() as sink, EmulatedLink(sink.address, step, delay_ms=5.0) as link:
        _, writer = await asyncio.open_connection("127.0.0.1", link.port)
        payload = 1_200_000  # 0.5 s at 4 Mbps (250 kB) + ~0.5 s at 16 Mbps
        writer.write(b"\x01" * payload)
        writer.write_eof()
        t0 = time.monotonic()
        await asyncio.wait_for(sink.eof.wait(), timeout=5.0)
        took_s = time.monotonic() - t0
    assert sink.received == payload
    assert 0.85 <= took_s <= 1.4


async def test_loss_delays_bytes_like_a_retransmission():
    async with Sink() as sink:
        lossless = EmulatedLink(sink.address, T.constant(50.0))
        lossy = EmulatedLink(sink.address, T.constant(50.0), loss=0.5, loss_penalty_ms=100.0)
        early: dict[EmulatedLink, int] = {}
        for link in (lossless, lossy):
            async with link:
                before = sink.received
                _, writer = await asyncio.open_connection("127.0.0.1", link.port)
                writer.write(b"\x02" * 30_000)  # 20 packets, 5 ms at 50 Mbps
                await asyncio.sleep(0.05)
                early[link] = sink.received - before
                await asyncio.sleep(0.2)
                writer.close()
        assert lossless.stats().uplink.lost_packets == 0
        assert lossy.stats().uplink.lost_packets >= 3
        assert early[lossless] == 30_000
        assert early[lossy] < 30_000  # held back by a "retransmission"
        assert sink.received == 60_000


async def test_upstream_that_refuses_closes_the_client():
    sink = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = sink.sockets[0].getsockname()[1]
    sink.close()
    await sink.wait_closed()
    async with EmulatedLink(("127.0.0.1", port), T.constant(10.0)) as link:
        reader, _ = await asyncio.open_connection("127.0.0.1", link.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), timeout=2.0)


async def test_grpc_health_check_crosses_the_link():
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("splitedge", health_pb2.HealthCheckResponse.SERVING)
    try:
        async with EmulatedLink(("127.0.0.1", port), T.constant(5.0), delay_ms=20.0) as link:
            async with grpc.aio.insecure_channel(link.address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                await stub.Check(health_pb2.HealthCheckRequest(service="splitedge"), timeout=5)
                t0 = time.perf_counter()
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service="splitedge"), timeout=5
                )
                call_ms = (time.perf_counter() - t0) * 1000
            stats = link.stats()
    finally:
        await server.stop(grace=None)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert call_ms >= 40.0 - 1.5  # one round trip through two 20 ms one-way delays
    assert stats.uplink.bytes_out > 0 and stats.downlink.bytes_out > 0


def test_bad_link_parameters_are_refused():
    tr = T.constant(1.0)
    up = ("127.0.0.1", 1)
    for kwargs, message in [
        ({"delay_ms": -1.0}, "delay_ms must be >= 0"),
        ({"queue_bytes": 100}, "queue_bytes must be >= 1500"),
        ({"loss": 1.0}, r"loss must be in \[0, 1\)"),
        ({"loss_penalty_ms": -5.0}, "loss_penalty_ms must be >= 0"),
        ({"port": 70000}, "port must be in 0..65535"),
    ]:
        with pytest.raises(LinkConfigError, match=message):
            EmulatedLink(up, tr, **kwargs)
    with pytest.raises(LinkConfigError, match="uplink must be a BandwidthTrace"):
        EmulatedLink(up, 5.0)  # type: ignore[arg-type]
    assert issubclass(LinkConfigError, ValueError)


async def test_controls_need_a_running_link_and_stats_outlive_it():
    sink = await asyncio.start_server(_echo, "127.0.0.1", 0)
    link = EmulatedLink(("127.0.0.1", sink.sockets[0].getsockname()[1]), T.constant(10.0))
    with pytest.raises(LinkError, match="not running"):
        link.set_uplink(T.constant(1.0))
    async with link:
        with pytest.raises(LinkConfigError, match="downlink must be a BandwidthTrace"):
            link.set_downlink([1.0, 2.0])  # type: ignore[arg-type]
        with pytest.raises(LinkConfigError, match="delay_ms must be >= 0"):
            link.set_delay_ms(-3.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 2.0) == b"hello"
        writer.close()
    with pytest.raises(LinkError, match="already started"):
        await link.start()
    final = link.stats()
    sink.close()
    assert final.uplink.bytes_out == 5 and final.downlink.bytes_out == 5
    assert final.connections_total == 1
