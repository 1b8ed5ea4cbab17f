"""A device's place in the fleet: discovery and failover, live control, telemetry.

:class:`FleetSession` joins one :class:`~splitedge.mobile_client.client.Client` to the
MQTT plane (:mod:`splitedge.control_plane`) over a single
:class:`~splitedge.control_plane.link.MqttLink`:

- **discovery** (optional): :meth:`FleetSession.wait_for_server` picks the least
  loaded online server for the model; when that one goes offline (last will,
  explicit shutdown, stale) the session calls ``client.switch_server`` on the next
  choice, and it keeps ``client.server_load`` at the current server's last state;
- **control**: SLA changes from the fleet and client control topics set the
  client's deadline at once (policy and weights are kept in :attr:`settings`);
- **telemetry**: :meth:`FleetSession.record` feeds every frame outcome to a
  :class:`~splitedge.control_plane.telemetry.TelemetryPublisher`;
- **trust**: with a fleet ``key`` only signed, fresh status and control messages
  count (:mod:`splitedge.control_plane.signing`); and before the session hands a
  discovered server to the client (first choice and every failover) it asks the
  server's ``Status`` RPC who it is: a server whose ``server_id`` is not the one its
  presence names is refused (logged) and the next candidate is tried.

The broker is never on the frame path: while it is down frames keep flowing over
gRPC to the last known server, and everything resumes when the link reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import socket
from collections.abc import Callable
from types import TracebackType

from splitedge.control_plane.control import ControlSettings, ControlSubscriber
from splitedge.control_plane.discovery import Discovery, ServerState
from splitedge.control_plane.link import BrokerConfig, MqttLink
from splitedge.control_plane.signing import FleetKey, Verifier
from splitedge.control_plane.telemetry import FrameRecord, TelemetryPublisher
from splitedge.mobile_client.client import Client, ClientError
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.transport import EdgeTransport, EdgeUnavailable, TlsConfig
from splitedge.proto.aio import cancel_and_wait
from splitedge.proto.control import ControlUpdate, check_id

__all__ = [
    "FleetSession",
    "NoServerError",
    "default_client_id",
    "frame_record",
]

log = logging.getLogger(__name__)

_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
# Retained statuses arrive as a burst right after the subscription is acknowledged;
# waiting this long lets every server's state in before the first choice.
_RETAINED_SETTLE_S = 0.3


class NoServerError(ClientError):
    """No online edge server serves the model (within the wait)."""


def default_client_id() -> str:
    """``<hostname>-<pid>`` in the topic tree's id alphabet (1-64 characters)."""
    name = _NOT_ID_CHARS.sub("-", socket.gethostname()).strip("-") or "device"
    suffix = f"-{os.getpid()}"
    return name[: 64 - len(suffix)] + suffix


def frame_record(outcome: FrameOutcome, sla_ms: float | None) -> FrameRecord:
    """What telemetry counts for one frame.

    The branch is the one that produced the result: the requested branch on the
    edge, ``local`` for a local fallback, ``none`` for a drop. A frame misses the SLA
    when it took longer than ``sla_ms`` or was dropped for want of an edge answer.
    The bandwidth figure is payload over measured network time: a lower bound (the
    network time includes the round trip), fine for trends across a fleet.
    """
    t = outcome.timing
    dropped = outcome.source == "dropped"
    late = sla_ms is not None and sla_ms > 0 and t.total_ms > sla_ms
    bandwidth_mbps = None
    if outcome.source == "edge" and t.network_ms > 0 and outcome.payload_bytes > 0:
        bandwidth_mbps = outcome.payload_bytes * 8 / (t.network_ms * 1000)
    branch = {"edge": outcome.branch, "local": "local"}.get(outcome.source, "none")
    return FrameRecord(
        branch=branch,
        source=outcome.source,
        latency_ms=None if dropped else t.total_ms,
        sla_miss=late or (dropped and outcome.reason != "prefiltered"),
        bandwidth_mbps=bandwidth_mbps,
        drop_reason=(outcome.reason or None) if dropped else None,
    )


