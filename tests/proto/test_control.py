"""Control-plane schemas: topics, control validation, status and telemetry round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitedge.proto.control import (
    EDGE_STATUS_FILTER,
    FLEET_CONTROL_TOPIC,
    MAX_PAYLOAD_BYTES,
    BadTopicError,
    BranchLatency,
    ControlUpdate,
    EdgeStatus,
    MessageError,
    MissingKeyError,
    NotAnObjectError,
    NotJsonError,
    OutOfRangeError,
    PayloadTooLargeError,
    TelemetrySummary,
    UnknownKeyError,
    UnknownPolicyError,
    WrongTypeError,
    client_control_topic,
    client_telemetry_topic,
    edge_status_topic,
    encode_control,
    offline_status,
    parse_control,
    parse_status,
    parse_telemetry,
    server_id_from_topic,
)

# ------------------------------------------------------------------ topics


def test_topic_tree() -> None:
    assert edge_status_topic("edge-a") == "splitedge/v1/edge/edge-a/status"
    assert client_telemetry_topic("cam.1") == "splitedge/v1/client/cam.1/telemetry"
    assert client_control_topic("cam_1") == "splitedge/v1/client/cam_1/control"
    assert FLEET_CONTROL_TOPIC == "splitedge/v1/fleet/control"
    assert EDGE_STATUS_FILTER == "splitedge/v1/edge/+/status"
    assert server_id_from_topic(edge_status_topic("gpu-7")) == "gpu-7"


@pytest.mark.parametrize("bad_id", ["", "a/b", "+", "#", "edge a", "x" * 65, "é"])
def test_ids_with_wildcards_or_slashes_are_refused(bad_id: str) -> None:
    with pytest.raises(BadTopicError, match="not a valid id"):
        edge_status_topic(bad_id)


@pytest.mark.parametrize(
    "topic",
    ["splitedge/v1/edge/a/telemetry", "splitedge/v2/edge/a/status", "splitedge/v1/edge/status"],
)
def test_foreign_status_topics_are_refused(topic: str) -> None:
    with pytest.raises(BadTopicError, match="is not splitedge/v1/edge/<id>/status"):
        server_id_from_topic(topic)


# ----------------------------------------------------------------- control


def test_valid_control_message_parses() -> None:
    update = parse_control(
        b'{"v": 1, "sla_ms": 120, "accuracy_weight": 0.3, "latency_weight": 0.7,'
        b' "policy": "latency_first"}',
        "client",
    )
    assert update == ControlUpdate(
        scope="client",
        sla_ms=120.0,
        accuracy_weight=0.3,
        latency_weight=0.7,
        policy="latency_first",
    )
    assert update.settings() == {
        "sla_ms": 120.0,
        "accuracy_weight": 0.3,
        "latency_weight": 0.7,
        "policy": "latency_first",
    }


def test_control_round_trip() -> None:
    update = ControlUpdate(scope="fleet", sla_ms=80.0, policy="adaptive")
    assert parse_control(encode_control(update), "fleet") == update


@pytest.mark.parametrize(
    ("payload", "error", "reason"),
    [
        (b"sla_ms=100", NotJsonError, "is not JSON: Expecting value at char 0"),
        (b"\xff\xfe", NotJsonError, "is not UTF-8"),
        (b'{"sla_ms": NaN}', NotJsonError, "uses NaN"),
        (b'{"sla_ms": 1, "sla_ms": 2}', NotJsonError, "repeats key 'sla_ms'"),
        (b"[1, 2]", NotAnObjectError, "is a JSON array, expected an object"),
        (b'"fast"', NotAnObjectError, "is a JSON string, expected an object"),
        (b'{"sla": 100}', UnknownKeyError, "unknown key 'sla'"),
        (b'{"sla_ms": 100, "debug": true}', UnknownKeyError, "unknown key 'debug'"),
        (b"{}", MissingKeyError, "sets nothing"),
        (b'{"v": 1}', MissingKeyError, "sets nothing"),
        (b'{"sla_ms": "100"}', WrongTypeError, "'sla_ms' must be a number, got string"),
        (b'{"sla_ms": true}', WrongTypeError, "'sla_ms' must be a number, got boolean"),
        (b'{"policy": 3}', WrongTypeError, "'policy' must be a string, got number"),
        (b'{"accuracy_weight": null}', WrongTypeError, "must be a number, got null"),
        (b'{"sla_ms": 0}', OutOfRangeError, "'sla_ms' = 0 is outside [1, 60000]"),
        (b'{"sla_ms": 1e9}', OutOfRangeError, "is outside [1, 60000]"),
        (b'{"latency_weight": 1.5}', OutOfRangeError, "'latency_weight' = 1.5 is outside [0, 1]"),
        (b'{"accuracy_weight": -0.1}', OutOfRangeError, "is outside [0, 1]"),
        (
            b'{"accuracy_weight": 0, "latency_weight": 0}',
            OutOfRangeError,
            "cannot both be 0",
        ),
        (b'{"v": 2, "sla_ms": 50}', OutOfRangeError, "schema version 2 is not supported"),
        (b'{"policy": "yolo"}', UnknownPolicyError, "unknown policy 'yolo'; known policies:"),
    ],
)
def test_bad_control_messages_are_rejected_precisely(
    payload: bytes, error: type[MessageError], reason: str
) -> None:
    with pytest.raises(error) as info:
        parse_control(payload, "fleet")
    assert reason in str(info.value)
    assert str(info.value).startswith("fleet control message")
    assert "\n" not in str(info.value)


def test_oversize_control_payload_is_refused_before_parsing() -> None:
    payload = b'{"sla_ms": 100, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(PayloadTooLargeError, match="over the 65536-byte limit"):
        parse_control(payload, "client")


def test_caller_supplies_its_own_policy_names() -> None:
    assert parse_control(b'{"policy": "mine"}', "client", policies={"mine"}).policy == "mine"
    with pytest.raises(UnknownPolicyError, match="known policies: mine"):
        parse_control(b'{"policy": "adaptive"}', "client", policies={"mine"})


@given(st.dictionaries(st.text(max_size=12), st.none() | st.booleans() | st.text(max_size=5)))
def test_arbitrary_objects_never_escape_the_error_hierarchy(obj: dict) -> None:
    payload = json.dumps(obj).encode()
    try:
        update = parse_control(payload, "fleet")
    except MessageError:
        return
    # Only a lone known policy name can get through with these value types.
    assert update.policy is not None


# ------------------------------------------------------------------ status


def _status(**overrides: object) -> EdgeStatus:
    fields = {
        "server_id": "edge-a",
        "online": True,
        "timestamp": 1_732_470_000.5,
        "address": "10.0.0.5:50051",
        "models": {"echo": ("offload-jpeg", "split-8b")},
        "queue_depth": 3,
        "queue_capacity": 64,
        "tail_ms": {"echo": {"split-8b": BranchLatency(4.0, 7.5)}},
        "device": "cuda:0",
        "load": 0.4,
        "queue_wait_ms": 12.5,
    }
    fields.update(overrides)
    return EdgeStatus(**fields)  # type: ignore[arg-type]


def test_status_round_trip() -> None:
    status = _status()
    assert parse_status(status.encode(), edge_status_topic("edge-a")) == status


def test_status_round_trip_without_optional_fields() -> None:
    status = _status(queue_wait_ms=None, tail_ms={}, device="", load=0.0)
    assert parse_status(status.encode(), edge_status_topic("edge-a")) == status


def test_status_round_trip_with_replicas() -> None:
    tails = {"echo": {"split-8b": BranchLatency(4.0, 7.5, replicas=3)}}
    status = _status(tail_ms=tails)
    wire = json.loads(status.encode())
    assert wire["tail_ms"] == {"echo": {"split-8b": {"p50": 4.0, "p95": 7.5, "replicas": 3}}}
    parsed = parse_status(status.encode(), edge_status_topic("edge-a"))
    assert parsed == status
    # The device reads it where the Status RPC puts it; the unmeasured branch has none.
    loads = {b.branch: b.replicas for b in parsed.server_status().branches}
    assert loads == {"split-8b": 3, "offload-jpeg": 0}


def test_status_without_replicas_still_parses_as_not_reported() -> None:
    obj = json.loads(_status().encode())
    obj["tail_ms"] = {"echo": {"split-8b": {"p50": 4.0, "p95": 7.5}}}  # an older server's
    parsed = parse_status(json.dumps(obj).encode(), edge_status_topic("edge-a"))
    assert parsed.tail_ms["echo"]["split-8b"] == BranchLatency(4.0, 7.5, replicas=0)
    assert all(b.replicas == 0 for b in parsed.server_status().branches)
    # And an unreported count is not written out as 0 (which the parser would refuse).
    assert "replicas" not in json.loads(parsed.encode())["tail_ms"]["echo"]["split-8b"]


def test_offline_status_round_trip() -> None:
    offline = offline_status("edge-a", 1_732_470_001.0, "shutdown")
    parsed = parse_status(offline.encode(), edge_status_topic("edge-a"))
    assert parsed == offline
    assert parsed.online is False
    assert json.loads(offline.encode()) == {
        "v": 1,
        "server_id": "edge-a",
        "online": False,
        "timestamp": 1_732_470_001.0,
        "reason": "shutdown",
    }


def test_status_tolerates_unknown_keys() -> None:
    obj = json.loads(_status().encode())
    obj["gpu_temp_c"] = 61
    parsed = parse_status(json.dumps(obj).encode(), edge_status_topic("edge-a"))
    assert parsed == _status()


def test_status_on_another_servers_topic_is_refused() -> None:
    with pytest.raises(BadTopicError, match="for server 'edge-a' was published on"):
        parse_status(_status().encode(), edge_status_topic("edge-b"))


@pytest.mark.parametrize(
    ("mutate", "error", "reason"),
    [
        (lambda o: o.pop("queue_depth"), MissingKeyError, "missing required key 'queue_depth'"),
        (lambda o: o.pop("v"), MissingKeyError, "missing required key 'v'"),
        (lambda o: o.update(online="yes"), WrongTypeError, "'online' must be a boolean"),
        (lambda o: o.update(queue_depth=2.5), WrongTypeError, "must be an integer"),
        (lambda o: o.update(queue_capacity=0), OutOfRangeError, "'queue_capacity' = 0"),
        (lambda o: o.update(load=3), OutOfRangeError, "'load' = 3 is outside [0, 1]"),
        (lambda o: o.update(models={"echo": "split-8b"}), WrongTypeError, "array of branch"),
        (
            lambda o: o.update(tail_ms={"echo": {"split-8b": {"p50": 1}}}),
            MissingKeyError,
            "tail_ms.echo.split-8b: missing required key 'p95'",
        ),
        (
            lambda o: o.update(tail_ms={"echo": {"split-8b": {"p50": 30, "p95": 20}}}),
            OutOfRangeError,
            "tail_ms.echo.split-8b: 'p95' = 20 is outside [30, 1e+09]",
        ),
        *[
            (
                lambda o, bad=bad: o.update(
                    tail_ms={"echo": {"split-8b": {"p50": 1, "p95": 2, "replicas": bad}}}
                ),
                error,
                f"edge status: tail_ms.echo.split-8b: 'replicas' {reason}",
            )
            for bad, error, reason in [
                ("2", WrongTypeError, "must be a number, got string"),
                (None, WrongTypeError, "must be a number, got null"),
                (True, WrongTypeError, "must be a number, got boolean"),
                (1.5, WrongTypeError, "must be an integer, got 1.5"),
                (0, OutOfRangeError, "= 0 is outside [1, 1e+09]"),
                (-2, OutOfRangeError, "= -2 is outside [1, 1e+09]"),
            ]
        ],
    ],
)
def test_bad_status_is_rejected_precisely(mutate, error, reason) -> None:  # type: ignore[no-untyped-def]
    obj = json.loads(_status().encode())
    mutate(obj)
    with pytest.raises(error) as info:
        parse_status(json.dumps(obj).encode(), edge_status_topic("edge-a"))
    assert reason in str(info.value)


# --------------------------------------------------------------- telemetry


def test_telemetry_round_trip() -> None:
    summary = TelemetrySummary(
        client_id="cam-1",
        timestamp=1_732_470_002.0,
        frames=30,
        window_s=1.0,
        branch_mix={"split-8b": 25, "local": 5},
        source_mix={"edge": 24, "local": 5, "dropped": 1},
        latency_ms={"p50": 40.0, "p95": 90.0, "p99": 99.0},
        sla_misses=2,
        bandwidth_mbps={"mean": 12.0, "last": 10.0},
        drop_reasons={"deadline": 1},
        sla_ms=100.0,
    )
    topic = client_telemetry_topic("cam-1")
    assert parse_telemetry(summary.encode(), topic) == summary
    with pytest.raises(BadTopicError, match="telemetry of client 'cam-1'"):
        parse_telemetry(summary.encode(), client_telemetry_topic("cam-2"))
    obj = json.loads(summary.encode())
    obj["sla_misses"] = -1
    with pytest.raises(OutOfRangeError, match="'sla_misses' = -1"):
        parse_telemetry(json.dumps(obj).encode(), topic)
