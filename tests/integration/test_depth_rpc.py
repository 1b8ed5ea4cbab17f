"""DepthFromFocus over a real socket: the device API and the ``depth`` CLI against a grpc.aio
server on port 0 whose servicer delegates to DepthService; bad stacks -> INVALID_ARGUMENT
over the wire, and the server keeps answering."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from splitedge.mobile_client.depth import (  # noqa: E402
    DepthRpcError,
    build_request,
    depth_to_colour,
    request_depth,
    save_depth_png16,
)
from splitedge.models.depth import (  # noqa: E402
    Camera,
    FocalStack,
    abs_rel,
    focus_sweep_m,
    make_scene,
    render_focal_stack,
    save_focal_stack,
)
from splitedge.proto import splitedge_pb2 as pb  # noqa: E402
from splitedge.proto import splitedge_pb2_grpc as pb_grpc  # noqa: E402
from splitedge.simulations.processes import EdgeProcess  # noqa: E402

CAMERA = Camera(focal_length_mm=8.0, f_number=1.4, pixel_pitch_um=5.0)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    """A real edge server process serving DepthFromFocus (the committed prior)."""
    with EdgeProcess(["--model", "echo", "--depth", "--log-level", "WARNING"]) as edge:
        yield edge.address


@pytest.fixture(scope="module")
def scene_and_stack() -> tuple[np.ndarray, FocalStack]:
    scene = make_scene(96, 128, seed=800_005, near_m=0.3, far_m=3.0)
    stack = render_focal_stack(
        scene.rgb, scene.depth_m, focus_sweep_m(0.28, 4.0, 16), CAMERA, noise_std=1.0, seed=5
    )
    return scene.depth_m, stack


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "splitedge.mobile_client.cli",
        "depth",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# ---------------------------------------------------------------- saving (no server)


def test_png16_holds_millimetres_and_zero_for_invalid(tmp_path: Path) -> None:
    depth = np.array([[0.3, 1.2344], [np.nan, 70.0]], np.float32)
    path = save_depth_png16(tmp_path / "d.png", depth)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode.startswith("I;16")
        mm = np.asarray(img).astype(np.int64)
    np.testing.assert_array_equal(mm, [[300, 1234], [0, 65535]])


def test_preview_colours_near_warm_far_cool() -> None:
    # Evenly spaced in inverse depth, as the preview maps it: 0.5 m (left) to 4 m (right).
    depth = np.tile(1.0 / np.linspace(2.0, 0.25, 64, dtype=np.float32), (8, 1))
    depth[0, 0] = np.nan
    rgb = depth_to_colour(depth)
    assert rgb.shape == (8, 64, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 0]
    near, far = rgb[4, 8].astype(int), rgb[4, -12].astype(int)
    assert near[0] > near[2] and far[2] > far[0]


# ---------------------------------------------------------------- over the wire


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("image_format", "unit"), [("png", "m"), ("jpeg", "diopter")])
async def test_client_api_gets_metric_depth(
    address: str,
    scene_and_stack: tuple[np.ndarray, FocalStack],
    image_format: str,
    unit: str,
) -> None:
    gt, stack = scene_and_stack
    response = await request_depth(
        address,
        stack,
        image_format=image_format,
        refine=True,
        unit=unit,  # type: ignore[arg-type]
    )
    assert response.depth_m.shape == response.confidence.shape == gt.shape
    assert abs_rel(response.depth_m, gt) < 0.15
    assert response.payload_bytes > 16 * 1000  # 16 slices, each at least a few KB
    assert response.timing["server_total_ms"] > 0
    assert response.timing["round_trip_ms"] >= response.timing["server_total_ms"]


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_bad_stacks_are_invalid_argument_and_the_server_goes_on(
    address: str, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    gt, stack = scene_and_stack
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.EdgeInferenceStub(channel)
        one = build_request(FocalStack(stack.images[:1], stack.focus_distances_m[:1]))
        unsorted = build_request(stack, image_format="jpeg")
        unsorted.focus_distances[0], unsorted.focus_distances[1] = (
            unsorted.focus_distances[1],
            unsorted.focus_distances[0],
        )
        mixed = build_request(stack)
        mixed.frames[3].CopyFrom(build_request(FocalStack(stack.images[:2, :64], [1, 2])).frames[0])
        cases = [
            (one, "a focal stack needs >= 2 slices, got 1"),
            (unsorted, "strictly increasing or decreasing"),
            (mixed, "frames[3] is 64x128 (HxW), frames[0] is 96x128"),
            (pb.FocalStackRequest(focus_unit=pb.METERS), "needs >= 2 slices, got 0"),
        ]
        for request, message in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.DepthFromFocus(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (info.value.details() or "")
        # The same server still answers a good stack on the same channel.
        response = await request_depth(channel, stack, image_format="zstd")
        assert response.depth_m.shape == gt.shape
    with pytest.raises(DepthRpcError, match="INVALID_ARGUMENT: a focal stack needs >= 2 slices"):
        await request_depth(address, FocalStack(stack.images[:1], stack.focus_distances_m[:1]))


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_cli_depth_writes_png16_preview_and_record(
    address: str, scene_and_stack: tuple[np.ndarray, FocalStack], tmp_path: Path
) -> None:
    gt, stack = scene_and_stack
    folder = save_focal_stack(stack, tmp_path / "stack", unit="diopter")
    out_dir = tmp_path / "out"
    code, out, err = await _cli(
        "--server", address, "--stack", str(folder), "--out-dir", str(out_dir)
    )
    assert code == 0, err
    assert "depth 96x128 from 16 slices" in out
    with Image.open(out_dir / "depth_mm.png") as img:
        assert img.mode.startswith("I;16")
        depth_m = np.asarray(img).astype(np.float32) / 1000.0
    assert abs_rel(depth_m, gt) < 0.15
    with Image.open(out_dir / "depth_preview.png") as img:
        assert img.mode == "RGB" and img.size == (128, 96)
    record = json.loads((out_dir / "depth.json").read_text())
    assert record["slices"] == 16 and record["payload_bytes"] > 0
    assert record["timing_ms"]["server_total_ms"] > 0


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_cli_bad_input_exits_2_with_one_line(
    address: str, scene_and_stack: tuple[np.ndarray, FocalStack], tmp_path: Path
) -> None:
    _, stack = scene_and_stack
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = await _cli("--server", address, "--stack", str(empty))
    assert code == 2
    assert err.strip().count("\n") == 0 and "no focus.json" in err

    # Valid on disk, refused by the server: one slice is no focal stack.
    single = save_focal_stack(FocalStack(stack.images[:1], [1.0]), tmp_path / "single")
    code, _, err = await _cli("--server", address, "--stack", str(single), "--out-dir", "o")
    assert code == 2
    assert err.strip() == (
        f"splitedge-client: error: {address}: INVALID_ARGUMENT: "
        "a focal stack needs >= 2 slices, got 1"
    )


@pytest.mark.integration
async def test_a_server_without_depth_says_how_to_enable_it(
    edge_factory, scene_and_stack: tuple[np.ndarray, FocalStack]
) -> None:
    _, stack = scene_and_stack
    edge = edge_factory("--model", "echo")
    with pytest.raises(DepthRpcError, match=r"UNIMPLEMENTED: .*start it with --depth"):
        await request_depth(edge.address, stack)
