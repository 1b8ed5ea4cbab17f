"""ControlSubscriber: all-or-nothing validation and fleet/client precedence (no broker)."""

from __future__ import annotations

import pytest

from splitedge.control_plane.control import ControlSettings, ControlSubscriber
from splitedge.proto.control import FLEET_CONTROL_TOPIC, ControlUpdate, client_control_topic

OWN = client_control_topic("cam-1")


@pytest.fixture
def received() -> list[ControlUpdate]:
    return []


@pytest.fixture
def sub(received: list[ControlUpdate]) -> ControlSubscriber:
    return ControlSubscriber(None, "cam-1", received.append)


async def test_valid_message_calls_back_with_the_change(sub, received) -> None:  # type: ignore[no-untyped-def]
    update = await sub.handle(FLEET_CONTROL_TOPIC, b'{"sla_ms": 150, "policy": "adaptive"}')
    assert update == ControlUpdate(scope="fleet", sla_ms=150.0, policy="adaptive")
    assert received == [update]
    assert sub.settings == ControlSettings(sla_ms=150.0, policy="adaptive")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "is not JSON"),
        (b"[]", "expected an object"),
        (b'{"sla_ms": 90, "turbo": 1}', "unknown key 'turbo'"),
        (b'{"sla_ms": 90, "policy": 7}', "'policy' must be a string"),
        (b'{"sla_ms": 90, "latency_weight": 2}', "'latency_weight' = 2 is outside [0, 1]"),
        (b'{"sla_ms": 90, "policy": "fastest"}', "unknown policy 'fastest'"),
    ],
)
async def test_malformed_message_changes_nothing(sub, received, payload, reason) -> None:  # type: ignore[no-untyped-def]
    await sub.handle(OWN, b'{"sla_ms": 200, "accuracy_weight": 0.5}')
    before = sub.settings
    received.clear()
    # Each payload carries a valid sla_ms next to its fault: all or nothing.
    assert await sub.handle(OWN, payload) is None
    assert sub.settings == before == ControlSettings(sla_ms=200.0, accuracy_weight=0.5)
    assert received == []
    assert sub.rejected_count == 1
    assert reason in (sub.last_error or "")


async def test_message_on_a_foreign_topic_is_rejected(sub, received) -> None:  # type: ignore[no-untyped-def]
    assert await sub.handle(client_control_topic("cam-2"), b'{"sla_ms": 10}') is None
    assert sub.settings == ControlSettings()
    assert "foreign topic" in (sub.last_error or "")
    assert received == []


async def test_client_override_beats_later_fleet_messages(sub, received) -> None:  # type: ignore[no-untyped-def]
    await sub.handle(FLEET_CONTROL_TOPIC, b'{"sla_ms": 100, "policy": "adaptive"}')
    await sub.handle(OWN, b'{"sla_ms": 60}')
    assert received[-1] == ControlUpdate(scope="client", sla_ms=60.0)
    received.clear()
    # Fleet raises the SLA and changes the policy: only the policy reaches this client.
    update = await sub.handle(FLEET_CONTROL_TOPIC, b'{"sla_ms": 300, "policy": "local_only"}')
    assert update == ControlUpdate(scope="fleet", policy="local_only")
    assert received == [update]
    assert sub.settings == ControlSettings(sla_ms=60.0, policy="local_only")
    # A fleet message fully shadowed by overrides changes nothing and calls nothing.
    received.clear()
    assert await sub.handle(FLEET_CONTROL_TOPIC, b'{"sla_ms": 500}') is None
    assert received == []
    assert sub.accepted_count == 4


async def test_async_callback_is_awaited_and_its_errors_are_contained() -> None:
    seen: list[ControlUpdate] = []

    async def on_update(update: ControlUpdate) -> None:
        seen.append(update)
        raise RuntimeError("scheduler hiccup")

    sub = ControlSubscriber(None, "cam-1", on_update)
    update = await sub.handle(OWN, b'{"latency_weight": 0.9}')
    assert seen == [update]
    assert sub.settings.latency_weight == 0.9
