"""The edge server as a real process on a real socket: every bad-request class gets its
exact status code and the server goes on; deadlines, discovery, health and metrics."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

_LISTENING = re.compile(r"^splitedge-edge listening on (\S+):(\d+)$")
_METRICS = re.compile(r"^splitedge-edge metrics on http://\S+:(\d+)/metrics$")


class EdgeServerProcess:
    """``splitedge-edge serve --host 127.0.0.1 --port 0 ARGS`` in a child process.

    Waits for its listening line (stdout), keeps its log (stderr) in a file for
    failure messages, and always stops it on exit (SIGTERM, then SIGKILL).
    """

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.port = 0
        self.metrics_port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> EdgeServerProcess:
        cmd = [sys.executable, "-m", "splitedge.edge.cli", "serve", "--host", "127.0.0.1"]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--port", "0", *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # ends at EOF if the server dies
            if match := _METRICS.match(line.strip()):
                self.metrics_port = int(match.group(1))
            if match := _LISTENING.match(line.strip()):
                self.port = int(match.group(2))
                return self
        self.__exit__(None, None, None)
        raise RuntimeError(f"edge server did not start:\n{self.log_path.read_text()}")

    def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    # "slow": a second echo whose tail takes 300 ms, for deadlines.
    args = [
        "--model",
        "echo",
        "--model",
        "echo:serve_as=slow,tail_delay_ms=300",
        "--metrics-port",
        "0",
    ]
    log = tmp_path_factory.mktemp("edge") / "edge.log"
    with EdgeServerProcess(args, log) as proc:
        yield proc


@pytest.fixture
async def stub(edge):
    async with grpc.aio.insecure_channel(edge.address) as channel:
        yield pb_grpc.EdgeInferenceStub(channel)


@pytest.fixture(scope="module")
def fast_edge(tmp_path_factory):
    # No batching window and a generous inline threshold (a loaded machine must not
    # keep echo's tail in the pool): once measured, echo's tail runs inline and a
    # stream's frames are answered by its reader (EdgeService.process_now).
    folder = tmp_path_factory.mktemp("fast-edge")
    config = folder / "edge.toml"
    config.write_text(
        "[batching]\nmax_queue_delay_ms = 0.0\ntail_inline_below_ms = 50.0\n\n"
        '[[models]]\nname = "echo"\n'
    )
    with EdgeServerProcess(["--config", str(config)], folder / "edge.log") as proc:
        yield proc


@pytest.fixture
async def fast_stub(fast_edge):
    async with grpc.aio.insecure_channel(fast_edge.address) as channel:
        yield pb_grpc.EdgeInferenceStub(channel)


# ---------------------------------------------------------------- requests


def _tensor(x: np.ndarray, name: str = "x", **kw) -> pb.Tensor:
    return wire.tensor_to_pb(codec.encode_tensor(x, name, **kw))


def split_frame(
    frame_id: int = 0, *tensors: pb.Tensor, model: str = "echo", **kw
) -> pb.FrameRequest:
    if not tensors:
        tensors = (_tensor(np.arange(12, dtype=np.float32)),)
    return pb.FrameRequest(
        frame_id=frame_id,
        model=model,
        branch=kw.pop("branch", "split@x"),
        tensors=list(tensors),
        orig_height=3,
        orig_width=4,
        input_height=3,
        input_width=4,
        **kw,
    )


def offload_frame(frame_id: int = 0, image: pb.Image | None = None) -> pb.FrameRequest:
    if image is None:
        image = wire.image_to_pb(codec.encode_image(np.full((8, 8, 3), 99, np.uint8)))
    return pb.FrameRequest(
        frame_id=frame_id,
        model="echo",
        branch="offload-jpeg90",
        image=image,
        orig_height=8,
        orig_width=8,
    )


def _corrupt_zstd() -> pb.Tensor:
    t = _tensor(np.arange(64, dtype=np.float32))
    t.data = t.data[:-4] + b"\0\0\0\0"  # the frame's checksum no longer matches
    return t


def _nan_scale() -> pb.Tensor:
    t = _tensor(np.arange(64, dtype=np.float32), bits=8)
    t.scale[0] = float("nan")
    return t


def _oversize() -> pb.Tensor:
    t = _tensor(np.arange(4, dtype=np.float32))
    del t.shape[:]
    t.shape.append(1 << 30)  # 4 GiB declared, a few bytes sent
    return t


def _no_dtype() -> pb.Tensor:
    t = _tensor(np.arange(4, dtype=np.float32))
    t.dtype = pb.DTYPE_UNSPECIFIED
    return t


BAD_REQUESTS = {
    "unknown model": (lambda i: split_frame(i, model="yolo"), NOT_FOUND),
    "unknown branch": (lambda i: split_frame(i, branch="split@9"), NOT_FOUND),
    "local branch": (lambda i: split_frame(i, branch="local"), INVALID),
    "missing tensor": (lambda i: _changed(split_frame(i), tensors=None), INVALID),
    "extra tensor": (
        lambda i: split_frame(
            i, _tensor(np.ones(3, np.float32)), _tensor(np.ones(3, np.float32), "y")
        ),
        INVALID,
    ),
    "wrong dtype": (lambda i: split_frame(i, _tensor(np.ones(3, np.uint8))), INVALID),
    "wrong shape": (lambda i: split_frame(i, _tensor(np.ones((3, 2), np.float32))), INVALID),
    "unspecified dtype": (lambda i: split_frame(i, _no_dtype()), INVALID),
    "oversize declared tensor": (lambda i: split_frame(i, _oversize()), EXHAUSTED),
    "corrupt zstd": (lambda i: split_frame(i, _corrupt_zstd()), INVALID),
    "NaN scale": (lambda i: split_frame(i, _nan_scale()), INVALID),
    "missing image on offload": (
        lambda i: pb.FrameRequest(
            frame_id=i, model="echo", branch="offload-jpeg90", orig_height=8, orig_width=8
        ),
        INVALID,
    ),
    "corrupt JPEG": (
        lambda i: offload_frame(
            i, pb.Image(format=pb.JPEG, width=8, height=8, data=b"\xff\xd8\xff" + bytes(64))
        ),
        INVALID,
    ),
    "zero sizes": (lambda i: _changed(split_frame(i), orig_height=0), INVALID),
}


def _changed(m: pb.FrameRequest, **fields) -> pb.FrameRequest:
    """A copy with fields set, or cleared where the value is None."""
    out = pb.FrameRequest()
    out.CopyFrom(m)
    for name, value in fields.items():
        if value is None:
            out.ClearField(name)
        else:
            setattr(out, name, value)
    return out


# ---------------------------------------------------------------- tests


async def test_health_is_serving(edge):
    async with grpc.aio.insecure_channel(edge.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "splitedge.v1.EdgeInference"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_good_split_and_offload_frames(stub):
    for request in (split_frame(7), offload_frame(8)):
        result = await stub.Infer(request)
        assert result.status_code == 0 and result.frame_id == request.frame_id
        assert result.WhichOneof("output") == "detections"
        assert len(result.detections.boxes) == 0
        t = result.timing
        assert t.batch_size >= 1 and t.server_total_ms > 0
        assert t.server_total_ms >= t.queue_ms + t.tail_ms


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_bad_infer_gets_its_status_and_server_goes_on(stub, case):
    make, code = BAD_REQUESTS[case]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Infer(make(1))
    assert info.value.code() == code, info.value.details()
    assert info.value.details() and "\n" not in info.value.details()
    assert (await stub.Infer(split_frame(2))).status_code == 0


@pytest.mark.parametrize("server", ["edge", "fast_edge"])
async def test_bad_frames_in_a_stream_fail_alone(server, request):
    address = request.getfixturevalue(server).address
    async with grpc.aio.insecure_channel(address) as channel:
        await _bad_frames_fail_alone(pb_grpc.EdgeInferenceStub(channel))


async def _bad_frames_fail_alone(stub: pb_grpc.EdgeInferenceStub) -> None:
    requests = []
    expected = {}
    for i, (make, code) in enumerate(BAD_REQUESTS.values()):
        requests += [make(2 * i), split_frame(2 * i + 1)]
        expected[2 * i], expected[2 * i + 1] = code, OK
    call = stub.Stream(iter(requests))
    results = {r.frame_id: r async for r in call}
    assert await call.code() == OK
    got = {
        fid: grpc.StatusCode.OK if r.status_code == 0 else _code(r.status_code)
        for fid, r in results.items()
    }
    assert got == expected
    for fid, result in results.items():
        assert (result.status_message == "") == (expected[fid] == OK)
        assert (result.WhichOneof("output") == "detections") == (expected[fid] == OK)


async def test_without_a_batching_window_a_cheap_tail_runs_as_frames_arrive(fast_stub):
    call = fast_stub.Stream(iter([split_frame(i) for i in range(20)]))
    results = [r async for r in call]
    assert await call.code() == OK
    assert sorted(r.frame_id for r in results) == list(range(20))
    assert all(r.status_code == 0 and r.WhichOneof("output") == "detections" for r in results)
    # Once the tail is measured cheap (its first runs are in the pool, where a frame
    # queues for a moment), it runs synchronously as the frame arrives: no queue at all.
    inline = [r for r in results if r.timing.queue_ms == 0.0]
    assert len(inline) >= 15
    assert all(r.timing.batch_size == 1 and r.timing.server_total_ms > 0 for r in inline)


def _code(number: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == number)


async def test_deadline_passes_in_the_queue(stub):
    # The first frame holds the slow tail for 300 ms; the second's 50 ms budget runs out.
    first = stub.Infer(split_frame(1, model="slow"))  # the call starts at once
    await asyncio.sleep(0.05)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Infer(split_frame(2, model="slow", deadline_ms=50))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The budget named is what was left of the 50 ms after the server decoded the frame
    # (49 ms on a slow or loaded machine).
    budget = re.search(r"over its (\d+) ms budget; dropped uncomputed", info.value.details())
    assert budget is not None and 40 <= int(budget.group(1)) <= 50, info.value.details()
    assert (await first).status_code == 0
    # A generous budget still gets an answer.
    assert (await stub.Infer(split_frame(3, model="slow", deadline_ms=5000))).status_code == 0


async def test_list_models_and_describe(stub):
    listed = await stub.ListModels(pb.ListModelsRequest())
    assert [m.name for m in listed.models] == ["echo", "slow"]
    echo = await stub.Describe(pb.DescribeRequest(model="echo"))
    assert echo.task == "echo"
    branches = {b.name: b for b in echo.branches}
    assert {n: b.kind for n, b in branches.items()} == {
        "local": "local",
        "split@x": "split",
        "offload-jpeg90": "offload",
    }
    (x,) = branches["split@x"].tensors
    assert (x.name, x.dtype, list(x.shape)) == ("x", pb.FLOAT32, [-1])
    assert branches["offload-jpeg90"].image_format == pb.JPEG
    assert branches["offload-jpeg90"].image_quality == 90
    await stub.Infer(split_frame(1))
    echo = await stub.Describe(pb.DescribeRequest(model="echo"))
    profile = {b.name: b.profile for b in echo.branches}["split@x"]
    assert (
        profile.tail_samples >= 1 and profile.tail_latency_ms_p95 >= profile.tail_latency_ms_p50 > 0
    )


async def test_describe_unknown_model_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Describe(pb.DescribeRequest(model="nope"))
    assert info.value.code() == NOT_FOUND
    assert "nope" in info.value.details()


async def test_status(stub):
    await stub.Infer(split_frame(1))
    status = await stub.Status(pb.StatusRequest())
    assert status.device == "cpu"
    assert status.queue_capacity == 64 and status.queue_depth == 0 and status.in_flight == 0
    assert status.uptime_s > 0 and status.frames_per_second > 0 and 0 < status.load <= 1
    loads = {(b.model, b.branch): b for b in status.branches}
    assert set(loads) == {(m, b) for m in ("echo", "slow") for b in ("split@x", "offload-jpeg90")}
    assert loads["echo", "split@x"].frames >= 1


async def test_metrics_over_http(stub, edge):
    await stub.Infer(split_frame(1))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Infer(split_frame(2, branch="local"))
    url = f"http://127.0.0.1:{edge.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())

    def value(pattern: str) -> float:
        match = re.search(pattern + r" ([0-9.e+]+)$", text, re.MULTILINE)
        assert match, f"{pattern} not in /metrics"
        return float(match.group(1))

    assert value(r'splitedge_requests_total\{branch="split@x",code="OK",model="echo"\}') >= 1
    assert (
        value(r'splitedge_requests_total\{branch="local",code="INVALID_ARGUMENT",model="echo"\}')
        >= 1
    )
    assert value(r'splitedge_tail_latency_seconds_count\{branch="split@x",model="echo"\}') >= 1
    assert value(r"splitedge_batch_size_count") >= 1
    assert value(r"splitedge_queue_depth") == 0
    # Unknown names a client sends do not become labels.
    assert "yolo" not in text


# ---------------------------------------------------------------- overload and shutdown


async def test_admission_control_under_overload(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text(
        "[batching]\nmax_batch_size = 1\nmax_queue_delay_ms = 0\nqueue_capacity = 4\n"
        '[[models]]\nname = "echo"\noptions = { tail_delay_ms = 60 }\n'
    )
    port_file = tmp_path / "port"
    args = ["--config", str(config), "--port-file", str(port_file)]
    with EdgeServerProcess(args, tmp_path / "edge.log") as edge:
        assert int(port_file.read_text()) == edge.port
        async with grpc.aio.insecure_channel(edge.address) as channel:
            stub = pb_grpc.EdgeInferenceStub(channel)
            await stub.Infer(split_frame(0))  # connect first, so the burst is truly concurrent
            calls = [stub.Infer(split_frame(i)) for i in range(1, 25)]
            codes = []
            for call in calls:
                try:
                    await call
                    codes.append(OK)
                except grpc.aio.AioRpcError as exc:
                    codes.append(exc.code())
                    assert "admission queue full (4 frames" in exc.details()
            assert set(codes) == {OK, EXHAUSTED}
            # One running plus four waiting at least were admitted.
            assert codes.count(OK) >= 5
            health = health_pb2_grpc.HealthStub(channel)
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert (await stub.Infer(split_frame(99))).status_code == 0
            status = await stub.Status(pb.StatusRequest())
            assert status.queue_capacity == 4 and status.queue_depth == 0


async def test_sigterm_drains_in_flight_frames_and_exits_0(tmp_path):
    args = ["--model", "echo:tail_delay_ms=400"]
    with EdgeServerProcess(args, tmp_path / "edge.log") as edge:
        async with grpc.aio.insecure_channel(edge.address) as channel:
            stub = pb_grpc.EdgeInferenceStub(channel)
            await stub.Infer(split_frame(0, model="echo"))
            outgoing: asyncio.Queue[pb.FrameRequest] = asyncio.Queue()

            async def requests():
                while True:  # the client never half-closes: the server must end the stream
                    yield await outgoing.get()

            stream = stub.Stream(requests())
            for i in (10, 11):
                outgoing.put_nowait(split_frame(i))
            unary = [stub.Infer(split_frame(i)) for i in range(1, 4)]
            await asyncio.sleep(0.15)  # all five are in the tail now
            start = asyncio.get_running_loop().time()
            exit_code = asyncio.create_task(asyncio.to_thread(edge.terminate))
            results = [await call for call in unary]
            streamed = [r async for r in stream]
            assert await exit_code == 0
            stopped_s = asyncio.get_running_loop().time() - start
    assert [r.status_code for r in results] == [0, 0, 0]
    assert sorted(r.frame_id for r in streamed) == [10, 11]
    assert all(r.status_code == 0 for r in streamed)
    # The open stream ended once drained instead of holding the 10 s grace period.
    assert stopped_s < 5.0
    log = (tmp_path / "edge.log").read_text()
    assert "stopping: draining" in log and "Traceback" not in log


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    san = ["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    subprocess.run(
        [*openssl.split(), "-keyout", str(key), "-out", str(cert), "-subj", "/CN=edge", *san],
        check=True,
        capture_output=True,
    )
    args = ["--model", "echo", "--tls-cert", str(cert), "--tls-key", str(key)]
    with EdgeServerProcess(args, tmp_path / "edge.log") as edge:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(edge.address, credentials) as channel:
            result = await pb_grpc.EdgeInferenceStub(channel).Infer(split_frame(1))
            assert result.status_code == 0
        # A plaintext client cannot talk to it.
        async with grpc.aio.insecure_channel(edge.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.EdgeInferenceStub(channel).Infer(split_frame(2), timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
