"""Our MQTT connection: aiomqtt (MQTT 3.1.1) behind a link that reconnects by itself.

aiomqtt gives one connection per ``async with``; when the broker goes away the
connection is gone and nothing comes back on its own. :class:`MqttLink` owns a
supervisor task that connects, re-subscribes every live subscription after each
reconnect, and backs off with full jitter between attempts, so callers only ever see
plain async functions that do not raise while the broker is down:

- :meth:`MqttLink.publish` returns ``True`` once the broker has the message and
  ``False`` otherwise. While disconnected, a *retained* publish is kept (only the
  latest per topic, since retained topics carry state and only the newest state
  matters) and sent first after the next connect; a non-retained publish is dropped
  with a debug log and counted in :attr:`MqttLink.dropped_count`.
- :meth:`MqttLink.subscribe` returns a :class:`Subscription` at once; messages flow
  whenever the link is up. A slow reader loses its oldest messages, never blocks the
  link.

MQTT 3.1.1 is spoken on purpose: every broker (mosquitto, amqtt, EMQX, ...) accepts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiomqtt

from splitedge.proto.aio import wait_within

__all__ = [
    "BrokerConfig",
    "LastWill",
    "MqttLink",
    "MqttMessage",
    "Subscription",
    "backoff_delay_s",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LastWill:
    """What the broker publishes for us if our connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how to connect; ``tls_ca`` (or ``tls=True`` for system CAs) turns on TLS."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_insecure: bool = False  # skip hostname check (self-signed demo certs only)
    client_id: str | None = None
    will: LastWill | None = None
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0
    publish_timeout_s: float = 2.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    queue_limit: int = 1000  # per subscription; the oldest message goes first

    @property
    def uses_tls(self) -> bool:
        """True when the connection is wrapped in TLS."""
        return self.tls or self.tls_ca is not None


@dataclass(frozen=True)
class MqttMessage:
    """One received message, decoupled from paho/aiomqtt types."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


def backoff_delay_s(attempt: int, min_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [min_s, min(max_s, min_s * 2**attempt)].

    Jitter spreads a fleet's reconnects after a broker restart instead of having every
    device knock at the same instant.
    """
    cap_s = min(max_s, min_s * (2 ** min(attempt, 30)))
    return rng.uniform(min_s, max(min_s, cap_s))


