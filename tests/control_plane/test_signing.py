"""Signed envelopes: what a keyed receiver accepts and what it refuses (no broker needed;
the real-broker cases are in tests/integration/mqtt/test_signed_plane.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from splitedge.control_plane.signing import (
    FleetKey,
    RejectLog,
    SignatureError,
    Signer,
    Verifier,
    load_key_file,
    main,
)
from splitedge.proto.control import client_control_topic, edge_status_topic

T0 = 1_732_470_000.0
KEY = FleetKey(b"0123456789abcdef0123456789abcdef")
TOPIC = client_control_topic("cam-1")


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _refused(verifier: Verifier, topic: str, payload: bytes, **kw: bool) -> str:
    with pytest.raises(SignatureError) as info:
        verifier.open(topic, payload, **kw)
    return str(info.value)


def test_a_signed_message_opens_to_its_body_and_only_once() -> None:
    clock = Clock()
    envelope = Signer(KEY, clock=clock).sign(TOPIC, b'{"sla_ms": 80}')
    verifier = Verifier(KEY, clock=clock)
    assert json.loads(verifier.open(TOPIC, envelope)) == {"sla_ms": 80}
    assert "replayed" in _refused(verifier, TOPIC, envelope)


def test_unsigned_forged_tampered_and_misdirected_messages_are_refused() -> None:
    clock = Clock()
    signer = Signer(KEY, clock=clock)
    verifier = Verifier(KEY, clock=clock)
    assert "unsigned" in _refused(verifier, TOPIC, b'{"sla_ms": 1}')
    other = Signer(FleetKey(b"another key of the fleet, wrong"), clock=clock)
    assert "key id" in _refused(verifier, TOPIC, other.sign(TOPIC, b'{"sla_ms": 1}'))
    envelope = json.loads(signer.sign(TOPIC, b'{"sla_ms": 80}'))
    envelope["body"]["sla_ms"] = 1
    assert "bad signature" in _refused(verifier, TOPIC, json.dumps(envelope).encode())
    for_cam2 = signer.sign(client_control_topic("cam-2"), b'{"sla_ms": 1}')
    assert "bad signature" in _refused(verifier, TOPIC, for_cam2)
    assert "not UTF-8" in _refused(verifier, TOPIC, b"\xff")
    envelope = json.loads(signer.sign(TOPIC, b'{"sla_ms": 80}'))
    del envelope["seq"]
    assert "lacks 'seq'" in _refused(verifier, TOPIC, json.dumps(envelope).encode())


def test_stale_future_and_out_of_order_messages_are_refused() -> None:
    clock = Clock()
    verifier = Verifier(KEY, clock=clock, max_age_s=60)
    old = Signer(KEY, clock=Clock(T0 - 61)).sign(TOPIC, b'{"sla_ms": 1}')
    assert "stale retained message: signed 61 s ago" in _refused(
        verifier, TOPIC, old, retained=True
    )
    ahead = Signer(KEY, clock=Clock(T0 + 120)).sign(TOPIC, b'{"sla_ms": 1}')
    assert "in the future" in _refused(verifier, TOPIC, ahead)
    signer = Signer(KEY, clock=clock)
    first = signer.sign(TOPIC, b'{"sla_ms": 70}')
    second = signer.sign(TOPIC, b'{"sla_ms": 80}')
    verifier.open(TOPIC, second)
    assert "out of order: seq 0 after 1" in _refused(verifier, TOPIC, first)


def test_a_stale_last_will_counts_once_and_only_for_the_session_seen_last() -> None:
    topic = edge_status_topic("edge-a")
    clock = Clock()
    edge = Signer(KEY, clock=clock)
    will = edge.sign(topic, b'{"server_id": "edge-a", "online": false}', will=True)
    earlier_run = Signer(KEY, clock=clock)
    old_will = earlier_run.sign(topic, b'{"server_id": "edge-a", "online": false}', will=True)
    clock.t += 3600  # the edge ran an hour, re-signing its presence every second
    verifier = Verifier(KEY, clock=clock)
    verifier.open(topic, edge.sign(topic, b'{"server_id": "edge-a", "online": true}'))
    assert "stale last will" in _refused(verifier, topic, old_will)
    assert json.loads(verifier.open(topic, will))["online"] is False
    assert "replayed" in _refused(verifier, topic, will)


def test_key_files_need_enough_bytes_and_name_the_flag(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("tooshort\n")
    with pytest.raises(ValueError, match=r"^--mqtt-key-file: .*8 bytes, need at least 16"):
        load_key_file(short)
    with pytest.raises(ValueError, match="cannot read"):
        load_key_file(tmp_path / "absent.key")
    good = tmp_path / "fleet.key"
    good.write_text(KEY.secret.decode() + "\n")
    assert load_key_file(good) == KEY  # trailing newline stripped


def test_refusals_are_rate_limited_per_topic(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    refused = RejectLog(logging.getLogger("t"), "control message", every_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(5):
            refused(TOPIC, SignatureError("unsigned message"))
        clock.t = 11
        refused(TOPIC, SignatureError("unsigned message"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[1].endswith("(4 more refused since the last line)")


def test_the_signing_command_prints_an_envelope_a_device_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "fleet.key"
    key_file.write_bytes(KEY.secret)
    assert main(["--key-file", str(key_file), "--topic", TOPIC, '{"sla_ms": 80}']) == 0
    envelope = capsys.readouterr().out.strip().encode()
    assert json.loads(Verifier(KEY).open(TOPIC, envelope)) == {"sla_ms": 80}
    assert main(["--key-file", str(key_file), "--topic", TOPIC, "[1]"]) == 2
    assert "expected an object" in capsys.readouterr().err
