"""A second edge server on a port in use is refused (grpc's SO_REUSEPORT default would
let it bind and silently take a share of the first one's connections)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from splitedge.mobile_client import Client, open_source

pytestmark = pytest.mark.integration


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splitedge.edge.cli", "serve", "--host", "127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _error_lines(stderr: str) -> list[str]:
    """stderr without the log lines (``... INFO splitedge...: ...``) a start writes."""
    return [line for line in stderr.splitlines() if " INFO " not in line]


async def _served(address: str) -> str:
    frame = next(open_source("synthetic", max_frames=1, size=(32, 32)))
    async with Client(address, "echo") as client:
        return (await client.submit(frame, "offload-jpeg90")).source


async def test_second_server_on_a_taken_port_exits_with_one_line(edge_factory):
    first = edge_factory("--model", "echo", "--metrics-port", "0")
    metrics_port = next(
        int(line.rsplit(":", 1)[1].split("/")[0])
        for line in first.output
        if line.startswith("splitedge-edge metrics on")
    )

    second = _serve("--model", "echo", "--port", str(first.port))
    assert second.returncode == 1
    assert "listening" not in second.stdout
    assert _error_lines(second.stderr) == [
        f"splitedge-edge: error: cannot listen on 127.0.0.1:{first.port} (gRPC): "
        "Address already in use"
    ]

    third = _serve("--model", "echo", "--port", "0", "--metrics-port", str(metrics_port))
    assert third.returncode == 1
    assert "listening" not in third.stdout
    assert _error_lines(third.stderr) == [
        f"splitedge-edge: error: cannot listen on 127.0.0.1:{metrics_port} (metrics): "
        "Address already in use"
    ]

    assert await _served(first.address) == "edge"
    assert first.proc is not None and first.proc.poll() is None
