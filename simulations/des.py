"""A discrete-event simulator of many clients sharing edge GPUs, driven by a measured profile.

It replays, in simulated time, what the real runner does: each client takes the
newest camera frame when it is free (ticks it misses are ``busy`` drops), asks
its policy for a candidate, spends the profile's device time, sends the
candidate's wire bytes over its own FIFO uplink (a :class:`LinkModel` of its
trace: 1500-byte delivery opportunities, as the emulated link), and waits for
the result until its deadline, then falls back to running locally. The server
mirrors :class:`splitedge.edge.batcher.Batcher`: a queue per branch whose first
frame waits at most ``max_queue_delay_ms`` for up to ``max_batch_size - 1``
companions, then the batch waits for one of ``gpus`` workers (frames arriving
meanwhile join it) and runs for the profile's tail time at that batch size;
admission beyond ``queue_capacity`` is refused; frames whose deadline passed are
dropped uncomputed. Results come back over the client's downlink. A ``track``
candidate (detect-vs-track: a frame between detections) spends
``DesConfig.tracker_ms`` on the device (with ``jitter``, a draw from the measured
tracker's samples, those taken beside the device's own model while that runs) and
puts nothing on the link. A policy with
a ``frame_budget(frame_index)`` method (the adaptive session's, see
:mod:`splitedge.simulations.des_adaptive`) sets each frame's deadline and whether
the local model or the tracker answers when it passes.

Outputs are the real runner's :class:`~splitedge.simulations.report.FrameRow`
rows (optional: off for 10,000 clients) and per-policy summaries. What-if
helpers: :func:`min_gpus` (fewest GPUs for N clients at an SLA) and
:func:`batching_effect` (same load with and without batching).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.policy import Candidate
from splitedge.mobile_client.profile import Profile
from splitedge.mobile_client.scheduler import SchedulerError
from splitedge.proto.status import ServerTiming, StatusCode
from splitedge.simulations.des_adaptive import session_policy
from splitedge.simulations.policies import Policy, PolicyError, make_policy, scheduler_candidates
from splitedge.simulations.profiles import CandidateProfile, CostProfile, LinkModel
from splitedge.simulations.report import FrameRow, PolicySummary
from splitedge.simulations.scenario import PolicyConfig, Scenario
from splitedge.simulations.traces import BandwidthTrace

__all__ = [
    "DesConfig",
    "DesResult",
    "PolicyFactory",
    "batching_effect",
    "min_gpus",
    "one_way",
    "policy_factory",
    "simulate",
]


def one_way(
    link: LinkModel, leave_s: float, size_bytes: float, delay_s: float, overhead_s: float = 0.0
) -> float:
    """When ``size_bytes`` that leave at ``leave_s`` arrive across ``link``: after
    ``overhead_s`` (the per-frame cost beyond bytes and server time, the client's gRPC path
    mostly, paid before the bytes reach the link, so on a trace it overlaps with the wait
    for the next delivery opportunity, as on the real path), the link's opportunities
    (FIFO: taken), then the propagation delay. Replayed at their send times, 16 real runs'
    464 edge answers on ATT-LTE (``benchmarks.des_validation.link_replay_errors``) read
    DES - real median +1.3 ms, 90 % within 5.8 ms, against +2.4 / 9.9 ms with half the
    overhead added after each direction (docs/benchmarks.md)."""
    return link.send(leave_s + overhead_s, size_bytes) + delay_s


PolicyFactory = Callable[[int, Callable[[], float]], Policy]
"""``factory(client_index, clock)`` -> that client's policy (``clock``: simulated seconds)."""
# The adaptive session's Status RPC on the wire: a request with its gRPC/HTTP/2 headers;
# the reply, the server's status for a model of ten branches with four batch sizes each
# (1.7 kB of protobuf, measured) and its framing.
STATUS_REQUEST_BYTES = 150
STATUS_REPLY_BYTES = 1900
_LATE = StatusCode.DEADLINE_EXCEEDED.reason  # a frame past its deadline, as the device says