class Subscription:
    """Messages on one topic filter; async-iterable, closed with :meth:`close` or ``async with``."""

    def __init__(self, link: MqttLink, topic_filter: str, qos: int, queue_limit: int) -> None:
        self.topic_filter = topic_filter
        self.qos = qos
        self.dropped_count = 0
        self._link = link
        self._queue: asyncio.Queue[MqttMessage | None] = asyncio.Queue()
        self._queue_limit = queue_limit
        self._subscribed = asyncio.Event()
        self._closed = False

    def _deliver(self, message: MqttMessage) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self._queue_limit:
            self._queue.get_nowait()
            self.dropped_count += 1
        self._queue.put_nowait(message)

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until the broker has acknowledged this filter; False on timeout."""
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def get(self, timeout_s: float | None = None) -> MqttMessage | None:
        """Next message, or ``None`` on timeout or once closed."""
        if self._closed and self._queue.empty():
            return None
        try:
            return await wait_within(self._queue.get(), timeout_s)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving; a pending ``async for`` ends."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        self._link._forget(self)

    def __aiter__(self) -> AsyncIterator[MqttMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MqttMessage]:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            yield message

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class MqttLink:
    """A self-healing MQTT connection shared by publishers and subscribers of one process.

    ``async with MqttLink(config) as link`` starts connecting in the background and
    returns at once (it does not fail when the broker is down); use
    :meth:`wait_connected` where a caller must know. Leaving the block disconnects
    cleanly, so the broker does not publish the last will.
    """

    def __init__(self, config: BrokerConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.dropped_count = 0
        self.connect_count = 0
        self._rng = rng or random.Random()
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._subscriptions: list[Subscription] = []
        self._pending_retained: dict[str, tuple[bytes, int]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> MqttLink:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the background connect/reconnect loop (idempotent)."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name="mqtt-link")

    async def aclose(self) -> None:
        """Disconnect cleanly (no last will) and stop reconnecting.

        Waits at most ``connect_timeout_s + 1`` s (a connect attempt in flight is let
        finish, then dropped).
        """
        self._stopping.set()
        if self._supervisor is not None:
            try:
                await asyncio.wait_for(
                    asyncio.shield(self._supervisor), self.config.connect_timeout_s + 1
                )
            except asyncio.TimeoutError:
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._supervisor
        for subscription in list(self._subscriptions):
            subscription.close()
        for task in list(self._tasks):
            task.cancel()

    @property
    def connected(self) -> bool:
        """True while a broker connection is up."""
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait for a live connection; False on timeout (never raises)."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """Wait until every live subscription is acknowledged; False on timeout."""
        waits = [subscription.wait_subscribed(timeout_s) for subscription in self._subscriptions]
        try:
            acknowledged = await asyncio.wait_for(asyncio.gather(*waits), timeout_s)
        except asyncio.TimeoutError:
            return False
        return all(acknowledged)

    # ------------------------------------------------------------------ publish

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Hand ``payload`` to the broker; True on success, False when held or dropped.

        Never raises for connection trouble and waits at most ``publish_timeout_s``.
        """
        client = self._client
        if client is not None and self._connected.is_set():
            try:
                await client.publish(
                    topic, payload, qos=qos, retain=retain, timeout=self.config.publish_timeout_s
                )
                return True
            except aiomqtt.MqttError as exc:
                log.debug("mqtt publish to %s failed: %s", topic, exc)
        if retain:
            self._pending_retained[topic] = (payload, qos)
            log.debug("mqtt down: holding latest retained message for %s", topic)
        else:
            self.dropped_count += 1
            log.debug("mqtt down: dropped message for %s", topic)
        return False

    # ---------------------------------------------------------------- subscribe

    def subscribe(self, topic_filter: str, qos: int = 1) -> Subscription:
        """Subscribe now and on every reconnect; iterate the result for messages."""
        subscription = Subscription(self, topic_filter, qos, self.config.queue_limit)
        self._subscriptions.append(subscription)
        client = self._client
        if client is not None and self._connected.is_set():
            self._spawn(self._send_subscribe(client, [subscription]), f"mqtt-sub {topic_filter}")
        return subscription

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        # The loop keeps only weak references to tasks; hold them until done.
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        still_wanted = any(s.topic_filter == subscription.topic_filter for s in self._subscriptions)
        client = self._client
        if not still_wanted and client is not None and self._connected.is_set():
            self._spawn(
                self._send_unsubscribe(client, subscription.topic_filter),
                f"mqtt-unsub {subscription.topic_filter}",
            )

    async def _send_subscribe(self, client: aiomqtt.Client, subs: list[Subscription]) -> None:
        for subscription in subs:
            try:
                await client.subscribe(
                    subscription.topic_filter,
                    qos=subscription.qos,
                    timeout=self.config.publish_timeout_s,
                )
                subscription._subscribed.set()
            except aiomqtt.MqttError as exc:
                # The reconnect path subscribes again; nothing else to do here.
                log.debug("mqtt subscribe %s failed: %s", subscription.topic_filter, exc)

    async def _send_unsubscribe(self, client: aiomqtt.Client, topic_filter: str) -> None:
        try:
            await client.unsubscribe(topic_filter, timeout=self.config.publish_timeout_s)
        except aiomqtt.MqttError as exc:
            log.debug("mqtt unsubscribe %s failed: %s", topic_filter, exc)

    # --------------------------------------------------------------- supervisor

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        will = None
        if cfg.will is not None:
            will = aiomqtt.Will(
                cfg.will.topic, cfg.will.payload, qos=cfg.will.qos, retain=cfg.will.retain
            )
        tls_context = None
        if cfg.uses_tls:
            tls_context = ssl.create_default_context(cafile=cfg.tls_ca)
            if cfg.tls_cert is not None:
                tls_context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            if cfg.tls_insecure:
                tls_context.check_hostname = False
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            will=will,
            clean_session=True,
            keepalive=cfg.keepalive_s,
            timeout=cfg.connect_timeout_s,
            tls_context=tls_context,
            tls_insecure=cfg.tls_insecure if cfg.uses_tls else None,
        )

    async def _supervise(self) -> None:
        attempt = 0
        where = f"{self.config.host}:{self.config.port}"
        while not self._stopping.is_set():
            client = self._make_client()
            try:
                async with client:
                    attempt = 0
                    self.connect_count += 1
                    log.info("mqtt connected to %s (connection %d)", where, self.connect_count)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                level = logging.INFO if attempt == 0 else logging.DEBUG
                log.log(level, "mqtt connection to %s lost or refused: %s", where, exc)
            finally:
                self._client = None
                self._connected.clear()
                for subscription in self._subscriptions:
                    subscription._subscribed.clear()
            if self._stopping.is_set():
                break
            delay_s = backoff_delay_s(
                attempt, self.config.reconnect_min_s, self.config.reconnect_max_s, self._rng
            )
            attempt += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay_s)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Run one connection until it breaks (raises MqttError) or we are stopping."""
        reader = asyncio.create_task(self._read(client), name="mqtt-reader")
        stopper = asyncio.create_task(self._stopping.wait(), name="mqtt-stop")
        self._client = client
        self._connected.set()
        try:
            await self._send_subscribe(client, list(self._subscriptions))
            await self._flush_retained(client)
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            self._connected.clear()
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader  # re-raises the reader's MqttError when the link broke

    async def _flush_retained(self, client: aiomqtt.Client) -> None:
        pending, self._pending_retained = self._pending_retained, {}
        for topic, (payload, qos) in pending.items():
            try:
                await client.publish(
                    topic, payload, qos=qos, retain=True, timeout=self.config.publish_timeout_s
                )
            except aiomqtt.MqttError:
                # Keep it unless something newer was queued meanwhile.
                self._pending_retained.setdefault(topic, (payload, qos))
                raise

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, (bytes, bytearray)):
                payload = b"" if payload is None else str(payload).encode()
            received = MqttMessage(
                topic=message.topic.value,
                payload=bytes(payload),
                qos=message.qos,
                retain=bool(message.retain),
            )
            for subscription in list(self._subscriptions):
                if message.topic.matches(subscription.topic_filter):
                    subscription._deliver(received)
