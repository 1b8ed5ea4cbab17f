"""Fixtures for the MQTT integration tests: a real mosquitto on 127.0.0.1, a free port.

Each test gets its own broker (fresh retained state; starting one takes ~20 ms), and
the broker can be stopped and started again on the same port to test reconnects.
Tests are skipped, with the reason, only if the ``mosquitto`` binary is absent.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from splitedge.simulations.processes import (
    Mosquitto,
    mosquitto_binary,
)

HERE = Path(__file__).parent
PUBLISHER_SCRIPT = HERE / "publisher_proc.py"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running mosquitto for this test only."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto binary not found (apt-get install -y mosquitto)")
    broker = Mosquitto(binary, tmp_path).start()
    try:
        yield broker
    finally:
        broker.stop()


def _run(*cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=30)


def make_tls_files(workdir: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (EC keys: fast)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
         "-subj", "/CN=splitedge-test-ca", cwd=workdir)  # fmt: skip
    _run("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1", cwd=workdir)  # fmt: skip
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext",
         cwd=workdir)  # fmt: skip
    return {name: workdir / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


@pytest.fixture
def secure_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto that wants TLS and username/password (user ``cam``, password ``s3cret``)."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto binary not found (apt-get install -y mosquitto)")
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None or shutil.which("openssl") is None:
        pytest.skip("mosquitto_passwd or openssl not found: cannot set up TLS + passwords")
    files = make_tls_files(tmp_path)
    _run(passwd, "-c", "-b", "passwd", "cam", "s3cret", cwd=tmp_path)
    extra = (
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\n"
        f"cafile {files['ca.crt']}\n"
        f"certfile {files['server.crt']}\n"
        f"keyfile {files['server.key']}\n"
    )
    broker = Mosquitto(binary, tmp_path, extra).start()
    broker.ca_file = files["ca.crt"]  # type: ignore[attr-defined]
    try:
        yield broker
    finally:
        broker.stop()


class PublisherProcess:
    """``publisher_proc.py`` in a child process: a StatusPublisher we can SIGKILL."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def wait_published(self, timeout_s: float = 20.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"publisher exited with {self.proc.wait()}")
            if line.startswith("published"):
                return
        raise RuntimeError("publisher did not publish in time")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)


@pytest.fixture
def spawn_publisher() -> Iterator[Callable[..., PublisherProcess]]:
    """Start status publishers in child processes; all are killed after the test."""
    started: list[PublisherProcess] = []

    def spawn(port: int, server_id: str, *, queue_depth: int = 0) -> PublisherProcess:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(PUBLISHER_SCRIPT),
                "--port",
                str(port),
                "--server-id",
                server_id,
                "--queue-depth",
                str(queue_depth),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        child = PublisherProcess(proc)
        started.append(child)
        return child

    yield spawn
    for child in started:
        child.signal(signal.SIGCONT)  # a stopped process cannot die from SIGKILL's reaping
        child.signal(signal.SIGKILL)
        child.proc.wait()
        if child.proc.stdout is not None:
            child.proc.stdout.close()
