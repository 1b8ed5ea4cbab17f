"""Edge server discovery and failover from the retained status topics.

:class:`Discovery` subscribes to ``splitedge/v1/edge/+/status``, keeps the last known
state per server and answers, without I/O, which server a frame should go to:

- a server counts as **online** if its last message said ``online: true`` and it
  arrived less than ``stale_after_s`` ago (local monotonic receive time, so clock
  skew between device and server does not matter; a *retained* message whose
  publisher timestamp is already older than ``stale_after_s`` starts out stale);
- its **load** for a (model, branch) is the time a new frame is expected to spend on
  it: ``queue_ms_estimate + tail_ms(model, branch, p95)``; without a branch, the
  model's fastest branch. ``queue_ms_estimate`` is the server's own
  ``queue_wait_ms`` when it publishes one, else ``queue_depth`` times the mean tail
  p50 over its branches (a pessimistic bound: batching makes queues drain faster).
  A server whose queue is full sorts after every server with room.

``choose`` is stateless; ``select`` is sticky per model (no flapping between servers
from one status to the next) and moves on only when the current choice goes offline
(last will, explicit shutdown, stale) or stops serving the model; ``on_failover``
hears about every move. When the broker is down nothing blocks: the last known
states stay, ageing towards stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from splitedge.control_plane.link import MqttLink
from splitedge.control_plane.signing import RejectLog, SignatureError, Verifier
from splitedge.proto.aio import wait_within
from splitedge.proto.control import EDGE_STATUS_FILTER, EdgeStatus, MessageError, parse_status
from splitedge.proto.status import ServerStatus

__all__ = ["Discovery", "FailoverCallback", "ServerState"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerState:
    """What a device knows about one edge server; ``online`` already accounts for staleness."""

    status: EdgeStatus
    received_at_s: float  # monotonic receive time of the last message
    online: bool

    @property
    def load(self) -> ServerStatus:
        """The published load in the ``Status`` RPC's shape (one reader for both planes)."""
        return self.status.server_status()

    @property
    def server_id(self) -> str:
        """The server's id (from its topic)."""
        return self.status.server_id

    @property
    def address(self) -> str:
        """``host:port`` of its gRPC endpoint."""
        return self.status.address

    @property
    def queue_fill(self) -> float:
        """Queue depth over capacity (0 = idle, 1 = full)."""
        if self.status.queue_capacity <= 0:
            return 1.0
        return self.status.queue_depth / self.status.queue_capacity

    @property
    def queue_full(self) -> bool:
        """True when a new frame would be refused (RESOURCE_EXHAUSTED)."""
        return self.status.queue_depth >= self.status.queue_capacity

    @property
    def queue_ms_estimate(self) -> float:
        """Expected wait before a new frame starts on this server, in milliseconds."""
        if self.status.queue_wait_ms is not None:
            return self.status.queue_wait_ms
        p50s = [lat.p50_ms for b in self.status.tail_ms.values() for lat in b.values()]
        if not p50s or self.status.queue_depth == 0:
            return 0.0
        return self.status.queue_depth * sum(p50s) / len(p50s)

    def serves(self, model: str, branch: str | None = None) -> bool:
        """True if this server runs ``model`` (and ``branch``, when given)."""
        branches = self.status.models.get(model)
        if branches is None:
            return False
        return branch is None or branch in branches

    def tail_ms(self, model: str, branch: str, percentile: int = 95) -> float | None:
        """Rolling tail latency of (model, branch) at p50 or p95; None if not reported."""
        if percentile not in (50, 95):
            raise ValueError(f"percentile must be 50 or 95, got {percentile}")
        latency = self.status.tail_ms.get(model, {}).get(branch)
        if latency is None:
            return None
        return latency.p50_ms if percentile == 50 else latency.p95_ms

    def expected_ms(self, model: str, branch: str | None = None) -> float:
        """The load figure ``choose`` ranks by: queue wait + tail p95 (ms).

        An unreported tail counts as 0 ms (a fresh server has no history yet).
        """
        if branch is not None:
            tails = [self.tail_ms(model, branch)]
        else:
            tails = [self.tail_ms(model, b) for b in self.status.models.get(model, ())]
        known = [t for t in tails if t is not None]
        return self.queue_ms_estimate + (min(known) if known else 0.0)


FailoverCallback = Callable[[str, "ServerState | None", "ServerState | None"], None]