@dataclass(frozen=True)
class DesConfig:
    """One simulated setting; times in ms unless named ``_s``."""

    clients: int
    duration_s: float
    fps: float
    sla_ms: float
    deadline_ms: float
    uplink: BandwidthTrace
    downlink: BandwidthTrace
    delay_ms: float = 0.0
    client_offset_s: float = 0.0
    aligned: bool = False  # every camera ticks at once; else client i is i/N period late
    gpus: int = 1
    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0
    queue_capacity: int = 64
    jitter: bool = False  # draw device and tail times from the profile's samples
    seed: int = 0
    keep_rows: bool = True
    tracker_ms: float = 0.0  # device time of a tracked frame (a ``track`` candidate)
    # With ``jitter``, a tracked frame's time is drawn from these (CostProfile's measured
    # tracker): ``tracker_busy_ms_samples`` while the device's own model runs beside it.
    tracker_ms_samples: tuple[float, ...] = ()
    tracker_busy_ms_samples: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        checks = {
            "clients": self.clients >= 1,
            "duration_s": self.duration_s > 0,
            "fps": self.fps > 0,
            "sla_ms": self.sla_ms > 0,
            "deadline_ms": self.deadline_ms > 0,
            "gpus": self.gpus >= 1,
            "max_batch_size": self.max_batch_size >= 1,
            "max_queue_delay_ms": self.max_queue_delay_ms >= 0,
            "queue_capacity": self.queue_capacity >= 1,
            "delay_ms": self.delay_ms >= 0,
            "client_offset_s": self.client_offset_s >= 0,
            "tracker_ms": self.tracker_ms >= 0,
            "tracker_ms_samples": all(t >= 0 for t in self.tracker_ms_samples),
            "tracker_busy_ms_samples": all(t >= 0 for t in self.tracker_busy_ms_samples),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"DesConfig.{name}: out of range: {getattr(self, name)!r}")

    @classmethod
    def from_scenario(cls, scenario: Scenario, **overrides: Any) -> DesConfig:
        """The scenario's setting (its edge batching as one GPU per tail worker)."""
        base = cls(
            clients=scenario.clients,
            duration_s=scenario.duration_s,
            fps=scenario.fps,
            sla_ms=scenario.sla_ms,
            deadline_ms=scenario.deadline_ms,
            uplink=scenario.uplink,
            downlink=scenario.downlink,
            delay_ms=scenario.delay_ms,
            client_offset_s=scenario.client_offset_s,
            aligned=scenario.camera_phase == "aligned",
            gpus=scenario.edge.tail_workers,
            max_batch_size=scenario.edge.max_batch_size,
            max_queue_delay_ms=scenario.edge.max_queue_delay_ms,
            queue_capacity=scenario.edge.queue_capacity,
        )
        return replace(base, **overrides)


@dataclass
class DesResult:
    summary: PolicySummary
    rows: list[FrameRow]
    events: int  # processed events (a cost measure)
    gpu_busy_s: float  # tail time summed over GPUs


# ---------------------------------------------------------------------- state


@dataclass
class _Frame:
    client: int
    index: int
    start_s: float
    candidate: Candidate
    profile: CandidateProfile
    device_ms: float
    deadline_s: float  # client side: when it gives up and falls back
    server_deadline_s: float = math.inf
    sent_s: float = 0.0
    arrived_s: float = 0.0
    enqueued_s: float = 0.0
    queue_ms: float = 0.0
    tail_ms: float = 0.0
    batch_size: int = 0
    server_ms: float = 0.0
    done: bool = False
    fallback: str = "local"  # what runs when the edge misses: "local" or "track"
    probe: bool = False  # sent beside a frame only to measure the link: no row, no wait


class _Client:
    __slots__ = (
        "boxes_from", "busy", "detecting_until", "downlink", "index", "next_frame", "policy",
        "unanswered", "up_rates", "uplink",
    )  # fmt: skip

    def __init__(self, index: int, policy: Policy, uplink: LinkModel, downlink: LinkModel) -> None:
        self.index = index
        self.policy = policy
        self.uplink = uplink
        self.downlink = downlink
        self.next_frame = 0
        self.busy = False
        self.detecting_until = -math.inf  # a detection by the device's model in the background
        self.boxes_from = -1  # the frame of the newest detection the device has the boxes of
        self.unanswered = 0  # frames (and probes) sent whose answer has not come back


