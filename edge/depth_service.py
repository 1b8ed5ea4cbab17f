"""The DepthFromFocus endpoint's logic: a focal stack in, metric depth and confidence out.

HybridDepth on the server: validate the request (the server never trusts it),
decode the slices, register them if the capture was hand-held, measure depth from
focus, run the single-image prior on the all-in-focus composite, fit the prior's
scale and shift on the confident DFF pixels (robustly) and optionally correct it
locally, then ship depth and confidence as float16 zstd tensors with the time each
stage took.

This module sees gRPC only through the protobuf messages it is handed and the
:mod:`splitedge.edge.errors` it raises; :func:`serve_depth_request` is the thin glue
a servicer's ``DepthFromFocus`` method calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

from splitedge.edge.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    RequestError,
    ResourceExhausted,
)
from splitedge.models.depth import (
    AlignmentWarning,
    Camera,
    DepthError,
    FocalStack,
    Prior,
    align_focal_stack,
    all_in_focus,
    depth_from_focus,
    fuse_depth,
    refine_with_dff,
)
from splitedge.models.depth.dff import FocusMeasure
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.codec import DEFAULT_LIMITS, CodecError, CodecLimits

log = logging.getLogger(__name__)

__all__ = ["DepthService", "serve_depth_request", "validate_request"]

MIN_SLICES = 2
MAX_SLICES = 64
MIN_SIDE_PX = 16  # the prior network works on multiples of 16 px
# Decoded slices of one stack, all together: 64 slices of 1280x720 RGB fit.
MAX_STACK_BYTES = 192 * 2**20
_UNITS = {pb.METERS: "m", pb.DIOPTERS: "diopter"}


def _codec_error(exc: CodecError, where: str) -> RequestError:
    """Too large -> RESOURCE_EXHAUSTED, anything else the codec refuses -> INVALID_ARGUMENT."""
    if isinstance(exc, codec.PayloadTooLarge):
        return ResourceExhausted(f"{where}: {exc}")
    return InvalidArgument(f"{where}: {exc}")


def _elapsed_ms(start_s: float) -> float:
    return (time.perf_counter() - start_s) * 1e3


def _focus_distances_m(request: pb.FocalStackRequest, num_slices: int) -> np.ndarray:
    unit = _UNITS.get(request.focus_unit)
    if unit is None:
        known = request.focus_unit in pb.FocusUnit.values()
        name = pb.FocusUnit.Name(request.focus_unit) if known else str(request.focus_unit)
        raise InvalidArgument(f"focus_unit {name} is not METERS or DIOPTERS")
    values = np.asarray(request.focus_distances, dtype=np.float64)
    if values.size == 0:
        raise InvalidArgument(f"focus_distances missing: need one per slice ({num_slices})")
    if values.size != num_slices:
        raise InvalidArgument(
            f"{values.size} focus_distances for {num_slices} slices; need one per slice"
        )
    shown = [round(float(v), 6) for v in values[:16]]
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise InvalidArgument(f"focus_distances must be finite and > 0 {unit}, got {shown}")
    step = np.diff(values)
    if not (np.all(step > 0) or np.all(step < 0)):
        raise InvalidArgument(
            f"focus_distances must be strictly increasing or decreasing, got {shown} {unit}"
        )
    return values if unit == "m" else 1.0 / values


def _camera(request: pb.FocalStackRequest) -> Camera | None:
    if not request.HasField("camera"):
        return None  # nothing downstream needs the lens; real captures may not know it
    cam = request.camera
    values = {
        "focal_length_mm": cam.focal_length_mm,
        "f_number": cam.f_number,
        "pixel_pitch_um": cam.pixel_pitch_um,
    }
    # Loose sanity bounds: phone lenses to long teles, pinhole to f/0.7, 0.2-50 um pixels.
    bounds = {
        "focal_length_mm": (0.5, 2000.0),
        "f_number": (0.7, 128.0),
        "pixel_pitch_um": (0.2, 50.0),
    }
    for name, value in values.items():
        lo, hi = bounds[name]
        if not (math.isfinite(value) and lo <= value <= hi):
            raise InvalidArgument(f"camera.{name} = {value} is outside the sane range [{lo}, {hi}]")
    return Camera(**values)


def validate_request(request: pb.FocalStackRequest) -> tuple[np.ndarray, Camera | None]:
    """Check everything but the pixel payloads; returns (focus distances in m, camera).

    Raises :class:`InvalidArgument` with a one-line message naming the field.
    """
    num_frames, num_tensors = len(request.frames), len(request.frame_tensors)
    if num_frames and num_tensors:
        raise InvalidArgument(
            f"send slices as frames or as frame_tensors, not both "
            f"(got {num_frames} frames and {num_tensors} frame_tensors)"
        )
    num_slices = num_frames or num_tensors
    if num_slices < MIN_SLICES:
        raise InvalidArgument(f"a focal stack needs >= {MIN_SLICES} slices, got {num_slices}")
    if num_slices > MAX_SLICES:
        raise ResourceExhausted(
            f"a focal stack may have at most {MAX_SLICES} slices, got {num_slices}"
        )
    if not (math.isfinite(request.deadline_ms) and request.deadline_ms >= 0):
        raise InvalidArgument(f"deadline_ms must be >= 0 (0 = none), got {request.deadline_ms}")
    return _focus_distances_m(request, num_slices), _camera(request)


def _declared_hw(request: pb.FocalStackRequest) -> list[tuple[int, int]]:
    """Each slice's declared (height, width), checked before any pixel is decoded."""
    if request.frames:
        return [(int(f.height), int(f.width)) for f in request.frames]
    sizes = []
    for i, t in enumerate(request.frame_tensors):
        shape = list(t.shape)
        if len(shape) != 3 or shape[2] != 3:
            raise InvalidArgument(f"frame_tensors[{i}]: shape {shape} is not HxWx3")
        if t.dtype != pb.UINT8 or t.quant != pb.QUANT_NONE:
            raise InvalidArgument(
                f"frame_tensors[{i}]: slices must be unquantized uint8 "
                f"(got dtype {t.dtype}, quant {t.quant})"
            )
        sizes.append((int(shape[0]), int(shape[1])))
    return sizes


