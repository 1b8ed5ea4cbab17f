"""Every way a hostile or broken payload is refused: the exception type and a usable message."""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import zstandard
from PIL import Image

from splitedge.proto import codec
from splitedge.proto.codec import CodecLimits, InvalidPayload, PayloadTooLarge

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _tensor(**changes) -> codec.EncodedTensor:
    """A valid 8-bit per-channel (2, 3, 4) float tensor, with fields replaced."""
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    return replace(codec.encode_tensor(x, "z", bits=8, per_channel_axis=1), **changes)


def _raw_tensor(**changes) -> codec.EncodedTensor:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    return replace(codec.encode_tensor(x, "r", compression="zstd"), **changes)


def _zstd_frame(
    content: bytes,
    *,
    declared_size: int | None = None,
    dict_id: int | None = None,
    window_log: int | None = None,
) -> bytes:
    """A hand-made zstd frame holding ``content`` in one raw block (RFC 8878, 3.1.1)."""
    descriptor = 0
    header = b""
    if window_log is None:
        descriptor |= 1 << 5  # single segment: the window is the content size
    else:
        header += bytes([(window_log - 10) << 3])
    if dict_id is not None:
        descriptor |= 1  # one-byte dictionary id
        header += bytes([dict_id])
    if declared_size is not None:
        descriptor |= 3 << 6  # eight-byte frame content size
        header += declared_size.to_bytes(8, "little")
    elif window_log is None:
        header += bytes([len(content)])  # single segment needs a size; one byte here
    block = (1 | (len(content) << 3)).to_bytes(3, "little")  # last block, raw
    return ZSTD_MAGIC + bytes([descriptor]) + header + block + content


# ---------------------------------------------------------------- sizes


def test_terabyte_shape_is_refused_before_allocating():
    t = _raw_tensor(shape=(1, 4096, 4096, 4096, 64), data=b"")
    with pytest.raises(PayloadTooLarge, match=r"declared shape \[1, 4096, 4096, 4096, 64\] needs "):
        codec.decode_tensor(t)


def test_decoded_size_message_names_the_tensor_and_the_limit():
    t = _raw_tensor(name="z", shape=(1, 4096, 4096, 64))
    with pytest.raises(PayloadTooLarge) as info:
        codec.decode_tensor(t)
    assert str(info.value) == (
        "tensor 'z': declared shape [1, 4096, 4096, 64] needs 4294967296 bytes, "
        "over the 67108864-byte limit"
    )


def test_quantized_tensor_limit_counts_float32_output():
    limits = CodecLimits(max_tensor_bytes=95)  # 24 float32 outputs need 96 bytes
    with pytest.raises(PayloadTooLarge, match="needs 96 bytes, over the 95-byte limit"):
        codec.decode_tensor(_tensor(), limits)


def test_payload_over_the_byte_limit_is_refused():
    t = _raw_tensor(compression="raw", data=bytes(24))
    with pytest.raises(PayloadTooLarge, match="payload of 24 bytes is over the 16-byte limit"):
        codec.decode_tensor(t, CodecLimits(max_payload_bytes=16))


def test_zstd_frame_declaring_a_huge_content_size_is_refused_unread():
    frame = _zstd_frame(b"\0" * 24, declared_size=2**40)
    with pytest.raises(PayloadTooLarge, match="zstd frame declares 1099511627776 bytes, over the"):
        codec.decode_tensor(_raw_tensor(data=frame))


def test_zstd_frame_declaring_the_wrong_size_is_refused():
    frame = _zstd_frame(b"\0" * 20, declared_size=20)
    with pytest.raises(InvalidPayload, match="zstd frame declares 20 bytes, the tensor needs 24"):
        codec.decode_tensor(_raw_tensor(data=frame))