class _Branch:
    __slots__ = ("items", "token", "wants_slot", "window_open")

    def __init__(self) -> None:
        self.items: deque[_Frame] = deque()
        self.token = 0  # invalidates a scheduled flush when the batch forms early
        self.window_open = False
        self.wants_slot = False


class _Collector:
    """Per-frame results, compact enough for millions of frames."""

    def __init__(self, policy: str, sla_ms: float, keep_rows: bool) -> None:
        self.policy = policy
        self.sla_ms = sla_ms
        self.latency = array("d")
        self.frames = 0
        self.sla_met = 0
        self.fallbacks = 0
        self.drops: Counter[str] = Counter()
        self.uplink_bytes = 0.0
        self.probes = 0  # frames sent only to measure the link (adaptive schedulers')
        self.probe_bytes = 0.0  # payload of the probes beside frames: in no row
        self.batch_sum = 0
        self.batch_count = 0
        self.mix: Counter[str] = Counter()
        self.rows: list[FrameRow] | None = [] if keep_rows else None

    def add(self, row: FrameRow) -> None:
        self.frames += 1
        if row.source == "dropped":
            self.drops[row.reason] += 1
        else:
            self.latency.append(row.latency_ms)
            self.mix[row.candidate] += 1
            self.fallbacks += row.source == "local" and row.reason != ""
            if row.batch_size > 0:
                self.batch_sum += row.batch_size
                self.batch_count += 1
        self.sla_met += row.sla_met
        self.uplink_bytes += row.payload_bytes
        if self.rows is not None:
            self.rows.append(row)

    def summary(self) -> PolicySummary:
        lat = np.frombuffer(self.latency, dtype=np.float64) if self.latency else np.zeros(0)

        def pct(q: float) -> float:
            return float(np.percentile(lat, q)) if lat.size else math.nan

        return PolicySummary(
            policy=self.policy,
            frames=self.frames,
            answered=int(lat.size),
            p50_ms=pct(50),
            p95_ms=pct(95),
            p99_ms=pct(99),
            sla_violation_pct=100.0 * (self.frames - self.sla_met) / max(self.frames, 1),
            fallbacks=self.fallbacks,
            drops=dict(sorted(self.drops.items())),
            uplink_mb=(self.uplink_bytes + self.probe_bytes) / 1e6,
            mean_batch=self.batch_sum / self.batch_count if self.batch_count else math.nan,
            quality=math.nan,
            branch_mix=dict(self.mix.most_common()),
            probes=self.probes,
            probe_mb=self.probe_bytes / 1e6,
        )


# ---------------------------------------------------------------------- engine