def _decode_slices(request: pb.FocalStackRequest, limits: CodecLimits) -> np.ndarray:
    kind = "frames" if request.frames else "frame_tensors"
    sizes = _declared_hw(request)
    h, w = sizes[0]
    for i, size in enumerate(sizes):
        if size != (h, w):
            raise InvalidArgument(
                f"{kind}[{i}] is {size[0]}x{size[1]} (HxW), {kind}[0] is {h}x{w}; "
                "all slices must have the same size"
            )
    if h < MIN_SIDE_PX or w < MIN_SIDE_PX:
        raise InvalidArgument(f"slices are {h}x{w}; need at least {MIN_SIDE_PX}x{MIN_SIDE_PX} px")
    total_bytes = len(sizes) * h * w * 3
    if total_bytes > MAX_STACK_BYTES:
        raise ResourceExhausted(
            f"{len(sizes)} slices of {h}x{w} decode to {total_bytes} bytes, over the "
            f"{MAX_STACK_BYTES}-byte stack limit"
        )
    slices = []
    for i in range(len(sizes)):
        where = f"{kind}[{i}]"
        try:
            if request.frames:
                pixels = codec.decode_image(wire.image_from_pb(request.frames[i]), limits)
            else:
                pixels = codec.decode_tensor(wire.tensor_from_pb(request.frame_tensors[i]), limits)
        except CodecError as exc:
            raise _codec_error(exc, where) from exc
        if pixels.shape != (h, w, 3) or pixels.dtype != np.uint8:
            raise InvalidArgument(
                f"{where}: decoded to {list(pixels.shape)} {pixels.dtype}, "
                f"expected [{h}, {w}, 3] uint8"
            )
        slices.append(pixels)
    return np.stack(slices)


def _tensor_pb(values: np.ndarray, name: str) -> pb.Tensor:
    return wire.tensor_to_pb(
        codec.encode_tensor(values.astype(np.float32), name, float16=True, compression="zstd")
    )