def test_hand_made_frame_of_the_right_size_decodes():
    content = np.arange(6, dtype="<f4").tobytes()
    out = codec.decode_tensor(_raw_tensor(data=_zstd_frame(content, declared_size=24)))
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_frame_without_content_size_is_bounded_by_the_expected_size():
    content = np.arange(6, dtype="<f4").tobytes()
    obj = zstandard.ZstdCompressor().compressobj()
    unsized = obj.compress(content) + obj.flush()
    assert zstandard.frame_content_size(unsized) == -1
    np.testing.assert_array_equal(
        codec.decode_tensor(_raw_tensor(data=unsized)).ravel(), np.arange(6)
    )
    obj = zstandard.ZstdCompressor().compressobj()
    longer = obj.compress(content * 1000) + obj.flush()
    with pytest.raises(InvalidPayload, match="corrupt zstd data"):
        codec.decode_tensor(_raw_tensor(data=longer))


def test_frame_without_content_size_that_inflates_short_is_refused():
    frame = _zstd_frame(b"\0" * 8, window_log=10)
    with pytest.raises(InvalidPayload, match="inflates to 8 bytes, the tensor needs 24"):
        codec.decode_tensor(_raw_tensor(data=frame))


def test_zstd_frame_asking_for_a_huge_window_is_refused():
    frame = _zstd_frame(b"\0" * 24, window_log=30)
    with pytest.raises(PayloadTooLarge, match="asks for a 1073741824-byte window"):
        codec.decode_tensor(_raw_tensor(data=frame))


def test_zstd_frame_needing_a_dictionary_is_refused():
    frame = _zstd_frame(b"\0" * 24, dict_id=7)
    with pytest.raises(InvalidPayload, match="needs dictionary 7"):
        codec.decode_tensor(_raw_tensor(data=frame))


# ---------------------------------------------------------------- corrupt bytes


def test_bytes_that_are_not_zstd_are_refused():
    with pytest.raises(InvalidPayload, match="tensor 'r': not a zstd frame"):
        codec.decode_tensor(_raw_tensor(data=b"definitely not zstd"))


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(1).normal(size=(64,)).astype(np.float32),  # stored as a raw block
        np.arange(256, dtype=np.float32) % 7,  # stored as a compressed block
    ],
    ids=["incompressible", "compressible"],
)
def test_corrupt_zstd_is_refused(x):
    good = codec.encode_tensor(x, "n", compression="zstd")
    body = bytearray(good.data)
    body[len(body) // 2] ^= 0x10  # one bit, past the frame header
    with pytest.raises(InvalidPayload, match="tensor 'n': corrupt zstd data"):
        codec.decode_tensor(replace(good, data=bytes(body)))


def test_a_refused_frame_leaves_the_thread_s_zstd_contexts_usable():
    # Contexts are cached per thread: a failure half-way must not poison the next frame.
    x = np.arange(256, dtype=np.float32) % 7
    good = codec.encode_tensor(x, "n", compression="zstd")
    body = bytearray(good.data)
    body[len(body) // 2] ^= 0x10
    for _ in range(2):
        with pytest.raises(InvalidPayload, match="corrupt zstd data"):
            codec.decode_tensor(replace(good, data=bytes(body)))
        np.testing.assert_array_equal(codec.decode_tensor(good), x)
        again = codec.encode_tensor(x, "n", compression="zstd")
        assert again.data == good.data


def test_zstd_contexts_are_per_thread():
    x = np.arange(4096, dtype=np.float32) % 11

    def round_trip(_: int) -> bool:
        return all(
            np.array_equal(codec.decode_tensor(codec.encode_tensor(x, "t", zstd_level=lvl)), x)
            for lvl in (1, 3, 1, 3) * 10
        )

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(round_trip, range(16)))


def test_trailing_bytes_after_the_frame_are_refused():
    t = _raw_tensor()
    with pytest.raises(InvalidPayload, match="3 bytes of unused data"):
        codec.decode_tensor(replace(t, data=t.data + b"xyz"))


def test_a_second_zstd_frame_is_refused():
    t = _raw_tensor()
    with pytest.raises(InvalidPayload, match=r"corrupt zstd data.*unused data"):
        codec.decode_tensor(replace(t, data=t.data + t.data))


@pytest.mark.parametrize("size_bytes", [0, 23, 25])
def test_raw_data_of_the_wrong_length_is_refused(size_bytes):
    t = _raw_tensor(compression="raw", data=bytes(size_bytes))
    with pytest.raises(InvalidPayload, match=f"raw data has {size_bytes} bytes, .* needs 24"):
        codec.decode_tensor(t)


def test_packed_data_of_the_wrong_length_is_refused():
    t = codec.encode_tensor(np.linspace(0, 1, 5, dtype=np.float32), "p", bits=6, compression="raw")
    assert len(t.data) == 4
    with pytest.raises(InvalidPayload, match="raw data has 3 bytes, shape \\[5\\] needs 4"):
        codec.decode_tensor(replace(t, data=t.data[:3]))


def test_nonzero_padding_bits_are_refused():
    t = codec.encode_tensor(np.linspace(0, 1, 5, dtype=np.float32), "p", bits=6, compression="raw")
    tampered = t.data[:-1] + bytes([t.data[-1] | 0x80])  # 30 of the 32 bits are used
    with pytest.raises(InvalidPayload, match="tensor 'p': nonzero padding bits"):
        codec.decode_tensor(replace(t, data=tampered))


# ---------------------------------------------------------------- quantization fields


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-50, 1e39])
def test_bad_scale_is_refused(bad):
    t = _tensor()
    scale = (t.scale[0], bad, t.scale[2])
    with pytest.raises(InvalidPayload, match=r"scale\[1\] = .* is not a finite positive float32"):
        codec.decode_tensor(replace(t, scale=scale))


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e39])
def test_non_finite_zero_point_is_refused(bad):
    t = _tensor()
    with pytest.raises(InvalidPayload, match=r"zero_point\[2\] = .* is not finite"):
        codec.decode_tensor(replace(t, zero_point=(*t.zero_point[:2], bad)))


