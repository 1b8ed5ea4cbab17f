"""Codec dataclasses <-> protobuf messages of ``splitedge.proto``.

Only names and enums are translated here; every semantic check (versions, shapes,
byte counts, quantization parameters) stays in :mod:`splitedge.proto.codec`, which
runs on the result. Enum values the wire cannot mean (``*_UNSPECIFIED``, or numbers
from a newer peer) are refused with :class:`~splitedge.proto.codec.InvalidPayload`,
since proto3 keeps unknown enum numbers instead of failing the parse.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.codec import CodecError, EncodedImage, EncodedTensor, InvalidPayload
from splitedge.proto.status import BatchLatency, BranchLoad, ServerStatus, ServerTiming

__all__ = [
    "batch_latency_from_pb",
    "batch_latency_to_pb",
    "dtype_from_pb",
    "dtype_to_pb",
    "image_format_from_pb",
    "image_format_to_pb",
    "image_from_pb",
    "image_to_pb",
    "status_from_pb",
    "status_to_pb",
    "tensor_from_pb",
    "tensor_to_pb",
    "timing_from_pb",
    "timing_to_pb",
]

_DTYPES = {"float32": pb.FLOAT32, "float16": pb.FLOAT16, "uint8": pb.UINT8, "int8": pb.INT8}
_QUANTS = {
    "none": pb.QUANT_NONE,
    "per_tensor": pb.QUANT_PER_TENSOR,
    "per_channel": pb.QUANT_PER_CHANNEL,
}
_COMPRESSIONS = {"raw": pb.RAW, "zstd": pb.ZSTD}
_IMAGE_FORMATS = {"jpeg": pb.JPEG, "png": pb.PNG, "webp": pb.WEBP}
# The decode side's lookups, wire number -> name.
_DTYPE_NAMES = {n: name for name, n in _DTYPES.items()}
_QUANT_NAMES = {n: name for name, n in _QUANTS.items()}
_COMPRESSION_NAMES = {n: name for name, n in _COMPRESSIONS.items()}
_IMAGE_FORMAT_NAMES = {n: name for name, n in _IMAGE_FORMATS.items()}


def _to_pb(table: dict[str, int], field: str, value: str) -> int:
    try:
        return table[value]
    except KeyError:
        # Encode side: a bug in the caller, not bad input from a peer.
        raise CodecError(
            f"{field} {value!r} has no wire value; expected one of {', '.join(table)}"
        ) from None


def _from_pb(
    names: dict[int, str], enum: EnumTypeWrapper, field: str, number: int, label: str
) -> str:
    name = names.get(number)
    if name is not None:
        return name
    known = ", ".join(enum.Name(n) for n in names)
    try:
        shown = f"{enum.Name(number)} ({number})"
    except ValueError:
        shown = f"unknown value {number}"
    raise InvalidPayload(f"{label}: {field} is {shown}, expected one of {known}")


def dtype_to_pb(name: str) -> int:
    """``"float32"`` -> ``pb.FLOAT32`` (CodecError for a name the wire lacks)."""
    return _to_pb(_DTYPES, "dtype", name)


def dtype_from_pb(number: int, label: str = "tensor") -> str:
    """``pb.FLOAT32`` -> ``"float32"``; InvalidPayload for unspecified/unknown values."""
    return _from_pb(_DTYPE_NAMES, pb.DType, "dtype", number, label)


def image_format_to_pb(name: str) -> int:
    """``"jpeg"`` -> ``pb.JPEG`` (CodecError for a name the wire lacks)."""
    return _to_pb(_IMAGE_FORMATS, "image format", name)


def image_format_from_pb(number: int, label: str = "image") -> str:
    """``pb.JPEG`` -> ``"jpeg"``; InvalidPayload for unspecified/unknown values."""
    return _from_pb(_IMAGE_FORMAT_NAMES, pb.ImageFormat, "format", number, label)


def tensor_to_pb(t: EncodedTensor) -> pb.Tensor:
    """The message for one encoded tensor."""
    return pb.Tensor(
        codec_version=t.codec_version,
        name=t.name,
        dtype=dtype_to_pb(t.dtype),
        shape=t.shape,
        quant=_to_pb(_QUANTS, "quant", t.quant),
        bits=t.bits,
        axis=t.axis,
        scale=t.scale,
        zero_point=t.zero_point,
        compression=_to_pb(_COMPRESSIONS, "compression", t.compression),
        data=t.data,
    )


def tensor_from_pb(m: pb.Tensor) -> EncodedTensor:
    """The encoded tensor a message carries; decode it with ``codec.decode_tensor``."""
    label = f"tensor {m.name[:64]!r}"
    return EncodedTensor(
        name=m.name,
        dtype=dtype_from_pb(m.dtype, label),
        shape=tuple(m.shape),
        quant=_from_pb(_QUANT_NAMES, pb.QuantScheme, "quant", m.quant, label),
        bits=m.bits,
        axis=m.axis,
        scale=tuple(m.scale),
        zero_point=tuple(m.zero_point),
        compression=_from_pb(
            _COMPRESSION_NAMES, pb.Compression, "compression", m.compression, label
        ),
        data=m.data,
        codec_version=m.codec_version,
    )


def image_to_pb(img: EncodedImage) -> pb.Image:
    """The message for one encoded image."""
    return pb.Image(
        format=image_format_to_pb(img.format), width=img.width, height=img.height, data=img.data
    )


def image_from_pb(m: pb.Image) -> EncodedImage:
    """The encoded image a message carries; decode it with ``codec.decode_image``."""
    return EncodedImage(
        format=image_format_from_pb(m.format), width=m.width, height=m.height, data=m.data
    )


# ---------------------------------------------------------------- server timing and load


def timing_to_pb(t: ServerTiming) -> pb.ServerTiming:
    """The message for one frame's server timing."""
    return pb.ServerTiming(
        decode_ms=t.decode_ms,
        queue_ms=t.queue_ms,
        tail_ms=t.tail_ms,
        encode_ms=t.encode_ms,
        batch_size=t.batch_size,
        server_total_ms=t.server_total_ms,
    )


