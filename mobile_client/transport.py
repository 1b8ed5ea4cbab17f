"""The one place the device speaks gRPC: channels, the stub, errors, protobuf <-> domain.

Built like the edge's servicer (:mod:`splitedge.edge.server`), which only translates:
:func:`open_channel` is the one channel factory (plaintext, TLS with a CA or the
system roots, mutual TLS with a client certificate; message-size options in one
place), :class:`EdgeTransport` holds the stub and answers each call with the small
frozen dataclasses below (the server's load, timing and status codes are
:mod:`splitedge.proto.status`'s, shared with the edge and the MQTT plane), and
:func:`rpc_error` turns a ``grpc.aio.AioRpcError`` into :class:`EdgeRefused` or
:class:`EdgeUnavailable` (as aiomqtt converts foreign errors once, at its boundary).
Nothing above this module sees a protobuf message or a gRPC exception. A device
token (``token=``; ``--token``/``--token-file``/``SPLITEDGE_TOKEN`` on every command,
read by :mod:`splitedge.mobile_client.flags`, as are the TLS flags) travels as
``authorization: Bearer`` metadata on every call (:mod:`splitedge.proto.auth`), over
TLS or plaintext alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

import grpc
import numpy as np

from splitedge.mobile_client.messages import EncodedFrame
from splitedge.models.depth.types import FocalStack
from splitedge.models.types import (
    BranchSpec,
    Detections,
    Prediction,
    SegmentationMask,
    TensorSpec,
)
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.proto.auth import bearer_metadata
from splitedge.proto.status import (
    BatchLatency,
    BranchLoad,
    ServerStatus,
    ServerTiming,
    StatusCode,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ArrivedReply",
    "BatchLatency",
    "BranchInfo",
    "BranchLoad",
    "ClientError",
    "DepthReply",
    "EdgeBranchStats",
    "EdgeRefused",
    "EdgeTransport",
    "EdgeUnavailable",
    "FocalStackMessage",
    "FrameReply",
    "FrameStream",
    "HeadDownload",
    "ModelInfo",
    "OutgoingFrame",
    "ServerStatus",
    "ServerTiming",
    "StatusCode",
    "TlsConfig",
    "edge_session",
    "focal_stack_request",
    "frame_request",
    "model_info_from_pb",
    "open_channel",
    "rpc_error",
]

MAX_MESSAGE_BYTES = 64 * 2**20
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)
FocalStackMessage = pb.FocalStackRequest  # the wire form, for the edge's own tests and benches
# Statuses that say the request itself is wrong here: retrying the same call cannot help.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
_request_ids = itertools.count(1)


# ---------------------------------------------------------------- errors


class ClientError(Exception):
    """The client was asked for something it cannot do (unknown model or branch...)."""


class EdgeUnavailable(ClientError):
    """The edge server cannot be reached right now (trying again later may work).

    ``code`` is the call's :class:`StatusCode` when a call failed (``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED`` ...), None when a stream broke or was closed.
    """

    def __init__(self, message: str, code: StatusCode | None = None, details: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class EdgeRefused(ClientError):
    """The edge server answered with a status that the same call will always get
    (``NOT_FOUND``, ``INVALID_ARGUMENT``, ``UNIMPLEMENTED`` ...); ``code`` is that
    :class:`StatusCode`."""

    def __init__(self, message: str, code: StatusCode, details: str) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


def rpc_error(exc: grpc.aio.AioRpcError, server: str) -> EdgeRefused | EdgeUnavailable:
    """The domain error for a failed call to ``server``: the one place gRPC errors map."""
    status = exc.code()
    code = StatusCode.from_grpc(status)
    details = exc.details() or ""
    if status in _REFUSALS:
        return EdgeRefused(f"server {server}: {code.name}: {details}", code, details)
    return EdgeUnavailable(f"server {server} unreachable: {code.name}: {details}", code, details)


# ---------------------------------------------------------------- channels


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the edge: ``ca`` (PEM) to trust, None = the system roots; ``cert`` and
    ``key`` (PEM) = this device's certificate, for a server that wants mutual TLS
    (``splitedge-edge serve --tls-client-ca``)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS client certificate and key: give both or neither")

    @classmethod
    def from_paths(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
    ) -> TlsConfig | None:
        """The config for these paths; None (plaintext) when none is given."""
        if ca is None and cert is None and key is None:
            return None
        return cls(*(Path(p) if p is not None else None for p in (ca, cert, key)))

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials (reads the PEM files; OSError if one cannot be read)."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes() if self.ca else None,
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


def open_channel(address: str, tls: TlsConfig | None = None) -> grpc.aio.Channel:
    """A channel to ``address`` (``host:port``): plaintext, or TLS when ``tls`` is given."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(address, tls.credentials(), options=CHANNEL_OPTIONS)


