"""Edge status publisher: the server's presence and load on its retained status topic.

Every ``interval_s`` the publisher asks ``status_provider()`` for the server's current
figures (address, models and branches, queue depth/capacity, tail latency per branch,
device, load), stamps them with the server id, time and ``online: true``, and
publishes them retained on ``splitedge/v1/edge/<server_id>/status``. Devices that
subscribe later get the latest state from the broker at once.

Presence: the connection carries a last will (QoS 1, retained) ``online: false`` on
the same topic, so a killed or partitioned server is marked offline by the broker
after at most 1.5 keepalives. A clean :meth:`StatusPublisher.stop` publishes an
explicit retained offline message first and then disconnects cleanly (so no will
fires).

With a ``signer`` (a fleet key) every message, the will included, goes out as a
signed envelope (:mod:`~splitedge.control_plane.signing`), signed afresh on each
publish so the retained copy never goes stale while the server lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from splitedge.control_plane.link import BrokerConfig, LastWill, MqttLink
from splitedge.control_plane.signing import Signer
from splitedge.proto.control import (
    EdgeStatus,
    MessageError,
    check_id,
    edge_status_topic,
    offline_status,
)

__all__ = ["StatusPublisher"]

log = logging.getLogger(__name__)

StatusProvider = Callable[[], dict[str, Any]]


class StatusPublisher:
    """Publish an edge server's retained status about every ``interval_s`` seconds.

    ``status_provider`` returns a dict with the :class:`EdgeStatus` fields except
    ``server_id``, ``online`` and ``timestamp`` (``tail_ms`` as
    ``{model: {branch: {"p50": ms, "p95": ms, "replicas": n}}}``, ``replicas``
    optional). A provider that raises or returns
    an invalid dict costs one tick (logged), never the loop.
    """

    def __init__(
        self,
        link_config: BrokerConfig,
        server_id: str,
        status_provider: StatusProvider,
        interval_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.time,
        signer: Signer | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.server_id = check_id("server_id", server_id)
        self.topic = edge_status_topic(server_id)
        self.interval_s = interval_s
        self.published_count = 0
        self._provider = status_provider
        self._clock = clock
        self._signer = signer
        will = LastWill(
            self.topic,
            self._wire(offline_status(server_id, clock(), "connection lost"), will=True),
            qos=1,
            retain=True,
        )
        self._link = MqttLink(
            dataclasses.replace(
                link_config,
                will=will,
                client_id=link_config.client_id or f"splitedge-edge-{server_id}",
            )
        )
        self._task: asyncio.Task[None] | None = None

    def _wire(self, status: EdgeStatus, *, will: bool = False) -> bytes:
        payload = status.encode()
        if self._signer is None:
            return payload
        return self._signer.sign(self.topic, payload, will=will)

    @property
    def link(self) -> MqttLink:
        """The publisher's own connection (it carries the will, so it is not shared)."""
        return self._link

    def build_status(self) -> EdgeStatus:
        """Ask the provider and validate its answer into an online :class:`EdgeStatus`."""
        figures = dict(self._provider())
        figures.update(v=1, server_id=self.server_id, online=True, timestamp=self._clock())
        return EdgeStatus.from_dict(figures, where=f"status of {self.server_id}")

    async def publish_once(self) -> bool:
        """Publish one status now; False if the provider failed or the broker is away."""
        try:
            status = self.build_status()
        except MessageError as exc:
            log.warning("edge status not published: %s", exc)
            return False
        except Exception:
            log.exception("edge status provider failed")
            return False
        ok = await self._link.publish(self.topic, self._wire(status), qos=1, retain=True)
        if ok:
            self.published_count += 1
        return ok

    async def run(self) -> None:
        """Publish until cancelled (no offline message; use :meth:`stop` for that)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await self.publish_once()
            # Fixed-rate schedule: a slow publish does not push later ticks back.
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def start(self) -> None:
        """Connect and start publishing in a background task."""
        if self._task is not None:
            return
        self._link.start()
        self._task = asyncio.create_task(self.run(), name=f"status-publisher {self.server_id}")

    async def stop(self) -> None:
        """Stop the loop, publish the retained offline message, disconnect cleanly."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        offline = offline_status(self.server_id, self._clock(), "shutdown")
        if not await self._link.publish(self.topic, self._wire(offline), qos=1, retain=True):
            log.warning("broker away at shutdown: the last will marks %s offline", self.server_id)
        await self._link.aclose()

    async def __aenter__(self) -> StatusPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
