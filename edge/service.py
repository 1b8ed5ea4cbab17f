"""The edge server's logic, free of gRPC: validate, decode, batch, run tails, encode.

:class:`EdgeService` turns a :class:`~splitedge.edge.registry.FrameRequest` into an
:class:`Outcome` (an output or a :class:`~splitedge.edge.errors.RequestError`, plus
the server timing breakdown), records statistics and metrics, and reports status.
The servicer in :mod:`splitedge.edge.server` only translates protobuf to and from
these objects.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from splitedge.edge.batcher import BatchResult
from splitedge.edge.config import BatchingConfig, EngineConfig, ModelConfig
from splitedge.edge.engine import TailEngine, make_engine
from splitedge.edge.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    RequestError,
    ResourceExhausted,
    Unavailable,
)
from splitedge.edge.metrics import Metrics
from splitedge.edge.registry import FrameRequest, ModelRegistry, declared_decoded_bytes
from splitedge.edge.stats import BranchSnapshot, ServerStats
from splitedge.models.split_errors import InputError
from splitedge.models.types import (
    BranchSpec,
    Detections,
    Prediction,
    SegmentationMask,
    TailInput,
)
from splitedge.proto import codec
from splitedge.proto.codec import EncodedImage, EncodedTensor
from splitedge.proto.status import (
    NO_SERVER_TIMING,
    BranchLoad,
    ServerStatus,
    ServerTiming,
)

__all__ = [
    "EdgeService",
    "Outcome",
    "Output",
    "ServerStatus",
    "ServerTiming",
    "describe_device",
]

log = logging.getLogger(__name__)

Output = Detections | EncodedImage | EncodedTensor
"""Detections as they are; masks as PNG images; raw tensors (e.g. depth) encoded."""

# Below this many decoded bytes (declared: what the payload inflates to, not what
# crossed the wire), decoding inline costs less than a thread hop.
_INLINE_DECODE_BYTES = 64 * 1024
# A stream refused for want of room reads its next frame once there is room, or after this.
_ROOM_WAIT_S = 1.0


@dataclass
class Outcome:
    """What the server answers for one frame: ``output`` or ``error``, and its timing."""

    frame_id: int
    model: str
    branch: str
    output: Output | None = None
    error: RequestError | None = None
    timing: ServerTiming = NO_SERVER_TIMING


def _decoded_bytes(frame: FrameRequest) -> float:
    """What decoding ``frame`` produces, from its declared shapes and sizes (a 145-byte
    zstd frame may declare 64 MiB); infinite for a declaration the codec would refuse."""
    total: float = 0
    for t in frame.tensors:
        size = declared_decoded_bytes(t)
        total += math.inf if size is None else size
    if frame.image is not None:
        total += max(frame.image.width, 0) * max(frame.image.height, 0) * 3
    return total


def _remaining_ms(frame: FrameRequest, arrival: float) -> float:
    """What is left of the frame's budget (0 = none); DEADLINE_EXCEEDED if nothing is.

    The budget counts from arrival, so decoding spends it too."""
    if frame.deadline_ms <= 0:
        return 0.0
    left_ms = frame.deadline_ms - (time.perf_counter() - arrival) * 1000.0
    if left_ms <= 0:
        raise DeadlineExceeded(
            f"the frame's {frame.deadline_ms:.0f} ms budget ran out while decoding"
        )
    return left_ms


def _run_inline(pipeline: Coroutine[Any, Any, Outcome]) -> Outcome:
    """Drive a pipeline that never suspends (every stage inline) to its end, here."""
    try:
        pipeline.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    pipeline.close()
    raise RuntimeError("an inline frame pipeline suspended; EdgeService.inline() was wrong")


def describe_device(device: str) -> str:
    """``"cuda:0 (NVIDIA H100)"`` or ``"cpu"``, for Status."""
    torch = sys.modules.get("torch")
    if device.startswith("cuda") and torch is not None and torch.cuda.is_available():
        index = int(device.partition(":")[2] or torch.cuda.current_device())
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device


class EdgeService:
    """``async with EdgeService(registry, batching) as service: await service.process(f)``."""

    def __init__(
        self,
        registry: ModelRegistry,
        batching: BatchingConfig,
        *,
        device: str = "cpu",
        metrics: Metrics | None = None,
        server_id: str | None = None,
        engine: EngineConfig | None = None,
        models: Sequence[ModelConfig] = (),
    ) -> None:
        """``engine``: where tails run (default: in-process batching); with the ray
        engine, ``models`` (the served models' configs) is what each replica builds."""
        self.registry = registry
        self.device = device
        # A fresh random id per start: Status must not tell callers the host name or pid
        # (an MQTT-publishing server reports its configured or published id instead).
        self.server_id = server_id or f"edge-{secrets.token_hex(4)}"
        self.metrics = metrics
        self.stats = ServerStats(tail_workers=batching.tail_workers)
        engine = engine or EngineConfig()
        self.engine_kind = engine.kind
        # The one engine the pipeline talks to, whichever runs the tails.
        self.batcher: TailEngine = make_engine(
            engine,
            batching,
            self._tail,
            models=models,
            device=device,
            observer=self._observe_batch,
        )
        if metrics is not None:
            metrics.queue_depth.set_function(lambda: self.batcher.queue_depth)
        self._accepting = True
        # Branches whose last output was detections: candidates for process_now.
        self._plain_outputs: set[tuple[str, str]] = set()

    async def __aenter__(self) -> EdgeService:
        await self.batcher.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.begin_shutdown()
        await self.batcher.__aexit__(exc_type, exc, tb)

    def begin_shutdown(self) -> None:
        """New frames get UNAVAILABLE from now on; admitted ones still complete."""
        self._accepting = False

    @property
    def accepting(self) -> bool:
        return self._accepting

    # ------------------------------------------------------------ frames

    def inline(self, frame: FrameRequest) -> bool:
        """The one inline-or-pool choice: whether ``frame``'s whole pipeline runs on the
        event loop, with no thread or task hand-off.

        Only for a branch whose last output was detections (they need no encoding)
        and whose tail the batcher runs inline right now, with a payload that declares
        a decoded size small enough to decode inline: then nothing in the pipeline can
        block the loop for long.
        """
        return (
            self._accepting
            and (frame.model, frame.branch) in self._plain_outputs
            and _decoded_bytes(frame) < _INLINE_DECODE_BYTES
            and self.batcher.can_run_now(frame.model, frame.branch)
        )

    async def process(self, frame: FrameRequest) -> Outcome:
        """Answer one frame; never raises a RequestError (it is in the outcome)."""
        return await self._pipeline(frame, inline=self.inline(frame))

    async def process_pooled(self, frame: FrameRequest) -> Outcome:
        """:meth:`process` for a frame :meth:`process_now` just refused: the pipeline off
        the loop, without deciding again."""
        return await self._pipeline(frame, inline=False)

    def process_now(self, frame: FrameRequest) -> Outcome | None:
        """The whole answer without leaving the event loop when :meth:`inline` allows it,
        else None (then await :meth:`process`). Refusals count as answers: with the
        admission queue full, the refusal is answered here, before any decoding."""
        if not (self.inline(frame) or self.batcher.full):
            return None
        return _run_inline(self._pipeline(frame, inline=True))

    async def pause_after_refusal(self, outcome: Outcome) -> None:
        """After ``outcome`` was refused for want of room, wait until a frame could be
        admitted again (at most ``_ROOM_WAIT_S``). A stream that reads its next frame
        only then sends one refusal per freed place, not one per round trip: under
        overload, refusals would otherwise take the CPU the admitted frames' tails need."""
        if isinstance(outcome.error, ResourceExhausted) and self.batcher.full:
            await self.batcher.wait_for_room(_ROOM_WAIT_S)

    async def _pipeline(self, frame: FrameRequest, *, inline: bool) -> Outcome:
        """The one pipeline for an edge frame: admit, decode, tail, encode, record.

        ``inline``: every stage runs on the caller's stack (:meth:`inline` checked it is
        cheap), so the coroutine finishes without suspending. Otherwise the frame takes
        its place in the batcher's admission queue before it is decoded (a flood is
        refused before the work, not after), and each stage that may be costly leaves
        the loop: a large declared decode and a non-detection output's encoding go to a
        thread, the tail to the batcher (which still runs it inline when measured cheap).
        """
        arrival = time.perf_counter()
        output: Output | None = None
        error: RequestError | None = None
        decode_ms = encode_ms = 0.0
        result: BatchResult | None = None
        try:
            spec = self._admit(frame)
            # Admission before decoding: under overload a refusal must cost next to nothing.
            with self.batcher.admit() as admission:
                t0 = time.perf_counter()
                if inline or _decoded_bytes(frame) < _INLINE_DECODE_BYTES:
                    item = self.registry.decode(frame, spec)
                else:
                    item = await asyncio.to_thread(self.registry.decode, frame, spec)
                decode_ms = (time.perf_counter() - t0) * 1000.0
                deadline_ms = _remaining_ms(frame, arrival)
                # Inline: can_run_now held and nothing ran since, so this returns unsuspended.
                result = await self.batcher.submit(
                    frame.model, frame.branch, item, deadline_ms=deadline_ms, admission=admission
                )
            t0 = time.perf_counter()
            if inline or isinstance(result.prediction, Detections):
                output = self._encode(result.prediction, frame)
            else:
                output = await asyncio.to_thread(self._encode, result.prediction, frame)
            encode_ms = (time.perf_counter() - t0) * 1000.0
            self._note_output(frame, output)
        except RequestError as exc:
            error = exc
            log.debug("frame %d %s/%s: %s", frame.frame_id, frame.model, frame.branch, exc)
            if result is not None:  # the tail ran; only the encoding failed
                encode_ms = (time.perf_counter() - t0) * 1000.0
        total_ms = (time.perf_counter() - arrival) * 1000.0
        if result is None:
            timing = ServerTiming(decode_ms=decode_ms, server_total_ms=total_ms)
        else:
            timing = ServerTiming(
                decode_ms, result.queue_ms, result.tail_ms, encode_ms, result.batch_size, total_ms
            )
        outcome = Outcome(frame.frame_id, frame.model, frame.branch, output, error, timing)
        self.record(outcome)
        return outcome

    def _admit(self, frame: FrameRequest) -> BranchSpec:
        """The frame's branch, once everything checkable without decoding is checked."""
        if not self._accepting:
            raise Unavailable("server is shutting down; send this frame elsewhere")
        return self.registry.check(frame)

    def _note_output(self, frame: FrameRequest, output: Output) -> None:
        """Remember whether the branch answers detections (a candidate for :meth:`inline`)."""
        key = (frame.model, frame.branch)
        if isinstance(output, Detections):
            self._plain_outputs.add(key)
        else:
            self._plain_outputs.discard(key)

    def record(self, outcome: Outcome) -> None:
        """Count an answered frame (also for frames refused before decoding into a FrameRequest)."""
        if self.metrics is None:
            return
        code = "OK" if outcome.error is None else outcome.error.code.name
        # Only served names become labels: a client cannot grow the label set.
        model, branch = outcome.model, outcome.branch
        try:
            served = branch in self.registry.model(model).branches
        except RequestError:
            served = False
        if not served:
            model, branch = ("", "") if model not in self.registry.names else (model, "")
        self.metrics.observe_request(model, branch, code)

    def _tail(self, model: str, branch: str, inputs: list[TailInput]) -> Sequence[Prediction]:
        try:
            return self.registry.model(model).run_tail(branch, inputs)
        except InputError as exc:
            # The model refused an input the edge's checks let through: the frame's fault,
            # not a bug (the batcher reruns a failed batch frame by frame to find it).
            raise InvalidArgument(str(exc)) from exc

    def _observe_batch(
        self, model: str, branch: str, batch_size: int, start_s: float, end_s: float
    ) -> None:
        tail_ms = (end_s - start_s) * 1000.0
        self.stats.record_batch(
            model, branch, tail_ms=tail_ms, batch_size=batch_size, start=start_s, end=end_s
        )
        if self.metrics is not None:
            self.metrics.observe_batch(model, branch, batch_size, end_s - start_s)

    @staticmethod
    def _encode(prediction: Prediction, frame: FrameRequest) -> Output:
        """The wire form of a tail's output (masks as PNG, arrays as tensors): CPU work."""
        try:
            if isinstance(prediction, Detections):
                return prediction
            if isinstance(prediction, SegmentationMask):
                return codec.encode_image(prediction.mask, "png")
            if isinstance(prediction, np.ndarray):
                return codec.encode_tensor(prediction, "output")
        except codec.CodecError as exc:
            raise InternalError(f"cannot encode the tail's output: {exc}") from exc
        raise InternalError(
            f"tail of {frame.model}/{frame.branch} returned a {type(prediction).__name__}, "
            "not Detections, SegmentationMask or an array"
        )

    # ------------------------------------------------------------ status

    def branch_stats(self, model: str, branch: str) -> BranchSnapshot:
        return self.stats.branch(model, branch)

    def status(self) -> ServerStatus:
        """The load the ``Status`` RPC and the MQTT status both report."""
        now = time.monotonic()
        self.stats.tail_workers = max(1, self.batcher.workers)  # replicas come and go
        branches = []
        for model in self.registry.models:
            for spec in model.branches.values():
                if spec.kind != "local":
                    snapshot = self.stats.branch(model.name, spec.name)
                    measured = snapshot.tail_samples > 0
                    branches.append(
                        BranchLoad(
                            model=model.name,
                            branch=spec.name,
                            queue_depth=self.batcher.depth(model.name, spec.name),
                            tail_latency_ms_p50=snapshot.tail_latency_ms_p50 if measured else None,
                            tail_latency_ms_p95=snapshot.tail_latency_ms_p95 if measured else None,
                            frames=snapshot.frames,
                            by_batch_size=snapshot.by_batch_size,
                            replicas=self.batcher.replicas(model.name, spec.name),
                        )
                    )
        return ServerStatus(
            server_id=self.server_id,
            device=(
                describe_device(self.device)
                if self.engine_kind == "local"
                else f"ray serve ({self.device} per replica)"
            ),
            queue_depth=self.batcher.queue_depth,
            queue_capacity=self.batcher.queue_capacity,
            in_flight=self.batcher.in_flight,
            load=self.stats.busy_fraction(now),
            frames_per_second=self.stats.frames_per_second(now),
            uptime_s=self.stats.uptime_s(now),
            branches=tuple(branches),
        )