class _Simulation:
    def __init__(
        self, config: DesConfig, profile: CostProfile, factory: PolicyFactory, name: str
    ) -> None:
        self.cfg = config
        self.profile = profile
        self.local = profile.local
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self.seq = itertools.count()
        self.rng = random.Random(config.seed)
        self.period_s = 1.0 / config.fps
        self.total_frames = math.ceil(config.duration_s * config.fps - 1e-9)
        self.free_gpus = config.gpus
        self.slot_waiters: deque[str] = deque()
        self.branches: dict[str, _Branch] = {}
        self.waiting = 0  # admitted, not yet in a batch (the edge's admission count)
        self.gpu_busy_s = 0.0
        self.out = _Collector(name, config.sla_ms, config.keep_rows)
        self.overhead_s = profile.overhead_ms / 1000  # paid before the uplink (one_way)
        self.delay_s = config.delay_ms / 1000
        up, down = LinkModel(config.uplink), LinkModel(config.downlink)
        self.clients = [
            _Client(
                i,
                factory(i, self.clock),
                up.fork(i * config.client_offset_s),
                down.fork(i * config.client_offset_s),
            )
            for i in range(config.clients)
        ]
        self.uplink_trace = config.uplink

    def clock(self) -> float:
        return self.now

    def at(self, t_s: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self.events, (t_s, next(self.seq), fn, args))

    def run(self) -> int:
        for c in self.clients:
            self.at(0.0, self.client_free, c)
        count = 0
        while self.events:
            self.now, _, fn, args = heapq.heappop(self.events)
            fn(*args)
            count += 1
        return count

    def draw(self, median: float, samples: Sequence[float]) -> float:
        if self.cfg.jitter and samples:
            return samples[self.rng.randrange(len(samples))]
        return median

    def tracker_ms(self, c: _Client) -> float:
        """A tracked frame's device time: beside the device's own model while that runs."""
        cfg = self.cfg
        busy = self.now < c.detecting_until and cfg.tracker_busy_ms_samples
        return self.draw(
            cfg.tracker_ms, cfg.tracker_busy_ms_samples if busy else cfg.tracker_ms_samples
        )

    # -- clients ------------------------------------------------------------------

    def phase_s(self, client: int) -> float:
        return 0.0 if self.cfg.aligned else client * self.period_s / self.cfg.clients

    def client_free(self, c: _Client) -> None:
        k = c.next_frame
        phase_s = self.phase_s(c.index)
        newest = math.floor((self.now - phase_s) / self.period_s + 1e-9)
        if newest >= k:
            start_s = self.now
        else:
            start_s, newest = phase_s + k * self.period_s, k
        offset = c.index * self.cfg.client_offset_s
        for skipped in range(k, min(newest, self.total_frames)):
            t = phase_s + skipped * self.period_s
            self.out.add(
                FrameRow(
                    self.out.policy,
                    c.index,
                    skipped,
                    t,
                    self.uplink_trace.rate_at(t + offset),
                    "",
                    "dropped",
                    "busy",
                )
            )
        c.next_frame = newest
        if newest >= self.total_frames:
            return
        if start_s > self.now:
            self.at(start_s, self.start_frame, c)
        else:
            self.start_frame(c)

    def start_frame(self, c: _Client) -> None:
        k = c.next_frame
        due = getattr(c.policy, "status_due", None)
        if due is not None and due(self.now):
            self._status(c)
        candidate = c.policy.pick(k, self.now)
        if self.now < c.detecting_until:
            # The device's model is busy with a background detection: a frame that needs it
            # is tracked instead (the adaptive session's rule, ``track_instead``).
            swap = getattr(c.policy, "track_instead", None)
            tracked = swap(k) if swap is not None else None
            candidate = tracked if tracked is not None else candidate
        cp = self.profile.get(candidate)
        if candidate.track:  # the on-device tracker: nothing crosses the link
            device_ms = self.tracker_ms(c)
        else:
            device_ms = self.draw(cp.device_ms, cp.device_ms_samples)
        # A policy may set its own per-frame budget (the adaptive session's SLA-based one).
        budget = getattr(c.policy, "frame_budget", None)
        plan = budget(k) if budget is not None else None
        deadline_ms, fallback = plan if plan is not None else (self.cfg.deadline_ms, "local")
        frame = _Frame(
            c.index,
            k,
            self.now,
            candidate,
            cp,
            device_ms,
            deadline_s=self.now + deadline_ms / 1000,
            fallback=fallback,
        )
        c.busy = True
        side = getattr(c.policy, "side_probe", None)
        probe = side(k) if side is not None else None
        if probe is not None:  # the adaptive scheduler's probe beside a local frame
            pp = self.profile.get(probe)
            self.out.probe_bytes += int(pp.payload_bytes)
            self._send(
                c,
                _Frame(
                    c.index, k, self.now, probe, pp, pp.device_ms,
                    deadline_s=self.now + self.cfg.sla_ms / 1000, probe=True,
                ),
            )  # fmt: skip
        background = getattr(c.policy, "background_wait", None)
        wait_ms = (
            background(k) if background is not None and self.now >= c.detecting_until else None
        )
        if wait_ms is not None and device_ms > wait_ms:
            # The device's own detection outlasts what its frame may wait: the tracker answers
            # the frame after that wait, the detection goes on in the background.
            c.detecting_until = self.now + device_ms / 1000
            self.at(c.detecting_until, self.background_done, c, frame)
            tracked = c.policy.to_background(k)  # type: ignore[attr-defined]
            answer = replace(frame, candidate=tracked, profile=self.profile.get(tracked))
            answer.device_ms = self.tracker_ms(c)
            done_s = self.now + (wait_ms + answer.device_ms) / 1000
            self.at(done_s, self.finish, c, answer, "local", "", 0.0)
            return
        if not candidate.uses_link:
            self.at(self.now + device_ms / 1000, self.finish, c, frame, "local", "", 0.0)
            return
        self._send(c, frame)

    def _status(self, c: _Client) -> None:
        """The adaptive session's Status RPC: a small request and reply over the client's
        links (queued behind its frames' bytes, waiting out a trace's delivery gaps)."""
        idle = c.unanswered == 0
        at_server = one_way(c.uplink, self.now, STATUS_REQUEST_BYTES, self.delay_s, self.overhead_s)
        back = one_way(c.downlink, at_server, STATUS_REPLY_BYTES, self.delay_s)
        self.at(back, self._status_back, c, self.now, idle)

    def _status_back(self, c: _Client, sent_s: float, idle: bool) -> None:
        # A pure round trip only on a link idle when it left and when it came back.
        rtt_ms = (self.now - sent_s) * 1000 if idle and c.unanswered == 0 else None
        c.policy.status_done(rtt_ms)  # type: ignore[attr-defined]

    def background_done(self, c: _Client, frame: _Frame) -> None:
        """A background detection ended: its outcome teaches the policy (no one waited)."""
        frame.done = True
        c.boxes_from = max(c.boxes_from, frame.index)
        outcome = self._outcome(frame, "local", "", 0.0)
        outcome.track_age = 0  # the detection's own frame
        c.policy.observe_background(frame.index, outcome)  # type: ignore[attr-defined]

    def _send(self, c: _Client, frame: _Frame) -> None:
        c.unanswered += 1
        cp = frame.profile
        frame.sent_s = self.now + frame.device_ms / 1000
        frame.arrived_s = one_way(
            c.uplink, frame.sent_s, cp.uplink_wire_bytes, self.delay_s, self.overhead_s
        )
        # The server's budget counts from arrival: what was left when the frame left.
        frame.server_deadline_s = frame.arrived_s + (frame.deadline_s - frame.sent_s)
        self.at(frame.arrived_s, self.server_arrival, frame)
        self.at(frame.deadline_s, self.client_timeout, c, frame)

    def client_timeout(self, c: _Client, frame: _Frame) -> None:
        if frame.done:
            return
        if frame.probe:
            self.probe_done(c, frame, "local", _LATE)
            return
        self.fallback(c, frame, _LATE)

    def probe_done(self, c: _Client, frame: _Frame, source: str, reason: str) -> None:
        """A probe's outcome goes to its policy only: nobody waited for it."""
        frame.done = True
        outcome = self._outcome(frame, source, reason, 0.0)
        observe = getattr(c.policy, "observe_probe", None)
        if observe is not None:
            observe(frame.candidate, outcome)

    def fallback(self, c: _Client, frame: _Frame, reason: str) -> None:
        frame.done = True
        if frame.fallback == "track":  # the tracker carries the last result's boxes
            local_ms = self.tracker_ms(c)
            self.at(self.now + local_ms / 1000, self.finish, c, frame, "local", reason, local_ms)
            return
        if self.local is None:
            self.finish(c, frame, "dropped", reason, 0.0)
            return
        local_ms = self.draw(self.local.device_ms, self.local.device_ms_samples)
        self.at(self.now + local_ms / 1000, self.finish, c, frame, "local", reason, local_ms)

    def result_at_client(self, frame: _Frame, status: StatusCode) -> None:
        c = self.clients[frame.client]
        c.unanswered -= 1  # answered, even if the client gave up on it
        if frame.done:
            # The client gave up on it already. Its answer still measures the link (the
            # real client hands a late answer's bytes and network time to the policy,
            # whatever the edge said: one refused past its deadline crossed the link too).
            late = getattr(c.policy, "observe_late_answer", None)
            if late is not None:
                network_ms = (self.now - frame.sent_s) * 1000 - frame.server_ms
                if network_ms > 0:
                    late(int(frame.profile.payload_bytes), network_ms)
            return
        error = status.reason  # as the device records an edge's status
        if frame.probe:
            self.probe_done(c, frame, "dropped" if error else "edge", error)
            return
        if error:
            self.fallback(c, frame, error)
            return
        self.finish(c, frame, "edge", "", 0.0)

    def _outcome(self, frame: _Frame, source: str, reason: str, local_ms: float) -> FrameOutcome:
        """What the device records for ``frame`` now: its timing breakdown and bytes."""
        latency_ms = (self.now - frame.start_s) * 1000
        remote = frame.candidate.uses_link
        edge = source == "edge"
        network_ms = latency_ms - frame.device_ms - frame.server_ms if edge else 0.0
        timing = FrameTiming(
            head_ms=frame.device_ms if remote else 0.0,
            network_ms=network_ms,
            roundtrip_ms=network_ms + frame.server_ms if edge else 0.0,
            server=ServerTiming(
                queue_ms=frame.queue_ms,
                tail_ms=frame.tail_ms,
                server_total_ms=frame.server_ms if edge else 0.0,
                batch_size=frame.batch_size if edge else 0,
            ),
            local_ms=local_ms if remote else frame.device_ms,
            total_ms=latency_ms,
        )
        payload = int(frame.profile.payload_bytes) if remote else 0
        return FrameOutcome(
            frame.index, frame.candidate.branch, source, reason, None, timing, payload
        )  # type: ignore[arg-type]

    def finish(
        self,
        c: _Client,
        frame: _Frame,
        source: str,
        reason: str,
        local_ms: float,
    ) -> None:
        frame.done = True
        outcome = self._outcome(frame, source, reason, local_ms)
        timing = outcome.timing
        latency_ms, remote = timing.total_ms, frame.candidate.uses_link
        t_capture = self.phase_s(c.index) + frame.index * self.period_s
        tracked = frame.candidate.track or (
            source == "local" and reason != "" and frame.fallback == "track"
        )
        if source == "dropped":
            track_age = -1
        elif tracked:
            track_age = frame.index - c.boxes_from
        else:
            track_age = 0
            c.boxes_from = max(c.boxes_from, frame.index)
        outcome.track_age = track_age  # as the session records it (its boxes' age)
        c.policy.observe(frame.candidate, outcome)
        self.out.add(
            FrameRow(
                policy=self.out.policy,
                client=c.index,
                frame_index=frame.index,
                t_s=t_capture,
                uplink_mbps=self.uplink_trace.rate_at(
                    t_capture + c.index * self.cfg.client_offset_s
                ),
                candidate=frame.candidate.tag,
                source=source,
                reason=reason,
                latency_ms=latency_ms if source != "dropped" else math.nan,
                device_ms=frame.device_ms if remote else 0.0,
                network_ms=timing.network_ms,
                server_ms=timing.server.server_total_ms,
                queue_ms=timing.server.queue_ms if source == "edge" else 0.0,
                tail_ms=timing.server.tail_ms if source == "edge" else 0.0,
                local_ms=timing.local_ms,
                batch_size=timing.server.batch_size,
                payload_bytes=outcome.payload_bytes,
                sla_met=source != "dropped" and latency_ms <= self.cfg.sla_ms,
                track_age=track_age,
            )
        )
        c.busy = False
        c.next_frame = frame.index + 1
        self.client_free(c)

    # -- server -------------------------------------------------------------------

    def server_arrival(self, frame: _Frame) -> None:
        cp = frame.profile
        self.at(self.now + cp.decode_ms / 1000, self.admit, frame)

    def admit(self, frame: _Frame) -> None:
        if self.waiting >= self.cfg.queue_capacity:
            self.reply(frame, StatusCode.RESOURCE_EXHAUSTED)
            return
        self.waiting += 1
        frame.enqueued_s = self.now
        key = frame.candidate.branch  # the edge batches per (model, branch), any bit depth
        branch = self.branches.setdefault(key, _Branch())
        branch.items.append(frame)
        self.kick(key, branch)

    def kick(self, key: str, branch: _Branch) -> None:
        """Open a window, or ask for a GPU when the batch is full or its window has closed."""
        if branch.wants_slot or not branch.items:
            return
        flush_at = branch.items[0].enqueued_s + self.cfg.max_queue_delay_ms / 1000
        if len(branch.items) >= self.cfg.max_batch_size or flush_at <= self.now:
            branch.token += 1
            branch.window_open = False
            branch.wants_slot = True
            self.slot_waiters.append(key)
            self.grant()
        elif not branch.window_open:
            branch.window_open = True
            self.at(flush_at, self.flush, key, branch, branch.token)

    def flush(self, key: str, branch: _Branch, token: int) -> None:
        if token == branch.token:
            branch.window_open = False
            self.kick(key, branch)

    def grant(self) -> None:
        while self.free_gpus > 0 and self.slot_waiters:
            key = self.slot_waiters.popleft()
            branch = self.branches[key]
            branch.wants_slot = False
            n = min(self.cfg.max_batch_size, len(branch.items))
            batch = [branch.items.popleft() for _ in range(n)]
            self.waiting -= n
            live = []
            for f in batch:
                if self.now >= f.server_deadline_s:
                    # Failed uncomputed, as the edge does.
                    self.reply(f, StatusCode.DEADLINE_EXCEEDED)
                else:
                    live.append(f)
            if live:
                self.free_gpus -= 1
                cp = live[0].profile
                tail_ms = cp.tail_ms(len(live))
                if self.cfg.jitter and cp.tail_ms_samples and cp.tail_ms_by_batch.get(1):
                    # Scale by a batch-1 sample's ratio to its median: jitter, same shape.
                    ratio = self.rng.choice(cp.tail_ms_samples) / cp.tail_ms_by_batch[1]
                    tail_ms *= ratio
                for f in live:
                    f.queue_ms = (self.now - f.enqueued_s) * 1000
                    f.tail_ms = tail_ms
                    f.batch_size = len(live)
                self.gpu_busy_s += tail_ms / 1000
                self.at(self.now + tail_ms / 1000, self.batch_done, live)
            self.kick(key, branch)

    def batch_done(self, batch: list[_Frame]) -> None:
        self.free_gpus += 1
        for f in batch:
            encode_s = f.profile.server_encode_ms / 1000
            f.server_ms = (self.now + encode_s - f.arrived_s) * 1000
            self.at(self.now + encode_s, self.reply, f, StatusCode.OK)
        self.grant()

    def reply(self, frame: _Frame, status: StatusCode) -> None:
        c = self.clients[frame.client]
        if status is not StatusCode.OK:
            frame.server_ms = (self.now - frame.arrived_s) * 1000
        back = one_way(c.downlink, self.now, frame.profile.downlink_wire_bytes, self.delay_s)
        self.at(back, self.result_at_client, frame, status)


