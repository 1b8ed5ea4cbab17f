"""DepthService: every kind of bad focal stack gets its precise error; good ones get depth."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splitedge.edge.depth_service import DepthService  # noqa: E402
from splitedge.edge.errors import (  # noqa: E402
    DeadlineExceeded,
    InvalidArgument,
    RequestError,
    ResourceExhausted,
)
from splitedge.mobile_client.depth import build_request  # noqa: E402
from splitedge.models.depth import (  # noqa: E402
    Camera,
    FocalStack,
    abs_rel,
    apply_hand_motion,
    focus_sweep_m,
    make_scene,
    render_focal_stack,
)
from splitedge.proto import codec, wire  # noqa: E402
from splitedge.proto import splitedge_pb2 as pb  # noqa: E402
from splitedge.proto.codec import CodecLimits  # noqa: E402

CAMERA = Camera(focal_length_mm=8.0, f_number=1.4, pixel_pitch_um=5.0)


@pytest.fixture(scope="module")
def service() -> DepthService:
    torch.set_num_threads(1)
    return DepthService()


@pytest.fixture(scope="module")
def scene_and_stack() -> tuple[np.ndarray, FocalStack]:
    scene = make_scene(96, 128, seed=800_003, near_m=0.3, far_m=3.0)
    stack = render_focal_stack(
        scene.rgb, scene.depth_m, focus_sweep_m(0.28, 4.0, 16), CAMERA, noise_std=1.0, seed=3
    )
    return scene.depth_m, stack


def _small_stack(n: int = 3, h: int = 24, w: int = 32) -> FocalStack:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return FocalStack(images, np.linspace(0.5, 2.0, n))


def _depth(result: pb.DepthResult) -> np.ndarray:
    return codec.decode_tensor(wire.tensor_from_pb(result.depth)).astype(np.float32)


# ---------------------------------------------------------------- good stacks


def test_good_stack_gives_metric_depth_and_timing(
    service: DepthService, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    gt, stack = scene_and_stack
    result = service.infer(build_request(stack, image_format="png", refine=True, request_id=7))
    assert result.request_id == 7
    assert result.depth.dtype == pb.FLOAT16 and result.depth.compression == pb.ZSTD
    depth = _depth(result)
    confidence = codec.decode_tensor(wire.tensor_from_pb(result.confidence))
    assert depth.shape == confidence.shape == gt.shape
    assert float(confidence.min()) >= 0.0 and float(confidence.max()) <= 1.0
    assert abs_rel(depth, gt) < 0.15
    assert result.confident_pixels > 0 and result.scale != 0
    t = result.timing
    assert min(t.decode_ms, t.dff_ms, t.prior_ms, t.fusion_ms, t.encode_ms) > 0
    stages = t.decode_ms + t.dff_ms + t.prior_ms + t.fusion_ms + t.encode_ms
    assert stages <= t.server_total_ms


def test_refinement_beats_the_global_fit_alone(
    service: DepthService, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    gt, stack = scene_and_stack
    plain = _depth(service.infer(build_request(stack, image_format="zstd", refine=False)))
    refined = _depth(service.infer(build_request(stack, image_format="zstd", refine=True)))
    assert abs_rel(refined, gt) < abs_rel(plain, gt)


def test_dioptres_and_metres_give_the_same_depth(
    service: DepthService, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    _, stack = scene_and_stack
    metres = _depth(service.infer(build_request(stack, image_format="zstd", unit="m")))
    dioptres = _depth(service.infer(build_request(stack, image_format="zstd", unit="diopter")))
    np.testing.assert_allclose(metres, dioptres, rtol=2e-3)


def test_hand_held_stack_is_aligned(
    service: DepthService, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    gt, stack = scene_and_stack
    moved, _ = apply_hand_motion(stack, seed=1, max_shift_px=2.0)
    result = service.infer(build_request(moved, image_format="png", align=True, refine=True))
    assert result.timing.align_ms > 0
    assert 0 < result.alignment_residual_px < 2.0
    assert abs_rel(_depth(result), gt) < 0.2


# ---------------------------------------------------------------- bad stacks


def _png_request(stack: FocalStack | None = None) -> pb.FocalStackRequest:
    return build_request(stack or _small_stack(), image_format="png")


def _one_frame(r: pb.FocalStackRequest) -> None:
    del r.frames[1:]
    del r.focus_distances[1:]


def _no_frames(r: pb.FocalStackRequest) -> None:
    del r.frames[:]


def _both_kinds(r: pb.FocalStackRequest) -> None:
    r.frame_tensors.append(wire.tensor_to_pb(codec.encode_tensor(np.zeros((24, 32, 3), np.uint8))))


def _mismatched_size(r: pb.FocalStackRequest) -> None:
    other = np.zeros((24, 40, 3), np.uint8)
    r.frames[2].CopyFrom(wire.image_to_pb(codec.encode_image(other, "png")))


def _no_distances(r: pb.FocalStackRequest) -> None:
    del r.focus_distances[:]


def _too_few_distances(r: pb.FocalStackRequest) -> None:
    del r.focus_distances[-1]


def _non_monotonic(r: pb.FocalStackRequest) -> None:
    r.focus_distances[:] = [0.5, 2.0, 1.0]


def _repeated_distance(r: pb.FocalStackRequest) -> None:
    r.focus_distances[:] = [0.5, 0.5, 1.0]


def _negative_distance(r: pb.FocalStackRequest) -> None:
    r.focus_distances[:] = [-0.5, 1.0, 2.0]


def _nan_distance(r: pb.FocalStackRequest) -> None:
    r.focus_distances[:] = [0.5, float("nan"), 2.0]


def _unspecified_unit(r: pb.FocalStackRequest) -> None:
    r.focus_unit = pb.FOCUS_UNIT_UNSPECIFIED


def _unknown_unit(r: pb.FocalStackRequest) -> None:
    r.focus_unit = 9  # type: ignore[assignment]  # a number from a newer peer


def _bad_camera(r: pb.FocalStackRequest) -> None:
    r.camera.CopyFrom(pb.CameraIntrinsics(focal_length_mm=4.0, f_number=0.0, pixel_pitch_um=1.4))


def _corrupt_image(r: pb.FocalStackRequest) -> None:
    r.frames[1].data = b"\x89PNG\r\n\x1a\n" + b"garbage" * 10


def _unspecified_format(r: pb.FocalStackRequest) -> None:
    r.frames[0].format = pb.IMAGE_FORMAT_UNSPECIFIED


def _tiny_slices(r: pb.FocalStackRequest) -> None:
    small = build_request(_small_stack(h=8, w=8), image_format="png")
    r.CopyFrom(small)


def _negative_deadline(r: pb.FocalStackRequest) -> None:
    r.deadline_ms = -1.0


def _tensor_2d(r: pb.FocalStackRequest) -> None:
    del r.frames[:]
    for _ in range(3):
        r.frame_tensors.append(wire.tensor_to_pb(codec.encode_tensor(np.zeros((24, 32), np.uint8))))


def _tensor_float(r: pb.FocalStackRequest) -> None:
    del r.frames[:]
    for _ in range(3):
        t = codec.encode_tensor(np.zeros((24, 32, 3), np.float32))
        r.frame_tensors.append(wire.tensor_to_pb(t))


BAD_STACKS: dict[str, tuple[Callable[[pb.FocalStackRequest], None], str]] = {
    "one frame": (_one_frame, "a focal stack needs >= 2 slices, got 1"),
    "no frames": (_no_frames, "a focal stack needs >= 2 slices, got 0"),
    "frames and tensors": (_both_kinds, "not both (got 3 frames and 1 frame_tensors)"),
    "mismatched size": (_mismatched_size, "frames[2] is 24x40 (HxW), frames[0] is 24x32"),
    "missing distances": (_no_distances, "focus_distances missing: need one per slice (3)"),
    "too few distances": (_too_few_distances, "2 focus_distances for 3 slices"),
    "non-monotonic": (_non_monotonic, "strictly increasing or decreasing, got [0.5, 2.0, 1.0]"),
    "repeated distance": (_repeated_distance, "strictly increasing or decreasing"),
    "negative distance": (_negative_distance, "must be finite and > 0 m, got [-0.5"),
    "nan distance": (_nan_distance, "must be finite and > 0 m"),
    "unspecified unit": (_unspecified_unit, "focus_unit FOCUS_UNIT_UNSPECIFIED is not METERS"),
    "unknown unit": (_unknown_unit, "focus_unit 9 is not METERS or DIOPTERS"),
    "bad camera": (_bad_camera, "camera.f_number = 0.0 is outside the sane range"),
    "corrupt image": (_corrupt_image, "frames[1]: png image:"),
    "unspecified format": (_unspecified_format, "IMAGE_FORMAT_UNSPECIFIED"),
    "tiny slices": (_tiny_slices, "slices are 8x8; need at least 16x16 px"),
    "negative deadline": (_negative_deadline, "deadline_ms must be >= 0"),
    "2-D tensor slices": (_tensor_2d, "frame_tensors[0]: shape [24, 32] is not HxWx3"),
    "float tensor slices": (_tensor_float, "frame_tensors[0]: slices must be unquantized uint8"),
}


@pytest.mark.parametrize("kind", sorted(BAD_STACKS))
def test_bad_stack_is_invalid_argument(service: DepthService, kind: str) -> None:
    mutate, message = BAD_STACKS[kind]
    request = _png_request()
    mutate(request)
    with pytest.raises(InvalidArgument) as info:
        service.infer(request)
    assert type(info.value) is InvalidArgument
    assert info.value.code.name == "INVALID_ARGUMENT"
    assert message in info.value.message
    assert "\n" not in info.value.message


def test_textureless_stack_is_invalid_argument(service: DepthService) -> None:
    flat = FocalStack(np.full((4, 32, 32, 3), 128, np.uint8), np.array([0.5, 1.0, 1.5, 2.0]))
    with pytest.raises(InvalidArgument, match="DFF pixels reach confidence"):
        service.infer(build_request(flat, image_format="png"))


def test_oversize_stack_is_resource_exhausted(service: DepthService) -> None:
    request = _png_request()
    for frame in request.frames:
        frame.width, frame.height = 8000, 8000  # declared, never decoded
    with pytest.raises(ResourceExhausted, match=r"over the \d+-byte stack limit"):
        service.infer(request)


def test_too_many_slices_is_resource_exhausted(service: DepthService) -> None:
    request = _png_request(_small_stack(n=65))
    with pytest.raises(ResourceExhausted, match="at most 64 slices, got 65"):
        service.infer(request)


def test_codec_limit_is_resource_exhausted(service: DepthService) -> None:
    strict = DepthService(service.prior, limits=CodecLimits(max_image_pixels=100))
    with pytest.raises(ResourceExhausted, match=r"frames\[0\]: png image: declared 32x24"):
        strict.infer(_png_request())


def test_expired_deadline(service: DepthService) -> None:
    request = _png_request()
    request.deadline_ms = 5.0
    with pytest.raises(DeadlineExceeded, match="deadline of 5 ms passed before depth from focus"):
        service.infer(request, received_s=time.perf_counter() - 1.0)


def test_service_goes_on_after_errors(
    service: DepthService, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    bad = _png_request()
    _one_frame(bad)
    with pytest.raises(RequestError):
        service.infer(bad)
    gt, stack = scene_and_stack
    assert _depth(service.infer(build_request(stack, image_format="zstd"))).shape == gt.shape