class FleetSession:
    """``async with FleetSession(broker, "echo", "cam-1") as fleet:`` then attach a client.

    ``discover=False`` skips discovery (the caller names the server; control and
    telemetry still work). ``telemetry_every`` = 0 turns telemetry off. ``sla_ms``
    is the initial SLA (= the client's deadline) until a control message changes it.
    ``on_control`` hears every effective control change after it was applied.
    ``key``: the fleet key (status and control must be signed with it); ``tls`` and
    ``token``: how to reach the edge servers, for the identity check
    (``verify_identity``).
    """

    def __init__(
        self,
        broker: BrokerConfig,
        model: str,
        client_id: str,
        *,
        discover: bool = True,
        telemetry_every: int = 30,
        sla_ms: float | None = None,
        stale_after_s: float = 5.0,
        on_control: Callable[[ControlUpdate], None] | None = None,
        key: FleetKey | None = None,
        tls: TlsConfig | None = None,
        token: str | None = None,
        verify_identity: bool = True,
        identity_timeout_s: float = 3.0,
    ) -> None:
        if telemetry_every < 0:
            raise ValueError(f"telemetry_every must be >= 0 frames, got {telemetry_every}")
        self.client_id = check_id("client_id", client_id)
        self.model = model
        self.sla_ms = sla_ms
        self.switch_count = 0
        self.client: Client | None = None
        self.link = MqttLink(
            dataclasses.replace(broker, client_id=broker.client_id or f"splitedge-{client_id}")
        )
        if key is None:
            log.warning(
                "MQTT control plane is unauthenticated (no fleet key, --mqtt-key-file): "
                "anyone who may publish on the broker can change this device's SLA or "
                "announce edge servers (docs/mqtt.md)"
            )
        self.tls = tls
        self.token = token
        self.verify_identity = verify_identity
        self.identity_timeout_s = identity_timeout_s
        self.discovery = (
            Discovery(
                self.link,
                stale_after_s=stale_after_s,
                on_failover=self._on_failover,
                verifier=Verifier(key) if key is not None else None,
            )
            if discover
            else None
        )
        self.control = ControlSubscriber(
            self.link,
            client_id,
            self._on_control,
            verifier=Verifier(key) if key is not None else None,
        )
        self.telemetry = (
            TelemetryPublisher(self.link, client_id, telemetry_every, sla_ms=sla_ms)
            if telemetry_every
            else None
        )
        self._on_control_hook = on_control
        self._moves: asyncio.Queue[ServerState | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def settings(self) -> ControlSettings:
        """Effective remote settings (``None`` = not set remotely)."""
        return self.control.settings

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self) -> FleetSession:
        self.link.start()
        self._tasks.append(asyncio.create_task(self.control.run(), name="fleet-control"))
        if self.discovery is not None:
            self._tasks.append(asyncio.create_task(self.discovery.run(), name="fleet-discovery"))
            self._tasks.append(asyncio.create_task(self._follow(), name="fleet-failover"))
        await asyncio.sleep(0)  # let the tasks register their subscriptions before any wait
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.telemetry is not None:
            # The last partial window; bounded, the broker may be away.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.telemetry.flush(), self.link.config.publish_timeout_s)
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        await self.link.aclose()

    # ------------------------------------------------------------ discovery

    async def wait_for_server(self, timeout_s: float) -> ServerState:
        """The least-loaded online server for the model, waiting up to ``timeout_s``.

        Raises :class:`NoServerError` when none shows up in time.
        """
        if self.discovery is None:
            raise RuntimeError("this FleetSession was made with discover=False")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if await self.link.wait_subscribed(timeout_s):
            await asyncio.sleep(min(_RETAINED_SETTLE_S, max(0.0, deadline - loop.time())))
        unverified: dict[str, str] = {}  # server id -> why it could not be checked yet
        while True:
            state = self.discovery.select(self.model)
            if state is not None:
                reason = await self._check_identity(state)
                if reason is None:
                    log.info("chose edge server %s at %s", state.server_id, state.address)
                    return state
                unverified[state.server_id] = reason
            left_s = deadline - loop.time()
            if left_s <= 0:
                raise NoServerError(self._no_server_reason(timeout_s, unverified))
            await self.discovery.wait_for_change(min(left_s, 0.5))

    async def _check_identity(self, state: ServerState) -> str | None:
        """None when the server at ``state.address`` says it is ``state.server_id``.

        A server that answers with another id is blocked in discovery (never chosen at
        that address again); one that does not answer is left for a later try. Either
        way the reason is returned (and logged).
        """
        if not self.verify_identity:
            return None
        try:
            async with EdgeTransport(state.address, tls=self.tls, token=self.token) as edge:
                status = await edge.status(timeout_s=self.identity_timeout_s)
        except EdgeUnavailable as exc:
            reason = f"cannot check its identity: {exc}"
            log.warning("edge %s at %s not used yet: %s", state.server_id, state.address, reason)
            return reason
        except ClientError as exc:
            reason = f"identity check failed: {exc}"
        else:
            if status.server_id == state.server_id:
                return None
            reason = (
                f"identity mismatch: its presence names {state.server_id!r}, the server at "
                f"{state.address} says it is {status.server_id!r}"
            )
        assert self.discovery is not None
        self.discovery.block(state, reason)
        return reason

    def _no_server_reason(self, timeout_s: float, unverified: dict[str, str]) -> str:
        where = f"mqtt://{self.link.config.host}:{self.link.config.port}"
        if not self.link.connected:
            return f"broker {where} not reachable within {timeout_s:g} s"
        assert self.discovery is not None
        known = [
            f"{s.server_id}({'online' if s.online else 'offline'})"
            for s in self.discovery.servers()
        ]
        refused = "".join(f"; {sid}: {why}" for sid, why in unverified.items())
        return (
            f"no online edge server serves model {self.model!r} on {where} within "
            f"{timeout_s:g} s (known: {', '.join(known) or 'none'}){refused}"
        )

    def on_control(self, hook: Callable[[ControlUpdate], None] | None) -> None:
        """Call ``hook`` with every effective control change (replaces the previous one)."""
        self._on_control_hook = hook

    def attach(self, client: Client) -> None:
        """Follow failovers with ``client`` and apply control settings to it."""
        self.client = client
        if self.sla_ms is not None:
            client.deadline_ms = self.sla_ms
        self._refresh_load()

    def _refresh_load(self) -> None:
        if self.discovery is None or self.client is None:
            return
        state = self.discovery.select(self.model)
        if state is not None and state.address == self.client.server:
            self.client.server_load = state

    def _on_failover(self, model: str, old: ServerState | None, new: ServerState | None) -> None:
        if model == self.model:
            self._moves.put_nowait(new)

    async def _follow(self) -> None:
        while True:
            new = await self._moves.get()
            client = self.client
            if new is None:
                log.warning(
                    "no online edge server for %s: frames fall back until one is back", self.model
                )
                continue
            if client is None or new.address == client.server:
                continue
            if await self._check_identity(new) is not None:
                # Blocked: discovery moves on by itself. Unreachable: look again shortly.
                self._retry_soon()
                continue
            log.warning("failover: %s -> %s (%s)", client.server, new.address, new.server_id)
            try:
                await client.switch_server(new.address)
            except ClientError as exc:
                log.warning("failover to %s failed: %s", new.server_id, exc)
                continue
            client.server_load = new
            self.switch_count += 1

    def _retry_soon(self) -> None:
        async def later() -> None:
            await asyncio.sleep(1.0)
            if self.discovery is not None:
                self._moves.put_nowait(self.discovery.select(self.model))

        self._tasks.append(asyncio.create_task(later(), name="fleet-failover-retry"))

    # ------------------------------------------------------------ control

    def _on_control(self, update: ControlUpdate) -> None:
        # Logged at WARNING: a live SLA change must show at the CLI's default level.
        if update.sla_ms is not None:
            self.sla_ms = update.sla_ms
            if self.client is not None:
                self.client.deadline_ms = update.sla_ms
            if self.telemetry is not None:
                self.telemetry.sla_ms = update.sla_ms
            log.warning(
                "SLA (frame deadline) now %g ms, from %s control", update.sla_ms, update.scope
            )
        others = {k: v for k, v in update.settings().items() if k != "sla_ms"}
        if others:
            log.warning("scheduler settings now %s, from %s control", others, update.scope)
        if self._on_control_hook is not None:
            self._on_control_hook(update)

    # ------------------------------------------------------------ telemetry

    def record(self, outcome: FrameOutcome) -> None:
        """Count one frame for telemetry and refresh the client's view of server load."""
        self._refresh_load()
        if self.telemetry is not None:
            self.telemetry.record(frame_record(outcome, self.sla_ms))
