"""The adaptive scheduler driving a real client: per frame pick -> track or submit -> observe.

:class:`AdaptiveSession` joins a :class:`~splitedge.mobile_client.client.Client` (the
edge, the device's head and local model, the prefilter) and a
:class:`~splitedge.mobile_client.scheduler.Scheduler` (the branch per frame):

- a *detection* frame is resized to the decision's input size (boxes are mapped
  back to the captured frame) and submitted on the decision's branch and bit
  depth; its result restarts the tracker. Its budget is the SLA (when it heads a
  group of k frames whose detection the scheduler planned longer than the SLA:
  1.5 x that prediction, at most k x the SLA), and the edge's deadline leaves
  room in it for the fallback: the device's own model when it takes at most half
  the budget, else the tracker from the last result, else the model anyway (a
  late answer, never none). A frame stuck on a collapsing link so costs about
  one budget, not a deadline plus a slow local run during which the camera's
  next frames are lost;
- a *tracked* frame runs the on-device :class:`~splitedge.mobile_client.tracker.BoxTracker`
  (nothing crosses the link) and is recorded as ``source="local"``, ``reason="tracked"``;
- every outcome but a prefiltered one goes back to the scheduler's estimators;
- a probe the scheduler puts *beside* a frame (``Decision.probe``: the device runs
  its own model on the frame, which fits the SLA) is submitted in the background at
  the same time; its outcome only measures the link (``observe_probe``), and the
  frame's result is the device's;
- about once a second a Status RPC, in the background (never awaited by a frame),
  gives a pure round trip (``observe_rtt``) and the server's per-branch queue and
  tail latency; :meth:`AdaptiveSession.run` waits for the first one (up to a second)
  before the first frame, so the first decision knows the path's round trip;
- before each pick the client's unanswered bytes (``Client.backlog_bytes``: frames
  whose deadline passed may still be crossing the link) go to the scheduler, and an
  answer that arrives after its deadline is a throughput sample
  (``observe_late_answer``); and an MQTT-discovered server's
  published load (``client.server_load``) is reported to the scheduler as it changes.

Frames run one at a time: the scheduler's latency model is one frame in flight. One
exception keeps a slow device from losing camera frames: a detection by the device's
own model, once there are boxes to track, goes on in the *background*. Its frame waits
for it up to :func:`background_wait_ms` (the SLA or the camera period, whichever is
shorter, less the tracker's time); if it is not done by then, the tracker answers the
frame (``reason="tracked"``) and the detection carries on. Frames that come while it
runs and would need the device's model (local or a split head) are tracked too; JPEG
offloads go on as planned. When it ends, its boxes restart the tracker on its own
frame (the next update follows them to the newest) and its outcome goes to the
scheduler as an unwaited one (``observe_probe``: it teaches the device's speed, no
SLA miss). A device slower than its camera (a Pi-class detector at 5 frames/s) so
answers every frame, as Glimpse and ApproxDet do with a tracker in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from splitedge.mobile_client.client import Client
from splitedge.mobile_client.estimators import EstimatorError
from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.profile import needs_device_model, request_bits
from splitedge.mobile_client.scheduler import HANDOVER_MS, Decision, Scheduler
from splitedge.mobile_client.sources import CameraFrame, resize_short_side
from splitedge.models.types import Detections
from splitedge.proto.control import ControlUpdate
from splitedge.proto.status import ServerStatus

if TYPE_CHECKING:
    from splitedge.control_plane.discovery import ServerState

log = logging.getLogger("splitedge.client.adaptive")

STATUS_EVERY_S = 1.0  # the session's Status RPC period (the DES's sessions use it too)
# How long ``run`` waits for its first Status RPC before the first frame: on a link in a
# fade it is not waited for longer (it goes on in the background, as every later one).
FIRST_ROUND_TRIP_WAIT_S = 1.0
# Boxes the tracker follows when it is timed before the first frame: a busy frame's worth (its
# time grows ~linearly with them, 0.23 ms a box here; the field video's detections give ~22);
# the warm-up run leaves the reserve's window after 16 tracked frames.
TRACKER_WARM_BOXES = 24


def _prepared(frame: CameraFrame, decision: Decision, kind: str) -> tuple[CameraFrame, int | None]:
    """The frame as the decision sends it (resized to its input size) and its bit depth
    as ``Client.submit`` takes it (:func:`request_bits`; ``kind``: the branch's)."""
    small = resize_short_side(frame.image, decision.input_size)
    sent = CameraFrame(frame.index, small, frame.capture_ns) if small is not frame.image else frame
    return sent, request_bits(kind, decision.bits)


def grid_boxes(shape: tuple[int, ...], count: int) -> np.ndarray:
    """``count`` boxes on a grid over an image of ``shape`` (h, w, ...), xyxy float32:
    what the tracker follows when it is timed (a busy frame's worth of boxes)."""
    h, w = shape[:2]
    side = max(1, math.ceil(math.sqrt(count)))
    grid = [
        [w * (i % side) / side, h * (i // side) / side,
         w * (i % side + 0.6) / side, h * (i // side + 0.6) / side]
        for i in range(count)
    ]  # fmt: skip
    return np.asarray(grid, np.float32).reshape(-1, 4)


def detection_budget(
    scheduler: Scheduler, decision: Decision, *, can_track: bool
) -> tuple[float, str]:
    """(the edge's deadline for a detection, ms; the fallback planned if it misses:
    ``"local"`` or ``"track"``). The real session and the DES both use this rule.

    The budget is the SLA (a group the scheduler planned late: 1.5 x its prediction, at
    most k x the SLA); the deadline leaves room in it for the fallback: the device's own
    model when it takes at most half the budget, else the tracker (``can_track``: there
    are boxes to follow), else the model anyway. A model slower than the camera's frame
    period is not the fallback while there are boxes to follow: the frames captured
    while it ran would be lost (a Pi-class detector at 5 frames/s), the tracker's answer
    costs none.
    """
    sla = scheduler.sla_ms
    k = max(1, decision.interval)
    predicted = decision.predicted_latency_ms
    planned_late = k > 1 and predicted > sla and decision.reason != "probe"
    budget = min(k * sla, 1.5 * predicted) if planned_late else sla
    local_ms, _ = scheduler.fallback_ms()
    # The fallback's prediction plus slack for the hand-over (a thread hop, a wake-up).
    period = scheduler.frame_period_ms
    costs_frames = can_track and period is not None and local_ms is not None and local_ms > period
    if local_ms is not None and local_ms <= 0.5 * budget and not costs_frames:
        return budget - (1.25 * local_ms + HANDOVER_MS), "local"
    if can_track:
        reserve = scheduler.tracker_reserve_ms()
        return max(budget - (reserve + HANDOVER_MS), 0.5 * budget), "track"
    return budget, "local"


def background_wait_ms(
    scheduler: Scheduler, decision: Decision, *, kind: str, can_track: bool
) -> float | None:
    """How long a frame waits for the device's own detection before the tracker answers
    it and the detection goes on in the background; None: it runs in the foreground
    (a remote branch, a tracked frame, or nothing to track yet). The real session and the
    DES both use this rule. ``kind``: the decision's branch kind."""
    if decision.track or kind != "local" or not can_track:
        return None
    wait = scheduler.background_wait_ms()
    # A detection predicted to outlast the wait would only make its frame late: the
    # tracker answers it at once (the scheduler plans so, Scheduler.background_local).
    return 0.0 if decision.predicted_latency_ms > wait else wait


class AdaptiveSession:
    """``async for decision, outcome in AdaptiveSession(client, scheduler).run(frames)``."""

    def __init__(
        self,
        client: Client,
        scheduler: Scheduler,
        *,
        tracker: Any = None,
        status_every_s: float = STATUS_EVERY_S,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        if tracker is None and any(c.config.detection_interval > 1 for c in scheduler.candidates):
            from splitedge.mobile_client.tracker import BoxTracker

            tracker = BoxTracker()
        self.tracker = tracker
        # Its own detections go on in the background (below): the scheduler's accuracy
        # for them counts tracked older boxes, not missed frames.
        scheduler.background_local = tracker is not None
        # A remote detection cut at its deadline is answered by the tracker, on time: the
        # scheduler may plan one with a chance of that (Scheduler.cut_to_tracker).
        scheduler.cut_to_tracker = tracker is not None
        self.status_every_s = status_every_s
        self._tracked: tuple[np.ndarray, np.ndarray] | None = None  # scores, labels
        self._next_status = 0.0
        self._load_seen: ServerState | None = None
        self._bad_reports: set[str] = set()  # branches whose load report was unusable
        self._status_task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()  # probes beside frames, in flight
        self.probe_bytes = 0  # payload bytes of the probes sent beside frames (no frame's)
        # A detection by the device's own model going on in the background: its task, the
        # frame it detects on (as captured, as sent) and its decision.
        self._background: (
            tuple[asyncio.Task[FrameOutcome], CameraFrame, CameraFrame, Decision] | None
        ) = None
        self.background_detections = 0  # detections whose frame the tracker answered
        self._detected_index = -1  # the newest frame whose detection restarted the tracker
        self.switches: list[tuple[int, str, str]] = []  # (frame, branch key, reason)
        client.on_late_answer = scheduler.observe_late_answer

    def apply_control(self, update: ControlUpdate) -> None:
        """A live control message (:class:`~splitedge.proto.control.ControlUpdate`)."""
        if update.sla_ms is not None:
            self.scheduler.set_sla(update.sla_ms)
        if update.accuracy_weight is not None or update.latency_weight is not None:
            self.scheduler.set_weights(
                accuracy=update.accuracy_weight, latency=update.latency_weight
            )

    async def process(self, frame: CameraFrame) -> tuple[Decision, FrameOutcome]:
        """One frame: the scheduler's decision and what came of it."""
        await self._refresh_server_state()
        self._absorb_background()
        sched = self.scheduler
        sched.frame_hw = (int(frame.image.shape[0]), int(frame.image.shape[1]))
        sched.set_backlog(self.client.backlog_bytes())
        sched.set_device_busy(self._background is not None)
        decision = sched.pick()
        if not decision.track and (not self.switches or self.switches[-1][1] != decision.key):
            self.switches.append((frame.index, decision.key, decision.reason))
        if decision.probe is not None:
            task = asyncio.create_task(self._probe(frame, decision.probe), name="link-probe")
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        kind = self._kind(decision)
        if not decision.track and self._background is not None and needs_device_model(kind):
            decision = replace(decision, track=True)  # the device's model is busy
        wait = None
        if not decision.track and self._background is None:
            wait = background_wait_ms(sched, decision, kind=kind, can_track=self._can_track())
        if decision.track:
            outcome = await asyncio.to_thread(self._track, frame, decision)
        elif wait is not None:
            decision, outcome = await self._detect_or_track(frame, decision, wait)
        else:
            outcome = await self._detect(frame, decision)
        if outcome.reason != "prefiltered":  # a gate's verdict says nothing about latency
            sched.observe(decision, outcome)
        return decision, outcome

    async def run(
        self, frames: Iterable[CameraFrame], *, fps: float = 0.0
    ) -> AsyncIterator[tuple[Decision, FrameOutcome]]:
        """Process ``frames`` in order; ``fps`` > 0 paces them like a camera.

        Before the first frame, one Status RPC measures the round trip (waited for up to
        ``FIRST_ROUND_TRIP_WAIT_S``): the first decision then knows the path's distance,
        not only the scheduler's prior (a full JPEG sent into a far or slow link as
        the first frame misses its SLA, and the camera's next frame with it). And the
        tracker is timed on the first frame's image (:meth:`time_tracker`)."""
        iterator: Iterator[CameraFrame] = iter(frames)
        period_s = 1.0 / fps if fps > 0 else 0.0
        if fps > 0:  # the scheduler counts the frames a long detection would miss
            self.scheduler.set_frame_period(1000.0 / fps)
        try:
            await self.first_round_trip()
            next_at = None
            while True:
                frame = await asyncio.to_thread(next, iterator, None)
                if frame is None:
                    return
                if next_at is None:  # the first frame: the tracker is timed on it first
                    await self.time_tracker(frame.image)
                    next_at = time.perf_counter()
                yield await self.process(frame)
                if period_s:
                    next_at += period_s
                    await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        finally:
            await self.aclose()

    async def first_round_trip(self, wait_s: float = FIRST_ROUND_TRIP_WAIT_S) -> None:
        """Start the Status poll now and wait up to ``wait_s`` for its round trip (which
        goes to the scheduler as every poll's does); the periodic polls go on from here.
        Nothing when the poll is off (``status_every_s`` <= 0) or the client has no
        server description yet."""
        task = self._start_status_poll(self.scheduler.clock())
        if task is not None:
            await asyncio.wait({task}, timeout=max(0.0, wait_s))

    async def time_tracker(
        self, image: np.ndarray, boxes: int = TRACKER_WARM_BOXES
    ) -> float | None:
        """Run the tracker on ``image`` before the first frame and tell the scheduler
        how long it took (:meth:`Scheduler.observe_tracker_ms`): the slowest of a few
        updates following ``boxes`` boxes, after one untimed round (a first run pays
        lazy initialisation: 6 ms here against 0.4 warm). When the device's own model
        will run behind the tracker (``background_local``), it runs beside the timing,
        as it will then. Without this, the first tracked frames kept room for the
        profiled time only (0.9 ms, the profiling machine's) and ended a few ms past the
        SLA on a device where the tracker beside a detection takes 5-13 ms. The tracker
        is left with nothing to follow. Returns the time (ms); None without a tracker."""
        tracker = self.tracker
        if tracker is None:
            return None
        start_boxes = grid_boxes(image.shape, boxes)

        def timed() -> float:
            tracker.init(image, start_boxes)
            slowest = 0
            for _ in range(3):
                start = time.perf_counter_ns()
                tracker.update(image)
                slowest = max(slowest, time.perf_counter_ns() - start)
            return slowest / 1e6

        await asyncio.to_thread(timed)  # lazy initialisation, not counted
        backend = self.client.backend
        beside = None
        if self.scheduler.background_local and backend.has_local:
            beside = asyncio.create_task(asyncio.to_thread(backend.local, image))
            await asyncio.sleep(0)  # the model starts first
        try:
            ms = await asyncio.to_thread(timed)
        finally:
            if beside is not None:
                await beside
        self._tracked = None
        self.scheduler.observe_tracker_ms(max(ms, 1e-3))
        return ms

    async def aclose(self) -> None:
        """Stop the background Status poll (``run`` does this when it ends)."""
        task, self._status_task = self._status_task, None
        background = self._background[0] if self._background is not None else None
        self._background = None
        pending = [t for t in (task, background, *self._probes) if t is not None and not t.done()]
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # ------------------------------------------------------------ internals

    def _kind(self, decision: Decision) -> str:
        # An unknown branch fails in Client.submit with its own message; the kind is moot then.
        spec = self.client.branches.get(decision.branch)
        return spec.kind if spec is not None else "split"

    def _can_track(self) -> bool:
        return self.tracker is not None and self._tracked is not None

    async def _detect(self, frame: CameraFrame, decision: Decision) -> FrameOutcome:
        sent, bits = _prepared(frame, decision, self._kind(decision))
        deadline, plan = self._deadline(decision)
        outcome = await self.client.submit(
            sent, decision.branch, deadline_ms=deadline, bits=bits, local_fallback=False
        )
        if outcome.source == "dropped" and outcome.reason != "prefiltered":
            if plan == "track" and self._tracked is not None:
                return await asyncio.to_thread(self._track, frame, decision, outcome)
            if self.client.local_fallback:
                outcome = await self.client.fall_back_locally(sent, outcome)
        return self._adopt(frame, sent, outcome)

    async def _detect_or_track(
        self, frame: CameraFrame, decision: Decision, wait_ms: float
    ) -> tuple[Decision, FrameOutcome]:
        """The device's own detection, waited for ``wait_ms``; past that the tracker
        answers the frame (the decision becomes a tracked one) and the detection goes on
        in the background (:meth:`_absorb_background` takes its result)."""
        start = time.perf_counter_ns()
        sent, bits = _prepared(frame, decision, self._kind(decision))
        task = asyncio.create_task(
            self.client.submit(sent, decision.branch, bits=bits, local_fallback=False),
            name="background-detection",
        )
        done, _ = await asyncio.wait({task}, timeout=wait_ms / 1000.0)
        if task in done:
            return decision, self._adopt(frame, sent, task.result())
        self._background = (task, frame, sent, decision)
        self.background_detections += 1
        tracked = replace(decision, track=True)
        outcome = await asyncio.to_thread(self._track, frame, tracked)
        # The frame's latency: the wait for the detection, then the tracker (local_ms).
        outcome.timing.total_ms = (time.perf_counter_ns() - start) / 1e6
        return tracked, outcome

    def _absorb_background(self) -> None:
        """A background detection that has ended: its boxes restart the tracker on its own
        frame, its outcome teaches the scheduler (no one waited for it)."""
        if self._background is None or not self._background[0].done():
            return
        task, frame, sent, decision = self._background
        self._background = None
        try:
            outcome = task.result()
        except Exception:  # the frame was answered; the next detection says what is wrong
            log.warning("background detection on frame %d failed", frame.index, exc_info=True)
            return
        if frame.index > self._detected_index:  # else a newer detection (remote) came first
            outcome = self._adopt(frame, sent, outcome)
        if outcome.reason != "prefiltered":
            self.scheduler.observe_probe(decision, outcome)

    def _adopt(self, frame: CameraFrame, sent: CameraFrame, outcome: FrameOutcome) -> FrameOutcome:
        """A detection's outcome for ``frame`` (sent as ``sent``): boxes mapped back to the
        captured frame, and the tracker restarted on them."""
        image, small = frame.image, sent.image
        pred = outcome.prediction
        if isinstance(pred, Detections) and small is not image:
            sy, sx = image.shape[0] / small.shape[0], image.shape[1] / small.shape[1]
            boxes = np.asarray(pred.boxes, np.float32) * np.array([sx, sy, sx, sy], np.float32)
            outcome.prediction = pred = Detections(boxes, pred.scores, pred.labels)
        self._detected_index = max(self._detected_index, frame.index)
        outcome.track_age = 0 if isinstance(pred, Detections) else -1
        if self.tracker is not None:
            if isinstance(pred, Detections):
                self.tracker.init(image, np.asarray(pred.boxes, np.float32))
                self._tracked = (np.asarray(pred.scores), np.asarray(pred.labels))
            else:  # nothing detected on this frame (dropped, prefiltered): nothing to follow
                self._tracked = None
        return outcome

    async def _probe(self, frame: CameraFrame, probe: Decision) -> None:
        """A probe beside a frame: its bytes cross the link, its answer (or the deadline
        that cut it) measures the link; its prediction is not used."""
        sent, bits = _prepared(frame, probe, self._kind(probe))
        try:
            outcome = await self.client.submit(
                sent, probe.branch, deadline_ms=self.scheduler.sla_ms, bits=bits,
                local_fallback=False,
            )  # fmt: skip
        except Exception:  # a probe must never take the session down; the link says why
            log.debug("link probe on %s failed", probe.branch, exc_info=True)
            return
        self.probe_bytes += outcome.payload_bytes
        if outcome.reason != "prefiltered":
            self.scheduler.observe_probe(probe, outcome)

    def _deadline(self, decision: Decision) -> tuple[float, str]:
        """(the edge's deadline for this detection, ms; the fallback planned if it misses)."""
        can_track = self.tracker is not None and self._tracked is not None
        return detection_budget(self.scheduler, decision, can_track=can_track)

    def _track(
        self, frame: CameraFrame, decision: Decision, missed: FrameOutcome | None = None
    ) -> FrameOutcome:
        """The tracker's boxes for ``frame``: a tracked frame, or the answer to a detection
        the edge ``missed`` (its reason, timing and bytes kept)."""
        start = time.perf_counter_ns()
        timing = FrameTiming() if missed is None else missed.timing
        if self._tracked is None or self.tracker is None:
            pred = Detections(
                np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
            )
        else:
            boxes = self.tracker.update(frame.image)
            scores, labels = self._tracked
            pred = Detections(np.asarray(boxes, np.float32).copy(), scores, labels)
        age = frame.index - self._detected_index if self._tracked is not None else -1
        spent_ms = (time.perf_counter_ns() - start) / 1e6
        if missed is not None:
            timing.local_ms, timing.total_ms = spent_ms, timing.total_ms + spent_ms
            return FrameOutcome(
                frame.index, decision.branch, "local", missed.reason, pred, timing,
                missed.payload_bytes, track_age=age,
            )  # fmt: skip
        timing.local_ms = timing.total_ms = spent_ms
        return FrameOutcome(
            frame.index, decision.branch, "local", "tracked", pred, timing, track_age=age
        )

    async def _refresh_server_state(self) -> None:
        sched = self.scheduler
        now = sched.clock()
        state = self.client.server_load
        if state is not None and state is not self._load_seen:
            self._load_seen = state
            load = state.load  # MQTT's status, in the Status RPC's shape
            # Its queue figure is the server's own wait estimate (none: nothing to say).
            self._report(load, now, queue_ms=load.queue_wait_ms)
        if time.monotonic() >= self._next_status:
            self._start_status_poll(now)

    def _start_status_poll(self, now: float) -> asyncio.Task[None] | None:
        """The Status poll in flight, started now unless one is still out (a slow link:
        never a second); None when polling is off or the server is not described yet."""
        if self.status_every_s <= 0 or self.client.model_info is None:
            return None
        if self._status_task is not None and not self._status_task.done():
            return self._status_task
        self._next_status = time.monotonic() + self.status_every_s
        # In the background: on a fading link the RPC queues behind the frames' bytes for
        # seconds, and awaiting it in a frame would hold every frame (the camera's next
        # ones lost).
        self._status_task = asyncio.create_task(self._poll_status(now), name="status-poll")
        return self._status_task

    async def _poll_status(self, now: float) -> None:
        sched = self.scheduler
        idle = self.client.backlog_bytes() == 0
        t0 = time.perf_counter()
        try:
            status = await self.client.status()
        except Exception as exc:  # any failure: the frames' own outcomes say the rest
            log.debug("status RPC failed: %s", exc)
            return
        if idle and self.client.backlog_bytes() == 0:
            # A pure round trip only on an idle link: one that queued behind frames' bytes
            # measures the backlog, which the scheduler already accounts for.
            rtt_ms = (time.perf_counter() - t0) * 1000.0
            log.debug("status RPC round trip %.1f ms on an idle link", rtt_ms)
            sched.observe_rtt(rtt_ms)
        # The queue the frames felt is in their own timing; only the tails are news here.
        self._report(status, now, queue_ms=None)

    def _report(self, status: ServerStatus, now: float, *, queue_ms: float | None) -> None:
        """The one reader of a server's load (Status RPC or MQTT): each branch of this
        client's model, its tail p50 and p95 (None while unmeasured) and ``queue_ms``, to
        the scheduler (which ignores a None figure)."""
        for b in status.branches_of(self.client.model):
            try:
                self.scheduler.server.report(
                    b.branch,
                    now_s=now,
                    queue_ms=queue_ms,
                    tail_p50_ms=b.tail_latency_ms_p50,
                    tail_p95_ms=b.tail_latency_ms_p95,
                )
            except EstimatorError as exc:  # a server's figures that cannot be times
                if b.branch not in self._bad_reports:  # once per branch, not every second
                    self._bad_reports.add(b.branch)
                    log.warning("ignored the server's load report for %s: %s", b.branch, exc)


def decision_json(decision: Decision) -> dict[str, Any]:
    """The decision's fields worth a line of output."""
    return {
        "key": decision.key,
        "track": decision.track,
        "reason": decision.reason,
        "predicted_latency_ms": round(decision.predicted_latency_ms, 2),
        "predicted_accuracy": round(decision.predicted_accuracy, 4),
    }


__all__ = ["AdaptiveSession", "decision_json", "grid_boxes"]