# ---------------------------------------------------------------------- API


def policy_factory(
    config: PolicyConfig,
    candidates: Sequence[Candidate],
    des: DesConfig,
    profile: CostProfile,
    **policy_options: Any,
) -> PolicyFactory:
    """A factory building ``config``'s policy for each simulated client.

    ``policy_options`` go to :func:`~splitedge.simulations.policies.make_policy`
    (the oracle's accuracies, ...). An ``adaptive`` policy is built as the runner
    builds it (:func:`~splitedge.simulations.des_adaptive.session_policy`): its
    scheduler over ``config.scheduler_profile`` (or ``scheduler_profile=``), told the
    camera's frame period, restricted to ``config.branches`` when set, one round trip
    (``2 x delay + overhead``) observed before the first frame, and the session's
    per-frame budget (``content=``: the run's video's boxes for its content features,
    :func:`~splitedge.simulations.des_adaptive.replay_content`); ``profile`` must then
    cost its candidates
    (:func:`~splitedge.simulations.des_adaptive.adaptive_costs`), and ``des.tracker_ms``
    the device's tracker time (:func:`~splitedge.simulations.des_adaptive.tracker_costs`).
    With ``des.jitter`` and measured tracker samples, each session first learns the
    slowest of three drawn from those taken beside the device's model, as the real session
    times its tracker before the first frame.
    """
    if config.kind == "adaptive":
        return _adaptive_factory(config, des, profile, **policy_options)

    def build(client: int, clock: Callable[[], float]) -> Policy:
        offset_s = client * des.client_offset_s
        up, down = des.uplink, des.downlink
        if offset_s > 0:
            up = up.slice(offset_s, offset_s + up.duration_s)
            down = down.slice(offset_s, offset_s + down.duration_s)
        return make_policy(
            config,
            candidates,
            sla_ms=des.sla_ms,
            uplink=up,
            downlink=down,
            delay_ms=des.delay_ms,
            profile=profile,
            clock=clock,
            **policy_options,
        )

    return build