def timing_from_pb(m: pb.ServerTiming) -> ServerTiming:
    """The server timing a ``FrameResult`` carries."""
    return ServerTiming(
        m.decode_ms, m.queue_ms, m.tail_ms, m.encode_ms, m.batch_size, m.server_total_ms
    )


def batch_latency_to_pb(entries: tuple[BatchLatency, ...]) -> list[pb.BatchLatency]:
    """Tail latency per batch size, ascending."""
    return [
        pb.BatchLatency(
            batch_size=b.batch_size,
            tail_latency_ms_p50=b.tail_latency_ms_p50,
            tail_latency_ms_p95=b.tail_latency_ms_p95,
            samples=b.samples,
        )
        for b in sorted(entries, key=lambda b: b.batch_size)
    ]


def batch_latency_from_pb(entries: Iterable[pb.BatchLatency]) -> tuple[BatchLatency, ...]:
    return tuple(
        BatchLatency(e.batch_size, e.tail_latency_ms_p50, e.tail_latency_ms_p95, e.samples)
        for e in entries
    )


def status_to_pb(s: ServerStatus) -> pb.StatusResponse:
    """The ``Status`` reply (an unmeasured tail goes as 0 ms with ``frames`` 0)."""
    return pb.StatusResponse(
        server_id=s.server_id,
        device=s.device,
        queue_depth=s.queue_depth,
        queue_capacity=s.queue_capacity,
        in_flight=s.in_flight,
        load=s.load,
        frames_per_second=s.frames_per_second,
        uptime_s=s.uptime_s,
        branches=[
            pb.BranchLoad(
                model=b.model,
                branch=b.branch,
                queue_depth=b.queue_depth,
                tail_latency_ms_p50=b.tail_latency_ms_p50 or 0.0,
                tail_latency_ms_p95=b.tail_latency_ms_p95 or 0.0,
                frames=b.frames,
                by_batch_size=batch_latency_to_pb(b.by_batch_size),
                replicas=b.replicas,
            )
            for b in s.branches
        ],
    )


def status_from_pb(m: pb.StatusResponse) -> ServerStatus:
    """The server's load a ``Status`` reply carries (a branch with no frames: unmeasured)."""
    return ServerStatus(
        server_id=m.server_id,
        device=m.device,
        queue_depth=m.queue_depth,
        queue_capacity=m.queue_capacity,
        in_flight=m.in_flight,
        load=m.load,
        frames_per_second=m.frames_per_second,
        uptime_s=m.uptime_s,
        branches=tuple(
            BranchLoad(
                model=b.model,
                branch=b.branch,
                queue_depth=b.queue_depth,
                tail_latency_ms_p50=b.tail_latency_ms_p50 if b.frames > 0 else None,
                tail_latency_ms_p95=b.tail_latency_ms_p95 if b.frames > 0 else None,
                frames=b.frames,
                by_batch_size=batch_latency_from_pb(b.by_batch_size),
                replicas=b.replicas,
            )
            for b in m.branches
        ),
    )
