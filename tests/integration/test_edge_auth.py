"""Token authentication and safe defaults on a real edge server and real channels.

Every RPC (reflection included) refuses a call without a configured token with
UNAUTHENTICATED; the config holds only hashes; devices send the token from
``--token-file`` / ``SPLITEDGE_TOKEN`` on every command; no path, host name or pid
leaves the server; a network bind without TLS or tokens says so on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from splitedge.edge.auth import hash_token
from splitedge.edge.config import AuthConfig, ModelConfig, TokenHash, load_config
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer
from splitedge.mobile_client import Client, EdgeRefused, open_source
from splitedge.mobile_client.cli import main as client_main
from splitedge.mobile_client.messages import encode_offload
from splitedge.mobile_client.transport import EdgeTransport, frame_request
from splitedge.models.echo import EchoModel
from splitedge.models.types import BranchSpec
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.proto.status import StatusCode
from splitedge.simulations.processes import EdgeProcess

pytestmark = pytest.mark.integration

TOKEN = "cam-1-token-Zm9vYmFy"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _auth(health_open: bool = False) -> AuthConfig:
    return AuthConfig((TokenHash("cam-1", hash_token(TOKEN)),), health_open=health_open)


@contextlib.asynccontextmanager
async def _serving(registry: ModelRegistry | None = None, **changes) -> AsyncIterator[EdgeServer]:
    """A real in-process edge server on 127.0.0.1 (unless ``host`` says otherwise), port 0."""
    config = load_config(None, port=0, host=changes.pop("host", "127.0.0.1"), models=[
        ModelConfig("echo")
    ])  # fmt: skip
    server = changes.pop("server", None)
    if server is not None:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **server))
    config = dataclasses.replace(config, **changes)
    registry = registry or ModelRegistry.from_config(
        config.models, config.limits.codec_limits(), device="cpu"
    )
    async with EdgeServer(config, registry) as edge:
        yield edge


def _frame_request() -> pb.FrameRequest:
    spec = BranchSpec("offload-jpeg90", "offload", image_format="jpeg", image_quality=90)
    image = next(open_source("synthetic", max_frames=1, size=(32, 32))).image
    return frame_request(
        encode_offload(image, spec), frame_id=1, model="echo", branch=spec.name, deadline_ms=0
    )


async def _codes(channel: grpc.aio.Channel, metadata) -> dict[str, grpc.StatusCode]:
    """The status code each RPC (edge, reflection, health) answers with ``metadata``."""
    stub = pb_grpc.EdgeInferenceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    unary = {
        "Infer": (stub.Infer, _frame_request()),
        "ListModels": (stub.ListModels, pb.ListModelsRequest()),
        "Describe": (stub.Describe, pb.DescribeRequest(model="echo")),
        "Status": (stub.Status, pb.StatusRequest()),
        "DepthFromFocus": (stub.DepthFromFocus, pb.FocalStackRequest()),
        "GetHead": (stub.GetHead, pb.HeadRequest(model="echo", branch="nope")),
        "Health": (health.Check, health_pb2.HealthCheckRequest()),
    }
    streams = {
        "Stream": (stub.Stream, _frame_request()),
        "Reflection": (
            reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo,
            reflection_pb2.ServerReflectionRequest(list_services=""),
        ),
    }
    codes = {}
    for name, (method, request) in {**unary, **streams}.items():
        try:
            if name in streams:
                answers = [r async for r in method(iter([request]), metadata=metadata, timeout=10)]
                assert answers, name
            else:
                await method(request, metadata=metadata, timeout=10)
            codes[name] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            codes[name] = exc.code()
    return codes


async def test_every_rpc_needs_a_configured_token_and_health_is_open_only_if_configured():
    async with _serving(auth=_auth(health_open=True)) as edge:
        address = f"127.0.0.1:{edge.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            missing = await _codes(channel, None)
            wrong = await _codes(channel, (("authorization", "Bearer not-the-token"),))
            not_bearer = await _codes(channel, (("authorization", TOKEN),))
            right = await _codes(channel, (("authorization", f"Bearer {TOKEN}"),))
        guarded = ["Infer", "Stream", "ListModels", "Describe", "Status", "DepthFromFocus"]
        guarded.append("GetHead")
        for codes in (missing, wrong, not_bearer):
            assert {k: codes[k] for k in [*guarded, "Reflection"]} == dict.fromkeys(
                [*guarded, "Reflection"], UNAUTHENTICATED
            )
            assert codes["Health"] == grpc.StatusCode.OK  # health_open: probes carry no token
        # The right token gets every answer the server has (no depth on this one).
        assert right == {**dict.fromkeys(right, grpc.StatusCode.OK),
                         "DepthFromFocus": grpc.StatusCode.UNIMPLEMENTED,
                         "GetHead": grpc.StatusCode.NOT_FOUND}  # fmt: skip
        # The refusal says what to do, in one line.
        async with EdgeTransport(address) as anonymous:
            with pytest.raises(EdgeRefused) as info:
                await anonymous.status(timeout_s=10)
        assert info.value.code is StatusCode.UNAUTHENTICATED
        assert info.value.details.startswith("missing token: send metadata 'authorization: Bearer")
        # The device runtime: token on Describe (at connect), Stream and Status.
        frame = next(open_source("synthetic", max_frames=1, size=(32, 32)))
        async with Client(address, "echo", token=TOKEN) as client:
            outcome = await client.submit(frame, "offload-jpeg90", deadline_ms=0)
            assert (await client.status()).queue_capacity > 0
        assert outcome.source == "edge", outcome.reason
        with pytest.raises(EdgeRefused, match="UNAUTHENTICATED: unknown token"):
            async with Client(address, "echo", token="wrong-token"):
                pass


async def test_health_needs_the_token_too_by_default():
    async with (
        _serving(auth=_auth()) as edge,
        grpc.aio.insecure_channel(f"127.0.0.1:{edge.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert info.value.code() == UNAUTHENTICATED
        reply = await health.Check(
            health_pb2.HealthCheckRequest(),
            metadata=(("authorization", f"Bearer {TOKEN}"),),
            timeout=10,
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_no_path_host_name_or_pid_leaves_the_server(tmp_path):
    # A model loaded from a checkpoint deep in the server's folders.
    model = EchoModel()
    model.weights_source = str(tmp_path / "secret-folder" / "student-c12.pt")
    torchvision_named = EchoModel("tv")
    torchvision_named.weights_source = "FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT"
    registry = ModelRegistry([model, torchvision_named], load_config(None, models=[
        ModelConfig("echo")]).limits.codec_limits())  # fmt: skip
    async with _serving(registry) as edge, EdgeTransport(f"127.0.0.1:{edge.port}") as transport:
        models = {m.name: m for m in await transport.list_models(timeout_s=10)}
        described = await transport.describe("echo", timeout_s=10)
        status = await transport.status(timeout_s=10)
    assert models["echo"].weights == described.weights == "student-c12.pt"
    assert models["tv"].weights == "FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT"
    assert str(tmp_path) not in repr(models) and "secret-folder" not in repr(described)
    assert socket.gethostname() not in status.server_id
    assert str(os.getpid()) not in status.server_id
    assert status.server_id.startswith("edge-")


async def test_a_network_bind_without_tls_or_tokens_warns_once(caplog):
    caplog.set_level(logging.WARNING, logger="splitedge.edge.server")

    async def warnings(**changes) -> list[str]:
        caplog.clear()
        async with _serving(**changes):
            pass
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    assert await warnings() == []  # 127.0.0.1: nobody else can reach it
    assert await warnings(auth=_auth(), metrics_port=0) == []  # /metrics on 127.0.0.1 too
    (line,) = await warnings(host="0.0.0.0")
    assert line.startswith("gRPC bound to 0.0.0.0 without TLS and without token auth: ")
    assert "\n" not in line
    (line,) = await warnings(host="0.0.0.0", auth=_auth())
    assert line.startswith("gRPC bound to 0.0.0.0 without TLS: ")
    (metrics, line) = await warnings(host="0.0.0.0", metrics_port=0, metrics_host="0.0.0.0")
    assert metrics.startswith("metrics bound to 0.0.0.0: /metrics is plaintext and unauthenticated")
    assert line.startswith("gRPC bound to 0.0.0.0 without TLS and without token auth")


def test_the_cli_binds_loopback_by_default_and_warns_on_stderr_for_a_public_bind():
    assert load_config(None, models=[ModelConfig("echo")]).server.host == "127.0.0.1"
    assert load_config(None, models=[ModelConfig("echo")]).metrics_host == "127.0.0.1"
    with EdgeProcess(["--model", "echo"], host="0.0.0.0") as edge:
        assert edge.port > 0
        output = list(edge.output)
    warned = [line for line in output if "WARNING" in line]
    assert (
        len(warned) == 1
        and "gRPC bound to 0.0.0.0 without TLS and without token auth" in (warned[0])
    )


def _auth_toml(folder: Path) -> Path:
    config = folder / "edge.toml"
    config.write_text(
        '[[models]]\nname = "echo"\n\n[auth]\n'
        f'tokens = [{{ client = "cam-1", sha256 = "{hash_token(TOKEN)}" }}]\n'
    )
    assert TOKEN not in config.read_text()  # the config holds the hash only
    return config


async def test_the_client_commands_send_the_token_from_a_file_or_the_env(
    edge_factory, tmp_path, capsys, monkeypatch
):
    edge = edge_factory("--config", str(_auth_toml(tmp_path)))
    token_file = tmp_path / "cam-1.token"
    token_file.write_text(TOKEN + "\n")  # as hash-token --generate writes it
    monkeypatch.delenv("SPLITEDGE_TOKEN", raising=False)

    def run(*argv: str) -> int:
        return client_main(list(argv))

    assert await asyncio.to_thread(run, "models", "--server", edge.address) == 1
    assert "UNAUTHENTICATED: missing token" in capsys.readouterr().err
    argv = ["models", "--server", edge.address, "--token-file", str(token_file)]
    assert await asyncio.to_thread(run, *argv) == 0
    assert "offload-jpeg90" in capsys.readouterr().out
    out = tmp_path / "frames.jsonl"
    argv = ["run", "--server", edge.address, "--model", "echo", "--branch", "offload-jpeg90",
            "--frames", "2", "--size", "32x32", "--token-file", str(token_file),
            "--out", str(out), "--no-local-fallback"]  # fmt: skip
    assert await asyncio.to_thread(run, *argv) == 0, capsys.readouterr().err
    assert out.read_text().count('"source":"edge"') == 2
    monkeypatch.setenv("SPLITEDGE_TOKEN", TOKEN)
    assert await asyncio.to_thread(run, "models", "--server", edge.address) == 0
    monkeypatch.setenv("SPLITEDGE_TOKEN", "stale")
    assert await asyncio.to_thread(run, "models", "--server", edge.address) == 1
    assert "UNAUTHENTICATED: unknown token" in capsys.readouterr().err
    # A flag wins over the environment.
    argv = ["models", "--server", edge.address, "--token", TOKEN]
    assert await asyncio.to_thread(run, *argv) == 0