# ---------------------------------------------------------------- domain types


@dataclass(frozen=True)
class EdgeBranchStats:
    """What the server measured (tail latency) and recorded (bytes, head, accuracy)."""

    tail_latency_ms_p50: float = 0.0
    tail_latency_ms_p95: float = 0.0
    tail_samples: int = 0
    bytes_per_frame: float = 0.0
    head_latency_ms: float = 0.0
    accuracy: float = 0.0
    accuracy_metric: str = ""
    by_batch_size: tuple[BatchLatency, ...] = ()


@dataclass(frozen=True)
class BranchInfo:
    """A branch as the server describes it: its spec and its profile."""

    spec: BranchSpec
    profile: EdgeBranchStats
    # SHA-256 of the head weights a split branch's tail expects ("" from older servers).
    head_weights_sha256: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def split_point(self) -> str:
        return self.spec.split_point

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        return self.spec.tensors

    @property
    def default_bits(self) -> int:
        return self.spec.default_bits


@dataclass(frozen=True)
class ModelInfo:
    """A model the server serves (``Describe``, ``ListModels``)."""

    name: str
    task: str
    num_classes: int
    class_names: tuple[str, ...]
    min_size: int
    max_size: int
    weights: str
    branches: tuple[BranchInfo, ...]


@dataclass(frozen=True)
class FrameReply:
    """The server's answer to one frame: ``status`` OK with a ``prediction`` (None for
    outputs the device does not decode), or another :class:`StatusCode` and ``message``."""

    frame_id: int
    status: StatusCode
    message: str
    prediction: Prediction | None
    timing: ServerTiming


@dataclass(frozen=True)
class HeadDownload:
    """A split branch's head as the edge handed it out (``GetHead``): the spec JSON, the
    ONNX graph (empty when ``not_modified``: the device's copy is current) and the
    graph's SHA-256 as the edge states it (the caller checks the bytes against it)."""

    model: str
    branch: str
    spec_json: str
    onnx: bytes
    sha256: str
    not_modified: bool


@dataclass(frozen=True)
class DepthReply:
    """The server's depth for a focal stack, still encoded (float16 tensors).

    ``timing`` holds the server's stages (``decode_ms`` ... ``server_total_ms``);
    ``encode_ms`` and ``round_trip_ms`` are the device's: building the request, and
    the call. ``request_bytes`` / ``response_bytes`` are the serialized sizes.
    """

    depth: codec.EncodedTensor
    confidence: codec.EncodedTensor
    timing: dict[str, float]
    scale: float
    shift: float
    confident_pixels: int
    alignment_residual_px: float
    request_bytes: int
    response_bytes: int
    encode_ms: float
    round_trip_ms: float


# ---------------------------------------------------------------- protobuf -> domain


def _branch_spec(info: pb.BranchInfo) -> BranchSpec:
    """The branch's spec (a CodecError if it names enums this device does not know)."""
    return BranchSpec(
        name=info.name,
        kind=info.kind,  # type: ignore[arg-type]  # the server only sends the three kinds
        split_point=info.split_point,
        tensors=tuple(
            TensorSpec(t.name, wire.dtype_from_pb(t.dtype, t.name), tuple(t.shape))
            for t in info.tensors
        ),
        default_bits=info.default_bits,
        image_format=(
            wire.image_format_from_pb(info.image_format, info.name) if info.image_format else ""
        ),
        image_quality=info.image_quality,
    )


