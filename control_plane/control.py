"""Live control of a device: SLA, scheduler weights and policy over MQTT.

:class:`ControlSubscriber` listens on the fleet topic ``splitedge/v1/fleet/control``
and on the device's own ``splitedge/v1/client/<client_id>/control``. Every message
is validated strictly by :func:`splitedge.proto.control.parse_control`; an invalid
one is rejected with its reason logged and changes nothing (all-or-nothing: one bad
key spoils the whole message).

Precedence: two layers of settings, fleet and client. A setting's effective value
is the client layer's if this device ever received it on its own topic, else the
fleet layer's, else unset (the device keeps its configured default). So a later
fleet-wide change does not overwrite a per-device override.

``on_update`` receives a :class:`ControlUpdate` holding only the settings whose
*effective* value changed (scope = where the message came from); a message that
changes nothing effective (e.g. a fleet SLA shadowed by an override) calls nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace

from splitedge.control_plane.link import MqttLink, Subscription
from splitedge.control_plane.signing import RejectLog, SignatureError, Verifier
from splitedge.proto.control import (
    FLEET_CONTROL_TOPIC,
    KNOWN_POLICIES,
    ControlScope,
    ControlUpdate,
    MessageError,
    check_id,
    client_control_topic,
    parse_control,
)

__all__ = ["ControlSettings", "ControlSubscriber", "UpdateCallback"]

log = logging.getLogger(__name__)

UpdateCallback = Callable[[ControlUpdate], "Awaitable[None] | None"]

_SETTING_NAMES = ("sla_ms", "accuracy_weight", "latency_weight", "policy")


@dataclass(frozen=True)
class ControlSettings:
    """Effective control settings; ``None`` = not set remotely (use the local default)."""

    sla_ms: float | None = None
    accuracy_weight: float | None = None
    latency_weight: float | None = None
    policy: str | None = None


@dataclass
class _Layers:
    fleet: dict[str, float | str] = field(default_factory=dict)
    client: dict[str, float | str] = field(default_factory=dict)

    def effective(self) -> ControlSettings:
        merged = {**self.fleet, **self.client}
        return ControlSettings(**merged)  # type: ignore[arg-type]


class ControlSubscriber:
    """Applies validated control messages for one client and reports effective changes."""

    def __init__(
        self,
        link: MqttLink | None,
        client_id: str,
        on_update: UpdateCallback,
        *,
        policies: Iterable[str] = KNOWN_POLICIES,
        verifier: Verifier | None = None,
    ) -> None:
        self.client_id = check_id("client_id", client_id)
        self.client_topic = client_control_topic(client_id)
        self.accepted_count = 0
        self.rejected_count = 0
        self.last_error: str | None = None
        self._link = link
        self._on_update = on_update
        self._policies = frozenset(policies)
        self._layers = _Layers()
        self._verifier = verifier
        self._refused = RejectLog(log, "control message")

    @property
    def settings(self) -> ControlSettings:
        """The effective settings now."""
        return self._layers.effective()

    def _scope_of(self, topic: str) -> ControlScope | None:
        if topic == FLEET_CONTROL_TOPIC:
            return "fleet"
        if topic == self.client_topic:
            return "client"
        return None

    def apply(self, topic: str, payload: bytes, *, retained: bool = False) -> ControlUpdate | None:
        """Validate and apply one message; the effective change, or None.

        Does not call ``on_update`` (see :meth:`handle`); invalid messages are logged,
        counted, and leave every setting as it was. With a ``verifier`` (a fleet key),
        only a valid, fresh signed envelope counts (:mod:`~splitedge.control_plane.signing`);
        its refusals are logged at most once per 10 s per topic.
        """
        scope = self._scope_of(topic)
        if scope is None:
            self._reject(f"control message on foreign topic {topic!r}")
            return None
        if self._verifier is not None:
            try:
                payload = self._verifier.open(topic, payload, retained=retained)
            except SignatureError as exc:
                if not exc.duplicate:  # (a retained copy again after a reconnect)
                    self.rejected_count += 1
                    self.last_error = str(exc)
                self._refused(topic, exc)
                return None
        try:
            update = parse_control(payload, scope, policies=self._policies)
        except MessageError as exc:
            self._reject(str(exc))
            return None
        before = self._layers.effective()
        layer = self._layers.fleet if scope == "fleet" else self._layers.client
        layer.update(update.settings())
        after = self._layers.effective()
        self.accepted_count += 1
        changed = {
            name: getattr(after, name)
            for name in _SETTING_NAMES
            if getattr(after, name) != getattr(before, name)
        }
        if not changed:
            log.info("%s control message accepted; no effective change", scope)
            return None
        log.info("%s control message applied: %s", scope, changed)
        return replace(ControlUpdate(scope=scope), **changed)

    async def handle(
        self, topic: str, payload: bytes, *, retained: bool = False
    ) -> ControlUpdate | None:
        """:meth:`apply`, then call ``on_update`` with the change (errors there are logged)."""
        update = self.apply(topic, payload, retained=retained)
        if update is None:
            return None
        try:
            result = self._on_update(update)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            # The settings stay applied: the message was valid; the callback is the app's.
            log.exception("control on_update callback failed")
        return update

    def _reject(self, reason: str) -> None:
        self.rejected_count += 1
        self.last_error = reason
        log.warning("control message rejected: %s", reason)

    async def run(self) -> None:
        """Listen on the fleet and client control topics until cancelled."""
        if self._link is None:
            raise RuntimeError("ControlSubscriber.run needs a link; use handle() without one")
        fleet = self._link.subscribe(FLEET_CONTROL_TOPIC, qos=1)
        own = self._link.subscribe(self.client_topic, qos=1)
        try:
            # gather, not TaskGroup: the package still supports Python 3.10.
            await asyncio.gather(self._consume(fleet), self._consume(own))
        finally:
            fleet.close()
            own.close()

    async def _consume(self, subscription: Subscription) -> None:
        async for message in subscription:
            await self.handle(message.topic, message.payload, retained=message.retain)
