"""A rate-based branch rule: the simplest policy that adapts to the link.

It keeps, per candidate (branch, bit depth), running estimates of payload bytes,
device time (head + encode, or the whole local run) and server time, plus one
uplink throughput estimate shared by every remote branch: the harmonic mean of
the last ``window`` samples of the last ``horizon_s`` seconds (robust to one lucky
transfer; old conditions expire, and a collapse shows within a few frames).
Network time is split into a fixed floor (the smallest
network time of the last ``floor_horizon_s``: round trip and per-request costs,
which change more slowly than the rate, and cannot be told apart from transfer
time while only one payload size is sent) and a
per-byte part; samples are payload / (network time - floor), so small payloads
do not make the link look slow. A frame the edge missed counts as a slow sample.

Each frame it picks the most
preferred candidate whose predicted latency fits ``sla_ms`` x ``margin``; if none
fits, the fastest. Unmeasured candidates are probed once, in order, first; and
when no frame has crossed the link for ``probe_every`` frames (all went local),
the remote candidate with the smallest payload is sent once to re-measure it.

Server time is the running estimate from the frames' own timing; when
``server_hint`` is given (e.g. the load an edge publishes on MQTT: queue wait +
tail p95 for that branch) the prediction takes the larger of the two, so a queue
that other devices built up counts before this device's frames feel it.

This is a baseline, not the adaptive scheduler: it knows no accuracy profile
(the caller orders candidates by preference) and no latency quantiles.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from splitedge.mobile_client.outcome import FrameOutcome


@dataclass(frozen=True)
class Candidate:
    """One choice for a frame: a branch at a bit depth, detecting or tracking.

    ``bits`` follows ``Client.submit``: ``None`` = the branch's default depth, 0 =
    float tensors, n = n-bit. A profile entry
    (:class:`~splitedge.mobile_client.profile.BranchConfig`) stores 0 for "not
    quantized" and never ``None``; convert with
    :func:`~splitedge.mobile_client.profile.request_bits`.
    """

    branch: str
    bits: int | None = None  # None = the branch's default; 0 = float (not BranchConfig's 0)
    remote: bool = True
    # Detect-vs-track: detect every ``interval``-th frame; a ``track`` candidate is a frame
    # in between, handled by the on-device tracker (nothing crosses the link).
    interval: int = 1
    track: bool = False

    @property
    def label(self) -> str:
        """The cost identity (what a profile is keyed by): the same for every interval."""
        return self.branch if self.bits is None else f"{self.branch}/{self.bits}bit"

    @property
    def tag(self) -> str:
        """The label plus the detection interval and ``+track`` (what a result row records)."""
        k = f"/k{self.interval}" if self.interval > 1 else ""
        return f"{self.label}{k}{'+track' if self.track else ''}"

    @property
    def uses_link(self) -> bool:
        return self.remote and not self.track


@dataclass
class _Estimate:
    device_ms: float = 0.0
    server_ms: float = 0.0
    payload_bytes: float = 0.0
    samples: int = 0

    def update(self, device_ms: float, server_ms: float, payload_bytes: float) -> None:
        a = 0.3 if self.samples else 1.0  # EWMA; the first sample sets it
        self.device_ms += a * (device_ms - self.device_ms)
        self.server_ms += a * (server_ms - self.server_ms)
        self.payload_bytes += a * (payload_bytes - self.payload_bytes)
        self.samples += 1


@dataclass
class RateRule:
    candidates: list[Candidate]  # most preferred first
    sla_ms: float
    margin: float = 0.8
    horizon_s: float = 3.0
    window: int = 5
    floor_horizon_s: float = 30.0
    probe_every: int = 5
    clock: Callable[[], float] = time.monotonic
    server_hint: Callable[[Candidate], float | None] | None = None
    _est: dict[Candidate, _Estimate] = field(default_factory=dict)
    _rates: deque[tuple[float, float]] = field(default_factory=deque)  # (time_s, mbps)
    _network: deque[tuple[float, float]] = field(default_factory=deque)  # (time_s, ms)
    _since_remote: int = 0

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("RateRule needs at least one candidate")
        self._est = {c: _Estimate() for c in self.candidates}

    @property
    def bandwidth_mbps(self) -> float:
        """Harmonic mean of the last ``horizon_s`` of throughput samples (0: unknown)."""
        since = self.clock() - self.horizon_s
        recent = [r for t, r in self._rates if t >= since][-self.window :]
        # With no recent sample the link is unknown: predict no transfer time, so a
        # remote branch gets tried and measured again.
        return len(recent) / sum(1.0 / r for r in recent) if recent else 0.0

    @property
    def network_floor_ms(self) -> float:
        """Smallest network time of the horizon: what a frame costs beyond its bytes."""
        since = self.clock() - self.floor_horizon_s
        return min((ms for t, ms in self._network if t >= since), default=0.0)

    def _add(self, samples: deque[tuple[float, float]], value: float, horizon_s: float) -> None:
        now = self.clock()
        samples.append((now, value))
        while samples and samples[0][0] < now - horizon_s:
            samples.popleft()

    def predict_ms(self, candidate: Candidate) -> float:
        est = self._est[candidate]
        if not candidate.remote:
            return est.device_ms
        bw = self.bandwidth_mbps
        transfer_ms = est.payload_bytes * 8 / (bw * 1000) if bw > 0 else 0.0
        server_ms = est.server_ms
        hint = self.server_hint(candidate) if self.server_hint is not None else None
        if hint is not None:
            server_ms = max(server_ms, hint)
        return est.device_ms + self.network_floor_ms + transfer_ms + server_ms

    def pick(self) -> Candidate:
        for candidate in self.candidates:
            if self._est[candidate].samples == 0:
                return candidate  # probe every candidate once
        remote = [c for c in self.candidates if c.remote]
        if remote and self._since_remote >= self.probe_every:
            return min(remote, key=lambda c: self._est[c].payload_bytes)
        budget = self.sla_ms * self.margin
        for candidate in self.candidates:
            if self.predict_ms(candidate) <= budget:
                return candidate
        return min(self.candidates, key=self.predict_ms)

    def observe(self, candidate: Candidate, outcome: FrameOutcome) -> None:
        t = outcome.timing
        self._since_remote = 0 if candidate.remote else self._since_remote + 1
        if outcome.source == "edge":
            self._est[candidate].update(
                t.head_ms + t.encode_ms, t.server.server_total_ms, outcome.payload_bytes
            )
            if t.network_ms > 0:
                self._add(self._network, t.network_ms, self.floor_horizon_s)
                # A sample only when the bytes took measurably longer than the floor.
                transfer_ms = t.network_ms - self.network_floor_ms
                if outcome.payload_bytes > 0 and transfer_ms >= 1.0:
                    mbps = outcome.payload_bytes * 8 / (transfer_ms * 1000)
                    self._add(self._rates, mbps, self.horizon_s)
        elif outcome.source == "local" and not candidate.remote:
            self._est[candidate].update(t.local_ms, 0.0, 0.0)
        elif candidate.remote and outcome.payload_bytes > 0 and t.total_ms > 0:
            # The edge missed: the payload did not make it in total_ms, so the link
            # carried at most this much; the rule backs off until faster samples come.
            mbps = max(outcome.payload_bytes * 8 / (t.total_ms * 1000), 1e-3)
            self._add(self._rates, mbps, self.horizon_s)
