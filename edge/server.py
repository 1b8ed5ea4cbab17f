"""The gRPC edge server: a servicer that only translates, and its lifetime.

:class:`EdgeInferenceServicer` maps ``splitedge.v1`` messages to and from the domain
objects of :mod:`splitedge.edge.service`. :class:`EdgeServer` follows the grpc asyncio
examples' shape (``start()`` -> ``wait_for_termination()`` -> ``stop(grace)``) and adds
standard health checking (SERVING, NOT_SERVING once stopping), reflection, optional
TLS, device-token authentication of every call (``[auth]``, :mod:`splitedge.edge.auth`)
and the Prometheus exporter. :func:`serve` runs one until SIGTERM/SIGINT, then
drains in-flight frames within ``grace_s``.

Requests of every service the server holds (EdgeInference, health, reflection) are
parsed by a deserializer that never raises: bytes that are not the method's message
become an :class:`_Undecodable`, answered INVALID_ARGUMENT (a frame of its own inside
an EdgeInference Stream, which goes on; the end of a reflection stream) and logged at
most once per ``_BAD_REQUEST_LOG_INTERVAL_S`` per method (grpc would log a traceback
and answer UNKNOWN).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import socket
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import PurePath
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from splitedge.control_plane.address import BrokerAddress
from splitedge.edge.auth import TokenAuthInterceptor, bind_warning, is_loopback
from splitedge.edge.config import EdgeConfig
from splitedge.edge.depth_service import DepthService, serve_depth_request
from splitedge.edge.errors import InvalidArgument, RequestError, shorten
from splitedge.edge.export import HeadStore
from splitedge.edge.log_limit import LogLimiter
from splitedge.edge.metrics import Metrics
from splitedge.edge.registry import FrameRequest, ModelRegistry, codec_error, resolve_device
from splitedge.edge.service import EdgeService, Outcome
from splitedge.models.fingerprint import head_fingerprints
from splitedge.models.types import Detections, SplitModel
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.proto import wire
from splitedge.proto.codec import CodecError, EncodedImage, EncodedTensor
from splitedge.proto.status import StatusCode

if TYPE_CHECKING:
    from splitedge.control_plane.publisher import StatusPublisher

__all__ = ["EdgeInferenceServicer", "EdgeServer", "ListenError", "serve"]

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["EdgeInference"].full_name

# A client can send garbage as fast as it likes: one log line per this many seconds.
_BAD_REQUEST_LOG_INTERVAL_S = 10.0


# ---------------------------------------------------------------- requests that do not parse


class _Undecodable:
    """What the deserializer hands on for bytes that are not the method's message."""

    __slots__ = ("message", "size_bytes", "why")

    def __init__(self, message: str, size_bytes: int, why: str) -> None:
        self.message, self.size_bytes, self.why = message, size_bytes, why

    @property
    def error(self) -> InvalidArgument:
        return InvalidArgument(
            f"request of {self.size_bytes} bytes is not a valid {self.message} message ({self.why})"
        )


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """``parse`` (a message's ``FromString``) that returns an :class:`_Undecodable`
    instead of raising."""
    message_class = getattr(parse, "__self__", None)
    name = getattr(getattr(message_class, "DESCRIPTOR", None), "full_name", "request")

    def lenient(data: bytes) -> Any:
        try:
            return parse(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            return _Undecodable(name, len(data), shorten(str(exc) or type(exc).__name__, 200))

    return lenient


Refuse = Callable[[str, _Undecodable], InvalidArgument]
_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _refusing_unary(behaviour: Callable[..., Any], method: str, refuse: Refuse) -> Any:
    """``behaviour`` (unary request) refusing an :class:`_Undecodable` INVALID_ARGUMENT
    first; of the same kind (coroutine or async generator) so grpc serves it alike."""
    if inspect.isasyncgenfunction(behaviour):

        async def guarded_gen(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                error = refuse(method, request)
                await context.abort(error.code.grpc, error.message)
            async for response in behaviour(request, context):
                yield response

        return guarded_gen

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            error = refuse(method, request)
            await context.abort(error.code.grpc, error.message)
        return await behaviour(request, context)

    return guarded


def _refusing_stream(behaviour: Callable[..., Any], method: str, refuse: Refuse) -> Any:
    """``behaviour`` (request stream) whose stream ends INVALID_ARGUMENT at the first
    :class:`_Undecodable`, so the servicer never sees one."""

    async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            if isinstance(request, _Undecodable):
                error = refuse(method, request)
                await context.abort(error.code.grpc, error.message)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def guarded_gen(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async for response in behaviour(checked(requests, context), context):
                yield response

        return guarded_gen

    async def guarded(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        return await behaviour(checked(requests, context), context)

    return guarded


def _lenient_handler(
    handler: grpc.RpcMethodHandler, method: str, refuse: Refuse, *, stream_answers: bool
) -> grpc.RpcMethodHandler:
    """``handler`` with a never-raising request parser. A unary request that does not
    parse is refused before the method runs; in a request stream it ends the call,
    unless ``stream_answers`` (the method answers :class:`_Undecodable` itself)."""
    streaming = handler.request_streaming, handler.response_streaming
    behaviour = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[streaming]
    if not handler.request_streaming:
        behaviour = _refusing_unary(behaviour, method, refuse)
    elif not stream_answers:
        behaviour = _refusing_stream(behaviour, method, refuse)
    return _MAKERS[streaming](
        behaviour,
        request_deserializer=_lenient(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class _LenientRegistrar:
    """Stands in for the server while a generated ``add_*Servicer_to_server`` runs, and
    registers its method handlers with never-raising request parsers (grpc's own
    parser answers bytes that are no message UNKNOWN, with a logged traceback)."""

    def __init__(self, server: grpc.aio.Server, refuse: Refuse, stream_answers: bool) -> None:
        self._server, self._refuse, self._stream_answers = server, refuse, stream_answers
        self._generic: list[Any] = []
        self.registered = False

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._generic.extend(handlers)  # the same handlers come to the method below

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        lenient = {
            name: _lenient_handler(
                h, f"/{service}/{name}", self._refuse, stream_answers=self._stream_answers
            )
            for name, h in handlers.items()
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, lenient),)
        )
        self._server.add_registered_method_handlers(service, lenient)
        self.registered = True

    def finish(self) -> None:
        if not self.registered:  # generated by a grpcio-tools older than 1.62: as it is
            self._server.add_generic_rpc_handlers(tuple(self._generic))


def _add_lenient(
    add: Callable[[Any, Any], None],
    servicer: Any,
    server: grpc.aio.Server,
    refuse: Refuse,
    *,
    stream_answers: bool = False,
) -> None:
    """``add(servicer, server)`` (a generated ``add_*Servicer_to_server``) with
    never-raising request parsers (see :func:`_lenient_handler`)."""
    registrar = _LenientRegistrar(server, refuse, stream_answers)
    add(servicer, registrar)
    registrar.finish()


def _add_servicer(servicer: EdgeInferenceServicer, server: grpc.aio.Server) -> None:
    """The EdgeInference service with lenient parsers: an unparsable unary request is
    refused INVALID_ARGUMENT (with one rate-limited log line) before the method runs; a
    Stream gets each unparsable message as an :class:`_Undecodable` and answers it as a
    frame."""
    _add_lenient(
        pb_grpc.add_EdgeInferenceServicer_to_server,
        servicer,
        server,
        servicer.undecodable,
        stream_answers=True,
    )


# ---------------------------------------------------------------- translation


def frame_from_pb(m: pb.FrameRequest) -> FrameRequest:
    """The domain frame; a RequestError for enums the wire cannot mean."""
    try:
        tensors = [wire.tensor_from_pb(t) for t in m.tensors]
        image = wire.image_from_pb(m.image) if m.HasField("image") else None
    except CodecError as exc:
        raise codec_error(exc) from exc
    return FrameRequest(
        frame_id=m.frame_id,
        model=m.model,
        branch=m.branch,
        tensors=tensors,
        image=image,
        orig_size=(m.orig_height, m.orig_width),
        input_size=(m.input_height, m.input_width),
        deadline_ms=m.deadline_ms,
    )


def _internal_error(frame: FrameRequest | pb.FrameRequest, exc: Exception) -> pb.FrameResult:
    """The answer for a frame whose handling hit a bug: INTERNAL, logged with the trace."""
    log.error("frame %d failed", frame.frame_id, exc_info=exc)
    return pb.FrameResult(
        frame_id=frame.frame_id,
        model=shorten(frame.model, 256),
        branch=shorten(frame.branch, 256),
        status_code=StatusCode.INTERNAL,
        status_message=shorten(f"internal error: {exc!r}"),
    )


def result_to_pb(outcome: Outcome) -> pb.FrameResult:
    result = pb.FrameResult(
        frame_id=outcome.frame_id,
        model=outcome.model,
        branch=outcome.branch,
        timing=wire.timing_to_pb(outcome.timing),
    )
    if outcome.error is not None:
        result.status_code = outcome.error.code
        result.status_message = outcome.error.message
    elif isinstance(outcome.output, Detections):
        det = outcome.output
        # Set even when empty: an empty detection list is still an answer.
        result.detections.CopyFrom(
            pb.Detections(
                boxes=det.boxes.reshape(-1).tolist(),
                scores=det.scores.tolist(),
                labels=det.labels.astype(int).tolist(),
            )
        )
    elif isinstance(outcome.output, EncodedImage):
        result.segmentation.mask.CopyFrom(wire.image_to_pb(outcome.output))
    elif isinstance(outcome.output, EncodedTensor):
        result.tensor.CopyFrom(wire.tensor_to_pb(outcome.output))
    return result


def public_weights(source: str) -> str:
    """What clients may learn of a model's weights: a checkpoint's file name (never the
    server's folders), a torchvision weights name or ``random-init`` as they are."""
    return PurePath(source.replace("\\", "/")).name or source


# Served models do not change their weights: each one's head fingerprints, hashed once.
_FINGERPRINTS: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def model_fingerprints(model: SplitModel) -> dict[str, str]:
    """Split branch -> SHA-256 of its head's weights (:mod:`splitedge.models.fingerprint`)."""
    try:
        return _FINGERPRINTS[model]
    except KeyError:
        pass
    except TypeError:  # a model that cannot be weakly referenced: hash every time
        return head_fingerprints(model)
    fingerprints = _FINGERPRINTS[model] = head_fingerprints(model)
    return fingerprints


def model_to_pb(model: SplitModel, service: EdgeService) -> pb.ModelInfo:
    info = pb.ModelInfo(
        name=model.name,
        task=model.task,
        num_classes=model.num_classes,
        class_names=list(model.class_names),
        min_size=model.min_size,
        max_size=model.max_size,
        weights=public_weights(model.weights_source),
    )
    # Recorded profiles are optional on a model: ``profiles[branch]`` with any of these.
    records = getattr(model, "profiles", None) or {}
    fingerprints = model_fingerprints(model)
    for spec in model.branches.values():
        stats = service.branch_stats(model.name, spec.name)
        record = records.get(spec.name)
        info.branches.append(
            pb.BranchInfo(
                name=spec.name,
                kind=spec.kind,
                tensors=[
                    pb.TensorSpec(name=t.name, dtype=wire.dtype_to_pb(t.dtype), shape=t.shape)
                    for t in spec.tensors
                ],
                default_bits=spec.default_bits,
                image_format=wire.image_format_to_pb(spec.image_format) if spec.image_format else 0,
                image_quality=spec.image_quality,
                split_point=spec.split_point,
                profile=pb.BranchProfile(
                    tail_latency_ms_p50=stats.tail_latency_ms_p50,
                    tail_latency_ms_p95=stats.tail_latency_ms_p95,
                    tail_samples=stats.tail_samples,
                    bytes_per_frame=float(getattr(record, "bytes_per_frame", 0.0)),
                    head_latency_ms=float(getattr(record, "head_latency_ms", 0.0)),
                    accuracy=float(getattr(record, "accuracy", 0.0)),
                    accuracy_metric=str(getattr(record, "accuracy_metric", "")),
                    by_batch_size=wire.batch_latency_to_pb(stats.by_batch_size),
                ),
                head_weights_sha256=fingerprints.get(spec.name, ""),
            )
        )
    return info


# ---------------------------------------------------------------- servicer


class EdgeInferenceServicer(pb_grpc.EdgeInferenceServicer):
    """Translates protobuf <-> domain objects; all logic lives in :class:`EdgeService`."""

    def __init__(
        self,
        service: EdgeService,
        stopping: asyncio.Event,
        depth: DepthService | None = None,
        heads: HeadStore | None = None,
    ) -> None:
        self._service = service
        self._stopping = stopping
        self._depth = depth
        self._heads = heads if heads is not None else HeadStore()
        self._bad_requests = LogLimiter(log, _BAD_REQUEST_LOG_INTERVAL_S)

    def undecodable(self, method: str, request: _Undecodable) -> InvalidArgument:
        """The refusal of an unparsable request, logged (rate-limited, per method)."""
        error = request.error
        self._bad_requests.warning(f"undecodable:{method}", "%s: %s", method, error)
        return error

    def _frame(self, request: pb.FrameRequest) -> FrameRequest | Outcome:
        """The domain frame, or the refusal (counted) of a request the wire cannot mean."""
        try:
            return frame_from_pb(request)
        except RequestError as error:
            outcome = Outcome(request.frame_id, request.model, request.branch, error=error)
            self._service.record(outcome)
            return outcome

    async def _answer(self, request: pb.FrameRequest) -> Outcome:
        frame = self._frame(request)
        return frame if isinstance(frame, Outcome) else await self._service.process(frame)

    async def Infer(
        self, request: pb.FrameRequest, context: grpc.aio.ServicerContext
    ) -> pb.FrameResult:
        outcome = await self._answer(request)
        if outcome.error is not None:
            await context.abort(outcome.error.code.grpc, outcome.error.message)
        return result_to_pb(outcome)

    async def Stream(
        self, request_iterator: AsyncIterator[pb.FrameRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """Frames are answered as they finish (maybe out of order).

        A frame the service can answer without leaving the event loop
        (:meth:`EdgeService.process_now`) is answered by the stream's reader before it
        reads the next; any other frame runs in its own task, concurrently, and writes
        its own result (one write at a time), so an answer leaves as soon as it
        exists. A frame refused because the admission queue is full is answered at
        once, before any decoding; the stream's next frame is then read once there is
        room again (:meth:`EdgeService.pause_after_refusal`), so refusals cannot
        take the CPU the admitted frames need. Once the server stops, frames already
        read are answered, then the stream ends with OK, so a draining server does not
        wait for idle clients to hang up.
        """
        frames: set[asyncio.Task[None]] = set()
        write_lock = asyncio.Lock()
        # The reader answers some frames itself; it is only cancelled while it waits for
        # a request, never in the middle of writing an answer.
        answering = False
        stop_reading = False

        async def send(result: pb.FrameResult) -> None:
            async with write_lock:
                try:
                    await context.write(result)
                except Exception as exc:  # the client went away; its frames are its own
                    log.debug("frame %d: answer not delivered: %r", result.frame_id, exc)

        async def answer(frame: FrameRequest) -> None:
            try:
                # The one pipeline, off the reader (which found it not inline just now).
                result = result_to_pb(await self._service.process_pooled(frame))
            except Exception as exc:  # a bug must cost one frame, not the stream
                result = _internal_error(frame, exc)
            await send(result)

        async def read() -> None:
            nonlocal answering
            async for request in request_iterator:
                if isinstance(request, _Undecodable):  # its own answer; the stream goes on
                    error = self.undecodable("Stream", request)
                    result = pb.FrameResult(status_code=error.code, status_message=error.message)
                    answering = True
                    try:
                        await send(result)
                    finally:
                        answering = False
                    if stop_reading:
                        return
                    continue
                # A frame the service can answer without leaving the loop is answered
                # here: a task per frame would cost more than such a frame's work.
                outcome = None
                try:
                    frame = self._frame(request)
                    outcome = (
                        frame if isinstance(frame, Outcome) else self._service.process_now(frame)
                    )
                    result = None if outcome is None else result_to_pb(outcome)
                except Exception as exc:  # a bug must cost one frame, not the stream
                    result = _internal_error(request, exc)
                if result is not None:
                    answering = True
                    try:
                        await send(result)
                    finally:
                        answering = False
                    if stop_reading:
                        return
                    if outcome is not None:
                        await self._service.pause_after_refusal(outcome)
                    continue
                assert isinstance(frame, FrameRequest)  # a refusal always has its result
                task = asyncio.create_task(answer(frame), name=f"frame:{frame.frame_id}")
                frames.add(task)
                task.add_done_callback(frames.discard)

        reader = asyncio.create_task(read(), name="stream-reader")
        stopping = asyncio.create_task(self._stopping.wait(), name="stream-stopping")
        try:
            done, _ = await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()  # re-raises a failed read
            stop_reading = True
            if answering:
                await reader  # ends after the answer it is writing
            reader.cancel()
            while frames:
                await asyncio.wait(set(frames))
        finally:
            for task in (reader, stopping, *frames):
                task.cancel()

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[model_to_pb(m, self._service) for m in self._service.registry.models]
        )

    async def Describe(
        self, request: pb.DescribeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInfo:
        try:
            model = self._service.registry.model(request.model)
        except RequestError as error:
            await context.abort(error.code.grpc, error.message)
        return model_to_pb(model, self._service)

    async def DepthFromFocus(
        self, request: pb.FocalStackRequest, context: grpc.aio.ServicerContext
    ) -> pb.DepthResult:
        if self._depth is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "this server does not serve depth; start it with --depth ([depth] enabled)",
            )
        if self._stopping.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        return await serve_depth_request(self._depth, request, context)

    async def GetHead(
        self, request: pb.HeadRequest, context: grpc.aio.ServicerContext
    ) -> pb.HeadResponse:
        """A split branch's head as ONNX + its spec (exported on first demand, in a thread)."""
        try:
            model = self._service.registry.model(request.model)
            artifact = await asyncio.to_thread(
                self._heads.get, request.model, model, request.branch
            )
        except RequestError as error:
            await context.abort(error.code.grpc, error.message)
        except Exception as exc:  # a failed export costs this request, not the server
            log.error("GetHead %s/%s failed", request.model[:64], request.branch[:64], exc_info=exc)
            await context.abort(
                grpc.StatusCode.INTERNAL, shorten(f"exporting the head failed: {exc!r}")
            )
        current = request.known_sha256 == artifact.sha256
        return pb.HeadResponse(
            model=request.model,
            branch=request.branch,
            spec_json=artifact.spec_json,
            onnx=b"" if current else artifact.onnx,
            sha256=artifact.sha256,
            not_modified=current,
        )

    async def Status(
        self, request: pb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.StatusResponse:
        return wire.status_to_pb(self._service.status())


# ---------------------------------------------------------------- lifetime


def _depth_service(config: EdgeConfig) -> DepthService:
    import torch  # noqa: F401  # the prior network runs on torch; loaded so "auto" can see a GPU

    from splitedge.models.depth.prior_net import NetworkPrior

    depth = config.depth
    device = resolve_device(config.device)
    prior = NetworkPrior(depth.prior, device=device) if depth.prior is not None else None
    return DepthService(
        prior,
        limits=config.limits.codec_limits(),
        confidence_threshold=depth.confidence_threshold,
        focus_measure=depth.focus_measure,  # type: ignore[arg-type]
        device=device,
    )


class ListenError(RuntimeError):
    """A port the server cannot listen on (in use by another server, not permitted ...)."""

    def __init__(self, host: str, port: int, what: str, reason: OSError | str) -> None:
        if isinstance(reason, OSError):
            reason = reason.strerror or str(reason)
        super().__init__(f"cannot listen on {_bracket(host)}:{port} ({what}): {reason}")


def _bind_error(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound, as the OS says it (grpc only says that it
    failed, in a log line of its own); None when a probe binds it. The probe reuses
    addresses as grpc does, so a port a stopped server left in TIME_WAIT is free."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


class EdgeServer:
    """``async with EdgeServer(config, registry) as server: server.port``.

    ``start()`` binds (port 0 = any free port) and returns the bound port;
    ``stop(grace_s)`` marks NOT_SERVING, refuses new frames, lets in-flight frames
    finish within the grace period, then drains the batcher and stops the exporter.
    With ``[mqtt] host`` set, a :class:`StatusPublisher` announces the server once the
    port is bound and says ``offline`` as the drain begins.
    """

    def __init__(self, config: EdgeConfig, registry: ModelRegistry) -> None:
        self.config = config
        self.metrics = Metrics() if config.metrics_port >= 0 else None
        self.service = EdgeService(
            registry,
            config.batching,
            # On Ray the tails run in replicas, which resolve "auto" where they run.
            device=registry.device if config.engine.kind == "local" else config.device,
            metrics=self.metrics,
            engine=config.engine,
            models=config.models,
        )
        self.health = health_aio.HealthServicer()
        self.port = 0
        self.metrics_port = 0
        self.publisher: StatusPublisher | None = None
        # Built now, so a missing prior checkpoint fails at start, not on a request.
        self.depth = _depth_service(config) if config.depth.enabled else None
        self.heads = HeadStore(config.heads.cache_dir, export_missing=config.heads.export)
        self._server: grpc.aio.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._stopped = False

    async def __aenter__(self) -> EdgeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> int:
        cfg = self.config.server
        await self.service.__aenter__()
        self._stopping = asyncio.Event()
        try:
            if self.metrics is not None:
                host = self.config.metrics_host
                try:
                    self.metrics_port = self.metrics.serve(host, self.config.metrics_port)
                except OSError as exc:
                    raise ListenError(host, self.config.metrics_port, "metrics", exc) from exc
                if not is_loopback(host):
                    log.warning(
                        "metrics bound to %s: /metrics is plaintext and unauthenticated, "
                        "anyone who can reach it reads this server's load and models",
                        host,
                    )
            auth = self.config.auth
            server = grpc.aio.server(
                interceptors=[TokenAuthInterceptor.from_config(auth)] if auth.enabled else None,
                options=[
                    ("grpc.max_receive_message_length", cfg.max_message_bytes),
                    ("grpc.max_send_message_length", cfg.max_message_bytes),
                    # grpc's default SO_REUSEPORT would let a second server bind a port in
                    # use and silently take half its connections.
                    ("grpc.so_reuseport", 0),
                ],
            )
            inference = EdgeInferenceServicer(self.service, self._stopping, self.depth, self.heads)
            _add_servicer(inference, server)
            # Health and reflection too: bytes that are no request get INVALID_ARGUMENT.
            refuse = inference.undecodable
            _add_lenient(health_pb2_grpc.add_HealthServicer_to_server, self.health, server, refuse)
            names = (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            _add_lenient(
                reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
                reflection.aio.ReflectionServicer(names),
                server,
                refuse,
            )
            address = f"{_bracket(cfg.host)}:{cfg.port}"
            tls = cfg.tls_cert is not None and cfg.tls_key is not None
            warning = bind_warning(cfg.host, tls=tls, auth=auth.enabled)
            if warning is not None:
                log.warning("%s", warning)
            busy = _bind_error(cfg.host, cfg.port) if cfg.port else None
            if busy is not None:  # refused here, before grpc logs its own error line
                raise ListenError(cfg.host, cfg.port, "gRPC", busy)
            try:
                if tls:
                    assert cfg.tls_cert is not None and cfg.tls_key is not None
                    ca = cfg.tls_client_ca.read_bytes() if cfg.tls_client_ca else None
                    credentials = grpc.ssl_server_credentials(
                        [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())],
                        root_certificates=ca,
                        require_client_auth=ca is not None,
                    )
                    self.port = server.add_secure_port(address, credentials)
                else:
                    self.port = server.add_insecure_port(address)
            except RuntimeError:  # "Failed to bind"; older grpc returned port 0 instead
                self.port = 0
            if self.port == 0:
                reason = _bind_error(cfg.host, cfg.port) or "grpc could not bind it"
                raise ListenError(cfg.host, cfg.port, "gRPC", reason)
            await server.start()
        except BaseException:
            await self.service.__aexit__(None, None, None)
            if self.metrics is not None:
                self.metrics.close()
            raise
        self._server = server
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s:%d", ", ".join(self.service.registry.names), cfg.host, self.port)
        if self.config.mqtt.enabled:
            await self._start_publisher()
        return self.port

    async def _start_publisher(self) -> None:
        # Imported here: aiomqtt is only needed by servers that publish status.
        from splitedge.edge.presence import make_publisher

        mqtt = self.config.mqtt
        self.publisher = make_publisher(mqtt, self.service, self.config.server.host, self.port)
        # One id everywhere: the Status RPC reports the id the status topic carries.
        self.service.server_id = self.publisher.server_id
        # Connects in the background: a broker that is down never holds up serving.
        await self.publisher.start()
        log.info(
            "status on %s topic %s every %.1f s",
            BrokerAddress(mqtt.host, mqtt.port, mqtt.tls or mqtt.tls_ca is not None).url,
            self.publisher.topic,
            mqtt.interval_s,
        )

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace_s: float | None = None) -> None:
        if self._stopped or self._server is None:
            return
        self._stopped = True
        grace_s = self.config.server.grace_s if grace_s is None else grace_s
        log.info("stopping: draining in-flight frames (grace %.1f s)", grace_s)
        await self.health.enter_graceful_shutdown()
        self.service.begin_shutdown()
        assert self._stopping is not None
        self._stopping.set()
        # Offline goes out while frames drain, so devices fail over at once.
        offline = (
            asyncio.create_task(self.publisher.stop(), name="status-offline")
            if self.publisher is not None
            else None
        )
        await self._server.stop(grace_s)
        if offline is not None:
            await _bounded(offline, _OFFLINE_WAIT_S)
        await self.service.__aexit__(None, None, None)
        if self.metrics is not None:
            self.metrics.close()
        log.info("stopped")


# How long shutdown waits, after the drain, for the offline message and MQTT disconnect.
_OFFLINE_WAIT_S = 2.0


async def _bounded(task: asyncio.Task[None], timeout_s: float) -> None:
    """Wait for ``task`` at most ``timeout_s``; a broker that hangs must not hold shutdown."""
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        log.warning("mqtt offline/disconnect still pending after %.1f s; not waiting", timeout_s)
        task.cancel()
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("mqtt offline message failed: %r", task.exception())


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def serve(
    config: EdgeConfig,
    registry: ModelRegistry,
    *,
    on_ready: Callable[[EdgeServer], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully (the one async entry point)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with EdgeServer(config, registry) as server:
            if on_ready is not None:
                on_ready(server)
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
