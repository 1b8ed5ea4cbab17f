"""`splitedge-sim record-telemetry` says so when it never reached its broker."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

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


def _refused(capsys, tmp_path: Path, *flags: str) -> str:  # type: ignore[no-untyped-def]
    argv = ["record-telemetry", "--broker", "mqtt://127.0.0.1:1883", "--out", str(tmp_path / "t")]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("splitedge-sim: error: "), err
    return err[-1].removeprefix("splitedge-sim: error: ")


def test_broker_flags_are_checked_and_named_as_given(capsys, tmp_path: Path):
    # The client's spellings; the older ones are named as typed (no broker is reached).
    assert _refused(capsys, tmp_path, "--mqtt-tls-ca", "/no/ca.pem") == (
        "--mqtt-tls-ca: file '/no/ca.pem' does not exist"
    )
    assert _refused(capsys, tmp_path, "--tls-ca", "/no/ca.pem") == (
        "--tls-ca: file '/no/ca.pem' does not exist"
    )
    assert _refused(capsys, tmp_path, "--mqtt-password", "x") == (
        "--mqtt-password needs --mqtt-username"
    )
    assert _refused(capsys, tmp_path, "--password", "x") == "--password needs --mqtt-username"


def test_a_flag_and_its_older_name_together_are_refused(capsys, tmp_path: Path):
    argv = ["record-telemetry", "--broker", "mqtt://127.0.0.1:1883", "--out", str(tmp_path / "t")]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--mqtt-username", "a", "--username", "b"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