@pytest.mark.parametrize(
    ("changes", "needed"),
    [
        ({"scale": (1.0, 1.0)}, 3),  # per_channel along axis 1 of (2, 3, 4)
        ({"zero_point": (0.0,) * 4}, 3),
        ({"quant": "per_tensor", "axis": 0}, 1),
    ],
)
def test_wrong_scale_count_is_refused(changes, needed):
    with pytest.raises(InvalidPayload, match=f"needs {needed} of each"):
        codec.decode_tensor(_tensor(**changes))


def test_scale_on_an_unquantized_tensor_is_refused():
    with pytest.raises(InvalidPayload, match="scale/zero_point given but quant is none"):
        codec.decode_tensor(_raw_tensor(scale=(1.0,), zero_point=(0.0,)))


@pytest.mark.parametrize("bits", [0, 1, 3, 7, 16])
def test_bad_bits_for_a_quantized_tensor_are_refused(bits):
    with pytest.raises(InvalidPayload, match=f"bits={bits} with quant per_channel"):
        codec.decode_tensor(_tensor(bits=bits))


def test_bits_on_an_unquantized_tensor_are_refused():
    with pytest.raises(InvalidPayload, match="bits=8 but quant is none"):
        codec.decode_tensor(_raw_tensor(bits=8))


@pytest.mark.parametrize("axis", [-1, 3, 99])
def test_per_channel_axis_out_of_range_is_refused(axis):
    with pytest.raises(InvalidPayload, match=f"axis {axis} out of range for 3-dimensional"):
        codec.decode_tensor(_tensor(axis=axis))


@pytest.mark.parametrize(("maker", "quant"), [(_raw_tensor, "none"), (_tensor, "per_tensor")])
def test_axis_without_per_channel_is_refused(maker, quant):
    changes = {"axis": 1}
    if quant == "per_tensor":
        changes.update(quant="per_tensor", scale=(1.0,), zero_point=(0.0,))
    with pytest.raises(InvalidPayload, match=f"axis=1 but quant is {quant}"):
        codec.decode_tensor(maker(**changes))


