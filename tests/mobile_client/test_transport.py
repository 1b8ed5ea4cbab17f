"""The device's transport against real edge servers: TLS and mutual TLS through the one
channel factory, gRPC errors mapped once to domain errors, domain types out."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import Message

from splitedge.mobile_client import (
    CameraFrame,
    Client,
    ClientError,
    EdgeRefused,
    EdgeUnavailable,
    TlsConfig,
    open_source,
)
from splitedge.mobile_client.cli import main
from splitedge.mobile_client.depth import DepthRpcError, request_depth
from splitedge.mobile_client.flags import tls_from_flags
from splitedge.mobile_client.messages import EncodedFrame, encode_offload
from splitedge.mobile_client.server_profile import fetch_tail_profile
from splitedge.mobile_client.transport import (
    ArrivedReply,
    BranchInfo,
    EdgeTransport,
    ModelInfo,
    ServerStatus,
    frame_request,
)
from splitedge.models.depth.types import FocalStack
from splitedge.models.types import BranchSpec
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.status import StatusCode

pytestmark = pytest.mark.integration
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a device certificate, both
    signed by the CA, and a second CA that signed neither."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *ec, "-days", "1", "-subj", f"/CN={ca}",
                 "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.pem"))  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", str(d / "san.ext")]), ("device", [])):
        _openssl("req", *ec, "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-out", str(d / f"{name}.pem"), *ext)  # fmt: skip
    return {p.name.replace(".", "_"): p for p in d.iterdir()}


def _no_protobuf(value: object, path: str = "value") -> None:
    """Fail if a protobuf message hides anywhere in a (nested) domain value."""
    assert not isinstance(value, Message), f"{path} is a protobuf {type(value).__name__}"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _no_protobuf(getattr(value, f.name), f"{path}.{f.name}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _no_protobuf(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            _no_protobuf(item, f"{path}[{k!r}]")


async def test_client_reports_domain_types_and_the_edge_refusal_precisely(edge_factory):
    edge = edge_factory("--model", "echo")
    async with Client(edge.address, "echo") as client:
        info = client.model_info
        status = await client.status()
        outcome = await client.submit(_frame(), "offload-jpeg90", deadline_ms=0)
        after = await client.status()
    assert isinstance(info, ModelInfo) and isinstance(status, ServerStatus)
    _no_protobuf(info, "model_info")
    _no_protobuf(status, "status")
    assert info.name == "echo" and info.task == "echo"
    branch = next(b for b in info.branches if b.name == "offload-jpeg90")
    assert isinstance(branch, BranchInfo) and isinstance(branch.spec, BranchSpec)
    assert branch.kind == "offload" and branch.spec.image_format == "jpeg"
    assert client.branches["offload-jpeg90"] == branch.spec
    assert outcome.source == "edge", outcome.reason
    served = next(b for b in after.branches if b.branch == "offload-jpeg90")
    assert served.model == "echo" and served.frames == 1

    # The server answers NOT_FOUND: a refusal, with the server's own words.
    with pytest.raises(EdgeRefused) as refused:
        async with Client(edge.address, "nosuch"):
            pass
    assert refused.value.code is StatusCode.NOT_FOUND
    assert str(refused.value) == (
        f"server {edge.address}: NOT_FOUND: unknown model 'nosuch'; this server serves: echo"
    )
    assert isinstance(refused.value, ClientError)


async def test_an_unreachable_server_is_edge_unavailable_with_its_status():
    address = _free_address()
    async with EdgeTransport(address) as edge:
        with pytest.raises(EdgeUnavailable, match=rf"^server {address} unreachable: ") as info:
            await edge.describe("echo", timeout_s=1.0)
        assert info.value.code in (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED)
        with pytest.raises(EdgeUnavailable):
            await edge.status(timeout_s=1.0)


@needs_openssl
async def test_tls_edge_through_the_one_channel_factory(edge_factory, pki, capsys, tmp_path):
    edge = edge_factory(
        "--model", "echo", "--tls-cert", str(pki["server_pem"]), "--tls-key", str(pki["server_key"])
    )
    tls = TlsConfig(ca=pki["ca_pem"])
    async with EdgeTransport(edge.address, tls=tls) as secure:
        assert (await secure.describe("echo", timeout_s=5.0)).name == "echo"
        assert [m.name for m in await secure.list_models(timeout_s=5.0)] == ["echo"]
    # A plaintext channel, or one trusting another CA, never gets through.
    for wrong in (None, TlsConfig(ca=pki["other-ca_pem"])):
        async with EdgeTransport(edge.address, tls=wrong) as edge_wrong:
            with pytest.raises(EdgeUnavailable, match="UNAVAILABLE"):
                await edge_wrong.status(timeout_s=2.0)

    # Every command reaches it the same way: the server profile, depth, `models`.
    assert await fetch_tail_profile(edge.address, "echo", tls=tls) == {}
    stack = FocalStack(np.zeros((2, 8, 8, 3), np.uint8), np.array([0.5, 1.0]))
    with pytest.raises(DepthRpcError, match=r"^UNIMPLEMENTED: .*start it with --depth"):
        await request_depth(edge.address, stack, tls=tls)  # reached it, over TLS
    argv = ["models", "--server", edge.address, "--tls-ca", str(pki["ca_pem"])]
    assert await asyncio.to_thread(main, argv) == 0
    assert "offload-jpeg90" in capsys.readouterr().out
    out = tmp_path / "profile.json"
    argv = [
        "profile", "--model", "echo", "--branches", "offload-jpeg90", "--frames", "1",
        "--levels", "0", "--size", "64x48", "--server", edge.address, "--output", str(out),
        "--no-progress",
    ]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 2  # plaintext to a TLS edge
    assert "did not answer Describe" in capsys.readouterr().err and not out.exists()
    argv += ["--tls-ca", str(pki["ca_pem"])]
    assert await asyncio.to_thread(main, argv) == 0, capsys.readouterr().err
    assert out.is_file()


@needs_openssl
async def test_mutual_tls_needs_the_device_certificate(edge_factory, pki):
    edge = edge_factory(
        "--model", "echo",
        "--tls-cert", str(pki["server_pem"]), "--tls-key", str(pki["server_key"]),
        "--tls-client-ca", str(pki["ca_pem"]),
    )  # fmt: skip
    device = TlsConfig(ca=pki["ca_pem"], cert=pki["device_pem"], key=pki["device_key"])
    async with Client(edge.address, "echo", tls_ca=device.ca, tls_cert=device.cert,
                      tls_key=device.key) as client:  # fmt: skip
        outcome = await client.submit(_frame(), "offload-jpeg90", deadline_ms=0)
        assert (await client.status()).queue_capacity > 0
    assert outcome.source == "edge", outcome.reason
    # Trusting the server is not enough: without its own certificate the device is out.
    async with EdgeTransport(edge.address, tls=TlsConfig(ca=pki["ca_pem"])) as anonymous:
        with pytest.raises(EdgeUnavailable, match="UNAVAILABLE"):
            await anonymous.describe("echo", timeout_s=2.0)


@needs_openssl
async def test_every_command_takes_mutual_tls_and_the_token_to_an_auth_edge(
    edge_factory, pki, capsys, tmp_path, monkeypatch
):
    from splitedge.edge.auth import hash_token
    from splitedge.models.depth.io import save_focal_stack

    token = "device-token-7"
    config = tmp_path / "edge.toml"
    config.write_text(
        '[[models]]\nname = "echo"\n[auth]\n'
        f'tokens = [{{ client = "dev", sha256 = "{hash_token(token)}" }}]\n'
    )
    edge = edge_factory(
        "--config", str(config),
        "--tls-cert", str(pki["server_pem"]), "--tls-key", str(pki["server_key"]),
        "--tls-client-ca", str(pki["ca_pem"]),
    )  # fmt: skip
    token_file = tmp_path / "dev.token"
    token_file.write_text(token + "\n")
    monkeypatch.delenv("SPLITEDGE_TOKEN", raising=False)
    tls = ["--tls-ca", str(pki["ca_pem"]), "--tls-cert", str(pki["device_pem"]),
           "--tls-key", str(pki["device_key"])]  # fmt: skip
    stack = save_focal_stack(
        FocalStack(np.zeros((2, 16, 16, 3), np.uint8), np.array([0.5, 1.0])), tmp_path / "stack"
    )
    depth = ["depth", "--server", edge.address, "--stack", str(stack), "--out-dir",
             str(tmp_path / "out"), *tls]  # fmt: skip
    # Past TLS, refused by the token check; with it, the server's own answer (no depth here).
    assert await asyncio.to_thread(main, depth) == 1
    assert "UNAUTHENTICATED: missing token" in capsys.readouterr().err
    assert await asyncio.to_thread(main, [*depth, "--token-file", str(token_file)]) == 1
    assert "UNIMPLEMENTED: this server does not serve depth" in capsys.readouterr().err
    out = tmp_path / "profile.json"
    profile = [
        "profile", "--model", "echo", "--branches", "offload-jpeg90", "--frames", "1",
        "--levels", "0", "--size", "64x48", "--server", edge.address, "--output", str(out),
        "--no-progress", *tls,
    ]  # fmt: skip
    assert await asyncio.to_thread(main, profile) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err and not out.exists()
    assert await asyncio.to_thread(main, [*profile, "--token-file", str(token_file)]) == 0
    assert out.is_file()
    assert await asyncio.to_thread(main, ["models", "--server", edge.address, *tls,
                                          "--token", token]) == 0  # fmt: skip
    assert "offload-jpeg90" in capsys.readouterr().out


def test_tls_flags_are_checked_before_connecting(tmp_path, capsys):
    pem = tmp_path / "device.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nnot parsed here\n")
    with pytest.raises(ValueError, match=r"^--tls-cert and --tls-key: give both or neither$"):
        tls_from_flags(None, str(pem), None)
    with pytest.raises(ValueError, match=r"^TLS client certificate and key: give both or neither$"):
        TlsConfig(cert=pem)
    assert tls_from_flags(None) is None
    assert tls_from_flags(None, str(pem), str(pem)) == TlsConfig(None, pem, pem)
    for argv in (
        ["models", "--server", "127.0.0.1:1", "--tls-cert", str(pem)],
        ["depth", "--server", "127.0.0.1:1", "--stack", "/no/such", "--tls-cert", str(pem)],
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err == (
            "splitedge-client: error: --tls-cert and --tls-key: give both or neither\n"
        )
    assert main(["models", "--server", "127.0.0.1:1", "--tls-key", "/no/key.pem"]) == 2
    assert capsys.readouterr().err == (
        "splitedge-client: error: --tls-key: '/no/key.pem' does not exist\n"
    )
    # Not PEM: refused before any call (gRPC would fail every call as UNAVAILABLE).
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82\x01\x0a")
    assert main(["models", "--server", "127.0.0.1:1", "--tls-ca", str(der)]) == 2
    assert capsys.readouterr().err == (
        f"splitedge-client: error: --tls-ca: {str(der)!r} is not a PEM file (no -----BEGIN line)\n"
    )


def test_the_frame_request_is_built_once_with_every_field():
    spec = BranchSpec("offload-png", "offload", image_format="png")
    image = np.full((6, 10, 3), 7, np.uint8)
    payload = encode_offload(image, spec)
    assert isinstance(payload, EncodedFrame) and payload.payload_bytes == len(payload.image.data)
    request = frame_request(payload, frame_id=9, model="echo", branch=spec.name, deadline_ms=12.5)
    assert (request.frame_id, request.model, request.branch) == (9, "echo", "offload-png")
    assert (request.orig_height, request.orig_width, request.deadline_ms) == (6, 10, 12.5)
    assert request.image.data == payload.image.data and request.client_send_unix_ns > 0
    assert not request.tensors


def _frame() -> CameraFrame:
    return next(open_source("synthetic", max_frames=1, size=(32, 32)))


def test_depth_from_focus_is_a_deprecated_alias_of_request_depth():
    from splitedge.mobile_client import depth

    assert depth.depth_from_focus is request_depth
    assert "depth_from_focus" not in depth.__all__


def test_an_answer_is_decoded_only_when_asked_and_a_bad_one_costs_only_its_frame():
    # A segmentation answer whose mask is not a PNG: the stream reader reads its id and
    # server time without decoding it (a late answer is never decoded); decoding it gives
    # the frame a DATA_LOSS reply with the reason, not an exception out of the stream.
    bad = pb.FrameResult(frame_id=7, timing=pb.ServerTiming(server_total_ms=3.5))
    bad.segmentation.mask.CopyFrom(pb.Image(format=pb.PNG, width=4, height=4, data=b"nope"))
    arrived = ArrivedReply(bad)
    assert (arrived.frame_id, arrived.server_total_ms) == (7, 3.5)
    reply = arrived.decode()
    assert reply.status is StatusCode.DATA_LOSS and reply.prediction is None
    assert reply.message.startswith("undecodable result: ")
    assert reply.timing.server_total_ms == 3.5
    assert StatusCode.DATA_LOSS.reason == "edge-error:DATA_LOSS"
