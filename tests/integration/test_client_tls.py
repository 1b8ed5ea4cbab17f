"""The client reaches a TLS-serving edge with the right CA, and fails closed without it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from splitedge.mobile_client import Client, open_source

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "server.key", tmp_path / "server.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_round_trip_and_untrusted_client(edge_factory, certs):
    cert, key = certs
    edge = edge_factory("--model", "echo", "--tls-cert", str(cert), "--tls-key", str(key))
    frame = next(open_source("synthetic", max_frames=1, size=(32, 32)))
    async with Client(edge.address, "echo", tls_ca=cert) as client:
        outcome = await client.submit(frame, "offload-jpeg90")
    assert outcome.source == "edge"
    # A plaintext client never gets through to a TLS server: no model description,
    # so no edge branch to send frames on (only "local", whose records say why not).
    async with Client(edge.address, "echo", connect_timeout_s=1.0) as plain:
        assert plain.model_info is None
        assert set(plain.branches) == {"local"}