# ---------------------------------------------------------------- names and shapes


def test_unknown_codec_version_is_refused():
    with pytest.raises(InvalidPayload, match="codec_version 2 is not supported"):
        codec.decode_tensor(_tensor(codec_version=2))


@pytest.mark.parametrize(
    ("field", "value"),
    [("dtype", "float64"), ("dtype", ""), ("quant", "per_row"), ("compression", "lz4")],
)
def test_unknown_names_are_refused(field, value):
    with pytest.raises(InvalidPayload, match=f"unknown {field} '{value}', expected one of"):
        codec.decode_tensor(_tensor(**{field: value}))


@pytest.mark.parametrize("shape", [(), (1,) * 9])
def test_dimension_count_out_of_range_is_refused(shape):
    with pytest.raises(InvalidPayload, match=f"shape has {len(shape)} dimensions, expected 1 to 8"):
        codec.decode_tensor(_raw_tensor(shape=shape))


@pytest.mark.parametrize("shape", [(2, 0, 3), (6, -1), (3, 2.0)])
def test_dimension_below_one_is_refused(shape):
    with pytest.raises(InvalidPayload, match="has a dimension that is not an integer >= 1"):
        codec.decode_tensor(_raw_tensor(shape=shape))


def test_a_hostile_name_is_shortened_in_messages():
    with pytest.raises(InvalidPayload) as info:
        codec.decode_tensor(_raw_tensor(name="n" * 10_000, codec_version=9))
    assert len(str(info.value)) < 200 and "..." in str(info.value)


# ---------------------------------------------------------------- encode-side arguments


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.zeros(3, np.int64), {}, "dtype int64 is not one of"),
        (np.zeros((0, 3), np.float32), {}, "has no elements"),
        (np.float32(1.0), {}, "expected a numpy array"),
        (np.zeros(3, np.float32), {"bits": 3}, "bits=3, expected 0"),
        (np.zeros(3, np.float32), {"compression": "gzip"}, "'gzip' is not raw or zstd"),
        (np.zeros(3, np.float32), {"bits": 8, "float16": True}, "float16 applies only when bits=0"),
        (np.zeros(3, np.float32), {"per_channel_axis": 0}, "per_channel_axis needs bits > 0"),
        (np.zeros(3, np.float32), {"bits": 4, "per_channel_axis": 1}, "out of range"),
        (np.array([1.0, np.nan], np.float32), {"bits": 8}, "cannot quantize NaN"),
        (np.zeros(3, np.float32), {"zstd_level": 99}, "zstd_level 99 outside"),
    ],
)
def test_bad_encode_arguments_raise_codec_error(x, kwargs, message):
    with pytest.raises(codec.CodecError, match=message):
        codec.encode_tensor(x, "e", **kwargs)


def test_compressing_a_tensor_twice_or_at_a_bad_level_is_refused():
    packed = codec.encode_tensor(np.zeros(3, np.float32), "e")
    with pytest.raises(codec.CodecError, match="tensor 'e': already zstd, not raw"):
        codec.compress_tensor(packed)
    raw = codec.encode_tensor(np.zeros(3, np.float32), "e", compression="raw")
    with pytest.raises(codec.CodecError, match="zstd_level 99 outside"):
        codec.compress_tensor(raw, 99)


# ---------------------------------------------------------------- images


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


RGB = np.full((20, 30, 3), 128, np.uint8)


def test_image_with_too_many_declared_pixels_is_refused_before_decoding():
    img = codec.EncodedImage("jpeg", 100_000, 100_000, b"not even an image")
    with pytest.raises(PayloadTooLarge, match="declared 100000x100000 = 10000000000 pixels, over"):
        codec.decode_image(img)