def _adaptive_factory(
    config: PolicyConfig,
    des: DesConfig,
    profile: CostProfile,
    *,
    scheduler_profile: Profile | None = None,
    scheduler_options: Mapping[str, Any] | None = None,
    content: Callable[[int, str], Any] | None = None,
    **_: Any,
) -> PolicyFactory:
    sched = scheduler_profile or config.scheduler_profile
    if sched is None:
        raise PolicyError(f"policy {config.name!r} (adaptive) needs a scheduler profile")
    missing = sorted(
        {c.label for c in scheduler_candidates(sched).values()} - set(profile.candidates)
    )
    if missing:
        raise PolicyError(
            f"policy {config.name!r}: the cost profile has no candidate {missing[0]!r} of its "
            "scheduler profile (build the costs with des_adaptive.adaptive_costs)"
        )
    options = dict(scheduler_options or {})
    if config.latency_weight is not None:
        options.setdefault("latency_weight", config.latency_weight)
    branches = set(config.branches) if config.branches else None
    ping_ms = 2 * des.delay_ms + profile.overhead_ms
    try:  # a profile the scheduler refuses: one line, now, not in every client
        session_policy(
            sched, des.sla_ms, fps=des.fps, clock=time.monotonic, branches=branches, **options
        )
    except SchedulerError as exc:
        raise PolicyError(f"policy {config.name!r}: {exc}") from exc

    timed = des.tracker_busy_ms_samples or des.tracker_ms_samples

    def build(client: int, clock: Callable[[], float]) -> Policy:
        policy = session_policy(
            sched,
            des.sla_ms,
            fps=des.fps,
            clock=clock,
            branches=branches,
            ping_ms=ping_ms,
            name=config.name,
            content=content,
            **options,
        )
        if des.jitter and timed and sched.tracker_latency_ms:
            # The session times its tracker before the first frame, beside the device's
            # model: the slowest of three updates (AdaptiveSession.time_tracker).
            rng = random.Random(des.seed * 7919 + client)
            policy.scheduler.observe_tracker_ms(max(1e-3, *(rng.choice(timed) for _ in range(3))))
        return policy

    return build