class DepthService:
    """HybridDepth behind the ``DepthFromFocus`` RPC; :meth:`infer` is blocking and thread-safe.

    ``prior`` is any callable ``image -> relative inverse depth`` (MiDaS, Depth
    Anything...); by default the committed tiny network
    (:class:`splitedge.models.depth.prior_net.NetworkPrior`), loaded now so a
    missing checkpoint fails at start-up, not on the first request.
    """

    def __init__(
        self,
        prior: Prior | None = None,
        *,
        limits: CodecLimits = DEFAULT_LIMITS,
        confidence_threshold: float = 0.5,
        focus_measure: FocusMeasure = "tenengrad",
        window_px: int = 9,
        device: str = "cpu",
    ) -> None:
        if prior is None:
            from splitedge.models.depth.prior_net import NetworkPrior

            prior = NetworkPrior(device=device)
        self.prior: Prior = prior
        self.limits = limits
        self.confidence_threshold = confidence_threshold
        # Tenengrad over 9 px gave the lowest fused error on the quick benchmark set
        # (AbsRel 0.089; SML 5 px 0.091, SML 9 px 0.117, Laplacian variance 9 px 0.114):
        # its confidence is high on more of the textured pixels the refinement needs.
        self.focus_measure: FocusMeasure = focus_measure
        self.window_px = window_px

    def infer(
        self, request: pb.FocalStackRequest, *, received_s: float | None = None
    ) -> pb.DepthResult:
        """Depth for one focal stack; raises a :class:`RequestError` subclass on bad input.

        ``received_s`` (``time.perf_counter()`` at arrival) starts the request's
        ``deadline_ms`` clock; by default it starts now.
        """
        start_s = time.perf_counter() if received_s is None else received_s
        try:
            return self._infer(request, start_s)
        except RequestError:
            raise
        except DepthError as exc:
            # Inputs that pass validation can still defeat the pipeline (e.g. no texture).
            raise InvalidArgument(f"focal stack: {exc}") from exc
        except Exception as exc:
            log.exception("depth request %d failed", request.request_id)
            raise InternalError(f"depth pipeline failed: {type(exc).__name__}: {exc}") from exc

    def _check_deadline(self, request: pb.FocalStackRequest, start_s: float, stage: str) -> None:
        if request.deadline_ms > 0 and _elapsed_ms(start_s) > request.deadline_ms:
            raise DeadlineExceeded(
                f"deadline of {request.deadline_ms:.0f} ms passed before {stage} "
                f"({_elapsed_ms(start_s):.0f} ms since arrival)"
            )

    def _infer(self, request: pb.FocalStackRequest, start_s: float) -> pb.DepthResult:
        timing = pb.DepthTiming()
        t = time.perf_counter()
        focus_m, camera = validate_request(request)
        images = _decode_slices(request, self.limits)
        stack = FocalStack(images, focus_m, camera)
        timing.decode_ms = _elapsed_ms(t)
        self._check_deadline(request, start_s, "depth from focus")

        residual_px = 0.0
        if request.align:
            t = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", AlignmentWarning)
                aligned = align_focal_stack(stack)
            for w in caught:
                log.info("depth request %d: %s", request.request_id, w.message)
            stack = aligned.stack
            finite = aligned.residuals_px[np.isfinite(aligned.residuals_px)]
            residual_px = float(finite.max()) if finite.size else 0.0
            timing.align_ms = _elapsed_ms(t)

        t = time.perf_counter()
        dff = depth_from_focus(stack, method=self.focus_measure, window_px=self.window_px)
        timing.dff_ms = _elapsed_ms(t)

        t = time.perf_counter()
        image = all_in_focus(stack, dff)
        prior_rel = np.asarray(self.prior(image), dtype=np.float32)
        timing.prior_ms = _elapsed_ms(t)
        if prior_rel.shape != dff.depth_m.shape:
            raise InternalError(
                f"prior returned shape {prior_rel.shape} for a {dff.depth_m.shape} frame"
            )

        t = time.perf_counter()
        fused = fuse_depth(
            image, dff, lambda _image: prior_rel, confidence_threshold=self.confidence_threshold
        )
        depth_m = fused.depth_m
        if request.refine:
            weights = np.where(fused.fit_mask, dff.confidence, 0.0)
            depth_m = refine_with_dff(depth_m, dff, weights)
        timing.fusion_ms = _elapsed_ms(t)

        t = time.perf_counter()
        result = pb.DepthResult(
            request_id=request.request_id,
            depth=_tensor_pb(depth_m, "depth"),
            confidence=_tensor_pb(dff.confidence, "confidence"),
            alignment_residual_px=residual_px,
            scale=fused.fit.scale,
            shift=fused.fit.shift,
            confident_pixels=int(fused.fit_mask.sum()),
        )
        timing.encode_ms = _elapsed_ms(t)
        timing.server_total_ms = _elapsed_ms(start_s)
        result.timing.CopyFrom(timing)
        return result


async def serve_depth_request(
    service: DepthService,
    request: pb.FocalStackRequest,
    context: Any,
    *,
    executor: Executor | None = None,
    on_error: Callable[[RequestError], None] | None = None,
) -> pb.DepthResult:
    """Servicer glue: run :meth:`DepthService.infer` off the event loop, abort on a bad request.

    ``context`` is the ``grpc.aio.ServicerContext``; a :class:`RequestError` aborts
    the call with its status code and message (``on_error`` sees it first, e.g. for
    metrics). The server goes on either way.
    """
    received_s = time.perf_counter()
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(
            executor, lambda: service.infer(request, received_s=received_s)
        )
    except RequestError as error:
        if on_error is not None:
            on_error(error)
        await context.abort(error.code.grpc, error.message)
        raise  # abort() raises; this line only satisfies type checkers