def test_image_payload_over_the_byte_limit_is_refused():
    img = codec.encode_image(RGB, "png")
    with pytest.raises(PayloadTooLarge, match="over the 10-byte limit"):
        codec.decode_image(img, CodecLimits(max_payload_bytes=10))


def test_image_whose_header_disagrees_with_the_declared_size_is_refused():
    img = replace(codec.encode_image(RGB, "jpeg"), width=31)
    with pytest.raises(InvalidPayload, match="header says 30x20, declared 31x20"):
        codec.decode_image(img)


def test_small_declared_size_over_a_big_header_is_refused_before_load():
    big = codec.encode_image(np.zeros((400, 500), np.uint8), "png")
    with pytest.raises(InvalidPayload, match="header says 500x400, declared 10x10"):
        codec.decode_image(replace(big, width=10, height=10), channels=1)


def test_pillows_own_bomb_guard_maps_to_payload_too_large(monkeypatch):
    # Pillow refuses images over 2 * MAX_IMAGE_PIXELS while reading the header.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    img = codec.encode_image(np.zeros((40, 60), np.uint8), "png")
    with pytest.raises(PayloadTooLarge, match="refused by Pillow's decompression-bomb guard"):
        codec.decode_image(img, channels=1)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_garbage_image_bytes_are_refused(fmt):
    img = codec.EncodedImage(fmt, 30, 20, b"\x89garbage" * 10)
    with pytest.raises(InvalidPayload, match=f"{fmt} image: data is not a valid"):
        codec.decode_image(img)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_image_is_refused(fmt):
    noisy = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    img = codec.encode_image(noisy, fmt)
    with pytest.raises(InvalidPayload, match=f"{fmt} image: corrupt"):
        codec.decode_image(replace(img, data=img.data[: len(img.data) // 2]))


def test_image_in_another_format_than_declared_is_refused():
    img = replace(codec.encode_image(RGB, "png"), format="jpeg")
    with pytest.raises(InvalidPayload, match="jpeg image: data is not a valid JPEG file"):
        codec.decode_image(img)


@pytest.mark.parametrize(
    ("pixels", "channels", "mode"),
    [
        (RGB, 1, "'RGB', expected 'L' \\(1 channel\\)"),
        (RGB[..., 0], 3, "'L', expected 'RGB' \\(3 channels\\)"),
    ],
)
def test_image_mode_mismatch_is_refused(pixels, channels, mode):
    img = codec.encode_image(pixels, "png")
    with pytest.raises(InvalidPayload, match=f"png image: decodes to mode {mode}"):
        codec.decode_image(img, channels=channels)


def test_rgba_png_is_refused_as_rgb():
    rgba = np.zeros((20, 30, 4), np.uint8)
    img = codec.EncodedImage("png", 30, 20, _png(rgba))
    with pytest.raises(InvalidPayload, match="decodes to mode 'RGBA', expected 'RGB'"):
        codec.decode_image(img)


@pytest.mark.parametrize(
    ("img", "message"),
    [
        (codec.EncodedImage("bmp", 30, 20, b""), "unknown format 'bmp'"),
        (codec.EncodedImage("png", 0, 20, b""), "declared size 0x20 has no pixels"),
    ],
)
def test_bad_image_fields_are_refused(img, message):
    with pytest.raises(InvalidPayload, match=message):
        codec.decode_image(img)


@pytest.mark.parametrize(
    ("pixels", "kwargs", "message"),
    [
        (RGB.astype(np.float32), {}, "expected a uint8 array"),
        (np.zeros((4, 4, 4), np.uint8), {}, "neither HxWx3"),
        (np.zeros((0, 4), np.uint8), {}, "has no pixels"),
        (RGB, {"format": "gif"}, "format 'gif' is not one of"),
        (RGB, {"quality": 0}, "quality 0 outside 1..100"),
    ],
)
def test_bad_image_encode_arguments_raise_codec_error(pixels, kwargs, message):
    with pytest.raises(codec.CodecError, match=message):
        codec.encode_image(pixels, **kwargs)
