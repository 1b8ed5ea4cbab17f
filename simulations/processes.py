"""Start and stop real edge server processes (for the demo, scenarios, benchmarks, tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
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
