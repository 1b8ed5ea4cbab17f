"""Property tests: what the codec encodes, it decodes to the same (or a bounded-error) tensor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from splitedge.proto import codec

EXAMPLES = settings(max_examples=50, deadline=None)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)
F32_EPS = float(np.finfo(np.float32).eps)


def _finite(dtype: str, magnitude: float) -> st.SearchStrategy[float]:
    width = 16 if dtype == "float16" else 32
    magnitude = float(np.dtype(dtype).type(magnitude))  # hypothesis wants exact bounds
    return st.floats(-magnitude, magnitude, width=width, allow_nan=False, allow_infinity=False)


@EXAMPLES
@given(
    data=st.data(),
    dtype=st.sampled_from(["float32", "float16", "uint8", "int8"]),
    compression=st.sampled_from(["raw", "zstd"]),
)
def test_unquantized_round_trip_is_exact(data, dtype, compression):
    # Verbatim shipping includes NaN/inf bit patterns: the codec must not touch them.
    x = data.draw(hnp.arrays(dtype, SHAPES))
    t = codec.encode_tensor(x, "t", compression=compression)
    y = codec.decode_tensor(t)
    assert (t.quant, t.bits, t.dtype, t.shape) == ("none", 0, dtype, x.shape)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert y.tobytes() == x.tobytes()
    assert y.flags.writeable


@EXAMPLES
@given(x=hnp.arrays("float32", SHAPES, elements=_finite("float32", 6e4)))
def test_float16_option_ships_half_precision(x):
    t = codec.encode_tensor(x, "t", float16=True)
    y = codec.decode_tensor(t)
    assert t.dtype == "float16" and y.dtype == np.float16
    assert y.tobytes() == x.astype(np.float16).tobytes()


def _tolerance(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    # scale/2 from rounding to the nearest level, plus float32 arithmetic in the
    # dequantization (q - zero_point) * scale, which grows with the values' magnitude.
    return scale / 2 + 8 * F32_EPS * (float(np.abs(x.astype(np.float64)).max()) + scale)


@EXAMPLES
@given(
    data=st.data(),
    dtype=st.sampled_from(["float32", "float16"]),
    bits=st.sampled_from([2, 4, 6, 8]),
    magnitude=st.sampled_from([1e-3, 1.0, 1e4]),
)
def test_per_tensor_quantization_error_is_within_half_a_step(data, dtype, bits, magnitude):
    x = data.draw(hnp.arrays(dtype, SHAPES, elements=_finite(dtype, magnitude)))
    t = codec.encode_tensor(x, "t", bits=bits)
    y = codec.decode_tensor(t)
    assert (t.quant, t.bits, len(t.scale)) == ("per_tensor", bits, 1)
    assert y.dtype == np.float32 and y.shape == x.shape
    error = np.abs(y.astype(np.float64) - x.astype(np.float64))
    assert (error <= _tolerance(x, np.float64(t.scale[0]))).all()


@EXAMPLES
@given(
    data=st.data(),
    bits=st.sampled_from([2, 4, 6, 8]),
    compression=st.sampled_from(["raw", "zstd"]),
)
def test_per_channel_quantization_error_is_within_each_channels_half_step(data, bits, compression):
    x = data.draw(hnp.arrays("float32", SHAPES, elements=_finite("float32", 100.0)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    t = codec.encode_tensor(x, "t", bits=bits, per_channel_axis=axis, compression=compression)
    y = codec.decode_tensor(t)
    assert t.quant == "per_channel" and t.axis == axis % x.ndim
    assert len(t.scale) == len(t.zero_point) == x.shape[axis]
    view = [1] * x.ndim
    view[t.axis] = -1
    scale = np.asarray(t.scale, np.float64).reshape(view)
    error = np.abs(y.astype(np.float64) - x.astype(np.float64))
    assert (error <= _tolerance(x, scale)).all()


@EXAMPLES
@given(
    value=_finite("float32", 3e38),
    shape=SHAPES,
    bits=st.sampled_from([2, 4, 6, 8]),
    per_channel=st.booleans(),
)
def test_constant_tensor_round_trips_exactly(value, shape, bits, per_channel):
    x = np.full(shape, value, np.float32)
    t = codec.encode_tensor(x, "c", bits=bits, per_channel_axis=0 if per_channel else None)
    assert all(s > 0 for s in t.scale)
    np.testing.assert_array_equal(codec.decode_tensor(t), x)


def test_constant_channels_beside_varying_ones_are_exact():
    x = np.stack([np.full((3, 3), -7.25), np.linspace(-1, 1, 9).reshape(3, 3)]).astype(np.float32)
    y = codec.decode_tensor(codec.encode_tensor(x, "c", bits=4, per_channel_axis=0))
    np.testing.assert_array_equal(y[0], x[0])
    assert np.abs(y[1] - x[1]).max() <= (2 / 15) / 2 + 1e-6


@EXAMPLES
@given(data=st.data(), bits=st.sampled_from([2, 4, 6, 8]), count=st.integers(1, 40))
def test_bit_packing_round_trips_for_any_length(data, bits, count):
    values = data.draw(hnp.arrays(np.uint8, count, elements=st.integers(0, (1 << bits) - 1)))
    packed = codec.pack_bits(values, bits)
    assert len(packed) == -(-count * bits // 8)
    np.testing.assert_array_equal(codec.unpack_bits(packed, count, bits), values)


@pytest.mark.parametrize(
    ("bits", "values", "expected"),
    [
        # Little-endian bit stream: the first value sits in the lowest bits.
        (2, [1, 2, 3, 0, 3], bytes([0b00_11_10_01, 0b11])),
        (4, [0x1, 0xA, 0x7], bytes([0xA1, 0x07])),
        (6, [1, 2, 3, 4], (1 | 2 << 6 | 3 << 12 | 4 << 18).to_bytes(3, "little")),
        (6, [63], bytes([63])),
    ],
)
def test_bit_packing_layout_is_little_endian(bits, values, expected):
    assert codec.pack_bits(np.array(values, np.uint8), bits) == expected


@EXAMPLES
@given(x=hnp.arrays(np.uint8, SHAPES), bits=st.sampled_from([0, 8]))
def test_integer_tensors_ship_unquantized_at_eight_bits(x, bits):
    t = codec.encode_tensor(x, "m", bits=bits)
    assert t.quant == "none" and t.dtype == "uint8"
    np.testing.assert_array_equal(codec.decode_tensor(t), x)


def test_float64_input_ships_as_float32():
    x = np.linspace(0, 1, 7)
    y = codec.decode_tensor(codec.encode_tensor(x, "d"))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x.astype(np.float32))


def test_quantized_zstd_bottleneck_is_smaller_than_raw_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 3, 40, 40)).astype(np.float32)
    raw = codec.encode_tensor(x, "z", compression="raw")
    packed = codec.encode_tensor(x, "z", bits=8, compression="zstd")
    assert raw.size_bytes == x.nbytes
    assert packed.size_bytes < raw.size_bytes / 3


def _smooth_rgb(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack(
        [xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256], -1
    ).astype(np.uint8)


@EXAMPLES
@given(image=hnp.arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3))))
def test_png_rgb_round_trip_is_exact(image):
    encoded = codec.encode_image(image, "png")
    assert (encoded.width, encoded.height) == (image.shape[1], image.shape[0])
    np.testing.assert_array_equal(codec.decode_image(encoded), image)


@EXAMPLES
@given(
    mask=hnp.arrays(
        np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 90)
    )
)
def test_png_class_mask_round_trip_is_exact(mask):
    decoded = codec.decode_image(codec.encode_image(mask, "png"), channels=1)
    assert decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_lossy_formats_stay_close_on_a_smooth_frame(fmt):
    image = _smooth_rgb(48, 64)
    decoded = codec.decode_image(codec.encode_image(image, fmt, quality=95))
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    mean_abs_error = np.abs(decoded.astype(np.int16) - image.astype(np.int16)).mean()
    assert mean_abs_error < 4.0


def test_jpeg_quality_trades_bytes():
    image = _smooth_rgb(48, 64)
    assert (
        codec.encode_image(image, "jpeg", quality=30).size_bytes
        < codec.encode_image(image, "jpeg", quality=95).size_bytes
    )


@EXAMPLES
@given(
    data=st.data(),
    bits=st.sampled_from([0, 2, 4, 6, 8]),
    level=st.sampled_from([-5, 1, 3, 9]),
)
def test_compressing_an_encoded_tensor_later_is_the_same_as_encoding_with_zstd(data, bits, level):
    x = data.draw(hnp.arrays("float32", SHAPES, elements=_finite("float32", 1e6)))
    raw = codec.encode_tensor(x, "t", bits=bits, compression="raw")
    later = codec.compress_tensor(raw, level)
    at_once = codec.encode_tensor(x, "t", bits=bits, compression="zstd", zstd_level=level)
    assert later == at_once
    assert codec.decode_tensor(later).tobytes() == codec.decode_tensor(raw).tobytes()
