"""Codec dataclasses survive the protobuf round trip; enum values the wire lacks are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.codec import InvalidPayload


def _through_the_wire(message):
    """Serialize and parse, as a peer would."""
    return type(message).FromString(message.SerializeToString())


@settings(max_examples=50, deadline=None)
@given(
    x=hnp.arrays(
        "float32",
        hnp.array_shapes(min_dims=1, max_dims=4, max_side=5),
        elements=st.floats(-10, 10, width=32),
    ),
    bits=st.sampled_from([0, 2, 4, 6, 8]),
    per_channel=st.booleans(),
    compression=st.sampled_from(["raw", "zstd"]),
)
def test_tensor_round_trips_through_protobuf(x, bits, per_channel, compression):
    axis = x.ndim - 1 if per_channel and bits else None
    encoded = codec.encode_tensor(
        x, "feat", bits=bits, per_channel_axis=axis, compression=compression
    )
    back = wire.tensor_from_pb(_through_the_wire(wire.tensor_to_pb(encoded)))
    # scale/zero_point are float32 on both sides, so even they compare equal.
    assert back == encoded
    np.testing.assert_array_equal(codec.decode_tensor(back), codec.decode_tensor(encoded))


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8", "int8"])
def test_every_dtype_maps_both_ways(dtype):
    encoded = codec.encode_tensor(np.zeros(3, dtype), "d")
    message = wire.tensor_to_pb(encoded)
    assert pb.DType.Name(message.dtype) == dtype.upper()
    assert wire.tensor_from_pb(message).dtype == dtype


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_image_round_trips_through_protobuf(fmt):
    encoded = codec.encode_image(np.full((6, 9, 3), 77, np.uint8), fmt)
    message = _through_the_wire(wire.image_to_pb(encoded))
    assert pb.ImageFormat.Name(message.format) == fmt.upper()
    assert (message.width, message.height) == (9, 6)
    assert wire.image_from_pb(message) == encoded


def _valid_tensor_pb() -> pb.Tensor:
    return wire.tensor_to_pb(codec.encode_tensor(np.ones((2, 2), np.float32), "t", bits=8))


@pytest.mark.parametrize(
    ("field", "number", "message"),
    [
        (
            "dtype",
            pb.DTYPE_UNSPECIFIED,
            "dtype is DTYPE_UNSPECIFIED \\(0\\), expected one of FLOAT32",
        ),
        ("dtype", 42, "dtype is unknown value 42"),
        ("compression", pb.COMPRESSION_UNSPECIFIED, "compression is COMPRESSION_UNSPECIFIED"),
        ("compression", 9, "compression is unknown value 9, expected one of RAW, ZSTD"),
        ("quant", 5, "quant is unknown value 5, expected one of QUANT_NONE"),
    ],
)
def test_unspecified_or_unknown_tensor_enums_are_refused(field, number, message):
    m = _valid_tensor_pb()
    setattr(m, field, number)
    m = _through_the_wire(m)  # proto3 keeps unknown enum numbers through a parse
    with pytest.raises(InvalidPayload, match=f"tensor 't': {message}"):
        wire.tensor_from_pb(m)


def test_quant_none_is_the_proto3_default_and_valid():
    m = wire.tensor_to_pb(codec.encode_tensor(np.ones(3, np.float32), "t"))
    assert m.quant == pb.QUANT_NONE == 0
    assert wire.tensor_from_pb(_through_the_wire(m)).quant == "none"


@pytest.mark.parametrize("number", [pb.IMAGE_FORMAT_UNSPECIFIED, 17])
def test_unspecified_or_unknown_image_format_is_refused(number):
    m = wire.image_to_pb(codec.encode_image(np.zeros((4, 4), np.uint8), "png"))
    m.format = number
    with pytest.raises(InvalidPayload, match=r"image: format is .*expected one of JPEG, PNG, WEBP"):
        wire.image_from_pb(_through_the_wire(m))


def test_empty_messages_are_refused_not_decoded_as_defaults():
    with pytest.raises(InvalidPayload, match="dtype is DTYPE_UNSPECIFIED"):
        wire.tensor_from_pb(pb.Tensor())
    with pytest.raises(InvalidPayload, match="format is IMAGE_FORMAT_UNSPECIFIED"):
        wire.image_from_pb(pb.Image())


def test_wire_leaves_semantic_checks_to_the_codec():
    # A version the codec does not speak passes the mapping and fails in decode_tensor.
    m = _valid_tensor_pb()
    m.codec_version = 0
    t = wire.tensor_from_pb(m)
    with pytest.raises(InvalidPayload, match="codec_version 0 is not supported"):
        codec.decode_tensor(t)


def test_encoding_a_name_the_wire_lacks_is_a_codec_error():
    t = replace(codec.encode_tensor(np.ones(2, np.float32), "t"), compression="lz4")
    with pytest.raises(codec.CodecError, match="compression 'lz4' has no wire value"):
        wire.tensor_to_pb(t)
    with pytest.raises(codec.CodecError, match="image format 'gif' has no wire value"):
        wire.image_format_to_pb("gif")