class Discovery:
    """Last known state of every edge server, fed by the status topics.

    Feed it with :meth:`run` (subscribes on ``link``) or :meth:`ingest` (tests,
    simulations). ``on_failover(model, old, new)`` is called when :meth:`select`'s
    choice for ``model`` changes because the old one went away (``new`` may be None).
    """

    def __init__(
        self,
        link: MqttLink | None = None,
        *,
        stale_after_s: float = 5.0,
        on_failover: FailoverCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
    ) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be > 0, got {stale_after_s}")
        self.stale_after_s = stale_after_s
        self.rejected_count = 0
        self._link = link
        self._on_failover = on_failover
        self._clock = clock
        self._wall_clock = wall_clock
        self._states: dict[str, tuple[EdgeStatus, float]] = {}
        self._selected: dict[tuple[str, str | None], str | None] = {}
        self._changed = asyncio.Event()
        self._verifier = verifier
        self._refused = RejectLog(log, "edge status")
        self._blocked: dict[tuple[str, str], str] = {}  # (server_id, address) -> reason

    # ------------------------------------------------------------------- feeding

    def ingest(self, topic: str, payload: bytes, *, retained: bool = False) -> EdgeStatus | None:
        """Take one status message; invalid ones are logged and ignored (None).

        With a ``verifier`` (a fleet key) only a valid, fresh signed envelope counts
        (:mod:`~splitedge.control_plane.signing`); refusals are logged at most once per
        10 s per topic and leave the known states as they were.
        """
        if self._verifier is not None:
            try:
                payload = self._verifier.open(topic, payload, retained=retained)
            except SignatureError as exc:
                if not exc.duplicate:
                    self.rejected_count += 1
                self._refused(topic, exc)
                return None
        try:
            status = parse_status(payload, topic)
        except MessageError as exc:
            self.rejected_count += 1
            log.warning("ignored edge status on %s: %s", topic, exc)
            return None
        now_s = self._clock()
        received_at_s = now_s
        age_s = self._wall_clock() - status.timestamp
        if retained and age_s > self.stale_after_s:
            # A retained state this old was left by a server we cannot vouch for.
            received_at_s = now_s - age_s
        self._states[status.server_id] = (status, received_at_s)
        self._changed.set()
        self._check_selections()
        return status

    async def run(self) -> None:
        """Consume the status topics on ``link`` until cancelled; checks staleness too."""
        if self._link is None:
            raise RuntimeError("Discovery.run needs a link; use ingest() without one")
        subscription = self._link.subscribe(EDGE_STATUS_FILTER, qos=1)
        try:
            while True:
                message = await subscription.get(timeout_s=self.stale_after_s / 2)
                if message is not None:
                    self.ingest(message.topic, message.payload, retained=message.retain)
                else:
                    self._check_selections()
        finally:
            subscription.close()

    async def wait_for_change(self, timeout_s: float) -> bool:
        """Wait for the next status message; False on timeout."""
        self._changed.clear()
        try:
            await wait_within(self._changed.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    # ------------------------------------------------------------------ querying

    def state(self, server_id: str) -> ServerState | None:
        """The last known state of one server (None if never heard of)."""
        entry = self._states.get(server_id)
        if entry is None:
            return None
        status, received_at_s = entry
        fresh = self._clock() - received_at_s <= self.stale_after_s
        online = status.online and fresh
        return ServerState(status=status, received_at_s=received_at_s, online=online)

    def servers(self) -> list[ServerState]:
        """Every known server (online or not), sorted by id."""
        states = (self.state(server_id) for server_id in sorted(self._states))
        return [s for s in states if s is not None]

    def candidates(
        self, model: str, branch: str | None = None, exclude: Iterable[str] = ()
    ) -> list[ServerState]:
        """Online servers for (model, branch), least loaded first."""
        skip = set(exclude)
        usable = [
            s
            for s in self.servers()
            if s.online
            and s.server_id not in skip
            and s.serves(model, branch)
            and not self.blocked(s)
        ]

        def rank(s: ServerState) -> tuple[bool, float, float, str]:
            return (s.queue_full, s.expected_ms(model, branch), s.queue_fill, s.server_id)

        return sorted(usable, key=rank)

    def choose(
        self, model: str, branch: str | None = None, exclude: Iterable[str] = ()
    ) -> ServerState | None:
        """The least-loaded online server for (model, branch), or None."""
        ranked = self.candidates(model, branch, exclude)
        return ranked[0] if ranked else None

    def select(self, model: str, branch: str | None = None) -> ServerState | None:
        """Sticky choice: keep the current server while it is online and serves the model."""
        key = (model, branch)
        had_choice = key in self._selected
        current_id = self._selected.get(key)
        current = self.state(current_id) if current_id is not None else None
        if (
            current is not None
            and current.online
            and current.serves(model, branch)
            and not self.blocked(current)
        ):
            return current
        chosen = self.choose(model, branch)
        chosen_id = chosen.server_id if chosen is not None else None
        # Remember "nothing" too, so a server coming back is announced as a failover.
        self._selected[key] = chosen_id
        if had_choice and chosen_id != current_id:
            self._notify(model, current, chosen)
        return chosen

    def block(self, state: ServerState, reason: str) -> None:
        """Never choose ``state``'s server at its current address again (the server
        reached there is not the one its status names); moves choices off it now.
        A status naming another address lifts it."""
        log.warning("edge %s at %s refused: %s", state.server_id, state.address, reason)
        self._blocked[(state.server_id, state.address)] = reason
        self._check_selections()

    def blocked(self, state: ServerState) -> str | None:
        """Why ``state`` was refused by :meth:`block`, or None."""
        return self._blocked.get((state.server_id, state.address))

    def _check_selections(self) -> None:
        """Move sticky choices off servers that went away (fires on_failover)."""
        for model, branch in list(self._selected):
            self.select(model, branch)

    def _notify(self, model: str, old: ServerState | None, new: ServerState | None) -> None:
        log.info(
            "failover for %s: %s -> %s",
            model,
            old.server_id if old else None,
            new.server_id if new else None,
        )
        if self._on_failover is not None:
            try:
                self._on_failover(model, old, new)
            except Exception:
                log.exception("on_failover callback failed (discovery goes on)")
