"""Hostile requests against a real edge server process (issue 13, items 1-5).

Each test sends what an outside probe sent, scaled down by small limits in the server's
config: declared sizes over ``max_tensor_bytes`` once converted to float32, a code that
does not fit its declared input size batched with good frames, an input over the
model's ``max_input_side``, thousands of dimensions, and bytes that are no message at
all. Each must get its own precise status while every other frame is still answered.
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.simulations.processes import EdgeProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
TENSOR_LIMIT = 4096  # [limits] max_tensor_bytes of the echo server below
MESSAGE_LIMIT = 2**20  # [server] max_message_bytes of the echo server below


def _code(number: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == number)


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hardened-edge")
    config = folder / "edge.toml"
    config.write_text(
        f"[server]\nmax_message_bytes = {MESSAGE_LIMIT}\n\n"
        f"[limits]\nmax_tensor_bytes = {TENSOR_LIMIT}\n\n"
        '[[models]]\nname = "echo"\nmax_input_side = 64\nmax_input_pixels = 2048\n'
    )
    with EdgeProcess(["--config", str(config)]) as proc:
        yield proc


@pytest.fixture
async def stub(edge):
    async with grpc.aio.insecure_channel(edge.address) as channel:
        yield pb_grpc.EdgeInferenceStub(channel)


def _frame(frame_id: int, tensor: pb.Tensor | None = None, **sizes: int) -> pb.FrameRequest:
    if tensor is None:
        tensor = wire.tensor_to_pb(codec.encode_tensor(np.arange(12, dtype=np.float32), "x"))
    fields = {"orig_height": 3, "orig_width": 4, "input_height": 3, "input_width": 4, **sizes}
    return pb.FrameRequest(
        frame_id=frame_id, model="echo", branch="split@x", tensors=[tensor], **fields
    )


def _with_shape(ndim: int) -> pb.Tensor:
    t = wire.tensor_to_pb(codec.encode_tensor(np.arange(4, dtype=np.float32), "x"))
    del t.shape[:]
    t.shape.extend([1] * ndim)
    return t


async def _infer_code(stub, request) -> tuple[grpc.StatusCode, str]:
    try:
        await stub.Infer(request)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


# ---------------------------------------------------------------- item 1: declared sizes


async def test_float16_that_becomes_float32_is_bounded_by_its_converted_size(stub):
    # 1500 float16 values: 3000 bytes on the wire (a few dozen zstd-packed), 6000 bytes
    # once converted to the float32 the tail gets: over the 4096-byte limit.
    over = codec.encode_tensor(np.zeros(1500, np.float32), "x", float16=True)
    assert len(over.data) < 100
    code, details = await _infer_code(stub, _frame(1, wire.tensor_to_pb(over)))
    assert code == EXHAUSTED, details
    assert "6000 bytes as float32" in details and "4096-byte limit" in details
    fits = codec.encode_tensor(np.zeros(1000, np.float32), "x", float16=True)
    assert (await stub.Infer(_frame(2, wire.tensor_to_pb(fits)))).status_code == 0


async def test_a_burst_of_zstd_bombs_is_refused_and_the_server_goes_on(stub, edge):
    # 2-bit codes of a few bytes each that declare 16x the tensor limit once dequantized.
    bomb = codec.encode_tensor(np.zeros(16 * TENSOR_LIMIT, np.float32), "x", bits=2)
    assert len(bomb.data) < 100
    calls = [stub.Infer(_frame(i, wire.tensor_to_pb(bomb))) for i in range(200)]
    codes = []
    for call in calls:
        try:
            await call
            codes.append(OK)
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
    assert set(codes) == {EXHAUSTED}
    async with grpc.aio.insecure_channel(edge.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert (await stub.Infer(_frame(999))).status_code == 0


# ---------------------------------------------------------------- item 3: input sizes


@pytest.mark.parametrize(
    ("sizes", "what"),
    [
        ({"orig_height": 65, "orig_width": 4}, "original size 65x4"),
        ({"input_height": 40, "input_width": 60}, "input size 40x60"),  # 2400 > 2048 pixels
    ],
)
async def test_an_input_over_the_models_limits_is_refused_before_any_work(stub, sizes, what):
    code, details = await _infer_code(stub, _frame(1, **sizes))
    assert code == INVALID, details
    assert what in details and "max_input_side 64" in details
    assert (await stub.Infer(_frame(2))).status_code == 0


# ---------------------------------------------------------------- item 4: shapes and errors


async def test_a_6000_dimension_shape_is_invalid_with_a_short_message(stub):
    code, details = await _infer_code(stub, _frame(1, _with_shape(6000)))
    assert code == INVALID, details[:200]
    assert "6000 dimensions, at most 8" in details
    assert len(details) <= 1024 and "\n" not in details
    assert (await stub.Infer(_frame(2))).status_code == 0


async def test_bad_shapes_in_a_stream_get_their_own_answers_and_the_stream_goes_on(stub):
    # The second frame's message fits the server's 1 MiB limit; a shape copied into its
    # error text would not (3 characters a dimension), which used to end the stream.
    huge = MESSAGE_LIMIT // 2
    requests = [_frame(1, _with_shape(6000)), _frame(2, _with_shape(huge)), _frame(3)]
    assert requests[1].ByteSize() < MESSAGE_LIMIT
    call = stub.Stream(iter(requests))
    results = {r.frame_id: r async for r in call}
    assert await call.code() == OK
    assert sorted(results) == [1, 2, 3]
    assert _code(results[1].status_code) == INVALID
    assert _code(results[2].status_code) == INVALID
    assert f"{huge} dimensions" in results[2].status_message
    assert all(len(r.status_message) <= 1024 for r in results.values())
    assert results[3].status_code == 0 and results[3].WhichOneof("output") == "detections"


# ---------------------------------------------------------------- item 5: garbage bytes

_GARBAGE = [b"\x0f", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0a\x50abc", b"\x07\x00"]


async def test_bytes_that_are_no_request_are_invalid_and_logged_once(edge):
    async with grpc.aio.insecure_channel(edge.address) as channel:
        infer = channel.unary_unary("/splitedge.v1.EdgeInference/Infer")  # bytes as they are
        status = channel.unary_unary("/splitedge.v1.EdgeInference/Status")
        for method in (infer, status):
            for i in range(30):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await method(_GARBAGE[i % len(_GARBAGE)])
                assert info.value.code() == INVALID, info.value.details()
                assert "is not a valid splitedge.v1." in info.value.details()
        stub = pb_grpc.EdgeInferenceStub(channel)
        assert (await stub.Infer(_frame(1))).status_code == 0
    await asyncio.sleep(0.2)  # let the server's last lines reach its output
    log = "\n".join(edge.output)
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if "is not a valid splitedge.v1." in line]
    # One line per method the first time, then at most one per 10 s: far fewer than 60.
    assert 2 <= len(lines) <= 6, lines


async def test_bytes_that_are_no_frame_inside_a_stream_cost_only_their_own_answer(edge):
    good = _frame(7).SerializeToString()
    async with grpc.aio.insecure_channel(edge.address) as channel:
        stream = channel.stream_stream(
            "/splitedge.v1.EdgeInference/Stream", response_deserializer=pb.FrameResult.FromString
        )
        call = stream(iter([b"\x0f", good, b"\x07\x00", good]))
        results = [r async for r in call]
        assert await call.code() == OK
    assert len(results) == 4
    errors = [r for r in results if r.status_code != 0]
    answered = [r for r in results if r.status_code == 0]
    assert [_code(r.status_code) for r in errors] == [INVALID, INVALID]
    assert all("not a valid splitedge.v1.FrameRequest" in r.status_message for r in errors)
    assert [r.frame_id for r in answered] == [7, 7]


async def test_an_empty_request_names_nothing_and_is_invalid(edge):
    # b"" parses as a FrameRequest with every field at its default: random bytes can
    # be one. It was NOT_FOUND ("unknown model ''"), as if it had named a model.
    async with grpc.aio.insecure_channel(edge.address) as channel:
        infer = channel.unary_unary("/splitedge.v1.EdgeInference/Infer")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await infer(b"")
        assert info.value.code() == INVALID, info.value.details()
        assert "no model named (empty 'model'); this server serves: echo" in info.value.details()
        stub = pb_grpc.EdgeInferenceStub(channel)
        code, details = await _infer_code(stub, pb.FrameRequest(model="echo"))
        assert code == INVALID and "no branch named (empty 'branch')" in details, details
        call = stub.Stream(iter([pb.FrameRequest(), _frame(5)]))
        results = [r async for r in call]
        assert await call.code() == OK
    assert [(_code(r.status_code), r.frame_id) for r in results] == [(INVALID, 0), (OK, 5)]


async def test_bytes_that_are_no_request_to_health_or_reflection_are_invalid(edge):
    # The standard services used grpc's own parser: UNKNOWN and a logged traceback.
    async with grpc.aio.insecure_channel(edge.address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch")
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        )
        for garbage in _GARBAGE:
            for name, call in [
                ("Check", check(garbage)),
                ("Watch", watch(garbage)),
                ("ServerReflectionInfo", reflect(iter([garbage]))),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    if name == "Check":
                        await call
                    else:
                        [_ async for _ in call]
                assert info.value.code() == INVALID, (name, info.value.details())
                assert "is not a valid grpc." in info.value.details()
        # The services still answer real requests.
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        answers = [r async for r in listed]
        names = [s.name for r in answers for s in r.list_services_response.service]
        assert "splitedge.v1.EdgeInference" in names
    await asyncio.sleep(0.2)  # let the server's last lines reach its output
    assert "Traceback" not in "\n".join(edge.output)


# ---------------------------------------------------------------- items 2 and 3 on a student

STUDENT = "zoo:ghnd-frcnn-small-c12"
BRANCH = "bottleneck-12-w0.25-4bit"  # code z: [1, 3, H/8, W/8] of the 32-padded input


@pytest.fixture(scope="module")
def student_edge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("student-edge")
    config = folder / "edge.toml"
    # A wide batching window, so frames of one stream share a batch.
    config.write_text(
        "[batching]\nmax_queue_delay_ms = 300.0\nmax_batch_size = 8\n\n"
        f'[[models]]\nname = "{STUDENT}"\nmax_input_side = 400\n'
    )
    with EdgeProcess(["--config", str(config)]) as proc:
        yield proc


def _code_frame(frame_id: int, code_hw: tuple[int, int], input_hw: tuple[int, int]):
    z = codec.encode_tensor(np.zeros((1, 3, *code_hw), np.float32), "z", bits=4)
    return pb.FrameRequest(
        frame_id=frame_id,
        model=STUDENT,
        branch=BRANCH,
        tensors=[wire.tensor_to_pb(z)],
        orig_height=input_hw[0],
        orig_width=input_hw[1],
        input_height=input_hw[0],
        input_width=input_hw[1],
    )


async def test_a_code_that_does_not_fit_its_input_fails_alone(student_edge):
    good, bad = ((32, 40), (240, 320)), ((32, 41), (240, 320))
    requests = [_code_frame(1, *good), _code_frame(2, *bad), _code_frame(3, *good)]
    async with grpc.aio.insecure_channel(student_edge.address) as channel:
        call = pb_grpc.EdgeInferenceStub(channel).Stream(iter(requests))
        results = {r.frame_id: r async for r in call}
        assert await call.code() == OK
    assert sorted(results) == [1, 2, 3]
    assert _code(results[2].status_code) == INVALID, results[2].status_message
    assert "expects [1, 3, 32, 40] for input size 240x320" in results[2].status_message
    for i in (1, 3):
        assert results[i].status_code == 0, results[i].status_message
        assert results[i].WhichOneof("output") == "detections"
    assert "Traceback" not in "\n".join(student_edge.output)


async def test_a_consistent_but_oversized_input_is_refused_by_the_models_limit(student_edge):
    async with grpc.aio.insecure_channel(student_edge.address) as channel:
        stub = pb_grpc.EdgeInferenceStub(channel)
        code, details = await _infer_code(stub, _code_frame(1, (60, 80), (480, 640)))
        assert code == INVALID, details
        assert "size 480x640 is over the input limits" in details
        assert "max_input_side 400" in details
        assert (await stub.Infer(_code_frame(2, (32, 40), (240, 320)))).status_code == 0
