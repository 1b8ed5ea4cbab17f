"""Request validation against branch specs, and codec errors mapped to request errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from splitedge.edge.config import ConfigError, ModelConfig
from splitedge.edge.errors import InvalidArgument, NotFound, ResourceExhausted
from splitedge.edge.registry import FrameRequest, ModelRegistry, resolve_device
from splitedge.models.echo import EchoModel
from splitedge.models.types import BranchSpec, TensorSpec
from splitedge.proto import codec
from splitedge.proto.codec import CodecLimits


class SplitAt3(EchoModel):
    """Echo with a detector-like bottleneck branch: z is [1, 6, H/8, W/8] float32."""

    def __init__(self) -> None:
        super().__init__(name="det")
        self.branches = {
            **self.branches,
            "split@3": BranchSpec(
                "split@3", "split", "3", (TensorSpec("z", "float32", (1, 6, -1, -1)),)
            ),
            "two": BranchSpec(
                "two",
                "split",
                "2",
                (TensorSpec("a", "float32", (2,)), TensorSpec("b", "uint8", (3,))),
            ),
        }


LIMITS = CodecLimits(max_tensor_bytes=4096, max_image_pixels=64 * 64)


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry([EchoModel(), SplitAt3()], LIMITS)


def _split(branch: str, *tensors: codec.EncodedTensor, model: str = "det") -> FrameRequest:
    return FrameRequest(1, model, branch, list(tensors), None, (48, 64), (48, 64))


def _z(shape=(1, 6, 6, 8), dtype=np.float32, **kw) -> codec.EncodedTensor:
    return codec.encode_tensor(np.ones(shape, dtype), "z", **kw)


def _offload(image: codec.EncodedImage | None) -> FrameRequest:
    return FrameRequest(2, "echo", "offload-jpeg90", [], image, (16, 24))


def _jpeg() -> codec.EncodedImage:
    return codec.encode_image(np.full((16, 24, 3), 128, np.uint8), "jpeg")


def _message(exc_type: type, registry: ModelRegistry, frame: FrameRequest) -> str:
    with pytest.raises(exc_type) as info:
        spec = registry.check(frame)
        registry.decode(frame, spec)
    return str(info.value)


def test_good_split_frame_decodes_to_its_tensor(registry):
    frame = _split("split@3", _z(bits=8))
    item = registry.decode(frame, registry.check(frame))
    assert item.tensors["z"].shape == (1, 6, 6, 8) and item.tensors["z"].dtype == np.float32
    np.testing.assert_allclose(item.tensors["z"], 1.0, atol=1e-6)
    assert item.orig_size == (48, 64)


def test_float16_is_accepted_for_float32_and_widened(registry):
    frame = _split("split@3", _z(float16=True))
    assert registry.decode(frame, registry.check(frame)).tensors["z"].dtype == np.float32


def test_good_offload_frame_decodes_to_rgb(registry):
    frame = _offload(_jpeg())
    assert registry.decode(frame, registry.check(frame)).image.shape == (16, 24, 3)


def test_unknown_model(registry):
    message = _message(NotFound, registry, _split("split@3", _z(), model="yolo"))
    assert message == "unknown model 'yolo'; this server serves: echo, det"


def test_unknown_branch(registry):
    message = _message(NotFound, registry, _split("split@9", _z()))
    assert message.startswith("model 'det' has no branch 'split@9'; served branches: split@x")
    assert "local" not in message


def test_local_branch_is_not_served(registry):
    message = _message(InvalidArgument, registry, _split("local"))
    assert (
        message
        == "branch 'local' of model 'det' is local: it runs on the device, not on this server"
    )


def test_wrong_shape_names_both_shapes(registry):
    message = _message(InvalidArgument, registry, _split("split@3", _z((1, 12, 60, 80))))
    assert (
        message == "tensor 'z' has shape [1, 12, 60, 80], branch 'split@3' expects [1, 6, -1, -1]"
    )


def test_wrong_ndim(registry):
    message = _message(InvalidArgument, registry, _split("split@3", _z((6, 60, 80))))
    assert "has shape [6, 60, 80]" in message


def test_wrong_dtype(registry):
    message = _message(InvalidArgument, registry, _split("split@3", _z(dtype=np.uint8)))
    assert message == "tensor 'z' has dtype uint8, branch 'split@3' expects float32"


def test_missing_tensor(registry):
    a = codec.encode_tensor(np.ones(2, np.float32), "a")
    message = _message(InvalidArgument, registry, _split("two", a))
    assert message == "missing tensor 'b'; branch 'two' expects 'a', 'b'"


def test_extra_tensor(registry):
    extra = codec.encode_tensor(np.ones(2, np.float32), "q")
    message = _message(InvalidArgument, registry, _split("split@3", _z(), extra))
    assert message == "unexpected tensor 'q'; branch 'split@3' expects 'z'"


def test_duplicate_tensor(registry):
    assert _message(InvalidArgument, registry, _split("split@3", _z(), _z())) == (
        "tensor 'z' sent twice"
    )


def test_no_tensors_on_split_branch(registry):
    assert "missing tensor 'z'" in _message(InvalidArgument, registry, _split("split@3"))


def test_zero_sizes(registry):
    frame = dataclasses.replace(_split("split@3", _z()), orig_size=(0, 64))
    assert _message(InvalidArgument, registry, frame).startswith("orig_height/orig_width are 0x64")
    frame = dataclasses.replace(_split("split@3", _z()), input_size=(48, 0))
    assert "input_height/input_width are 48x0" in _message(InvalidArgument, registry, frame)


def test_image_on_split_branch(registry):
    frame = dataclasses.replace(_split("split@3", _z()), image=_jpeg())
    assert "send tensors, not an image" in _message(InvalidArgument, registry, frame)


def test_tensors_on_offload_branch(registry):
    frame = dataclasses.replace(_offload(_jpeg()), tensors=[_z()])
    assert "send an image, not tensors" in _message(InvalidArgument, registry, frame)


def test_missing_image_on_offload(registry):
    message = _message(InvalidArgument, registry, _offload(None))
    assert message == "offload branch 'offload-jpeg90' needs an image; none sent"


def test_oversize_declared_tensor_is_resource_exhausted(registry):
    small = codec.encode_tensor(np.ones(4, np.float32), "x")
    huge = dataclasses.replace(small, shape=(10**9,))
    frame = FrameRequest(3, "echo", "split@x", [huge], None, (1, 1), (1, 1))
    assert "over the 4096-byte limit" in _message(ResourceExhausted, registry, frame)


def test_oversize_image_is_resource_exhausted(registry):
    image = codec.encode_image(np.zeros((80, 80, 3), np.uint8), "jpeg")
    assert "pixel limit" in _message(ResourceExhausted, registry, _offload(image))


def test_corrupt_zstd_is_invalid(registry):
    t = _z()
    corrupt = dataclasses.replace(t, data=t.data[:4] + bytes(len(t.data) - 4))
    assert "tensor 'z'" in _message(InvalidArgument, registry, _split("split@3", corrupt))


def test_nan_scale_is_invalid(registry):
    t = dataclasses.replace(_z(bits=8), scale=(float("nan"),))
    message = _message(InvalidArgument, registry, _split("split@3", t))
    assert "scale[0] = nan is not a finite positive float32" in message


def test_corrupt_jpeg_is_invalid(registry):
    image = dataclasses.replace(_jpeg(), data=b"\xff\xd8" + bytes(100))
    assert "jpeg image" in _message(InvalidArgument, registry, _offload(image))


def test_from_config_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match=r"models\[0\]\.name: unknown model 'nope'"):
        ModelRegistry.from_config([ModelConfig("nope")], LIMITS)


def test_serve_as_renames_a_second_instance():
    registry = ModelRegistry.from_config(
        [ModelConfig("echo"), ModelConfig("echo", {"tail_delay_ms": 5}, serve_as="slow")], LIMITS
    )
    assert registry.names == ["echo", "slow"]
    assert registry.model("slow").tail_delay_ms == 5.0


def test_two_models_with_one_name_is_a_config_error():
    with pytest.raises(ConfigError, match="two models are named 'echo'"):
        ModelRegistry.from_config([ModelConfig("echo"), ModelConfig("echo")], LIMITS)


def test_from_config_passes_options_and_resolves_the_device():
    registry = ModelRegistry.from_config([ModelConfig("echo", {"tail_delay_ms": 1})], LIMITS)
    assert registry.names == ["echo"]
    assert registry.model("echo").tail_delay_ms == 1.0
    assert registry.device == resolve_device("auto") and registry.device != "auto"


# ---------------------------------------------------------------- issue 13: bounds before decoding


def test_float16_is_bounded_by_its_float32_size_before_decoding(registry):
    # 1500 values: 3000 bytes as float16 (within 4096), 6000 as the float32 the tail gets.
    frame = _split("split@3", _z((1, 6, 10, 25), float16=True))
    message = _message(ResourceExhausted, registry, frame)
    assert message == (
        "tensor 'z' of shape [1, 6, 10, 25] decodes to 6000 bytes as float32, "
        "over the 4096-byte limit"
    )


def test_a_hostile_rank_is_refused_by_its_length_with_a_short_message(registry):
    t = dataclasses.replace(_z(), shape=(1,) * 6000)
    message = _message(InvalidArgument, registry, _split("split@3", t))
    assert message == (
        "tensor 'z' has 6000 dimensions, at most 8 are accepted (branch 'split@3' expects 4)"
    )


def test_every_request_error_message_is_bounded():
    long = InvalidArgument("x" * 100_000)
    assert len(long.message) == 1024 and long.message.endswith("more characters)")


def test_default_input_limits_refuse_the_probes_8000x10400_input(registry):
    frame = FrameRequest(1, "det", "split@3", [_z()], None, (8000, 10400), (8000, 10400))
    message = _message(InvalidArgument, registry, frame)
    assert message == (
        "original size 8000x10400 is over the input limits of model 'det' "
        "(max_input_side 4096, max_input_pixels 8388608)"
    )


def test_input_limits_come_from_each_models_config():
    registry = ModelRegistry.from_config(
        [ModelConfig("echo", max_input_side=32, max_input_pixels=100)], LIMITS
    )
    x = codec.encode_tensor(np.ones(4, np.float32), "x")
    registry.check(FrameRequest(1, "echo", "split@x", [x], None, (10, 10), (10, 10)))
    for sizes in (((33, 1), (1, 1)), ((1, 1), (11, 10))):
        frame = FrameRequest(1, "echo", "split@x", [x], None, *sizes)
        assert "input limits of model 'echo'" in _message(InvalidArgument, registry, frame)
    image = codec.encode_image(np.zeros((40, 2, 3), np.uint8))
    offload = FrameRequest(1, "echo", "offload-jpeg90", [], image, (10, 10))
    assert "image size 40x2" in _message(InvalidArgument, registry, offload)


class ExactShapes(SplitAt3):
    """SplitAt3 that knows the code's exact size for an input (stride 8, padded to 32)."""

    def tensor_shapes(self, branch, input_size):
        return {"z": (1, 6, *(-(-s // 32) * 32 // 8 for s in input_size))}


def test_a_code_that_does_not_fit_its_declared_input_is_refused_before_decoding():
    registry = ModelRegistry([ExactShapes()], LIMITS)
    good = FrameRequest(1, "det", "split@3", [_z((1, 6, 8, 8))], None, (48, 64), (48, 64))
    registry.check(good)
    bad = FrameRequest(1, "det", "split@3", [_z((1, 6, 8, 9))], None, (48, 64), (48, 64))
    assert _message(InvalidArgument, registry, bad) == (
        "tensor 'z' has shape [1, 6, 8, 9], branch 'split@3' expects [1, 6, 8, 8] "
        "for input size 48x64"
    )
