"""`splitedge-sim record-telemetry` takes the edge's and the client's broker flags
(`--mqtt-username`, `--mqtt-password`, `--mqtt-tls-ca`); its older `--username`,
`--password`, `--tls-ca` still work, each with one deprecation line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _recording(secure_mosquitto, tmp_path: Path, flags: dict[str, str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Run the recorder against the TLS + password broker until it has subscribed (it
    can only subscribe logged in over TLS), stop it with SIGINT; its stderr lines."""
    argv = ["--broker", f"mqtts://127.0.0.1:{secure_mosquitto.port}"]
    argv += ["--out", str(tmp_path / "t.jsonl"), "--seconds", "60"]
    for flag, value in flags.items():
        argv += [flag, value]
    proc = subprocess.Popen(
        [sys.executable, "-m", "splitedge.simulations.cli", "record-telemetry", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "recording telemetry" in line:
                break
        assert any("recording telemetry" in line for line in lines), lines
    finally:
        proc.send_signal(2)  # SIGINT: a clean stop
        _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 0, [*lines, rest]
    return lines + rest.splitlines(keepends=True)


@pytest.mark.parametrize("old", [False, True], ids=["mqtt-flags", "older-names"])
def test_the_recorder_logs_in_over_tls_with_the_clients_broker_flags(
    secure_mosquitto, tmp_path: Path, old: bool
) -> None:  # type: ignore[no-untyped-def]
    new = {
        "--mqtt-username": "cam",
        "--mqtt-password": "s3cret",
        "--mqtt-tls-ca": str(secure_mosquitto.ca_file),
    }
    flags = {name.replace("--mqtt-", "--"): v for name, v in new.items()} if old else new
    lines = _recording(secure_mosquitto, tmp_path, flags)
    deprecated = [line.rstrip() for line in lines if "deprecated" in line]
    if old:
        assert len(deprecated) == 3, lines
        for name in new:
            older = name.replace("--mqtt-", "--")
            assert any(d.endswith(f"{older} is deprecated; write {name}") for d in deprecated)
    else:
        assert deprecated == [], lines
    assert not any("never reached the broker" in line for line in lines), lines
