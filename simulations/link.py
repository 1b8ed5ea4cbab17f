"""User-space emulated link: an asyncio TCP relay whose bytes follow a bandwidth trace.

Runs unprivileged (laptops, Termux). Each direction is one pipe shared by all
relayed connections, modelled on Mahimahi's ``mm-link`` + ``mm-delay``:

* **Delivery opportunities.** The direction's :class:`BandwidthTrace` (starting at
  link start, or at the moment of ``set_uplink``/``set_downlink``; looping) is cut
  into 1500-byte opportunities where its cumulative capacity crosses a multiple of
  1500 B. At each opportunity up to 1500 queued bytes leave (FIFO across
  connections); an opportunity with nothing queued is lost, as in mm-link.
* **Propagation delay.** Bytes that leave at an opportunity are written to the far
  socket ``delay_ms`` later.
* **Drop-tail queue, as backpressure.** The queue holds at most ``queue_bytes``.
  This is a TCP relay, so it cannot drop bytes; when the queue is full it stops
  reading the sending socket (``pause_reading``) and TCP flow control pushes back
  on the sender. The time bytes wait outside the full queue is counted
  (``backpressure_s``). Kernel socket buffers add some storage we cannot see; the
  relay shrinks its receive buffers to keep that small.
* **Random loss, as TCP would show it.** With probability ``loss`` a 1500-byte
  packet is "lost": its bytes still use their opportunity but arrive
  ``loss_penalty_ms`` late (default: 200 ms minimum RTO + one round trip), and
  later bytes of the same connection wait behind them (TCP delivers in order).
  This is pessimistic (TCP often recovers in one RTT by fast retransmit) and does
  not model the sender's window cut.

The relay runs on its own thread and event loop (a ``select()`` loop: its
timers have microsecond resolution where epoll rounds up to whole milliseconds),
so the application's own loop, blocked by inference or not, does not disturb the
link's timing. Timing uses the monotonic clock and timer callbacks at event
times (no busy loop). Release times come from the nominal opportunity times, so
late wake-ups do not accumulate. Under load, wake-ups are batched at least
0.5 ms apart, which delays bytes by up to that much when ``delay_ms`` is 0 (with
a delay, the pipe works ahead and release times stay exact).

``async with`` works from any event loop; ``set_uplink``, ``set_downlink``,
``set_delay_ms`` and ``stats`` are thread-safe and may be called while it runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import selectors
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import numpy as np

from splitedge.simulations.traces import PACKET_BYTES, BandwidthTrace

log = logging.getLogger(__name__)
_R = TypeVar("_R")

_PACKET_MEGABITS = PACKET_BYTES * 8 / 1e6
_OPS_BATCH = 512
_RECENT_SAMPLES = 4096
_SOCKET_BUFFER_BYTES = 65536
# An outlet (far socket) whose backlog exceeds this stops its source from reading,
# so a receiver that does not read slows the sender end to end, as over a real link.
_OUTLET_BACKLOG_BYTES = 1 << 20
# Timers fire a little late (the select() wait plus scheduling); aiming this much
# early centres the release error near zero.
_TIMER_EARLY_S = 0.0001
# Under load, opportunities and releases come every few microseconds; waking for
# each would cost a core at 100 Mbps. Wake-ups are at least this far apart, and
# the pipe works up to _BATCH_S ahead (never more than the delay, so release
# times stay exact). An idle link still wakes exactly on time for the first byte.
_MIN_WAKE_GAP_S = 0.0005
_BATCH_S = 0.001


class LinkError(RuntimeError):
    """Base of emulated-link problems."""


class LinkConfigError(LinkError, ValueError):
    """A link parameter that cannot describe a link."""


@dataclass(frozen=True)
class DirectionStats:
    """Counters of one direction (uplink: client -> upstream)."""

    bytes_in: int
    bytes_out: int
    packets: int
    lost_packets: int
    queued_bytes: int
    queue_delay_ms_mean: float
    queue_delay_ms_p95: float
    queue_delay_ms_max: float
    backpressure_s: float
    backpressure_events: int


@dataclass(frozen=True)
class LinkStats:
    uplink: DirectionStats
    downlink: DirectionStats
    connections_total: int
    connections_open: int
    elapsed_s: float


class _Chunk:
    __slots__ = ("data", "dest", "enq_t", "offset")

    def __init__(self, dest: _Endpoint, data: bytes | None, enq_t: float) -> None:
        self.dest = dest  # endpoint whose outlet gets these bytes; data None = EOF
        self.data = data
        self.offset = 0
        self.enq_t = enq_t


class _Pipe:
    """One direction: trace-driven opportunities, a byte-bounded FIFO, the delay."""

    def __init__(self, link: EmulatedLink, name: str, trace: BandwidthTrace) -> None:
        self.link = link
        self.name = name
        self.loop = link._loop
        self.queue: deque[_Chunk] = deque()
        self.queued_bytes = 0
        self.blocked: deque[_Endpoint] = deque()  # sources holding bytes that did not fit
        self._timer: asyncio.TimerHandle | None = None
        self._last_service = -math.inf
        self._ahead: deque[tuple[float, int]] = deque()  # (t_op, bytes) sent ahead of time
        self.bytes_in = self.bytes_out = self.packets = self.lost_packets = 0
        self.backpressure_s = 0.0
        self.backpressure_events = 0
        self._qd_sum_s = 0.0
        self._qd_n = 0
        self._qd_max_s = 0.0
        self._qd_recent: deque[float] = deque(maxlen=_RECENT_SAMPLES)
        self.set_trace(trace)

    # -- trace and opportunities ----------------------------------------------------

    def set_trace(self, trace: BandwidthTrace) -> None:
        self.trace = trace
        self.origin = self.loop.time()
        self._ops = np.empty(0)
        self._ops_i = 0
        self._next_k = 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._schedule()

    def _next_op(self, not_before: float) -> float:
        """Time of the first unused opportunity at or after ``not_before``."""
        ops, i = self._ops, self._ops_i
        if i < ops.size:
            if ops[i] >= not_before:
                return float(ops[i])
            if ops[-1] >= not_before:
                self._ops_i = i + int(np.searchsorted(ops[i:], not_before, side="left"))
                return float(ops[self._ops_i])
        # Opportunities before ``not_before`` went by with nothing queued: skip them.
        rel = not_before - self.origin
        passed = float(self.trace.cumulative_megabits(rel)) / _PACKET_MEGABITS
        k = max(self._next_k, math.ceil(passed - 1e-6), 1)
        ks = np.arange(k, k + _OPS_BATCH, dtype=np.float64)
        self._ops = self.origin + self.trace.time_of_megabits(ks * _PACKET_MEGABITS)
        self._next_k = k + _OPS_BATCH
        self._ops_i = int(np.searchsorted(self._ops, not_before, side="left"))
        if self._ops_i >= self._ops.size:  # numerical corner: retry from the batch end
            self._next_k = k + _OPS_BATCH
            return self._next_op(not_before)
        return float(self._ops[self._ops_i])

    # -- queue --------------------------------------------------------------------------

    def push(self, dest: _Endpoint, data: bytes | None, source: _Endpoint) -> None:
        """Bytes (or EOF, ``None``) from ``source`` bound for ``dest``."""
        now = self.loop.time()
        if source.held is not None or (data is not None and self.blocked):
            # Behind bytes already waiting for room: keep FIFO order, wait in turn.
            self._block(source, data, now)
        elif data is None:
            self.queue.append(_Chunk(dest, None, now))
        else:
            room = self.link.queue_bytes - self.queued_bytes
            if len(data) > room:
                if room > 0:
                    self._enqueue(dest, data[:room], now)
                self._block(source, data[room:], now)
            else:
                self._enqueue(dest, data, now)
        self._schedule()

    def _block(self, source: _Endpoint, data: bytes | None, now: float) -> None:
        if source.held is None:
            self.blocked.append(source)
            self.backpressure_events += 1
        source.hold(data, now)

    def _enqueue(self, dest: _Endpoint, data: bytes, now: float) -> None:
        self.queue.append(_Chunk(dest, data, now))
        self.queued_bytes += len(data)
        self.bytes_in += len(data)

    def _admit_blocked(self, now: float) -> None:
        while self.blocked:
            source = self.blocked[0]
            if source.held is None:
                self.blocked.popleft()
                continue
            room = self.link.queue_bytes - self.queued_bytes
            if room <= 0:
                return
            held = source.held
            if held:
                take = held[:room]
                self._enqueue(source.peer, bytes(take), now)
                del held[:room]
            if held:
                return
            self.backpressure_s += now - source.held_since
            source.held = None
            self.blocked.popleft()
            if source.held_eof:
                source.held_eof = False
                self.queue.append(_Chunk(source.peer, None, now))
            source.maybe_resume()

    # -- service ------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        if not self.queue:
            if self._ahead:  # room frees when those bytes' opportunities come
                self._timer = self.loop.call_at(self._ahead[0][0], self._service)
            return
        head = self.queue[0]
        if head.data is None or head.dest.dead:
            self._timer = self.loop.call_soon(self._service)
            return
        t_op = self._next_op(head.enq_t)
        if math.isfinite(t_op):
            when = max(t_op - self._horizon_s(), self._last_service + _MIN_WAKE_GAP_S)
            self._timer = self.loop.call_at(when, self._service)

    def _horizon_s(self) -> float:
        # Working ahead is exact: bytes queued now are eligible for a later
        # opportunity, and an opportunity not used stays available to later bytes.
        return _TIMER_EARLY_S + min(self.link.delay_ms / 1000.0, _BATCH_S)

    def _service(self) -> None:
        self._timer = None
        now = self._last_service = self.loop.time()
        horizon = now + self._horizon_s()
        ahead = self._ahead
        while ahead and ahead[0][0] <= now:
            self.queued_bytes -= ahead.popleft()[1]
        queue = self.queue
        delay_s = self.link.delay_ms / 1000.0
        while queue:
            head = queue[0]
            if head.dest.dead:
                queue.popleft()
                if head.data is not None:
                    self.queued_bytes -= len(head.data) - head.offset
                continue
            if head.data is None:
                queue.popleft()
                head.dest.outlet_push(max(now, head.enq_t) + delay_s, None)
                continue
            t_op = self._next_op(head.enq_t)
            if t_op > horizon:
                break
            self._ops_i += 1
            sent = self._deliver_packet(t_op, t_op + delay_s)
            if t_op > now:  # worked ahead: the bytes count as queued until t_op
                ahead.append((t_op, sent))
            else:
                self.queued_bytes -= sent
        self._admit_blocked(now)
        self._schedule()

    def _deliver_packet(self, t_op: float, release_t: float) -> int:
        """One opportunity: up to 1500 bytes that had arrived by ``t_op`` leave."""
        credit = PACKET_BYTES
        queue = self.queue
        self.packets += 1
        if self.link.loss and self.link._rng.random() < self.link.loss:
            self.lost_packets += 1
            release_t += self.link.loss_penalty_ms / 1000.0
        first = True
        while credit and queue:
            head = queue[0]
            if head.enq_t > t_op or head.data is None or head.dest.dead:
                break  # EOFs and dead connections are handled by _service at the head
            if first:
                self._record_queue_delay(t_op - head.enq_t)
                first = False
            data, off = head.data, head.offset
            n = min(credit, len(data) - off)
            head.dest.outlet_push(release_t, data[off : off + n])
            credit -= n
            if off + n == len(data):
                queue.popleft()
            else:
                head.offset = off + n
        return PACKET_BYTES - credit

    def _record_queue_delay(self, wait_s: float) -> None:
        self._qd_sum_s += wait_s
        self._qd_n += 1
        self._qd_max_s = max(self._qd_max_s, wait_s)
        self._qd_recent.append(wait_s)

    def stats(self) -> DirectionStats:
        recent = np.asarray(self._qd_recent) * 1000.0
        now = self.loop.time()
        waiting_s = sum(now - s.held_since for s in self.blocked if s.held is not None)
        return DirectionStats(
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            packets=self.packets,
            lost_packets=self.lost_packets,
            queued_bytes=self.queued_bytes,
            queue_delay_ms_mean=self._qd_sum_s / self._qd_n * 1000.0 if self._qd_n else 0.0,
            queue_delay_ms_p95=float(np.percentile(recent, 95)) if recent.size else 0.0,
            queue_delay_ms_max=self._qd_max_s * 1000.0,
            backpressure_s=self.backpressure_s + waiting_s,
            backpressure_events=self.backpressure_events,
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.queue.clear()
        self.blocked.clear()
        self._ahead.clear()


class _Endpoint(asyncio.Protocol):
    """One socket of a relayed connection: its bytes go into ``pipe`` toward ``peer``;
    bytes for it come out of its outlet (a delay line) at their release times."""

    def __init__(self, link: EmulatedLink, pipe: _Pipe, role: str) -> None:
        self.link = link
        self.pipe = pipe
        self.role = role
        self.peer: _Endpoint = self  # set when both sides exist
        self.transport: asyncio.Transport | None = None
        self.dead = False
        self.eof_in = False
        self.eof_out = False
        self.held: bytearray | None = None
        self.held_eof = False
        self.held_since = 0.0
        self._reading_paused = False
        self._write_paused = False
        self._line: deque[tuple[float, bytes | None]] = deque()
        self._line_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = -math.inf

    # -- socket -> pipe -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER_BYTES)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.role == "client":
            self.set_reading(False)  # nothing to relay to until upstream answers
            self.link._connect_upstream(self)

    def data_received(self, data: bytes) -> None:
        if not self.dead:
            self.pipe.push(self.peer, data, self)
            self._check_backlog()

    def eof_received(self) -> bool:
        self.eof_in = True
        if not self.dead:
            self.pipe.push(self.peer, None, self)
        return True  # keep the socket half-open until the other way is done

    def connection_lost(self, exc: Exception | None) -> None:
        if self.dead:
            return
        self.dead = True
        self._cancel_timer()
        if exc is not None or not (self.eof_in and self.eof_out):
            self.peer.abort()
        self.link._forget(self)

    def hold(self, data: bytes | None, now: float) -> None:
        """Bytes that found the queue full wait here; stop reading the socket."""
        if self.held is None:
            self.held = bytearray()
            self.held_since = now
        if data is None:
            self.held_eof = True
        else:
            self.held += data
        self.set_reading(False)

    def maybe_resume(self) -> None:
        if self.held is None and self.peer._backlog() < _OUTLET_BACKLOG_BYTES:
            self.set_reading(True)

    def set_reading(self, on: bool) -> None:
        if self.transport is None or self.dead or self.eof_in or on is not self._reading_paused:
            return  # already in the asked state (or nothing left to read)
        self._reading_paused = not on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def _check_backlog(self) -> None:
        if self.peer._backlog() >= _OUTLET_BACKLOG_BYTES:
            self.set_reading(False)

    # -- pipe -> socket (outlet) ----------------------------------------------------

    def outlet_push(self, release_t: float, piece: bytes | None) -> None:
        line = self._line
        if line and line[-1][0] > release_t:
            release_t = line[-1][0]  # in order: a "lost" packet holds back later bytes
        line.append((release_t, piece))
        if piece is not None:
            self._line_bytes += len(piece)
        if self._timer is None and len(line) == 1:
            when = max(release_t - _TIMER_EARLY_S, self._last_flush + _MIN_WAKE_GAP_S)
            self._timer = self.link._loop.call_at(when, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self.dead or self.transport is None:
            return
        self._last_flush = self.link._loop.time()
        now = self._last_flush + _TIMER_EARLY_S
        line = self._line
        pieces: list[bytes] = []
        eof = False
        while line and line[0][0] <= now:
            _, piece = line.popleft()
            if piece is None:
                eof = True
                break
            pieces.append(piece)
        if pieces:
            data = b"".join(pieces)
            self._line_bytes -= len(data)
            self.peer.pipe.bytes_out += len(data)
            self.transport.write(data)
        if eof:
            self._write_eof()
        elif line:
            when = max(line[0][0] - _TIMER_EARLY_S, self._last_flush + _MIN_WAKE_GAP_S)
            self._timer = self.link._loop.call_at(when, self._flush)
        if self._backlog() < _OUTLET_BACKLOG_BYTES // 2:
            self.peer.maybe_resume()

    def _write_eof(self) -> None:
        self.eof_out = True
        if self.transport is not None and self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:  # the far end reset meanwhile (ENOTCONN): the pipe is over
                self.close()
                self.peer.close()
                return
        if self.eof_in and self.peer.eof_in and self.peer.eof_out:
            self.close()
            self.peer.close()

    def _backlog(self) -> int:
        buffered = self.transport.get_write_buffer_size() if self.transport else 0
        return self._line_bytes + buffered

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self.peer.maybe_resume()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None:
            self.transport.abort()


class EmulatedLink:
    """``async with EmulatedLink(upstream=(host, port), uplink=trace) as link:``.

    Clients connect to ``127.0.0.1:link.port``; each connection is relayed to
    ``upstream``. ``uplink`` shapes client -> upstream, ``downlink`` (default: the
    uplink trace) upstream -> client; ``delay_ms`` is one-way, added in each direction.
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        uplink: BandwidthTrace,
        downlink: BandwidthTrace | None = None,
        *,
        delay_ms: float = 0.0,
        queue_bytes: int = 262_144,
        loss: float = 0.0,
        loss_penalty_ms: float | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._check_trace("uplink", uplink)
        self._check_trace("downlink", downlink or uplink)
        if not (math.isfinite(delay_ms) and delay_ms >= 0):
            raise LinkConfigError(f"delay_ms must be >= 0, got {delay_ms}")
        if queue_bytes < PACKET_BYTES:
            raise LinkConfigError(f"queue_bytes must be >= {PACKET_BYTES}, got {queue_bytes}")
        if not (0.0 <= loss < 1.0):
            raise LinkConfigError(f"loss must be in [0, 1), got {loss}")
        if loss_penalty_ms is not None and loss_penalty_ms < 0:
            raise LinkConfigError(f"loss_penalty_ms must be >= 0, got {loss_penalty_ms}")
        if not (0 <= port <= 65535):
            raise LinkConfigError(f"port must be in 0..65535, got {port}")
        self.upstream = upstream
        self.host = host
        self.port = port
        self.delay_ms = float(delay_ms)
        self.queue_bytes = int(queue_bytes)
        self.loss = float(loss)
        self.loss_penalty_ms = (
            200.0 + 2 * self.delay_ms if loss_penalty_ms is None else float(loss_penalty_ms)
        )
        self._traces = (uplink, downlink or uplink)
        self._rng = np.random.default_rng(seed)
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._final_stats: LinkStats | None = None
        self._endpoints: set[_Endpoint] = set()
        self._connections_total = 0
        self._started_at = 0.0
        self._loop: asyncio.AbstractEventLoop

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> EmulatedLink:
        """Start the relay's own thread and event loop; returns once it listens."""
        if self._thread is not None:
            raise LinkError("this EmulatedLink was already started")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="emulated-link", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)
        log.info("emulated link %s:%d -> %s:%d", self.host, self.port, *self.upstream)
        return self

    async def close(self) -> None:
        """Stop relaying: every relayed connection is aborted, the thread ends."""
        if self._thread is None or self._stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already gone
            self._loop.call_soon_threadsafe(self._stopping.set)
        await asyncio.to_thread(self._thread.join)

    async def __aenter__(self) -> EmulatedLink:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        # A loop of its own keeps the link's timing independent of whatever the
        # application does on its loop; select() waits with microsecond resolution
        # where epoll rounds up to whole milliseconds.
        loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._started_at = self._loop.time()  # the same clock as time.monotonic()
        self._uplink = _Pipe(self, "uplink", self._traces[0])
        self._downlink = _Pipe(self, "downlink", self._traces[1])
        self._stopping = asyncio.Event()
        try:
            server = await self._loop.create_server(self._accept, self.host, self.port)
        except OSError as exc:
            ready.set_exception(LinkError(f"cannot listen on {self.host}:{self.port}: {exc}"))
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set_result(None)
        await self._stopping.wait()
        self._final_stats = self._stats_now()
        server.close()
        for ep in list(self._endpoints):
            ep.abort()
        await server.wait_closed()
        self._uplink.close()
        self._downlink.close()

    def _in_link_thread(self, fn: Callable[[], _R]) -> _R:
        """Run ``fn`` on the link's loop and return its result (thread-safe)."""
        if self._thread is None or not self._thread.is_alive():
            raise LinkError("the link is not running")
        if threading.current_thread() is self._thread:
            return fn()
        done: concurrent.futures.Future[_R] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed back to the calling thread
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        return done.result(timeout=5.0)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def started_at_s(self) -> float:
        """``time.monotonic()`` when the link (and its traces' time 0) started."""
        return self._started_at

    # -- control --------------------------------------------------------------------

    def set_uplink(self, trace: BandwidthTrace) -> None:
        """Switch the client -> upstream trace now; it starts at its time 0."""
        self._check_trace("uplink", trace)
        self._in_link_thread(lambda: self._uplink.set_trace(trace))

    def set_downlink(self, trace: BandwidthTrace) -> None:
        """Switch the upstream -> client trace now; it starts at its time 0."""
        self._check_trace("downlink", trace)
        self._in_link_thread(lambda: self._downlink.set_trace(trace))

    def set_delay_ms(self, delay_ms: float) -> None:
        """New one-way delay for bytes leaving the queues from now on."""
        if not (math.isfinite(delay_ms) and delay_ms >= 0):
            raise LinkConfigError(f"delay_ms must be >= 0, got {delay_ms}")
        self._in_link_thread(lambda: setattr(self, "delay_ms", float(delay_ms)))

    def stats(self) -> LinkStats:
        """A consistent snapshot of the counters; after close, the last one."""
        if self._final_stats is not None:
            return self._final_stats
        return self._in_link_thread(self._stats_now)

    def _stats_now(self) -> LinkStats:
        return LinkStats(
            uplink=self._uplink.stats(),
            downlink=self._downlink.stats(),
            connections_total=self._connections_total,
            connections_open=len(self._endpoints) // 2,
            elapsed_s=self._loop.time() - self._started_at,
        )

    @staticmethod
    def _check_trace(label: str, trace: object) -> None:
        if not isinstance(trace, BandwidthTrace):
            raise LinkConfigError(f"{label} must be a BandwidthTrace, got {type(trace).__name__}")

    # -- connections ----------------------------------------------------------------

    def _accept(self) -> _Endpoint:
        return _Endpoint(self, self._uplink, "client")

    def _connect_upstream(self, client: _Endpoint) -> None:
        self._connections_total += 1
        self._endpoints.add(client)
        task = self._loop.create_task(self._open_upstream(client))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _open_upstream(self, client: _Endpoint) -> None:
        server = _Endpoint(self, self._downlink, "upstream")
        server.peer, client.peer = client, server
        try:
            await self._loop.create_connection(lambda: server, *self.upstream)
        except OSError as exc:
            log.warning("emulated link: upstream %s:%d unreachable: %s", *self.upstream, exc)
            client.abort()
            self._endpoints.discard(client)
            return
        if client.dead:
            server.abort()
            return
        self._endpoints.add(server)
        client.set_reading(True)

    def _forget(self, endpoint: _Endpoint) -> None:
        self._endpoints.discard(endpoint)


__all__ = ["DirectionStats", "EmulatedLink", "LinkConfigError", "LinkError", "LinkStats"]
