"""Fleet session pieces without a broker: telemetry records, CLI flag errors.

Broker addresses themselves: tests/control_plane/test_address.py.
"""

from __future__ import annotations

import re

import pytest

from splitedge.control_plane.link import BrokerConfig
from splitedge.mobile_client.cli import main
from splitedge.mobile_client.fleet import FleetSession, default_client_id, frame_record
from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.proto.control import BadTopicError


def test_default_client_id_is_a_valid_topic_id():
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", default_client_id())


def _outcome(source: str, reason: str = "", total_ms: float = 50.0) -> FrameOutcome:
    timing = FrameTiming(total_ms=total_ms, network_ms=8.0 if source == "edge" else 0.0)
    return FrameOutcome(0, "split@x", source, reason, None, timing, payload_bytes=10_000)  # type: ignore[arg-type]


def test_frame_records_name_where_the_result_came_from():
    edge = frame_record(_outcome("edge"), sla_ms=100)
    assert (edge.branch, edge.latency_ms, edge.sla_miss) == ("split@x", 50.0, False)
    assert edge.bandwidth_mbps == pytest.approx(10_000 * 8 / 8_000)  # 10 kB in 8 ms = 10 Mbps
    late = frame_record(_outcome("local", "deadline", total_ms=150), sla_ms=100)
    assert (late.branch, late.sla_miss, late.bandwidth_mbps) == ("local", True, None)
    dropped = frame_record(_outcome("dropped", "edge-unavailable"), sla_ms=None)
    assert (dropped.branch, dropped.latency_ms, dropped.sla_miss) == ("none", None, True)
    assert dropped.drop_reason == "edge-unavailable"
    filtered = frame_record(_outcome("dropped", "prefiltered"), sla_ms=100)
    assert not filtered.sla_miss  # nothing to detect is not a missed deadline


async def test_session_refuses_bad_ids_and_counts():
    with pytest.raises(BadTopicError, match="client_id 'cam/1' is not a valid id"):
        FleetSession(BrokerConfig(), "echo", "cam/1")
    with pytest.raises(ValueError, match="telemetry_every must be >= 0"):
        FleetSession(BrokerConfig(), "echo", "cam-1", telemetry_every=-1)


BASE = ["run", "--model", "echo", "--branch", "offload-jpeg90", "--backend", "none"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--discover", "mqtt://b:1", "--broker", "mqtt://b:1"],
            "--broker is for --server; --discover already names the broker",
        ),
        (
            ["--discover", "http://b:1883"],
            "--discover 'http://b:1883': scheme http:// is not mqtt:// or mqtts://",
        ),
        (["--server", "h:1", "--broker", "mqtt://b:0"], "--broker 'mqtt://b:0': port 0 is not"),
        (["--discover", "b:x"], "--discover 'b:x': expected mqtt://HOST:PORT (mqtts:// for TLS)"),
        (["--server", "h:1", "--client-id", "cam"], "--client-id needs --discover or --broker"),
        (["--server", "h:1", "--mqtt-tls-ca", "ca.pem"], "--mqtt-tls-ca needs --discover"),
        (["--discover", "mqtt://b", "--telemetry-every", "-1"], "--telemetry-every must be >= 0"),
        (["--discover", "mqtt://b", "--discover-timeout-s", "0"], "--discover-timeout-s must be"),
        (["--discover", "mqtt://b", "--discover-timeout-s", "nan"], "--discover-timeout-s must"),
        (["--discover", "mqtt://b", "--mqtt-password", "pw"], "--mqtt-password needs"),
        (["--discover", "mqtt://b", "--client-id", "a/b"], "--client-id: client_id 'a/b' is not"),
        (["--discover", "mqtt://b", "--mqtt-tls-ca", "/no/ca.pem"], "--mqtt-tls-ca: '/no/ca"),
        (["--discover", "mqtt://b", "--mqtt-tls-ca", "/"], "--mqtt-tls-ca: '/' is a directory"),
        (["--server", "h:1", "--mqtt-key-file", "k"], "--mqtt-key-file needs --discover"),
        (["--discover", "mqtt://b", "--mqtt-key-file", "/no/k"], "--mqtt-key-file: cannot read"),
        (["--discover", "mqtt://b", "--mqtt-key-file", "/"], "--mqtt-key-file: '/' is a direc"),
    ],
)
def test_cli_mqtt_flag_errors_exit_2_with_one_line(capsys, flags, expected):
    assert main([*BASE, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"splitedge-client: error: {expected}"), err
    assert err.count("\n") == 1


def test_cli_wants_exactly_one_of_server_and_discover(capsys):
    with pytest.raises(SystemExit) as info:
        main([*BASE, "--server", "h:1", "--discover", "mqtt://b"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    # Neither: the config file may still name the server, so the check comes after it.
    assert main(BASE) == 2
    assert capsys.readouterr().err == (
        "splitedge-client: error: give --server HOST:PORT or --discover mqtt://HOST:PORT "
        "(or server in --config)\n"
    )


def test_cli_reports_an_unreachable_broker(capsys):
    # Port 1 on loopback refuses at once: the wait ends with a reason, not a hang.
    code = main([*BASE, "--discover", "mqtt://127.0.0.1:1", "--discover-timeout-s", "0.5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "broker mqtt://127.0.0.1:1 not reachable within 0.5 s" in err


def test_cli_takes_the_old_bare_broker_spelling_with_a_deprecation_line(capsys, caplog):
    # Port 1 on loopback refuses at once; what matters is that the address was taken.
    code = main([*BASE, "--discover", "127.0.0.1:1", "--discover-timeout-s", "0.5"])
    assert code == 2
    assert "broker mqtt://127.0.0.1:1 not reachable within 0.5 s" in capsys.readouterr().err
    deprecations = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert deprecations == [
        "--discover '127.0.0.1:1': a bare HOST:PORT is deprecated; write mqtt://127.0.0.1:1"
    ]
