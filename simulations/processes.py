"""Start and stop real edge server and MQTT broker processes (for the demo, scenarios,
benchmarks, tests)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

_LISTENING = re.compile(r"splitedge-edge listening on (\S+):(\d+)")


class EdgeStartError(RuntimeError):
    """The edge server process exited or stayed silent instead of listening."""


class EdgeProcess:
    """``with EdgeProcess(["--model", "echo"]) as edge: edge.address``.

    Runs ``splitedge-edge serve --port 0 <args>`` in a child process, waits for its
    ``listening on`` line, and always stops it (SIGTERM, then SIGKILL) on exit.
    The child's output is drained in a thread (the last lines are kept for errors).
    """

    def __init__(
        self,
        args: list[str],
        *,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = ["serve", "--host", host, "--port", "0", *args]
        self.host = host
        self.port = 0
        self.startup_timeout_s = startup_timeout_s
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EdgeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "splitedge.edge.cli", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._drain, name="edge-output", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                tail = "\n".join(self.output)
                what = f"exited with code {code}" if code is not None else "did not start in time"
                raise EdgeStartError(f"edge server {what}; its output:\n{tail}")
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip())
            match = _LISTENING.search(line)
            if match and not self._ready.is_set():
                self.port = int(match.group(2))
                self._ready.set()

    def kill(self) -> None:
        """SIGKILL, as when the edge box loses power (no drain, no goodbye)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM (graceful drain), SIGKILL after ``grace_s``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> EdgeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------- mosquitto


def mosquitto_binary() -> str | None:
    """The mosquitto broker's path; Debian installs it in /usr/sbin, not on every PATH."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may take it later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout_s: float) -> bool:
    """True once something accepts connections on 127.0.0.1:``port``, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Mosquitto:
    """One mosquitto process on 127.0.0.1:``port``; ``stop()``/``start()`` keep the port.

    ``extra_conf`` replaces ``allow_anonymous true`` (TLS listeners, password and ACL
    files). Logs go to ``workdir/mosquitto.log``; a start that does not listen within
    ``timeout_s`` raises RuntimeError with the log's tail.
    """

    def __init__(
        self, binary: str, workdir: Path, extra_conf: str = "", *, timeout_s: float = 5.0
    ) -> None:
        self.binary = binary
        self.port = free_port()
        self.timeout_s = timeout_s
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # As root, mosquitto would drop to user "mosquitto", who cannot read workdir.
            "user root\n"
            "persistence false\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + (extra_conf or "allow_anonymous true\n")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not wait_listening(self.port, self.timeout_s):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port}: {self._tail()}")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def _tail(self) -> str:
        return self.log.read_text()[-500:] if self.log.exists() else ""
