"""Real edge server processes and the real client on the MQTT plane (real mosquitto).

Presence (retained status that refreshes, last will on SIGKILL, explicit offline on
SIGTERM), discovery of the less-loaded server and failover without losing a frame,
live SLA control on the data path, a broker restart under a streaming client, a
server started while the broker is down, and the CLIs end to end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from splitedge.control_plane.link import BrokerConfig, MqttLink, Subscription
from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.fleet import FleetSession
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.proto.control import (
    CLIENT_TELEMETRY_FILTER,
    EDGE_STATUS_FILTER,
    FLEET_CONTROL_TOPIC,
    EdgeStatus,
    client_control_topic,
    parse_status,
    parse_telemetry,
)
from splitedge.simulations.processes import EdgeProcess

pytestmark = [pytest.mark.integration, pytest.mark.broker, pytest.mark.timeout(90)]

BRANCH = "offload-jpeg90"


@pytest.fixture
def edges() -> Iterator[Callable[..., EdgeProcess]]:
    """Start ``splitedge-edge serve`` processes; every one is killed after the test."""
    started: list[EdgeProcess] = []

    def start(*args: str) -> EdgeProcess:
        edge = EdgeProcess(list(args)).start()
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.kill()


def _broker(port: int, client_id: str) -> BrokerConfig:
    return BrokerConfig(port=port, client_id=client_id, reconnect_min_s=0.05, reconnect_max_s=0.5)


def _mqtt_args(port: int, server_id: str, *, old_spelling: bool = False) -> list[str]:
    if old_spelling:  # before control_plane.address: `--mqtt HOST:PORT`, still accepted
        return ["--mqtt", f"127.0.0.1:{port}", "--server-id", server_id]
    return ["--broker", f"mqtt://127.0.0.1:{port}", "--server-id", server_id]


async def _next_status(
    sub: Subscription, accept: Callable[[EdgeStatus, bool], bool], timeout_s: float = 15.0
) -> EdgeStatus:
    """The next status on ``sub`` that ``accept(status, retained)`` likes."""
    deadline = time.monotonic() + timeout_s
    while (left_s := deadline - time.monotonic()) > 0:
        message = await sub.get(timeout_s=left_s)
        if message is None:
            break
        status = parse_status(message.payload, message.topic)
        if accept(status, message.retain):
            return status
    raise AssertionError("no matching edge status arrived in time")


async def _retained_status(port: int, server_id: str, *, live_ok: bool = False) -> EdgeStatus:
    """What a device that subscribes now gets for ``server_id`` (the retained message).

    ``live_ok``: a server that has not published yet may answer with a live message.
    """
    async with MqttLink(_broker(port, "late-watcher")) as link:
        sub = link.subscribe(EDGE_STATUS_FILTER)
        return await _next_status(
            sub, lambda s, retained: s.server_id == server_id and (retained or live_ok)
        )


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _frames(count: int) -> list:
    return list(open_source("synthetic", max_frames=count, size=(32, 24)))


# ------------------------------------------------------------------ presence


async def test_status_is_retained_refreshed_and_explicitly_offline_on_sigterm(
    mosquitto, edges
) -> None:  # type: ignore[no-untyped-def]
    async with MqttLink(_broker(mosquitto.port, "watcher")) as link:
        sub = link.subscribe(EDGE_STATUS_FILTER)
        assert await link.wait_subscribed(5)
        edge = edges("--model", "echo", *_mqtt_args(mosquitto.port, "edge-a"))
        first = await _next_status(sub, lambda s, _: s.server_id == "edge-a" and s.online)
        assert first.address == edge.address
        assert first.models == {"echo": ("split@x", BRANCH)}  # no "local": that is the device's
        assert first.queue_depth == 0 and first.queue_capacity == 64
        assert first.device == "cpu" and 0.0 <= first.load <= 1.0
        second = await _next_status(sub, lambda s, _: s.server_id == "edge-a")
        assert second.online and 0.5 < second.timestamp - first.timestamp < 3.0

        # The Status RPC carries the same id as the topic.
        async with Client(edge.address, "echo") as client:
            assert (await client.status()).server_id == "edge-a"
            outcome = await client.submit(_frames(1)[0], BRANCH)
            assert outcome.source == "edge"
        measured = await _next_status(sub, lambda s, _: "echo" in s.tail_ms)
        assert BRANCH in measured.tail_ms["echo"]
        assert measured.tail_ms["echo"][BRANCH].replicas == 1  # the in-process engine

        assert edge.stop(grace_s=10) == 0
        offline = await _next_status(sub, lambda s, _: not s.online)
        assert offline.reason == "shutdown"
    # Retained, and no last will replaced it after the clean disconnect.
    retained = await _retained_status(mosquitto.port, "edge-a")
    assert not retained.online and retained.reason == "shutdown"


async def test_sigkilled_server_is_marked_offline_by_its_last_will(mosquitto, edges) -> None:  # type: ignore[no-untyped-def]
    edge = edges("--model", "echo", *_mqtt_args(mosquitto.port, "edge-k"))
    online = await _retained_status(mosquitto.port, "edge-k", live_ok=True)
    assert online.online
    async with MqttLink(_broker(mosquitto.port, "watcher")) as link:
        sub = link.subscribe(EDGE_STATUS_FILTER)
        assert await link.wait_subscribed(5)
        edge.kill()
        will = await _next_status(sub, lambda s, _: s.server_id == "edge-k" and not s.online)
    assert will.reason == "connection lost"
    retained = await _retained_status(mosquitto.port, "edge-k")
    assert not retained.online and retained.reason == "connection lost"


# ------------------------------------------------------------------ discovery


async def _warm(address: str, frames: int = 4) -> None:
    """Send a few frames so the server has measured tails to publish."""
    async with Client(address, "echo") as client:
        for frame in _frames(frames):
            assert (await client.submit(frame, BRANCH)).source == "edge"


async def test_client_picks_the_less_loaded_server_and_fails_over_without_losing_frames(
    mosquitto, edges
) -> None:  # type: ignore[no-untyped-def]
    # "a" sorts first by id but is slower, so only its load can make the client avoid it.
    slow = edges("--model", "echo:tail_delay_ms=40", *_mqtt_args(mosquitto.port, "a"))
    fast = edges("--model", "echo", *_mqtt_args(mosquitto.port, "b"))
    await asyncio.gather(_warm(slow.address), _warm(fast.address))
    async with MqttLink(_broker(mosquitto.port, "watcher")) as link:
        sub = link.subscribe(EDGE_STATUS_FILTER)
        measured: set[str] = set()
        while measured != {"a", "b"}:  # retained + refreshed statuses carrying tail latency
            status = await _next_status(sub, lambda s, _: s.online and "echo" in s.tail_ms)
            measured.add(status.server_id)

    fleet = FleetSession(_broker(mosquitto.port, "cam-f"), "echo", "cam-f", telemetry_every=0)
    outcomes: list[FrameOutcome] = []
    async with fleet:
        chosen = await fleet.wait_for_server(10)
        assert chosen.server_id == "b"
        assert chosen.expected_ms("echo") < fleet.discovery.state("a").expected_ms("echo")  # type: ignore[union-attr]
        async with Client(chosen.address, "echo", deadline_ms=2000) as client:
            fleet.attach(client)
            assert client.server_load is not None and client.server_load.server_id == "b"
            async for outcome in client.run(_frames(50), BRANCH, max_in_flight=3, fps=25):
                outcomes.append(outcome)
                fleet.record(outcome)
                if len(outcomes) == 12:
                    fast.kill()  # the broker fires b's will at once (socket closed)
            assert client.server == slow.address
            assert fleet.switch_count == 1
            assert client.server_load is not None and client.server_load.server_id == "a"
            loads = (await client.status()).branches
            served_by_a = next(b.frames for b in loads if b.branch == BRANCH)
    assert sorted(o.frame_id for o in outcomes) == list(range(50))  # every frame has an outcome
    for o in outcomes:
        assert o.source == "edge" or o.reason == "edge-unavailable", o
    assert all(o.source == "edge" for o in outcomes[-20:])  # the new server answers
    assert served_by_a >= 20 + 4  # the tail frames plus the warm-up


# ------------------------------------------------------------------ control


async def test_control_changes_the_sla_live_and_malformed_messages_change_nothing(
    mosquitto, edges
) -> None:  # type: ignore[no-untyped-def]
    edge = edges("--model", "echo:tail_delay_ms=60", *_mqtt_args(mosquitto.port, "edge-c"))
    operator = MqttLink(_broker(mosquitto.port, "operator"))
    fleet = FleetSession(
        _broker(mosquitto.port, "cam-c"), "echo", "cam-c", discover=False, sla_ms=2000
    )
    outcomes: list[FrameOutcome] = []
    async with operator, fleet, Client(edge.address, "echo") as client:
        fleet.attach(client)
        assert client.deadline_ms == 2000
        assert await fleet.link.wait_subscribed(5)
        async for outcome in client.run(_frames(30), BRANCH, max_in_flight=1, fps=20):
            outcomes.append(outcome)
            if len(outcomes) == 8:
                # Fleet-wide first, then this device's own override, which wins.
                await operator.publish(FLEET_CONTROL_TOPIC, b'{"sla_ms": 1500}', qos=1)
                await operator.publish(
                    client_control_topic("cam-c"), b'{"v": 1, "sla_ms": 20}', qos=1, retain=True
                )
                await _until(lambda: client.deadline_ms == 20)
                switched_at = len(outcomes)
                for bad in (b'{"sla_ms": "fast"}', b"not json", b'{"sla": 5}'):
                    await operator.publish(client_control_topic("cam-c"), bad, qos=1)
                await operator.publish(FLEET_CONTROL_TOPIC, b'{"sla_ms": 0}', qos=1)
                await _until(lambda: fleet.control.rejected_count == 4)
        assert client.deadline_ms == 20  # nothing changed it back
        assert fleet.settings.sla_ms == 20
        assert "sla_ms" in (fleet.control.last_error or "")
    before = outcomes[:8]
    after = outcomes[switched_at + 1 :]  # the frame in flight at the change may go either way
    assert all(o.source == "edge" for o in before)
    # A 60 ms tail cannot meet 20 ms: the new SLA shows on the data path at once.
    assert after and all(o.source == "dropped" and o.reason == "deadline" for o in after)


# ------------------------------------------------------------------ broker trouble


async def test_broker_restart_keeps_frames_flowing_and_telemetry_resumes(mosquitto, edges) -> None:  # type: ignore[no-untyped-def]
    edge = edges("--model", "echo", *_mqtt_args(mosquitto.port, "edge-r"))
    watcher = MqttLink(_broker(mosquitto.port, "watcher"))
    fleet = FleetSession(_broker(mosquitto.port, "cam-r"), "echo", "cam-r", telemetry_every=7)
    outcomes: list[FrameOutcome] = []
    restarted_at = 0.0
    async with watcher, fleet:
        telemetry = watcher.subscribe(CLIENT_TELEMETRY_FILTER, qos=0)
        assert await watcher.wait_subscribed(5)
        chosen = await fleet.wait_for_server(10)
        assert chosen.address == edge.address
        async with Client(chosen.address, "echo") as client:
            fleet.attach(client)
            async for outcome in client.run(_frames(60), BRANCH, max_in_flight=2, fps=20):
                outcomes.append(outcome)
                fleet.record(outcome)
                if len(outcomes) == 15:
                    mosquitto.stop()
                elif len(outcomes) == 30:
                    mosquitto.start()  # same port, empty retained state
                    restarted_at = time.time()
            assert client.server == edge.address  # no failover: the last known server stays
        await _until(lambda: fleet.link.connect_count >= 2, 10)
        await fleet.telemetry.flush()  # type: ignore[union-attr]
        after: list[dict] = []
        while (message := await telemetry.get(timeout_s=5)) is not None:
            summary = parse_telemetry(message.payload, message.topic)
            if summary.timestamp > restarted_at:
                after.append(summary.to_dict())
            if summary.frames < 7:
                break  # 60 = 8 x 7 + 4: the flushed partial window is the last one
    assert [o.frame_id for o in outcomes] == list(range(60))
    assert all(o.source == "edge" for o in outcomes), "gRPC must not care about the broker"
    assert after, "no telemetry after the broker came back"
    assert all(s["client_id"] == "cam-r" and s["source_mix"]["edge"] == s["frames"] for s in after)


async def test_server_started_with_the_broker_down_serves_and_announces_later(
    mosquitto, edges
) -> None:  # type: ignore[no-untyped-def]
    mosquitto.stop()
    started = time.monotonic()
    edge = edges("--model", "echo", *_mqtt_args(mosquitto.port, "edge-d"))
    async with Client(edge.address, "echo") as client:
        assert (await client.submit(_frames(1)[0], BRANCH)).source == "edge"
    startup_s = time.monotonic() - started
    mosquitto.start()
    status = await _retained_status(mosquitto.port, "edge-d", live_ok=True)  # reconnects by itself
    assert status.online and status.address == edge.address
    mosquitto.stop()
    t0 = time.monotonic()
    assert edge.stop(grace_s=10) == 0
    stop_s = time.monotonic() - t0
    # A down broker costs shutdown at most the bounded offline wait (2 s), not the grace.
    assert stop_s < 4.0, f"shutdown took {stop_s:.1f} s with the broker down"
    assert startup_s < 30.0


# ------------------------------------------------------------------ CLIs


def _cli(module: str, *args: str, **kwargs) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_client_cli_discovers_and_sim_records_its_telemetry(mosquitto, edges, tmp_path: Path):  # type: ignore[no-untyped-def]
    # The old spellings (edge `--mqtt HOST:PORT`, recorder `--broker HOST:PORT`) still
    # work, each with one deprecation line; the client uses the new one.
    edge = edges("--model", "echo", *_mqtt_args(mosquitto.port, "edge-cli", old_spelling=True))
    deprecated = [line for line in edge.output if "deprecated" in line]
    # One line, logged in the format the client and the recorder use.
    assert len(deprecated) == 1, list(edge.output)
    assert " WARNING splitedge.control_plane.address: " in deprecated[0]
    assert (
        deprecated[0]
        .rstrip()
        .endswith(
            f"--mqtt '127.0.0.1:{mosquitto.port}': a bare HOST:PORT is deprecated; "
            f"write mqtt://127.0.0.1:{mosquitto.port}"
        )
    ), list(edge.output)
    record = tmp_path / "telemetry.jsonl"
    recorder = _cli(
        "splitedge.simulations.cli",
        "record-telemetry",
        "--broker",
        f"127.0.0.1:{mosquitto.port}",
        "--out",
        str(record),
        "--seconds",
        "60",
    )
    try:
        assert recorder.stderr is not None
        early: list[str] = []
        for _ in range(20):  # log lines may come first
            line = recorder.stderr.readline()
            early.append(line)
            if not line or "recording telemetry" in line:
                break
        assert "recording telemetry" in line, "recorder did not subscribe"
        deprecated = [line for line in early if "deprecated" in line]
        assert len(deprecated) == 1, early
        assert (
            deprecated[0]
            .rstrip()
            .endswith(
                f"--broker '127.0.0.1:{mosquitto.port}': a bare HOST:PORT is deprecated; "
                f"write mqtt://127.0.0.1:{mosquitto.port}"
            )
        )
        out = tmp_path / "frames.jsonl"
        client = _cli(
            "splitedge.mobile_client.cli",
            "--log-level",
            "INFO",
            "run",
            "--discover",
            f"mqtt://127.0.0.1:{mosquitto.port}",
            "--model",
            "echo",
            "--branch",
            BRANCH,
            "--backend",
            "none",
            "--frames",
            "20",
            "--client-id",
            "cam-cli",
            "--telemetry-every",
            "10",
            "--sla-ms",
            "3000",
            "--out",
            str(out),
        )
        _, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert f"edge server {edge.address}" in err
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [line["frame_id"] for line in lines] == list(range(20))
        assert all(line["source"] == "edge" for line in lines)
        deadline = time.monotonic() + 10
        while len(record.read_text().splitlines() if record.exists() else []) < 2:
            assert time.monotonic() < deadline, "recorder did not write two summaries"
            time.sleep(0.1)
    finally:
        recorder.send_signal(2)  # SIGINT: a clean stop
        _, rec_err = recorder.communicate(timeout=15)
    assert recorder.returncode == 0, rec_err
    assert "recorded 2 telemetry summaries" in rec_err
    summaries = [json.loads(line)["summary"] for line in record.read_text().splitlines()]
    assert [s["frames"] for s in summaries] == [10, 10]
    assert all(s["client_id"] == "cam-cli" and s["sla_ms"] == 3000 for s in summaries)
    assert all(s["branch_mix"] == {BRANCH: 10} for s in summaries)


async def test_adaptive_session_takes_live_control_and_published_server_load(
    mosquitto, edges
) -> None:  # type: ignore[no-untyped-def]
    from splitedge.mobile_client.adaptive import AdaptiveSession
    from splitedge.mobile_client.profile import AccuracyRecord, BranchConfig
    from splitedge.mobile_client.scheduler import Scheduler
    from splitedge.training.profiling import measure_profile

    edges("--model", "echo:tail_delay_ms=40", *_mqtt_args(mosquitto.port, "edge-s"))
    images = [f.image for f in _frames(2)]
    profile = measure_profile(
        "echo",
        [BranchConfig(BRANCH), BranchConfig("local")],
        images,
        contention_levels=(0,),
        progress=False,
        validate=lambda c: AccuracyRecord(0.8 if c.branch == BRANCH else 0.5),
    )
    operator = MqttLink(_broker(mosquitto.port, "operator-s"))
    fleet = FleetSession(_broker(mosquitto.port, "cam-s"), "echo", "cam-s", discover=True)
    async with operator, fleet:
        server = await fleet.wait_for_server(15)
        async with Client(server.address, "echo") as client:
            fleet.attach(client)
            scheduler = Scheduler(profile, 300.0)
            session = AdaptiveSession(client, scheduler, status_every_s=0)
            fleet.on_control(session.apply_control)
            assert await fleet.link.wait_subscribed(5)
            # Frames until the edge's published status carries this branch's tail median
            # (>= its 40 ms sleep) and the session has handed it to the scheduler.
            deadline = time.monotonic() + 20
            while scheduler.server.reported(BRANCH, scheduler.clock())[1] < 40.0:
                assert time.monotonic() < deadline, "no published tail reached the scheduler"
                decision, outcome = await session.process(_frames(1)[0])
                assert decision.branch == BRANCH and outcome.source == "edge"
                fleet.record(outcome)
                await asyncio.sleep(0.2)
            await operator.publish(
                client_control_topic("cam-s"), b'{"sla_ms": 120, "latency_weight": 0.5}', qos=1
            )
            await _until(lambda: scheduler.sla_ms == 120.0)
            assert scheduler.weights == (1.0, 0.5)
