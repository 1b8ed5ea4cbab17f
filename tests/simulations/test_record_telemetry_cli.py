"""`splitedge-sim record-telemetry` says so when it never reached its broker."""

from __future__ import annotations

import socket
from pathlib import Path

from splitedge.simulations.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_an_unreachable_broker_is_reported_not_silent(capsys, tmp_path: Path):
    port = _closed_port()
    out = tmp_path / "t.jsonl"
    argv = ["record-telemetry", "--broker", f"mqtt://127.0.0.1:{port}", "--out", str(out)]
    assert main([*argv, "--seconds", "1"]) == 0  # waiting for a broker is by design
    err = capsys.readouterr().err
    assert f"warning: never reached the broker at mqtt://127.0.0.1:{port}" in err
    assert "recorded 0 telemetry summaries" in err
