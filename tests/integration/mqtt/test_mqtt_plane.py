"""The MQTT plane against a real mosquitto (and the embedded amqtt broker).

Presence (retained status, last will on SIGKILL and on a hung process, explicit
offline), discovery failover, live control, telemetry recording, and the link's
reconnect across a broker restart.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from splitedge.control_plane.broker import EmbeddedBroker
from splitedge.control_plane.control import ControlSettings, ControlSubscriber
from splitedge.control_plane.discovery import Discovery, ServerState
from splitedge.control_plane.link import BrokerConfig, MqttLink, Subscription
from splitedge.control_plane.publisher import StatusPublisher
from splitedge.control_plane.telemetry import FrameRecord, TelemetryPublisher, TelemetryRecorder
from splitedge.proto.control import (
    EDGE_STATUS_FILTER,
    FLEET_CONTROL_TOPIC,
    ControlUpdate,
    EdgeStatus,
    client_control_topic,
    edge_status_topic,
    parse_status,
)

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.timeout(60)]


def _config(port: int, client_id: str, **overrides: object) -> BrokerConfig:
    return BrokerConfig(
        port=port,
        client_id=client_id,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
        **overrides,  # type: ignore[arg-type]
    )


def _provider(depth: int = 2) -> dict:
    return {
        "address": "127.0.0.1:50051",
        "models": {"echo": ["offload-png", "split-8b"]},
        "queue_depth": depth,
        "queue_capacity": 32,
        "tail_ms": {"echo": {"split-8b": {"p50": 3.0, "p95": 6.0}}},
        "device": "cpu",
        "load": 0.25,
    }


async def _next_status(
    sub: Subscription, accept: Callable[[EdgeStatus], bool], timeout_s: float = 10.0
) -> tuple[EdgeStatus, bool]:
    """The next status on ``sub`` that ``accept`` likes, with its retain flag."""
    deadline = time.monotonic() + timeout_s
    while (left_s := deadline - time.monotonic()) > 0:
        message = await sub.get(timeout_s=left_s)
        if message is None:
            break
        status = parse_status(message.payload, message.topic)
        if accept(status):
            return status, message.retain
    raise AssertionError("no matching status arrived in time")


async def test_retained_status_reaches_a_late_subscriber(mosquitto) -> None:  # type: ignore[no-untyped-def]
    publisher = StatusPublisher(_config(mosquitto.port, "edge-pub"), "edge-a", _provider, 0.2)
    async with publisher:
        assert await publisher.link.wait_connected(5)
        while publisher.published_count == 0:
            await asyncio.sleep(0.02)
        # Subscribe only now: the broker hands over the retained state at once.
        async with MqttLink(_config(mosquitto.port, "late")) as link:
            status, retained = await _next_status(link.subscribe(EDGE_STATUS_FILTER), bool)
    assert retained is True
    assert status.server_id == "edge-a" and status.online is True
    assert status.queue_depth == 2 and status.queue_capacity == 32
    assert status.models == {"echo": ("offload-png", "split-8b")}
    assert status.tail_ms["echo"]["split-8b"].p95_ms == 6.0
    assert abs(status.timestamp - time.time()) < 10


async def test_clean_shutdown_publishes_explicit_offline(mosquitto) -> None:  # type: ignore[no-untyped-def]
    async with StatusPublisher(_config(mosquitto.port, "p"), "edge-a", _provider, 0.2) as pub:
        assert await pub.link.wait_connected(5)
        while pub.published_count == 0:
            await asyncio.sleep(0.02)
    async with MqttLink(_config(mosquitto.port, "late")) as link:
        status, retained = await _next_status(link.subscribe(EDGE_STATUS_FILTER), bool)
    assert retained is True
    assert status.online is False
    assert status.reason == "shutdown"  # not "connection lost": no will fired


async def test_last_will_marks_a_killed_publisher_offline(mosquitto, spawn_publisher) -> None:  # type: ignore[no-untyped-def]
    child = spawn_publisher(mosquitto.port, "edge-k")
    await asyncio.to_thread(child.wait_published)
    async with MqttLink(_config(mosquitto.port, "watcher")) as link:
        sub = link.subscribe(edge_status_topic("edge-k"))
        await _next_status(sub, lambda s: s.online)
        child.signal(signal.SIGKILL)
        offline, _ = await _next_status(sub, lambda s: not s.online, timeout_s=10)
    assert offline.reason == "connection lost"
    # A device arriving later sees the will's retained offline state.
    async with MqttLink(_config(mosquitto.port, "later")) as link:
        status, retained = await _next_status(link.subscribe(EDGE_STATUS_FILTER), bool)
    assert retained and status.online is False and status.reason == "connection lost"


async def test_hung_publisher_goes_offline_after_keepalive(mosquitto, spawn_publisher) -> None:  # type: ignore[no-untyped-def]
    # SIGSTOP keeps the socket open: only the 2 s keepalive can reveal the hang.
    child = spawn_publisher(mosquitto.port, "edge-h")
    await asyncio.to_thread(child.wait_published)
    async with MqttLink(_config(mosquitto.port, "watcher")) as link:
        sub = link.subscribe(edge_status_topic("edge-h"))
        await _next_status(sub, lambda s: s.online)
        child.signal(signal.SIGSTOP)
        started_s = time.monotonic()
        offline, _ = await _next_status(sub, lambda s: not s.online, timeout_s=10)
        waited_s = time.monotonic() - started_s
    assert offline.reason == "connection lost"
    # 1.5 keepalives = 3 s at least; mosquitto 2.0 checks in coarse steps (~5 s measured).
    assert 2.5 < waited_s < 9.0


async def test_discovery_fails_over_when_the_chosen_server_dies(mosquitto, spawn_publisher) -> None:  # type: ignore[no-untyped-def]
    busy = spawn_publisher(mosquitto.port, "edge-busy", queue_depth=8)
    idle = spawn_publisher(mosquitto.port, "edge-idle", queue_depth=0)
    await asyncio.gather(
        asyncio.to_thread(busy.wait_published), asyncio.to_thread(idle.wait_published)
    )
    moves: list[tuple[str | None, str | None]] = []
    failed_over = asyncio.Event()

    def on_failover(model: str, old: ServerState | None, new: ServerState | None) -> None:
        moves.append((old.server_id if old else None, new.server_id if new else None))
        failed_over.set()

    async with MqttLink(_config(mosquitto.port, "device")) as link:
        discovery = Discovery(link, stale_after_s=3.0, on_failover=on_failover)
        runner = asyncio.create_task(discovery.run())
        try:
            while len([s for s in discovery.servers() if s.online]) < 2:
                assert await discovery.wait_for_change(10)
            chosen = discovery.select("echo")
            assert chosen is not None and chosen.server_id == "edge-idle"
            assert chosen.queue_ms_estimate == 0.0
            busy_state = discovery.state("edge-busy")
            assert busy_state is not None and busy_state.queue_ms_estimate == pytest.approx(16.0)
            idle.signal(signal.SIGKILL)
            await asyncio.wait_for(failed_over.wait(), 10)
        finally:
            runner.cancel()
    assert moves == [("edge-idle", "edge-busy")]
    fallback = discovery.select("echo")
    assert fallback is not None and fallback.server_id == "edge-busy"
    assert fallback.address == "127.0.0.1:50008"


async def test_control_update_applies_and_malformed_changes_nothing(mosquitto) -> None:  # type: ignore[no-untyped-def]
    updates: asyncio.Queue[ControlUpdate] = asyncio.Queue()
    async with (
        MqttLink(_config(mosquitto.port, "cam-1")) as device,
        MqttLink(_config(mosquitto.port, "operator")) as operator,
    ):
        control = ControlSubscriber(device, "cam-1", updates.put_nowait)
        runner = asyncio.create_task(control.run())
        try:
            assert await device.wait_connected(5) and await operator.wait_connected(5)
            await asyncio.sleep(0)  # let run() register its subscriptions
            assert await device.wait_subscribed(5)
            own = client_control_topic("cam-1")
            await operator.publish(FLEET_CONTROL_TOPIC, b'{"sla_ms": 120, "policy": "adaptive"}', 1)
            first = await asyncio.wait_for(updates.get(), 5)
            assert first == ControlUpdate(scope="fleet", sla_ms=120.0, policy="adaptive")
            await operator.publish(own, b'{"sla_ms": 50, "policy": "warp"}', qos=1)
            await operator.publish(own, b'{"latency_weight": 0.8}', qos=1)
            # Messages on one topic arrive in order: the bad one was handled before this.
            second = await asyncio.wait_for(updates.get(), 5)
        finally:
            runner.cancel()
    assert second == ControlUpdate(scope="client", latency_weight=0.8)
    assert control.rejected_count == 1 and "unknown policy 'warp'" in (control.last_error or "")
    assert control.settings == ControlSettings(sla_ms=120.0, latency_weight=0.8, policy="adaptive")
    assert updates.empty()


async def test_telemetry_summaries_are_recorded_as_json_lines(mosquitto, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "telemetry.jsonl"
    async with (
        MqttLink(_config(mosquitto.port, "recorder")) as rec_link,
        MqttLink(_config(mosquitto.port, "cam-2")) as cam_link,
    ):
        recorder = TelemetryRecorder(rec_link, path)
        runner = asyncio.create_task(recorder.run())
        try:
            assert await cam_link.wait_connected(5) and await rec_link.wait_connected(5)
            await asyncio.sleep(0)  # let run() register its subscription
            assert await rec_link.wait_subscribed(5)
            telemetry = TelemetryPublisher(cam_link, "cam-2", every_n_frames=4, sla_ms=30.0)
            summaries = []
            for i in range(8):
                latency_ms = 10.0 + 10 * i
                record = FrameRecord("split-8b", "edge", latency_ms, latency_ms > 30.0, 15.0)
                summary = telemetry.record(record)
                if summary is not None:
                    summaries.append(summary)
            await telemetry.flush()
            deadline = time.monotonic() + 5
            while recorder.recorded_count < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            runner.cancel()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["summary"] for line in lines] == [s.to_dict() for s in summaries]
    assert [line["summary"]["sla_misses"] for line in lines] == [1, 4]


async def test_link_survives_a_broker_restart(mosquitto) -> None:  # type: ignore[no-untyped-def]
    async with (
        MqttLink(_config(mosquitto.port, "pub")) as pub,
        MqttLink(_config(mosquitto.port, "sub")) as sub_link,
    ):
        sub = sub_link.subscribe("splitedge/v1/test/#")
        assert await sub.wait_subscribed(5)
        # The links connect in the background; publish only once this one is up.
        assert await pub.wait_connected(5)
        assert await pub.publish("splitedge/v1/test/a", b"before", qos=1)
        assert (await sub.get(5)).payload == b"before"  # type: ignore[union-attr]

        mosquitto.stop()
        while pub.connected or sub_link.connected:
            await asyncio.sleep(0.02)
        # The data path neither blocks nor raises while the broker is away.
        started_s = time.monotonic()
        assert await pub.publish("splitedge/v1/test/a", b"dropped", qos=1) is False
        assert await pub.publish("splitedge/v1/test/state", b"old", qos=1, retain=True) is False
        assert await pub.publish("splitedge/v1/test/state", b"latest", qos=1, retain=True) is False
        assert time.monotonic() - started_s < 0.5
        assert pub.dropped_count == 1

        mosquitto.start()  # same port
        assert await pub.wait_connected(10) and await sub_link.wait_connected(10)
        assert await sub.wait_subscribed(5)  # re-subscribed by the link itself
        got = await sub.get(5)
        # The held retained state (latest only) was flushed on reconnect.
        assert got is not None and (got.topic, got.payload) == (
            "splitedge/v1/test/state",
            b"latest",
        )
        assert await pub.publish("splitedge/v1/test/a", b"after", qos=1)
        got = await sub.get(5)
        assert got is not None and got.payload == b"after"
        assert pub.connect_count == 2 and sub_link.connect_count == 2


@pytest.mark.parametrize("mode", ["inprocess", "subprocess"])
async def test_embedded_broker_with_retained_status_and_will(mode: str, spawn_publisher) -> None:  # type: ignore[no-untyped-def]
    async with EmbeddedBroker(port=0, mode=mode) as broker:
        assert broker.port > 0
        child = spawn_publisher(broker.port, "edge-e")
        await asyncio.to_thread(child.wait_published)
        async with MqttLink(broker.link_config(client_id="late")) as link:
            sub = link.subscribe(EDGE_STATUS_FILTER)
            status, retained = await _next_status(sub, bool)
            assert retained and status.online and status.server_id == "edge-e"
            child.signal(signal.SIGKILL)
            offline, _ = await _next_status(sub, lambda s: not s.online, timeout_s=10)
        assert offline.reason == "connection lost"


async def test_tls_with_username_and_password(secure_mosquitto) -> None:  # type: ignore[no-untyped-def]
    ca = str(secure_mosquitto.ca_file)
    good = _config(secure_mosquitto.port, "tls-ok", username="cam", password="s3cret", tls_ca=ca)
    async with MqttLink(good) as link:
        assert await link.wait_connected(5)
        sub = link.subscribe("splitedge/v1/test/tls")
        assert await sub.wait_subscribed(5)
        assert await link.publish("splitedge/v1/test/tls", b"secret hello", qos=1)
        got = await sub.get(5)
        assert got is not None and got.payload == b"secret hello"
    wrong = _config(secure_mosquitto.port, "tls-bad", username="cam", password="nope", tls_ca=ca)
    # Plain MQTT to a TLS port gets no CONNACK: a short connect timeout keeps aclose quick.
    plain = _config(
        secure_mosquitto.port, "plain", username="cam", password="s3cret", connect_timeout_s=1.0
    )
    for config in (wrong, plain):
        async with MqttLink(config) as link:
            # Refused: the link keeps retrying in the background and never raises.
            assert not await link.wait_connected(1.0)
            assert await link.publish("splitedge/v1/test/tls", b"x") is False
