"""The MQTT plane under attack, through a real mosquitto (and real edge processes).

Anyone who may publish on a broker used to be able to set a device's SLA to 1 ms
and, with a fake presence plus a spoofed ``online: false`` for the real edge, draw
its frames to a rogue server. With a fleet key (docs/mqtt.md, "Signed messages")
those messages change nothing and are logged; with broker ACLs
(configs/mosquitto/acl) a device cannot even publish on another's control topic.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from splitedge.control_plane.link import BrokerConfig, MqttLink
from splitedge.control_plane.signing import FleetKey, Signer
from splitedge.edge.auth import hash_token
from splitedge.mobile_client import Client
from splitedge.mobile_client.fleet import FleetSession, NoServerError
from splitedge.proto.control import (
    EDGE_STATUS_FILTER,
    EdgeStatus,
    client_control_topic,
    edge_status_topic,
    offline_status,
)
from splitedge.simulations.processes import EdgeProcess, Mosquitto, mosquitto_binary

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[3]
SECRET = b"fleet-secret-0123456789abcdef-xyz"
KEY = FleetKey(SECRET)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.key"
    path.write_bytes(SECRET + b"\n")
    return path


@pytest.fixture
def edges() -> Iterator[Callable[..., EdgeProcess]]:
    started: list[EdgeProcess] = []

    def start(*args: str) -> EdgeProcess:
        edge = EdgeProcess(list(args)).start()
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.kill()


def _broker(port: int, client_id: str, **login: str) -> BrokerConfig:
    return BrokerConfig(
        port=port, client_id=client_id, reconnect_min_s=0.05, reconnect_max_s=0.5, **login
    )


async def _until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _presence(server_id: str, address: str) -> bytes:
    return EdgeStatus(
        server_id=server_id,
        online=True,
        timestamp=time.time(),
        address=address,
        models={"echo": ("offload-jpeg90",)},
        queue_depth=0,
        queue_capacity=64,
    ).encode()


# ------------------------------------------------------------------ control


async def test_keyed_device_refuses_forged_stale_and_replayed_sla_and_applies_signed(
    mosquitto, caplog
) -> None:  # type: ignore[no-untyped-def]
    topic = client_control_topic("cam-1")
    attacker = MqttLink(_broker(mosquitto.port, "attacker"))
    fleet = FleetSession(
        _broker(mosquitto.port, "cam-1"), "echo", "cam-1", discover=False, sla_ms=2000, key=KEY
    )
    caplog.set_level(logging.WARNING, logger="splitedge.control_plane.control")
    async with attacker, fleet:
        assert await fleet.link.wait_subscribed(5)
        assert await attacker.wait_connected(5)
        # The published attack: a retained unsigned {"sla_ms": 1}.
        await attacker.publish(topic, b'{"sla_ms":1}', qos=1, retain=True)
        await _until(lambda: fleet.control.rejected_count == 1)
        assert fleet.sla_ms == 2000 and fleet.settings.sla_ms is None
        assert "unsigned message" in caplog.text and topic in caplog.text
        # Signed an hour ago (a message captured then, replayed now).
        stale = Signer(KEY, clock=lambda: time.time() - 3600).sign(topic, b'{"sla_ms": 1}')
        await attacker.publish(topic, stale, qos=1)
        await _until(lambda: fleet.control.rejected_count == 2)
        assert "signed 3600 s ago" in (fleet.control.last_error or "")
        # Signed for another device, republished here.
        operator = Signer(KEY)
        for_cam2 = operator.sign(client_control_topic("cam-2"), b'{"sla_ms": 1}')
        await attacker.publish(topic, for_cam2, qos=1)
        await _until(lambda: fleet.control.rejected_count == 3)
        assert "bad signature" in (fleet.control.last_error or "")
        assert fleet.sla_ms == 2000
        # The operator's signed messages apply; replaying the older one changes nothing.
        first = operator.sign(topic, b'{"sla_ms": 80}')
        await attacker.publish(topic, first, qos=1)
        await _until(lambda: fleet.sla_ms == 80)
        await attacker.publish(topic, operator.sign(topic, b'{"sla_ms": 90}'), qos=1)
        await _until(lambda: fleet.sla_ms == 90)
        await attacker.publish(topic, first, qos=1)
        await attacker.publish(topic, b'{"sla_ms": 2}', qos=1)  # a marker after the replay
        await _until(lambda: fleet.control.rejected_count == 4)
        assert fleet.sla_ms == 90 and fleet.settings.sla_ms == 90
        assert fleet.control.accepted_count == 2


# ------------------------------------------------------------------ presence


async def test_fake_presence_and_spoofed_offline_are_ignored_when_keyed(
    mosquitto, edges, key_file, caplog
) -> None:  # type: ignore[no-untyped-def]
    real = edges(
        "--model", "echo", "--broker", f"mqtt://127.0.0.1:{mosquitto.port}",
        "--server-id", "edge-a", "--mqtt-key-file", str(key_file),
    )  # fmt: skip
    attacker = MqttLink(_broker(mosquitto.port, "attacker"))
    rogue_topic = edge_status_topic("edge-r")
    rogue = _presence("edge-r", "127.0.0.1:9")  # "edge-r" would sort first on a tie
    caplog.set_level(logging.WARNING, logger="splitedge.control_plane.discovery")
    async with attacker:
        assert await attacker.wait_connected(5)
        await attacker.publish(rogue_topic, rogue, qos=1, retain=True)
        fleet = FleetSession(
            _broker(mosquitto.port, "cam-1"), "echo", "cam-1", telemetry_every=0, key=KEY
        )
        async with fleet, Client(real.address, "echo") as client:
            chosen = await fleet.wait_for_server(20)
            assert chosen.server_id == "edge-a" and chosen.address == real.address
            fleet.attach(client)
            assert fleet.discovery is not None
            # The live attack: the real edge "offline", the rogue edge online, and the
            # rogue signed with a key that is not the fleet's.
            spoofed = offline_status("edge-a", time.time(), "shutdown").encode()
            await attacker.publish(edge_status_topic("edge-a"), spoofed, qos=1, retain=True)
            await attacker.publish(rogue_topic, rogue, qos=1)
            wrong_key = Signer(FleetKey(b"not the fleet key, 32 bytes long"))
            await attacker.publish(rogue_topic, wrong_key.sign(rogue_topic, rogue), qos=1)
            await _until(lambda: fleet.discovery.rejected_count >= 4)  # type: ignore[union-attr]
            assert fleet.discovery.state("edge-r") is None
            state = fleet.discovery.state("edge-a")
            assert state is not None and state.online
            assert fleet.discovery.select("echo").server_id == "edge-a"  # type: ignore[union-attr]
            assert fleet.switch_count == 0 and client.server == real.address
    assert "edge-a/status refused: unsigned message" in caplog.text  # (one line per 10 s)


async def test_a_discovered_edge_that_is_not_who_its_presence_names_is_refused(
    mosquitto, edges, key_file, caplog
) -> None:  # type: ignore[no-untyped-def]
    real = edges(
        "--model", "echo", "--broker", f"mqtt://127.0.0.1:{mosquitto.port}",
        "--server-id", "edge-b", "--mqtt-key-file", str(key_file),
    )  # fmt: skip
    # A validly signed presence "edge-a" whose address reaches another server (edge-b):
    # loads tie, so "edge-a" would win on its id.
    caplog.set_level(logging.WARNING)
    async with MqttLink(_broker(mosquitto.port, "misdirected")) as publisher:
        assert await publisher.wait_connected(5)
        topic = edge_status_topic("edge-a")
        signed = Signer(KEY).sign(topic, _presence("edge-a", real.address))
        await publisher.publish(topic, signed, qos=1, retain=True)
        fleet = FleetSession(
            _broker(mosquitto.port, "cam-1"), "echo", "cam-1", telemetry_every=0, key=KEY
        )
        async with fleet:
            chosen = await fleet.wait_for_server(20)
            assert chosen.server_id == "edge-b"
            assert fleet.discovery is not None
            impostor = fleet.discovery.state("edge-a")
            assert impostor is not None and impostor.online  # signed and fresh, yet refused
            assert "says it is 'edge-b'" in (fleet.discovery.blocked(impostor) or "")
    assert "identity mismatch" in caplog.text


async def test_an_edge_answering_as_another_is_never_chosen(mosquitto, edges) -> None:  # type: ignore[no-untyped-def]
    other = edges("--model", "echo")  # no MQTT: its Status names <hostname>:<pid>
    async with MqttLink(_broker(mosquitto.port, "misdirected")) as publisher:
        assert await publisher.wait_connected(5)
        topic = edge_status_topic("edge-a")
        signed = Signer(KEY).sign(topic, _presence("edge-a", other.address))
        await publisher.publish(topic, signed, qos=1, retain=True)
        fleet = FleetSession(
            _broker(mosquitto.port, "cam-1"), "echo", "cam-1", telemetry_every=0, key=KEY
        )
        async with fleet:
            with pytest.raises(NoServerError, match=r"edge-a: identity mismatch: .* says it is"):
                await fleet.wait_for_server(10)


async def test_the_identity_check_carries_the_devices_token_to_an_auth_edge(
    mosquitto, edges, key_file, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    token = "cam-1-token-0123456789"
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[auth]\ntokens = [{{ client = "cam-1", sha256 = "{hash_token(token)}" }}]\n'
    )
    edges(
        "--config", str(config), "--model", "echo",
        "--broker", f"mqtt://127.0.0.1:{mosquitto.port}",
        "--server-id", "edge-t", "--mqtt-key-file", str(key_file),
    )  # fmt: skip
    # Without the token the edge's Status refuses the check: the edge is not used.
    anonymous = FleetSession(
        _broker(mosquitto.port, "cam-0"), "echo", "cam-0", telemetry_every=0, key=KEY
    )
    async with anonymous:
        with pytest.raises(
            NoServerError, match=r"edge-t: identity check failed: .*UNAUTHENTICATED: missing token"
        ):
            await anonymous.wait_for_server(10)
    fleet = FleetSession(
        _broker(mosquitto.port, "cam-1"), "echo", "cam-1", telemetry_every=0, key=KEY, token=token
    )
    async with fleet:
        assert (await fleet.wait_for_server(20)).server_id == "edge-t"


# ------------------------------------------------------------------ broker ACLs


@pytest.fixture
def acl_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto with configs/mosquitto/acl and a password file: operator, cam-1, cam-2."""
    binary = mosquitto_binary()
    passwd = shutil.which("mosquitto_passwd") or shutil.which(
        "mosquitto_passwd", path="/usr/bin:/usr/sbin"
    )
    if binary is None or passwd is None:
        pytest.skip("mosquitto or mosquitto_passwd not found (apt-get install -y mosquitto)")
    passwords = tmp_path / "passwd"
    for i, user in enumerate(("operator", "cam-1", "cam-2")):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            [passwd, *create, "-b", str(passwords), user, f"pw-{user}"],
            check=True,
            capture_output=True,
            timeout=30,
        )
    acl = REPO / "configs" / "mosquitto" / "acl"
    extra = f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n"
    broker = Mosquitto(binary, tmp_path, extra).start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_broker_acl_lets_only_the_operator_publish_on_a_device_control_topic(
    acl_mosquitto,
) -> None:  # type: ignore[no-untyped-def]
    port = acl_mosquitto.port
    topic = client_control_topic("cam-1")
    device = MqttLink(_broker(port, "d1", username="cam-1", password="pw-cam-1"))
    other = MqttLink(_broker(port, "d2", username="cam-2", password="pw-cam-2"))
    operator = MqttLink(_broker(port, "op", username="operator", password="pw-operator"))
    async with device, other, operator:
        own = device.subscribe(topic, qos=1)
        statuses = device.subscribe(EDGE_STATUS_FILTER, qos=1)
        assert await device.wait_subscribed(5)
        assert await other.wait_connected(5) and await operator.wait_connected(5)
        # cam-2 may not write cam-1's control, nor pose as an edge; the broker drops both.
        assert await other.publish(topic, b'{"sla_ms": 1}', qos=1)
        assert await other.publish(edge_status_topic("edge-r"), b"{}", qos=1)
        assert await operator.publish(topic, b'{"sla_ms": 80}', qos=1)
        assert await operator.publish(edge_status_topic("edge-a"), b'{"op": 1}', qos=1)
        first = await own.get(timeout_s=10)
        assert first is not None and first.payload == b'{"sla_ms": 80}'
        status = await statuses.get(timeout_s=10)
        assert status is not None and status.payload == b'{"op": 1}'
        assert await own.get(timeout_s=0.5) is None  # cam-2's never comes
        assert await statuses.get(timeout_s=0.5) is None