def simulate(
    config: DesConfig, profile: CostProfile, factory: PolicyFactory, *, name: str = "policy"
) -> DesResult:
    """Run one policy (one instance per client, from ``factory``) for ``config.duration_s``."""
    sim = _Simulation(config, profile, factory, name)
    events = sim.run()
    sim.out.probes = sum(getattr(c.policy, "probes", 0) for c in sim.clients)  # adaptive's
    rows = sim.out.rows or []
    rows.sort(key=lambda r: (r.t_s, r.client))
    return DesResult(sim.out.summary(), rows, events, sim.gpu_busy_s)


def min_gpus(
    config: DesConfig,
    profile: CostProfile,
    factory: PolicyFactory,
    *,
    max_violation_pct: float = 5.0,
    max_gpus: int = 256,
) -> tuple[int | None, dict[int, PolicySummary]]:
    """Fewest GPUs whose SLA violation % is at most ``max_violation_pct``.

    Doubles the GPU count until the target is met, then bisects (more GPUs are
    never worse; the DES tests hold it to that). Returns ``(None, tried)`` if
    even ``max_gpus`` misses it; ``tried`` maps each GPU count tried to its summary.
    """
    light = replace(config, keep_rows=False)
    tried: dict[int, PolicySummary] = {}

    def ok(gpus: int) -> bool:
        if gpus not in tried:
            tried[gpus] = simulate(replace(light, gpus=gpus), profile, factory).summary
        return tried[gpus].sla_violation_pct <= max_violation_pct

    hi = 1
    while not ok(hi):
        if hi >= max_gpus:
            return None, tried
        hi = min(2 * hi, max_gpus)
    lo = hi // 2  # known to fail (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi, tried


def batching_effect(
    config: DesConfig, profile: CostProfile, factory: PolicyFactory
) -> dict[str, PolicySummary]:
    """The same load with the configured batching and with batching off (batch size 1)."""
    light = replace(config, keep_rows=False)
    on = simulate(light, profile, factory, name=f"batch<={config.max_batch_size}").summary
    off_cfg = replace(light, max_batch_size=1, max_queue_delay_ms=0.0)
    off = simulate(off_cfg, profile, factory, name="no-batching").summary
    return {"batching": on, "no-batching": off}
