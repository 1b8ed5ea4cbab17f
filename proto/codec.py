"""The tensor and image codec: pure, bounded and versioned bytes <-> arrays.

The device encodes a head's bottleneck tensors (optionally affine-quantized to 8/6/4/2
bits, bit-packed, zstd-compressed) or a whole frame (JPEG/PNG/WebP); the edge server
decodes them. The server must never trust these bytes, so :func:`decode_tensor` and
:func:`decode_image` check every declared field and every byte count against
:class:`CodecLimits` *before* they allocate, and refuse anything else with
:class:`InvalidPayload` (-> INVALID_ARGUMENT) or :class:`PayloadTooLarge`
(-> RESOURCE_EXHAUSTED). Errors are one line a person can act on.

Wire layout of ``data`` (little-endian throughout):

* unquantized: the ``dtype`` values in C order;
* quantized: unsigned ``bits``-bit integers q, value i in bits ``[i*bits, (i+1)*bits)``
  of the byte string read as one little-endian bit stream (2 bits: 4 values a byte,
  4 bits: 2, 6 bits: 4 values in 3 bytes, 8 bits: 1), ``ceil(n*bits/8)`` bytes, unused
  tail bits zero; dequantized value ``(q - zero_point) * scale`` in float32;
* then compressed as one zstd frame that declares its content size (and carries a
  checksum from this encoder), or left raw.

This module knows nothing of gRPC or protobuf; :mod:`splitedge.proto.wire` maps it.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass, replace

import numpy as np
import zstandard
from PIL import Image, UnidentifiedImageError

__all__ = [
    "CODEC_VERSION",
    "DEFAULT_LIMITS",
    "CodecError",
    "CodecLimits",
    "EncodedImage",
    "EncodedTensor",
    "InvalidPayload",
    "PayloadTooLarge",
    "check_zstd_level",
    "compress_tensor",
    "decode_image",
    "decode_tensor",
    "encode_image",
    "encode_tensor",
]

CODEC_VERSION = 1

DTYPES = ("float32", "float16", "uint8", "int8")
QUANT_SCHEMES = ("none", "per_tensor", "per_channel")
COMPRESSIONS = ("raw", "zstd")
IMAGE_FORMATS = ("jpeg", "png", "webp")
QUANT_BITS = (2, 4, 6, 8)

# Explicit little-endian dtypes: the wire byte order must not follow the host's.
_NP_DTYPES = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "uint8": np.dtype("u1"),
    "int8": np.dtype("i1"),
}
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_MODES = {1: "L", 3: "RGB"}
_ZSTD_MIN_LEVEL = -(1 << 17)  # libzstd's ZSTD_minCLevel(): the fastest negative level
# zstd may legitimately declare a window larger than a small frame's content (streamed
# frames without a content size); beyond this floor a window must fit the tensor itself.
_ZSTD_WINDOW_FLOOR_BYTES = 8 * 2**20

# zstd contexts cost ~10 us to build; each thread keeps its own (they are not thread-safe).
_zstd_contexts = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_zstd_contexts, "c", None)
    if cache is None:
        cache = _zstd_contexts.c = {}
    compressor = cache.get(level)
    if compressor is None:
        # The 4-byte checksum catches corruption inside raw (incompressible) blocks too.
        compressor = cache[level] = zstandard.ZstdCompressor(
            level=level, write_content_size=True, write_checksum=True
        )
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_zstd_contexts, "d", None)
    if decompressor is None:
        decompressor = _zstd_contexts.d = zstandard.ZstdDecompressor()
    return decompressor


_NAME_SHOWN_CHARS = 64


class CodecError(ValueError):
    """Base of every codec error; also raised for bad arguments on the encode side."""


class InvalidPayload(CodecError):
    """Malformed, inconsistent or corrupt payload (maps to INVALID_ARGUMENT)."""


class PayloadTooLarge(CodecError):
    """A declared or actual size over a :class:`CodecLimits` bound (RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class CodecLimits:
    """Bounds the decoder enforces before allocating anything."""

    max_tensor_bytes: int = 64 * 2**20  # decoded size of one tensor
    max_payload_bytes: int = 32 * 2**20  # compressed bytes of one tensor/image
    max_ndim: int = 8
    max_image_pixels: int = 4096 * 4096


DEFAULT_LIMITS = CodecLimits()


@dataclass(frozen=True)
class EncodedTensor:
    """One tensor as it crosses the wire (see the module docstring for ``data``)."""

    name: str
    dtype: str  # "float32" | "float16" | "uint8" | "int8", before quantization
    shape: tuple[int, ...]
    quant: str  # "none" | "per_tensor" | "per_channel"
    bits: int  # 0 when quant == "none", else 2, 4, 6 or 8
    axis: int  # channel axis for per_channel, 0 otherwise
    scale: tuple[float, ...]
    zero_point: tuple[float, ...]
    compression: str  # "raw" | "zstd"
    data: bytes
    codec_version: int = CODEC_VERSION

    @property
    def size_bytes(self) -> int:
        """Bytes of payload on the wire (excluding the message's metadata)."""
        return len(self.data)


@dataclass(frozen=True)
class EncodedImage:
    """A frame or mask as it crosses the wire."""

    format: str  # "jpeg" | "png" | "webp"
    width: int
    height: int
    data: bytes

    @property
    def size_bytes(self) -> int:
        return len(self.data)


# ---------------------------------------------------------------- bit packing


def _group(bits: int) -> tuple[int, int]:
    """(values, bytes) of the smallest whole-byte group: 2 -> (4, 1), 6 -> (4, 3)."""
    values = 8 // math.gcd(bits, 8)
    return values, values * bits // 8


def packed_size_bytes(count: int, bits: int) -> int:
    """Bytes that ``count`` values of ``bits`` bits occupy on the wire."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers < 2**bits into a little-endian bit stream."""
    flat = np.ascontiguousarray(values, dtype=np.uint8).ravel()
    if bits == 8:
        return flat.tobytes()
    group_values, group_bytes = _group(bits)
    padded = np.zeros(-(-flat.size // group_values) * group_values, np.uint32)
    padded[: flat.size] = flat
    lanes = padded.reshape(-1, group_values)
    words = np.zeros(lanes.shape[0], np.uint32)
    for j in range(group_values):
        words |= lanes[:, j] << np.uint32(j * bits)
    shifts = np.arange(group_bytes, dtype=np.uint32) * np.uint32(8)
    out = ((words[:, None] >> shifts) & np.uint32(0xFF)).astype(np.uint8).ravel()
    return out[: packed_size_bytes(flat.size, bits)].tobytes()


def unpack_bits(data: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`; ``data`` must be exactly the packed size.

    Raises :class:`InvalidPayload` when the unused tail bits are not zero, so one
    tensor has exactly one valid encoding.
    """
    if len(data) != packed_size_bytes(count, bits):
        raise InvalidPayload(
            f"{len(data)} packed bytes for {count} {bits}-bit values, "
            f"expected {packed_size_bytes(count, bits)}"
        )
    raw = np.frombuffer(data, np.uint8)
    if bits == 8:
        return raw.copy()
    group_values, group_bytes = _group(bits)
    padded = np.zeros(-(-raw.size // group_bytes) * group_bytes, np.uint32)
    padded[: raw.size] = raw
    lanes = padded.reshape(-1, group_bytes)
    words = np.zeros(lanes.shape[0], np.uint32)
    for k in range(group_bytes):
        words |= lanes[:, k] << np.uint32(8 * k)
    shifts = np.arange(group_values, dtype=np.uint32) * np.uint32(bits)
    mask = np.uint32((1 << bits) - 1)
    values = ((words[:, None] >> shifts) & mask).astype(np.uint8).ravel()
    if values[count:].any():
        raise InvalidPayload(f"nonzero padding bits after the last of {count} {bits}-bit values")
    return values[:count]


# ---------------------------------------------------------------- quantization


def _quant_params(lo: np.ndarray, hi: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 (scale, zero_point) per entry of ``lo``/``hi`` (float64 arrays)."""
    levels = (1 << bits) - 1
    exact = (hi - lo) / levels
    scale = exact.astype(np.float32)
    # A scale rounded down would map the maximum past the top level and clip it.
    scale = np.where(scale.astype(np.float64) < exact, np.nextafter(scale, np.inf), scale)
    constant = hi == lo
    # Constant slices: scale 1 and zero_point -value dequantize q=0 to the value exactly.
    scale = np.where(constant, np.float32(1.0), scale).astype(np.float32)
    zero_point = np.where(constant, -lo, -lo / scale.astype(np.float64)).astype(np.float32)
    if not (np.isfinite(scale).all() and (scale > 0).all() and np.isfinite(zero_point).all()):
        raise CodecError("cannot quantize: value range gives no finite, positive scale")
    return scale, zero_point


def _quantize(
    x: np.ndarray, bits: int, axis: int | None
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    values = x.astype(np.float64)
    if axis is None:
        lo, hi = values.min(keepdims=True), values.max(keepdims=True)
        scale, zero_point = _quant_params(lo.ravel(), hi.ravel(), bits)
        bcast_scale, bcast_zp = scale.astype(np.float64), zero_point.astype(np.float64)
    else:
        others = tuple(i for i in range(x.ndim) if i != axis)
        lo, hi = values.min(axis=others), values.max(axis=others)
        scale, zero_point = _quant_params(lo, hi, bits)
        view = [1] * x.ndim
        view[axis] = -1
        bcast_scale = scale.astype(np.float64).reshape(view)
        bcast_zp = zero_point.astype(np.float64).reshape(view)
    q = np.clip(np.rint(values / bcast_scale + bcast_zp), 0, (1 << bits) - 1).astype(np.uint8)
    return q, tuple(float(s) for s in scale), tuple(float(z) for z in zero_point)


# ---------------------------------------------------------------- tensors


def encode_tensor(
    x: np.ndarray,
    name: str = "x",
    *,
    bits: int = 0,
    per_channel_axis: int | None = None,
    float16: bool = False,
    compression: str = "zstd",
    zstd_level: int = 3,
) -> EncodedTensor:
    """Encode one tensor for the wire.

    ``bits`` 0 ships values verbatim (float32 is cast to float16 first when
    ``float16``); 2/4/6/8 quantizes per tensor, or per index along
    ``per_channel_axis``. float64 input is shipped as float32 (the wire has no
    float64). uint8/int8 input with ``bits`` 0 or 8 is shipped verbatim, since it
    already fits 8 bits losslessly; fewer bits quantize it (and decode to float32).
    """
    if not isinstance(x, np.ndarray):
        raise CodecError(f"tensor {_show(name)}: expected a numpy array, got {type(x).__name__}")
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    dtype = x.dtype.name
    if dtype not in DTYPES:
        raise CodecError(f"tensor {_show(name)}: dtype {dtype} is not one of {', '.join(DTYPES)}")
    if x.ndim == 0 or x.size == 0:
        raise CodecError(f"tensor {_show(name)}: shape {list(x.shape)} has no elements")
    if bits not in (0, *QUANT_BITS):
        raise CodecError(
            f"tensor {_show(name)}: bits={bits}, expected 0 (no quantization), 2, 4, 6 or 8"
        )
    if compression not in COMPRESSIONS:
        raise CodecError(f"tensor {_show(name)}: compression {compression!r} is not raw or zstd")
    if float16 and bits:
        raise CodecError(f"tensor {_show(name)}: float16 applies only when bits=0")
    if per_channel_axis is not None and not bits:
        raise CodecError(f"tensor {_show(name)}: per_channel_axis needs bits > 0")
    if per_channel_axis is not None and not -x.ndim <= per_channel_axis < x.ndim:
        raise CodecError(
            f"tensor {_show(name)}: per_channel_axis {per_channel_axis} out of range "
            f"for {x.ndim} dimensions"
        )
    if bits == 8 and dtype in ("uint8", "int8"):
        bits, per_channel_axis = 0, None

    axis = 0
    scale: tuple[float, ...] = ()
    zero_point: tuple[float, ...] = ()
    if bits:
        if not np.isfinite(x).all():
            raise CodecError(f"tensor {_show(name)}: cannot quantize NaN or infinite values")
        if per_channel_axis is None:
            quant = "per_tensor"
        else:
            quant, axis = "per_channel", per_channel_axis % x.ndim
        q, scale, zero_point = _quantize(x, bits, axis if quant == "per_channel" else None)
        payload = pack_bits(q, bits)
    else:
        quant = "none"
        if float16 and dtype == "float32":
            dtype = "float16"
        payload = np.ascontiguousarray(x, dtype=_NP_DTYPES[dtype]).tobytes()

    if compression == "zstd":
        payload = _zstd_compress(payload, zstd_level, name)
    return EncodedTensor(
        name=name,
        dtype=dtype,
        shape=tuple(int(d) for d in x.shape),
        quant=quant,
        bits=bits,
        axis=axis,
        scale=scale,
        zero_point=zero_point,
        compression=compression,
        data=payload,
    )


def check_zstd_level(level: int) -> None:
    """CodecError unless libzstd accepts ``level`` (negative levels are the fast ones)."""
    if not _ZSTD_MIN_LEVEL <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise CodecError(
            f"zstd_level {level} outside [{_ZSTD_MIN_LEVEL}, {zstandard.MAX_COMPRESSION_LEVEL}]"
        )


def _zstd_compress(payload: bytes, level: int, name: str) -> bytes:
    try:
        check_zstd_level(level)
    except CodecError as exc:
        raise CodecError(f"tensor {_show(name)}: {exc}") from None
    return _compressor(level).compress(payload)


def compress_tensor(t: EncodedTensor, zstd_level: int = 3) -> EncodedTensor:
    """The same tensor with its raw payload zstd-compressed (``encode_tensor``'s zstd step,
    for a caller that decides per frame whether compressing pays)."""
    if t.compression != "raw":
        raise CodecError(f"tensor {_show(t.name)}: already {t.compression}, not raw")
    return replace(t, compression="zstd", data=_zstd_compress(t.data, zstd_level, t.name))


def decode_tensor(t: EncodedTensor, limits: CodecLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Validate and decode one tensor; a new, writable array.

    float32 when quantized, the declared dtype otherwise (float16 stays float16).
    """
    label = f"tensor {_show(t.name)}"
    if t.codec_version != CODEC_VERSION:
        raise InvalidPayload(
            f"{label}: codec_version {t.codec_version} is not supported (this side speaks "
            f"{CODEC_VERSION})"
        )
    for field, value, known in (
        ("dtype", t.dtype, DTYPES),
        ("quant", t.quant, QUANT_SCHEMES),
        ("compression", t.compression, COMPRESSIONS),
    ):
        if value not in known:
            raise InvalidPayload(
                f"{label}: unknown {field} {value!r}, expected one of {', '.join(known)}"
            )
    shape = tuple(t.shape)
    if not 0 < len(shape) <= limits.max_ndim:
        raise InvalidPayload(
            f"{label}: shape has {len(shape)} dimensions, expected 1 to {limits.max_ndim}"
        )
    if not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
        raise InvalidPayload(
            f"{label}: shape {list(shape)} has a dimension that is not an integer >= 1"
        )
    count = math.prod(int(d) for d in shape)
    quantized = t.quant != "none"
    out_dtype = np.dtype(np.float32) if quantized else _NP_DTYPES[t.dtype]
    # Python ints cannot overflow, so a terabyte shape is refused here without allocating.
    decoded_bytes = count * out_dtype.itemsize
    if decoded_bytes > limits.max_tensor_bytes:
        raise PayloadTooLarge(
            f"{label}: declared shape {[int(d) for d in shape]} needs {decoded_bytes} bytes, "
            f"over the {limits.max_tensor_bytes}-byte limit"
        )
    _check_quant_fields(t, shape, label)
    if len(t.data) > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"{label}: payload of {len(t.data)} bytes is over the "
            f"{limits.max_payload_bytes}-byte limit"
        )
    stream_bytes = packed_size_bytes(count, t.bits) if quantized else decoded_bytes
    if t.compression == "zstd":
        payload = _zstd_decompress(t.data, stream_bytes, limits, label)
    else:
        payload = t.data
        if len(payload) != stream_bytes:
            raise InvalidPayload(
                f"{label}: raw data has {len(payload)} bytes, shape {list(shape)} "
                f"needs {stream_bytes}"
            )
    if not quantized:
        return np.frombuffer(payload, out_dtype).reshape(shape).copy()
    try:
        q = unpack_bits(payload, count, t.bits).reshape(shape)
    except InvalidPayload as exc:
        raise InvalidPayload(f"{label}: {exc}") from exc
    scale = np.asarray(t.scale, np.float32)
    zero_point = np.asarray(t.zero_point, np.float32)
    if t.quant == "per_channel":
        view = [1] * len(shape)
        view[t.axis] = -1
        scale, zero_point = scale.reshape(view), zero_point.reshape(view)
    else:
        scale, zero_point = scale[0], zero_point[0]
    return (q.astype(np.float32) - zero_point) * scale


def _check_quant_fields(t: EncodedTensor, shape: tuple[int, ...], label: str) -> None:
    if t.quant == "none":
        if t.bits != 0:
            raise InvalidPayload(f"{label}: bits={t.bits} but quant is none (expected 0)")
        if t.axis != 0:
            raise InvalidPayload(f"{label}: axis={t.axis} but quant is none (expected 0)")
        if t.scale or t.zero_point:
            raise InvalidPayload(f"{label}: scale/zero_point given but quant is none")
        return
    if t.bits not in QUANT_BITS:
        raise InvalidPayload(f"{label}: bits={t.bits} with quant {t.quant}, expected 2, 4, 6 or 8")
    if t.quant == "per_channel":
        if not 0 <= t.axis < len(shape):
            raise InvalidPayload(
                f"{label}: axis {t.axis} out of range for {len(shape)}-dimensional shape"
            )
        expected = int(shape[t.axis])
    else:
        if t.axis != 0:
            raise InvalidPayload(f"{label}: axis={t.axis} but quant is per_tensor (expected 0)")
        expected = 1
    if len(t.scale) != expected or len(t.zero_point) != expected:
        raise InvalidPayload(
            f"{label}: {len(t.scale)} scales and {len(t.zero_point)} zero points, "
            f"{t.quant} over shape {list(shape)} needs {expected} of each"
        )
    # Checked as float32, the precision they are used in: 1e-50 would become 0.
    with np.errstate(over="ignore"):
        scale = np.asarray(t.scale, np.float64).astype(np.float32)
        zero_point = np.asarray(t.zero_point, np.float64).astype(np.float32)
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidPayload(
            f"{label}: scale[{i}] = {t.scale[i]!r} is not a finite positive float32"
        )
    bad = ~np.isfinite(zero_point)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidPayload(f"{label}: zero_point[{i}] = {t.zero_point[i]!r} is not finite")


def _zstd_decompress(data: bytes, expected_bytes: int, limits: CodecLimits, label: str) -> bytes:
    """One zstd frame of exactly ``expected_bytes``; everything checked before inflating."""
    try:
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as exc:
        raise InvalidPayload(f"{label}: not a zstd frame ({exc})") from exc
    declared = zstandard.frame_content_size(data)
    if declared != -1:  # -1: the frame does not declare its content size
        if declared > limits.max_tensor_bytes:
            raise PayloadTooLarge(
                f"{label}: zstd frame declares {declared} bytes, over the "
                f"{limits.max_tensor_bytes}-byte limit"
            )
        if declared != expected_bytes:
            raise InvalidPayload(
                f"{label}: zstd frame declares {declared} bytes, the tensor needs {expected_bytes}"
            )
    if params.dict_id:
        raise InvalidPayload(f"{label}: zstd frame needs dictionary {params.dict_id}")
    window_limit = max(expected_bytes, _ZSTD_WINDOW_FLOOR_BYTES)
    if params.window_size > window_limit:
        raise PayloadTooLarge(
            f"{label}: zstd frame asks for a {params.window_size}-byte window, over "
            f"{window_limit} bytes for this tensor"
        )
    try:
        # max_output_size bounds the output of frames without a declared size;
        # allow_extra_data=False refuses trailing bytes and second frames.
        out = _decompressor().decompress(
            data, max_output_size=expected_bytes, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise InvalidPayload(f"{label}: corrupt zstd data ({exc})") from exc
    if len(out) != expected_bytes:
        raise InvalidPayload(
            f"{label}: zstd data inflates to {len(out)} bytes, the tensor needs {expected_bytes}"
        )
    return out


def _show(name: str) -> str:
    """The name quoted for messages, shortened so a hostile name cannot flood logs."""
    text = str(name)
    if len(text) > _NAME_SHOWN_CHARS:
        text = text[:_NAME_SHOWN_CHARS] + "..."
    return repr(text)


# ---------------------------------------------------------------- images


def encode_image(pixels: np.ndarray, format: str = "jpeg", quality: int = 90) -> EncodedImage:
    """Encode an HxWx3 uint8 RGB frame or an HxW uint8 image (grayscale, class mask).

    Only ``png`` is lossless, so class-index masks must use it. ``quality`` (1-100)
    applies to jpeg and webp.
    """
    if format not in IMAGE_FORMATS:
        raise CodecError(f"image: format {format!r} is not one of {', '.join(IMAGE_FORMATS)}")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        kind = getattr(pixels, "dtype", type(pixels).__name__)
        raise CodecError(f"image: expected a uint8 array, got {kind}")
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3)):
        raise CodecError(f"image: shape {list(pixels.shape)} is neither HxWx3 (RGB) nor HxW")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise CodecError(f"image: shape {list(pixels.shape)} has no pixels")
    if not 1 <= quality <= 100:
        raise CodecError(f"image: quality {quality} outside 1..100")
    # Pillow picks the mode from the array: HxW uint8 -> "L", HxWx3 uint8 -> "RGB".
    image = Image.fromarray(np.ascontiguousarray(pixels))
    options: dict[str, object] = {"quality": quality} if format != "png" else {}
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=_PIL_FORMATS[format], **options)
    except (OSError, ValueError) as exc:
        raise CodecError(
            f"image: cannot encode {pixels.shape[1]}x{pixels.shape[0]} as {format} ({exc})"
        ) from exc
    height, width = pixels.shape[:2]
    return EncodedImage(format=format, width=int(width), height=int(height), data=buffer.getvalue())


def decode_image(
    img: EncodedImage, limits: CodecLimits = DEFAULT_LIMITS, *, channels: int = 3
) -> np.ndarray:
    """Validate and decode an image: HxWx3 uint8 for ``channels=3``, HxW for 1.

    The decoded mode must match ``channels`` exactly (RGB or L); nothing is converted,
    so an RGBA or palette PNG sent as a mask is refused rather than silently changed.
    """
    if channels not in _MODES:
        raise CodecError(f"image: channels={channels}, expected 1 or 3")
    if img.format not in IMAGE_FORMATS:
        raise InvalidPayload(
            f"image: unknown format {img.format!r}, expected one of {', '.join(IMAGE_FORMATS)}"
        )
    label = f"{img.format} image"
    if img.width < 1 or img.height < 1:
        raise InvalidPayload(f"{label}: declared size {img.width}x{img.height} has no pixels")
    pixels = img.width * img.height
    if pixels > limits.max_image_pixels:
        raise PayloadTooLarge(
            f"{label}: declared {img.width}x{img.height} = {pixels} pixels, over the "
            f"{limits.max_image_pixels}-pixel limit"
        )
    if len(img.data) > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"{label}: payload of {len(img.data)} bytes is over the "
            f"{limits.max_payload_bytes}-byte limit"
        )
    pil_format = _PIL_FORMATS[img.format]
    try:
        # formats= keeps PIL from trying every other decoder on hostile bytes.
        image = Image.open(io.BytesIO(img.data), formats=[pil_format])
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(
            f"{label}: refused by Pillow's decompression-bomb guard ({exc})"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InvalidPayload(f"{label}: data is not a valid {pil_format} file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidPayload(f"{label}: corrupt header ({exc})") from exc
    with image:
        # Header checks come before load(), which is where the pixels get allocated.
        if image.size != (img.width, img.height):
            raise InvalidPayload(
                f"{label}: header says {image.size[0]}x{image.size[1]}, "
                f"declared {img.width}x{img.height}"
            )
        expected_mode = _MODES[channels]
        if image.mode != expected_mode:
            raise InvalidPayload(
                f"{label}: decodes to mode {image.mode!r}, expected {expected_mode!r} "
                f"({channels} channel{'s' if channels > 1 else ''})"
            )
        try:
            image.load()
            array = np.array(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidPayload(f"{label}: corrupt image data ({exc})") from exc
    expected_shape = (img.height, img.width, 3) if channels == 3 else (img.height, img.width)
    if array.shape != expected_shape:
        raise InvalidPayload(
            f"{label}: decoded to shape {list(array.shape)}, expected {list(expected_shape)}"
        )
    return array
