"""The device client: frames in, results (or recorded drop reasons) out.

One bidirectional gRPC stream carries all frames of a session, pipelined: many
frames may be in flight, each waits for its own result until its deadline. When
the edge cannot answer (unreachable, stream broken, deadline passed, frame
refused) the frame runs locally if the device holds the model, else it is
recorded as dropped with the reason; no frame is ever lost silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from splitedge.mobile_client.compression import CompressionChooser
from splitedge.mobile_client.heads import HeadBackend, LocalUnavailable, NoHeadBackend, why_not
from splitedge.mobile_client.messages import (
    EncodedFrame,
    encode_offload,
    encode_split,
    head_tensors,
)
from splitedge.mobile_client.outcome import EDGE_UNAVAILABLE, FrameOutcome, FrameTiming
from splitedge.mobile_client.sources import CameraFrame
from splitedge.mobile_client.transport import (
    ArrivedReply,
    ClientError,
    EdgeTransport,
    EdgeUnavailable,
    FrameStream,
    ModelInfo,
    OutgoingFrame,
    ServerStatus,
    TlsConfig,
)
from splitedge.models.types import BranchSpec
from splitedge.proto import codec
from splitedge.proto.auth import check_token
from splitedge.proto.inline import InlineRule
from splitedge.proto.status import StatusCode

if TYPE_CHECKING:  # discovery needs aiomqtt; a client without the MQTT plane must not
    from splitedge.control_plane.discovery import ServerState

__all__ = ["Client", "ClientError", "EdgeUnavailable", "detections_count"]

log = logging.getLogger(__name__)
_LATE = StatusCode.DEADLINE_EXCEEDED.reason  # a frame past its deadline, on either side

_FORGET_UNANSWERED_S = 30.0
_FORGET_NS = int(_FORGET_UNANSWERED_S * 1e9)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def _ms(start_ns: int, end_ns: int) -> float:
    return (end_ns - start_ns) / 1e6


class _Stream:
    """One open bidi stream and the frames waiting on it."""

    def __init__(
        self,
        stream: FrameStream,
        on_late_answer: Callable[[int, float], None] | None = None,
    ) -> None:
        self.stream = stream
        self.pending: dict[int, asyncio.Future[tuple[ArrivedReply, int]]] = {}
        # Frames written and not answered yet, expired ones too: (sent ns, payload bytes).
        # Their bytes may still be crossing the link, ahead of anything sent now.
        self.unanswered: dict[int, tuple[int, int]] = {}
        self.on_late_answer = on_late_answer
        # Frames to write, in order, by write_loop: a write waits on HTTP/2 flow control
        # (a slow or stalled edge), so it runs apart from the frame, whose deadline keeps
        # counting; cancelling a write half-done would cancel the whole call instead.
        self.outbox: deque[tuple[OutgoingFrame, asyncio.Future[tuple[ArrivedReply, int]]] | None]
        self.outbox = deque()
        self.wake = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None
        self.broken: EdgeUnavailable | None = None

    def send(
        self, outgoing: OutgoingFrame, future: asyncio.Future[tuple[ArrivedReply, int]]
    ) -> None:
        """Queue ``outgoing`` for writing; a write error lands on ``future``."""
        self.outbox.append((outgoing, future))
        self.wake.set()

    def finish_writing(self) -> None:
        """Half-close once the frames queued so far are written."""
        self.outbox.append(None)
        self.wake.set()

    async def write_loop(self) -> None:
        while True:
            if not self.outbox:
                self.wake.clear()
                await self.wake.wait()
                continue
            item = self.outbox.popleft()
            if item is None:
                # The read loop may have ended the call already (a broken stream): then
                # there is nothing left to half-close, and no task error to leave behind.
                with contextlib.suppress(Exception):
                    await self.stream.done_writing()
                return
            outgoing, future = item
            if future.done():  # its deadline passed (or it was cancelled) while it queued
                self.unanswered.pop(outgoing.frame_id, None)
                continue
            try:
                await self.stream.write(outgoing)
            except Exception as exc:  # the writer must outlive a failed write
                self.unanswered.pop(outgoing.frame_id, None)
                if not future.done():
                    future.set_exception(
                        exc
                        if isinstance(exc, EdgeUnavailable)
                        else EdgeUnavailable(f"edge stream write failed: {exc!r}")
                    )

    def backlog_bytes(self, now_ns: int) -> int:
        """Payload bytes of the frames still unanswered (an answer lost for over
        ``_FORGET_UNANSWERED_S`` is forgotten)."""
        stale = [i for i, (sent, _) in self.unanswered.items() if now_ns - sent > _FORGET_NS]
        for i in stale:
            del self.unanswered[i]
        return sum(size for _, size in self.unanswered.values())

    async def read_loop(self) -> None:
        error = EdgeUnavailable("edge closed the stream")
        try:
            async for result in self.stream.replies():
                arrived_ns = time.perf_counter_ns()
                sent = self.unanswered.pop(result.frame_id, None)
                future = self.pending.pop(result.frame_id, None)
                if future is not None and not future.done():
                    future.set_result((result, arrived_ns))
                elif sent is not None and self.on_late_answer is not None:
                    # Past its deadline, but its round trip is a true measurement of the
                    # link at its worst: the one a deadline cut short only bounds it.
                    sent_ns, size = sent
                    network_ms = _ms(sent_ns, arrived_ns) - result.server_total_ms
                    if network_ms > 0:
                        self.on_late_answer(size, network_ms)
        except EdgeUnavailable as exc:
            error = exc
        except asyncio.CancelledError:
            error = EdgeUnavailable("client closed the stream")
            raise
        finally:
            self.broken = error
            self.finish_writing()  # the writer ends too (what it still holds fails fast)
            self.unanswered.clear()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(error)
            self.pending.clear()


class Client:
    """``async with Client("host:port", "model") as client: await client.submit(frame, branch)``.

    ``backend`` runs heads and local fallback on the device (default: none, offload
    branches only). ``deadline_ms`` is the per-frame budget from capture to result.
    ``bits`` overrides the branch's default quantization of split tensors.
    ``compression``: ``auto`` zstd-compresses split tensors (at ``zstd_level``) only
    while the measured link makes it pay (see :mod:`~splitedge.mobile_client.compression`),
    ``zstd`` always, ``raw`` never. ``tls_ca`` (PEM) reaches a TLS edge; ``tls_cert`` and
    ``tls_key`` (PEM) are this device's certificate for one that wants mutual TLS.
    ``token`` is this device's token for an edge with ``[auth] tokens``, sent on every
    call (a wrong or missing one: :class:`EdgeRefused` ``UNAUTHENTICATED`` on entry).
    :meth:`switch_server` moves the session to another server; ``server_load`` holds
    the current server's last published state (set by whoever follows discovery)
    for a policy's latency model. ``prefilter(image) -> bool`` gates every branch:
    a frame it rejects is recorded as dropped, reason ``prefiltered``, and never
    touches the uplink or the device's model.

    Head and encoding run in a worker thread, so the event loop stays free for
    other frames' I/O; a branch whose head + encode is measured (moving average)
    under ``inline_below_ms`` runs on the event loop instead, because the thread
    hand-off would cost more than the work. Each branch's first frame goes to the
    thread, so an unmeasured head never blocks the loop.
    """

    def __init__(
        self,
        server: str,
        model: str,
        *,
        backend: HeadBackend | None = None,
        deadline_ms: float = 1000.0,
        local_fallback: bool = True,
        bits: int | None = None,
        zstd_level: int = 3,
        compression: str = "auto",
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        token: str | None = None,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 8.0,
        prefilter: Callable[[np.ndarray], bool] | None = None,
        inline_below_ms: float = 0.25,
    ) -> None:
        if inline_below_ms < 0:
            raise ValueError(f"inline_below_ms must not be negative, got {inline_below_ms}")
        codec.check_zstd_level(zstd_level)  # a ValueError now, not on the first frame
        self.server = server
        self._inline = InlineRule[str](inline_below_ms)  # head + encode cost per branch
        self.prefilter = prefilter
        self.prefiltered = 0
        self.model = model
        self.backend: HeadBackend = backend or NoHeadBackend()
        self.deadline_ms = deadline_ms
        self.local_fallback = local_fallback
        self.bits = bits
        self.zstd_level = zstd_level
        self.compression_chooser = CompressionChooser(compression)
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.model_info: ModelInfo | None = None
        self._warned_unchecked_weights = False
        self.branches: dict[str, BranchSpec] = {}
        self.server_load: ServerState | None = None
        self._tls = TlsConfig.from_paths(tls_ca or None, tls_cert or None, tls_key or None)
        self._token = check_token(token) if token is not None else None
        self._retiring: set[asyncio.Task[None]] = set()
        self._transport: EdgeTransport | None = None
        self._stream: _Stream | None = None
        self._open_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        # (payload bytes, network ms) of an answer that came after its frame's deadline.
        self.on_late_answer: Callable[[int, float], None] | None = None
        self._failures = 0
        self._retry_at = 0.0

    @property
    def inline_below_ms(self) -> float:
        """Head + encode measured under this runs on the event loop (see the class doc)."""
        return self._inline.below_ms

    # ------------------------------------------------------------ lifetime

    def _connect(self) -> None:
        self._transport = EdgeTransport(self.server, tls=self._tls, token=self._token)

    async def __aenter__(self) -> Client:
        self._connect()
        try:
            await self.refresh_model_info()
        except EdgeUnavailable as exc:
            log.warning("%s; starting without the edge (local/offline only)", exc)
            self._note_failure()
        except BaseException:
            # Refused (unknown model, other head weights): no __aexit__ will close it.
            assert self._transport is not None
            await self._transport.close()
            raise
        self._add_local_branches()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close_stream()
        if self._transport is not None:
            await self._transport.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def switch_server(self, server: str) -> None:
        """Move to the edge server at ``server`` (``host:port``) without losing a frame.

        New frames go to the new server at once. Frames already on the old stream
        keep waiting for their answers there (a live server still answers them; a
        dead one breaks the stream and they fall back like any frame the edge
        missed). Raises :class:`ClientError` if the new server does not serve the
        model; an unreachable one is tolerated (frames fall back until it answers).
        """
        async with self._open_lock:
            old_stream, old_transport = self._stream, self._transport
            self._stream = None
            self.server = server
            if self.server_load is not None and self.server_load.address != server:
                self.server_load = None  # another server's load would mislead the policy
            self._connect()
            # The old server's failures (and its link's rate) say nothing about this one.
            self._failures, self._retry_at = 0, 0.0
            self.compression_chooser.forget_link()
        task = asyncio.create_task(
            self._retire(old_stream, old_transport), name=f"retire-stream {self.server}"
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        log.info("switched to edge server %s", server)
        try:
            await self.refresh_model_info()
        except EdgeUnavailable as exc:
            log.warning("%s; frames fall back until it answers", exc)
            self.model_info = None  # _open_stream asks again before streaming
            self._note_failure()

    async def refresh_model_info(self) -> ModelInfo:
        """Ask the server to describe our model (branches, tensor specs, profiles).

        Raises :class:`~splitedge.mobile_client.transport.EdgeRefused` (a
        :class:`ClientError`) if the server does not serve it, :class:`EdgeUnavailable`
        if it does not answer."""
        assert self._transport is not None, "use Client inside 'async with'"
        info = await self._transport.describe(self.model, timeout_s=self.connect_timeout_s)
        self._check_head_weights(info)
        self.model_info = info
        self.branches.update({b.name: b.spec for b in info.branches})
        # A backend that gets its heads from the edge (onnx) fetches them now; it never
        # raises, a head it cannot get only leaves its branch out.
        prepare = getattr(self.backend, "prepare", None)
        if prepare is not None:
            specs = [b.spec for b in info.branches]
            await prepare(self._transport, self.model, specs, server=self.server)
        return info

    def _check_head_weights(self, info: ModelInfo) -> None:
        """Refuse (ClientError) a server whose split branches expect other head weights
        than this device's torch heads hold; the tail would decode their codes into
        wrong boxes without any error. An edge that states none (older) gets one warning."""
        fingerprints = getattr(self.backend, "head_fingerprints", None)
        ours = fingerprints() if fingerprints is not None else {}
        checked = [b for b in info.branches if b.kind == "split" and b.name in ours]
        unstated = [b.name for b in checked if not b.head_weights_sha256]
        if unstated and not self._warned_unchecked_weights:
            self._warned_unchecked_weights = True
            log.warning(
                "edge %s states no head weights fingerprint for %s (an older server): "
                "cannot check that this device's head weights are the edge's",
                self.server,
                ", ".join(unstated),
            )
        wrong = [b for b in checked if b.head_weights_sha256 not in ("", ours[b.name])]
        if wrong:
            first = wrong[0]
            more = f" (and {len(wrong) - 1} more branches)" if len(wrong) > 1 else ""
            raise ClientError(
                f"branch {first.name!r}{more} of model {info.name!r}: this device's head "
                f"weights (sha256 {ours[first.name][:12]}) are not the edge's "
                f"({first.head_weights_sha256[:12]}); load the edge's weights with "
                "--model-option weights=..., or use --backend onnx to fetch the head "
                "from the edge"
            )

    def _add_local_branches(self) -> None:
        model = getattr(self.backend, "model", None)
        if model is not None:
            for name, spec in model.branches.items():
                self.branches.setdefault(name, spec)
        # A backend with heads only (onnx) knows the local branch too, to say in each
        # frame's record why it cannot run it.
        if self.backend.has_local or getattr(self.backend, "no_local_reason", ""):
            self.branches.setdefault("local", BranchSpec("local", "local"))

    async def status(self) -> ServerStatus:
        """The server's load and per-branch tail latency right now (the Status RPC)."""
        assert self._transport is not None, "use Client inside 'async with'"
        return await self._transport.status(timeout_s=self.connect_timeout_s)

    # ------------------------------------------------------------ frames

    async def submit(
        self,
        frame: CameraFrame,
        branch: str,
        *,
        deadline_ms: float | None = None,
        bits: int | None = None,
        local_fallback: bool | None = None,
    ) -> FrameOutcome:
        """Run one frame on ``branch``; always returns an outcome, never loses the frame.

        ``deadline_ms``, ``bits`` and ``local_fallback`` override the client's defaults
        for this frame. Without local fallback a frame the edge did not answer comes
        back ``source="dropped"`` with the reason, for the caller to answer otherwise
        (:meth:`fall_back_locally`, a tracker) or to record.
        """
        try:
            spec = self.branches[branch]
        except KeyError:
            raise ClientError(
                f"unknown branch {branch!r} for model {self.model!r}; "
                f"known: {', '.join(sorted(self.branches)) or 'none (server unreachable)'}"
            ) from None
        budget_ms = self.deadline_ms if deadline_ms is None else deadline_ms
        start_ns = time.perf_counter_ns()
        timing = FrameTiming()
        if self.prefilter is not None:
            keep = await asyncio.to_thread(self.prefilter, frame.image)
            timing.prefilter_ms = _ms(start_ns, time.perf_counter_ns())
            if not keep:
                self.prefiltered += 1
                timing.total_ms = timing.prefilter_ms
                return FrameOutcome(frame.index, branch, "dropped", "prefiltered", None, timing)
        if spec.kind == "local":
            if not self.backend.has_local:
                timing.total_ms = _ms(start_ns, time.perf_counter_ns())
                why = getattr(self.backend, "no_local_reason", "") or "no local model"
                return FrameOutcome(frame.index, branch, "dropped", f"local: {why}", None, timing)
            return await self._run_local(frame, branch, "", timing, start_ns)
        fallback = self.local_fallback if local_fallback is None else local_fallback
        if not self.backend.can_run(spec):
            raise ClientError(why_not(self.backend, spec))

        bits = self.bits if bits is None else bits
        if self._inline.inline(branch):
            payload = self._prepare(spec, frame, timing, bits)
        else:
            payload = await asyncio.to_thread(self._prepare, spec, frame, timing, bits)
        self._inline.observe(branch, timing.head_ms + timing.encode_ms)
        payload_bytes = payload.payload_bytes
        spent_ms = _ms(start_ns, time.perf_counter_ns())
        remaining_ms = budget_ms - spent_ms if budget_ms > 0 else 0.0
        if budget_ms > 0 and remaining_ms <= 0:
            return await self._fallback(
                frame, branch, _LATE, timing, start_ns, payload_bytes, fallback
            )
        t0 = time.perf_counter_ns()
        outgoing = OutgoingFrame.build(
            payload,
            frame_id=next(self._ids),
            model=self.model,
            branch=branch,
            deadline_ms=remaining_ms,
        )
        timing.encode_ms += _ms(t0, time.perf_counter_ns())  # the request is encoding too

        try:
            arrived, sent_ns, arrived_ns = await self._exchange(outgoing, remaining_ms)
        except asyncio.TimeoutError:
            return await self._fallback(
                frame, branch, _LATE, timing, start_ns, payload_bytes, fallback
            )
        except EdgeUnavailable as exc:
            log.debug("frame %d: %s", frame.index, exc)
            return await self._fallback(
                frame, branch, EDGE_UNAVAILABLE, timing, start_ns, payload_bytes, fallback
            )

        result = arrived.decode()
        timing.roundtrip_ms = _ms(sent_ns, arrived_ns)
        timing.server = result.timing  # the server's, as it came
        timing.network_ms = max(0.0, timing.roundtrip_ms - result.timing.server_total_ms)
        self.compression_chooser.observe_transfer(payload_bytes, timing.network_ms)
        if result.status is not StatusCode.OK:
            log.warning("frame %d refused: %s: %s", frame.index, result.status.name, result.message)
            return await self._fallback(
                frame, branch, result.status.reason, timing, start_ns, payload_bytes, fallback
            )
        timing.total_ms = _ms(start_ns, time.perf_counter_ns())
        return FrameOutcome(
            frame_id=frame.index,
            branch=branch,
            source="edge",
            prediction=result.prediction,
            timing=timing,
            payload_bytes=payload_bytes,
        )

    async def run(
        self,
        frames: Iterable[CameraFrame],
        branch: str,
        *,
        max_in_flight: int = 4,
        fps: float = 0.0,
    ) -> AsyncIterator[FrameOutcome]:
        """Stream ``frames`` on ``branch`` with up to ``max_in_flight`` pipelined; yields in order.

        ``fps`` > 0 paces the source like a camera would (frames are not queued up
        faster than they are captured).
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        in_flight: deque[asyncio.Task[FrameOutcome]] = deque()
        iterator: Iterator[CameraFrame] = iter(frames)
        period_s = 1.0 / fps if fps > 0 else 0.0
        next_at = time.perf_counter()
        try:
            while True:
                frame = await asyncio.to_thread(next, iterator, None)
                if frame is None:
                    break
                in_flight.append(asyncio.create_task(self.submit(frame, branch)))
                while len(in_flight) >= max_in_flight or (in_flight and in_flight[0].done()):
                    yield await in_flight.popleft()
                if period_s:
                    next_at += period_s
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            while in_flight:
                yield await in_flight.popleft()
        finally:
            for task in in_flight:
                task.cancel()

    # ------------------------------------------------------------ internals

    def _prepare(
        self, spec: BranchSpec, frame: CameraFrame, timing: FrameTiming, bits: int | None
    ) -> EncodedFrame:
        if spec.kind == "offload":
            t0 = time.perf_counter_ns()
            payload = encode_offload(frame.image, spec)
            timing.encode_ms = _ms(t0, time.perf_counter_ns())
            return payload
        t0 = time.perf_counter_ns()
        head = self.backend.head(spec, frame.image)
        t1 = time.perf_counter_ns()
        bits = spec.default_bits if bits is None else bits
        tensors = head_tensors(head, bits=bits)
        if self.compression_chooser.should_compress(spec.name):
            t2 = time.perf_counter_ns()
            packed = [codec.compress_tensor(t, self.zstd_level) for t in tensors]
            self.compression_chooser.observe_compression(
                spec.name,
                sum(t.size_bytes for t in tensors),
                sum(t.size_bytes for t in packed),
                _ms(t2, time.perf_counter_ns()),
            )
            tensors = packed
        payload = encode_split(head, tensors)
        timing.head_ms, timing.encode_ms = _ms(t0, t1), _ms(t1, time.perf_counter_ns())
        return payload

    async def _exchange(
        self, outgoing: OutgoingFrame, remaining_ms: float
    ) -> tuple[ArrivedReply, int, int]:
        stream = await self._open_stream()
        frame_id = outgoing.frame_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[ArrivedReply, int]] = loop.create_future()
        stream.pending[frame_id] = future
        # The deadline covers the write too: a large frame's write waits on HTTP/2 flow
        # control, which a stalled edge never opens. The frame's own future times out
        # (asyncio.wait_for would wrap it in another future and callbacks on every
        # frame, ~4% of a loopback round trip).
        expiry = (
            loop.call_later(remaining_ms / 1000.0, _expire, future) if remaining_ms > 0 else None
        )
        try:
            sent_ns = time.perf_counter_ns()
            stream.unanswered[frame_id] = (sent_ns, outgoing.payload_bytes)
            stream.send(outgoing, future)
            result, arrived_ns = await future
        finally:
            if expiry is not None:
                expiry.cancel()
            stream.pending.pop(frame_id, None)
        self._failures = 0
        return result, sent_ns, arrived_ns

    async def _open_stream(self) -> _Stream:
        async with self._open_lock:
            if self._stream is not None and self._stream.broken is None:
                return self._stream
            if self._stream is not None:
                log.warning("%s", self._stream.broken)
                self._note_failure()
                self._stream = None
            if time.monotonic() < self._retry_at:
                raise EdgeUnavailable("edge unavailable; waiting before reconnecting")
            assert self._transport is not None, "use Client inside 'async with'"
            if self.model_info is None:
                try:
                    await self.refresh_model_info()
                except EdgeUnavailable:
                    self._note_failure()
                    raise
            stream = _Stream(self._transport.open_stream(), self._late_answer)
            stream.reader = asyncio.create_task(stream.read_loop(), name="edge-stream-reader")
            stream.writer = asyncio.create_task(stream.write_loop(), name="edge-stream-writer")
            self._stream = stream
            return stream

    def _late_answer(self, payload_bytes: int, network_ms: float) -> None:
        if self.on_late_answer is not None:
            self.on_late_answer(payload_bytes, network_ms)

    def backlog_bytes(self) -> int:
        """Payload bytes sent on the current stream and not answered yet (expired frames
        too): what may still be queued on the uplink ahead of the next frame."""
        stream = self._stream
        if stream is None or stream.broken is not None:
            return 0
        return stream.backlog_bytes(time.perf_counter_ns())

    def _note_failure(self) -> None:
        # Exponential backoff with jitter so a fleet does not reconnect in lockstep.
        self._failures += 1
        delay = min(self.max_backoff_s, 0.25 * 2 ** min(self._failures, 8))
        self._retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        await self._end_stream(stream)

    async def _retire(self, stream: _Stream | None, transport: EdgeTransport | None) -> None:
        await self._end_stream(stream)
        if transport is not None:
            await transport.close()

    @staticmethod
    async def _end_stream(stream: _Stream | None) -> None:
        if stream is None:
            return
        stream.finish_writing()  # after the frames already queued
        until = time.monotonic() + 2.0
        for task in (stream.writer, stream.reader):
            if task is not None:
                try:
                    await asyncio.wait_for(task, max(0.0, until - time.monotonic()))
                except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                    task.cancel()
        stream.stream.cancel()

    async def _run_local(
        self, frame: CameraFrame, branch: str, reason: str, timing: FrameTiming, start_ns: int
    ) -> FrameOutcome:
        t0 = time.perf_counter_ns()
        prediction = await asyncio.to_thread(self.backend.local, frame.image)
        timing.local_ms = _ms(t0, time.perf_counter_ns())
        timing.total_ms = _ms(start_ns, time.perf_counter_ns())
        return FrameOutcome(frame.index, branch, "local", reason, prediction, timing)

    async def fall_back_locally(self, frame: CameraFrame, outcome: FrameOutcome) -> FrameOutcome:
        """Answer a frame the edge did not (``outcome`` from ``submit(local_fallback=False)``)
        with the device's own model, keeping its reason, timing and bytes; ``outcome``
        itself when the device has no model."""
        if outcome.source != "dropped" or not self.backend.has_local:
            return outcome
        start_ns = time.perf_counter_ns() - int(outcome.timing.total_ms * 1e6)
        try:
            local = await self._run_local(
                frame, outcome.branch, outcome.reason, outcome.timing, start_ns
            )
        except LocalUnavailable:
            return outcome
        local.payload_bytes = outcome.payload_bytes
        return local

    async def _fallback(
        self,
        frame: CameraFrame,
        branch: str,
        reason: str,
        timing: FrameTiming,
        start_ns: int,
        payload_bytes: int,
        local_fallback: bool = True,
    ) -> FrameOutcome:
        if local_fallback and self.backend.has_local:
            try:
                outcome = await self._run_local(frame, branch, reason, timing, start_ns)
            except LocalUnavailable:
                pass
            else:
                outcome.payload_bytes = payload_bytes
                return outcome
        timing.total_ms = _ms(start_ns, time.perf_counter_ns())
        return FrameOutcome(
            frame.index, branch, "dropped", reason, None, timing, payload_bytes=payload_bytes
        )


def detections_count(outcome: FrameOutcome) -> int:
    pred: Any = outcome.prediction
    return 0 if pred is None or not hasattr(pred, "boxes") else int(np.asarray(pred.boxes).shape[0])