def _branch_info(info: pb.BranchInfo) -> BranchInfo:
    p = info.profile
    return BranchInfo(
        spec=_branch_spec(info),
        profile=EdgeBranchStats(
            tail_latency_ms_p50=p.tail_latency_ms_p50,
            tail_latency_ms_p95=p.tail_latency_ms_p95,
            tail_samples=p.tail_samples,
            bytes_per_frame=p.bytes_per_frame,
            head_latency_ms=p.head_latency_ms,
            accuracy=p.accuracy,
            accuracy_metric=p.accuracy_metric,
            by_batch_size=wire.batch_latency_from_pb(p.by_batch_size),
        ),
        head_weights_sha256=info.head_weights_sha256,
    )


def model_info_from_pb(m: pb.ModelInfo) -> ModelInfo:
    """The domain form of a ``ModelInfo`` message."""
    return ModelInfo(
        name=m.name,
        task=m.task,
        num_classes=m.num_classes,
        class_names=tuple(m.class_names),
        min_size=m.min_size,
        max_size=m.max_size,
        weights=m.weights,
        branches=tuple(_branch_info(b) for b in m.branches),
    )


def _prediction(result: pb.FrameResult) -> Prediction | None:
    kind = result.WhichOneof("output")
    if kind == "detections":
        det = result.detections
        return Detections(
            boxes=np.asarray(det.boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(det.scores, np.float32),
            labels=np.asarray(det.labels, np.int64),
        )
    if kind == "segmentation":
        mask = codec.decode_image(wire.image_from_pb(result.segmentation.mask), channels=1)
        return SegmentationMask(mask=mask)
    return None


def _frame_reply(result: pb.FrameResult) -> FrameReply:
    timing = wire.timing_from_pb(result.timing)
    if result.status_code != 0:
        code = StatusCode.from_wire(result.status_code)
        return FrameReply(result.frame_id, code, result.status_message, None, timing)
    try:
        prediction = _prediction(result)
    except (codec.CodecError, ValueError) as exc:  # a bad answer costs its frame, not the stream
        return FrameReply(
            result.frame_id, StatusCode.DATA_LOSS, f"undecodable result: {exc}", None, timing
        )
    return FrameReply(result.frame_id, StatusCode.OK, "", prediction, timing)


# ---------------------------------------------------------------- domain -> protobuf


def frame_request(
    frame: EncodedFrame, *, frame_id: int = 0, model: str, branch: str, deadline_ms: float = 0.0
) -> pb.FrameRequest:
    """The request for one frame, built once, as it leaves (its send time is now)."""
    request = pb.FrameRequest(
        frame_id=frame_id,
        model=model,
        branch=branch,
        orig_height=frame.orig_size[0],
        orig_width=frame.orig_size[1],
        input_height=frame.input_size[0],
        input_width=frame.input_size[1],
        deadline_ms=deadline_ms,
        client_send_unix_ns=time.time_ns(),
    )
    if frame.image is not None:
        request.image.CopyFrom(wire.image_to_pb(frame.image))
    else:
        request.tensors.extend(wire.tensor_to_pb(t) for t in frame.tensors)
    return request


def focal_stack_request(
    stack: FocalStack,
    *,
    image_format: Literal["png", "jpeg", "zstd"] = "png",
    jpeg_quality: int = 95,
    align: bool = False,
    refine: bool = True,
    deadline_ms: float = 30_000.0,
    unit: Literal["m", "diopter"] = "m",
    request_id: int | None = None,
) -> pb.FocalStackRequest:
    """The ``FocalStackRequest`` for a stack; slices as images or as zstd uint8 tensors."""
    distances = stack.focus_distances_m if unit == "m" else 1.0 / stack.focus_distances_m
    request = pb.FocalStackRequest(
        request_id=next(_request_ids) if request_id is None else request_id,
        focus_distances=[float(d) for d in distances],
        focus_unit=pb.METERS if unit == "m" else pb.DIOPTERS,
        align=align,
        refine=refine,
        deadline_ms=deadline_ms,
    )
    for i, pixels in enumerate(stack.images):
        if image_format == "zstd":
            request.frame_tensors.append(wire.tensor_to_pb(codec.encode_tensor(pixels, f"s{i}")))
        else:
            request.frames.append(
                wire.image_to_pb(codec.encode_image(pixels, image_format, quality=jpeg_quality))
            )
    if stack.camera is not None:
        request.camera.CopyFrom(
            pb.CameraIntrinsics(
                focal_length_mm=stack.camera.focal_length_mm,
                f_number=stack.camera.f_number,
                pixel_pitch_um=stack.camera.pixel_pitch_um,
            )
        )
    return request


# ---------------------------------------------------------------- calls


class OutgoingFrame:
    """One frame's request, built (:meth:`build`) and ready for :meth:`FrameStream.write`."""

    __slots__ = ("_request", "frame_id", "payload_bytes")

    def __init__(self, request: pb.FrameRequest, payload_bytes: int) -> None:
        self._request = request
        self.frame_id: int = request.frame_id
        self.payload_bytes = payload_bytes

    @classmethod
    def build(
        cls, frame: EncodedFrame, *, frame_id: int, model: str, branch: str, deadline_ms: float
    ) -> OutgoingFrame:
        """The request for ``frame``, built once (see :func:`frame_request`)."""
        request = frame_request(
            frame, frame_id=frame_id, model=model, branch=branch, deadline_ms=deadline_ms
        )
        return cls(request, frame.payload_bytes)


class ArrivedReply:
    """An answer as it came off the stream: its frame id and server time at once, the rest
    (timing, the prediction: a mask's PNG) decoded by :meth:`decode`, which the client
    calls only for a frame someone still waits on; a late answer costs no decoding."""

    __slots__ = ("_result", "frame_id")

    def __init__(self, result: pb.FrameResult) -> None:
        self._result = result
        self.frame_id: int = result.frame_id

    @property
    def server_total_ms(self) -> float:
        return self._result.timing.server_total_ms

    def decode(self) -> FrameReply:
        return _frame_reply(self._result)


class FrameStream:
    """One open ``Stream`` call: :meth:`write` frames, iterate :meth:`replies`."""

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self._call = call

    async def write(self, frame: OutgoingFrame) -> None:
        """Write one frame (an :class:`EdgeUnavailable` if the stream is gone)."""
        try:
            await self._call.write(frame._request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            raise EdgeUnavailable(f"edge stream write failed: {exc}") from exc

    async def replies(self) -> AsyncIterator[ArrivedReply]:
        """The answers as they arrive; an :class:`EdgeUnavailable` when the stream fails."""
        try:
            async for result in self._call:
                yield ArrivedReply(result)
        except grpc.aio.AioRpcError as exc:
            code, details = StatusCode.from_grpc(exc.code()), exc.details() or ""
            raise EdgeUnavailable(
                f"edge stream failed: {code.name}: {details}", code, details
            ) from exc

    async def done_writing(self) -> None:
        """Half-close: no more frames (whatever state the call is in)."""
        with contextlib.suppress(Exception):
            await self._call.done_writing()

    def cancel(self) -> None:
        self._call.cancel()


class EdgeTransport:
    """A channel to one edge server and typed calls on it.

    ``async with EdgeTransport("host:port", tls=TlsConfig(ca=Path("ca.pem"))) as edge:
    info = await edge.describe("echo", timeout_s=5)``. Every call returns domain
    types and raises :class:`EdgeRefused` / :class:`EdgeUnavailable` only.
    ``channel`` wraps a channel someone else opened (and closes): this transport
    then leaves it open. ``token`` is sent as ``authorization: Bearer`` on every call.
    """

    def __init__(
        self,
        address: str,
        *,
        tls: TlsConfig | None = None,
        channel: grpc.aio.Channel | None = None,
        token: str | None = None,
    ) -> None:
        self.address = address
        # Checked before a channel exists, so a bad token leaves nothing to close.
        self._metadata = bearer_metadata(token) if token is not None else None
        self._owns_channel = channel is None
        self._channel = open_channel(address, tls) if channel is None else channel
        self._stub = pb_grpc.EdgeInferenceStub(self._channel)

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> EdgeTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def describe(self, model: str, *, timeout_s: float | None) -> ModelInfo:
        """The server's description of ``model`` (branches, tensor specs, profiles)."""
        try:
            info = await self._stub.Describe(
                pb.DescribeRequest(model=model), timeout=timeout_s, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.address) from exc
        return model_info_from_pb(info)

    async def get_head(
        self, model: str, branch: str, *, known_sha256: str = "", timeout_s: float | None
    ) -> HeadDownload:
        """The head of a split branch as ONNX + spec; with ``known_sha256`` the graph's
        bytes come only if the edge's differs (:attr:`HeadDownload.not_modified`)."""
        try:
            reply = await self._stub.GetHead(
                pb.HeadRequest(model=model, branch=branch, known_sha256=known_sha256),
                timeout=timeout_s,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.address) from exc
        return HeadDownload(
            model=reply.model,
            branch=reply.branch,
            spec_json=reply.spec_json,
            onnx=bytes(reply.onnx),
            sha256=reply.sha256,
            not_modified=reply.not_modified,
        )

    async def list_models(self, *, timeout_s: float | None) -> tuple[ModelInfo, ...]:
        """Every model the server serves."""
        try:
            reply = await self._stub.ListModels(
                pb.ListModelsRequest(), timeout=timeout_s, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.address) from exc
        return tuple(model_info_from_pb(m) for m in reply.models)

    async def status(self, *, timeout_s: float | None) -> ServerStatus:
        """The server's load and per-branch latency right now."""
        try:
            reply = await self._stub.Status(
                pb.StatusRequest(), timeout=timeout_s, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.address) from exc
        return wire.status_from_pb(reply)

    def open_stream(self) -> FrameStream:
        """A new bidirectional frame stream (it connects on first use)."""
        return FrameStream(self._stub.Stream(metadata=self._metadata))

    async def depth_from_focus(
        self,
        stack: FocalStack,
        *,
        image_format: Literal["png", "jpeg", "zstd"] = "png",
        jpeg_quality: int = 95,
        align: bool = False,
        refine: bool = True,
        deadline_ms: float = 30_000.0,
        unit: Literal["m", "diopter"] = "m",
    ) -> DepthReply:
        """``DepthFromFocus`` on ``stack``; ``deadline_ms`` (0 = none) bounds the call and
        travels with it, so the server drops work nobody waits for."""
        t0 = time.perf_counter()
        request = focal_stack_request(
            stack,
            image_format=image_format,
            jpeg_quality=jpeg_quality,
            align=align,
            refine=refine,
            deadline_ms=deadline_ms,
            unit=unit,
        )
        t1 = time.perf_counter()
        try:
            result = await self._stub.DepthFromFocus(
                request,
                timeout=deadline_ms / 1e3 if deadline_ms > 0 else None,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, self.address) from exc
        t2 = time.perf_counter()
        try:
            depth = wire.tensor_from_pb(result.depth)
            confidence = wire.tensor_from_pb(result.confidence)
        except codec.CodecError as exc:
            raise ClientError(
                f"server {self.address} sent an undecodable depth result ({exc})"
            ) from exc
        stages = pb.DepthTiming.DESCRIPTOR.fields
        return DepthReply(
            depth=depth,
            confidence=confidence,
            timing={f.name: float(getattr(result.timing, f.name)) for f in stages},
            scale=result.scale,
            shift=result.shift,
            confident_pixels=result.confident_pixels,
            alignment_residual_px=result.alignment_residual_px,
            request_bytes=request.ByteSize(),
            response_bytes=result.ByteSize(),
            encode_ms=(t1 - t0) * 1e3,
            round_trip_ms=(t2 - t1) * 1e3,
        )


@contextlib.asynccontextmanager
async def edge_session(
    target: EdgeTransport | grpc.aio.Channel | str,
    *,
    tls: TlsConfig | None = None,
    token: str | None = None,
) -> AsyncIterator[EdgeTransport]:
    """An :class:`EdgeTransport` for ``target``: one given is used as is, a channel is
    wrapped (left open), an address (``host:port``) is opened here and closed after;
    ``token`` goes with the calls of the last two."""
    if isinstance(target, EdgeTransport):
        yield target
    elif isinstance(target, str):
        async with EdgeTransport(target, tls=tls, token=token) as edge:
            yield edge
    else:
        yield EdgeTransport("(given channel)", channel=target, token=token)
