"""The README's demo: a real edge server, a trace-driven link, a client that adapts.

An edge server process serves the model; the client reaches it only through an
:class:`~splitedge.simulations.link.EmulatedLink` whose uplink follows a step
trace (fast, slower, very slow, slower still, fast again). Each frame a policy
picks the branch against the SLA, so the branch in use changes as the bandwidth
does:

- ``adaptive`` (default): the device's
  :class:`~splitedge.mobile_client.scheduler.Scheduler` over a measured profile
  (``configs/profiles/<zoo entry>.json``: head latency, bytes and validation
  accuracy of every branch), driven by
  :class:`~splitedge.mobile_client.adaptive.AdaptiveSession`: JPEG offload at
  several qualities, learned-bottleneck splits at several widths and bit depths,
  local, and detect-every-k-th-frame with on-device tracking;
- ``rate-rule``: :class:`~splitedge.mobile_client.policy.RateRule` over offload,
  a vanilla split at 8/4/2 bits and local.

The "device" is this machine; ``device_slowdown`` makes it behave like a weaker
one (a Raspberry Pi-class CPU) by sleeping after every head and local run for
(slowdown - 1) x the time the run took, so the device's own work costs what it
would there. The scheduler is not told: it senses the slowdown from the observed
head times, as it senses contention. Prints one line per frame, then a summary
per phase, and saves a CSV and a plot.

The same story on any machine: by default (``device_slowdown=None``) the device
is slowed until its detector takes :data:`DEVICE_LOCAL_MS` (measured here at
start-up), whatever this machine's speed; and (``sla_ms=None``) the SLA is
:data:`DEFAULT_SLA_MS`, stretched on a machine slower than the reference (its
detector over :data:`REFERENCE_LOCAL_MS`), whose edge is as slow as its device;
(``fps=None``) the camera's :data:`DEFAULT_FPS` is slowed by the same factor.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import math
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.client import detections_count
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.policy import Candidate, RateRule
from splitedge.mobile_client.sources import CameraFrame
from splitedge.models.types import BranchSpec, HeadOutput, Prediction
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.processes import EdgeProcess
from splitedge.simulations.traces import BandwidthTrace, constant

if TYPE_CHECKING:
    from splitedge.mobile_client.fleet import FleetSession

log = logging.getLogger(__name__)

POLICIES = ("adaptive", "rate-rule")
FRESH_TOLERANCE = 0.01  # mAP50 within which a pick is as good as a fresh start's
DEVICE_LOCAL_MS = 240.0  # the emulated device's own detector: a Raspberry Pi-class CPU
REFERENCE_LOCAL_MS = 40.0  # the detector on the machine the demo's defaults were set on
DEFAULT_SLA_MS = 150.0
DEFAULT_FPS = 5.0  # the camera, slowed with the SLA on a slower machine
PROFILES_DIR = Path(__file__).resolve().parents[1] / "configs" / "profiles"


def default_profile(model: str) -> Path:
    """``configs/profiles/<zoo entry>.json`` of the source tree (what ``make demo`` uses)."""
    return PROFILES_DIR / f"{model.removeprefix('zoo:')}.json"


LOCAL_WORK = "(local model)"  # SlowedBackend's key for the device's own model


class SlowedBackend:
    """A head backend whose device work takes ``factor`` x as long (sleeps the rest).

    What is stretched is this machine's usual time for that work (the median of its last
    runs), not each run's own; a run's difference from it is added once: a run that
    stalled here (another process took the core, torch's threads waited on each other)
    adds its stall once, as it would on the slow device, instead of ``factor`` times,
    and a run faster than usual is that much faster, not ``factor`` times. Multiplied,
    one 1 s stall on a busy 2-core machine became a 6 s frame and a device that looked a
    hundred times slower.

    ``usual_s`` seeds "usual" per piece of work (``"(local model)"`` or a branch name)
    with this machine's warm time (:func:`warm_device` returns it): without a seed the
    first run is its own usual, and a first run that stalled (the camera starting, the
    edge loading beside it) was multiplied in full: one demo's first local frame took
    11.6 s and its whole first phase was lost.

    ``target_local_ms`` pins the device instead of the factor: the factor becomes
    ``target / this machine's usual local-model time`` (at least 1), re-read after every
    local run, so the device's own detector keeps taking ~``target`` ms while this
    machine's speed drifts (a calibration at 50 ms, then 37 ms runs, made the field
    benchmark's ~240 ms device a 177 ms one), and its heads slow by the same factor.
    """

    def __init__(
        self,
        backend: TorchHeadBackend,
        factor: float,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], object] = time.sleep,
        usual_s: Mapping[str, float] | None = None,
        target_local_ms: float | None = None,
    ) -> None:
        if not factor >= 1.0:
            raise ValueError(f"device slowdown must be >= 1, got {factor}")
        if target_local_ms is not None and not (
            math.isfinite(target_local_ms) and target_local_ms > 0
        ):
            raise ValueError(f"device local time must be > 0 ms, got {target_local_ms}")
        self._backend = backend
        self.factor = factor
        self.target_local_s = None if target_local_ms is None else target_local_ms / 1000.0
        self._clock, self._sleep = clock, sleep
        # Three copies: the median stays the warm time until stalls are the usual.
        self._usual: dict[str, deque[float]] = {
            key: deque([seconds] * 3, maxlen=9) for key, seconds in (usual_s or {}).items()
        }

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)

    @property
    def current_factor(self) -> float:
        """The slowdown applied now: ``factor``, or the pinned device's (see the class)."""
        local = self._usual.get(LOCAL_WORK)
        if self.target_local_s is None or not local:
            return self.factor
        return max(1.0, self.target_local_s / max(statistics.median(local), 1e-6))

    def _slowed(self, key: str, fn: Callable[[], object]) -> object:
        start = self._clock()
        out = fn()
        spent = self._clock() - start
        recent = self._usual.setdefault(key, deque(maxlen=9))
        recent.append(spent)
        usual = statistics.median(recent)
        # The usual time stretched, this run's difference from it added once: a stall
        # here is not multiplied, nor is a run faster than usual (multiplied, five
        # faster runs made the pinned 240 ms device a 184-210 ms one in a cost profile).
        self._sleep((self.current_factor - 1.0) * usual)
        return out

    def can_run(self, branch: BranchSpec) -> bool:
        return self._backend.can_run(branch)

    @property
    def has_local(self) -> bool:
        return self._backend.has_local

    def head(self, branch: BranchSpec, image) -> HeadOutput:  # type: ignore[no-untyped-def]
        return self._slowed(branch.name, lambda: self._backend.head(branch, image))  # type: ignore[return-value]

    def local(self, image) -> Prediction:  # type: ignore[no-untyped-def]
        return self._slowed(LOCAL_WORK, lambda: self._backend.local(image))  # type: ignore[return-value]


@dataclass
class DemoRow:
    t_s: float
    link_mbps: float
    estimate_mbps: float
    branch: str
    source: str
    reason: str
    latency_ms: float
    payload_bytes: int
    detections: int
    probe: bool = False  # a probe measured the link: this frame, or one sent beside it
    # Adaptive only: what a fresh start that knew the link's rate would pick before this
    # frame (Scheduler.fresh_pick), and whether this frame's pick is as accurate (within
    # FRESH_TOLERANCE of that one's, both as the scheduler predicts them for that start).
    fresh_pick: str = ""
    on_fresh: bool | None = None


@dataclass
class DemoResult:
    rows: list[DemoRow]
    sla_ms: float
    device_slowdown: float
    host_local_ms: float  # this machine's detector, measured before the run

    @property
    def speed_factor(self) -> float:
        """How much slower than the reference machine this one is (>= 1)."""
        return max(1.0, self.host_local_ms / REFERENCE_LOCAL_MS)


def measure_local_ms(backend: TorchHeadBackend, frame: CameraFrame, runs: int = 5) -> float:
    """This machine's time for the device's own detector on ``frame``: the fastest of
    ``runs`` (0 without one).

    The fastest, not the median: beside another busy process a run of torch's two
    threads can take 3-4x its time (48 ms runs and 150-190 ms ones in the same five, on
    the 2-core VM beside a CPU hog). A median that caught those calibrated the demo's
    ~240 ms device at ~80 ms, where the device's own model fits the SLA and the demo's
    story (offload on a good link) no longer holds.
    """
    if not backend.has_local:
        return 0.0
    return _fastest_s(lambda: backend.local(frame.image), runs) * 1000.0


def _fastest_s(fn: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` calls of ``fn``, in seconds (0 for no runs)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times, default=0.0)


def demo_trace(phase_s: float, rates_mbps: tuple[float, ...]) -> BandwidthTrace:
    steps = [(i * phase_s, rate) for i, rate in enumerate(rates_mbps)]
    return BandwidthTrace.from_steps(steps, duration_s=phase_s * len(rates_mbps))


def candidates_for(branches: dict, split_branch: str | None) -> list[Candidate]:
    """Preference order: offload (full accuracy), split at 8/4/2 bits, then local.

    Local runs the whole model too, but costs the device the most work, so it comes
    last: the rule uses it when nothing remote fits the SLA. The default split is
    the model's deepest cut (the smallest tensor of a vanilla split).
    """
    out = [Candidate(b) for b in branches if b.startswith("offload-jpeg")][:1]
    splits = [b for b, s in branches.items() if s.kind == "split"]
    split = split_branch or (splits[-1] if splits else None)
    if split is not None:
        out += [Candidate(split, bits) for bits in (8, 4, 2)]
    if "local" in branches:
        out.append(Candidate("local", remote=False))
    return out


def warm_device(backend: TorchHeadBackend, frame: CameraFrame, runs: int = 2) -> dict[str, float]:
    """Run the device's model and every split head once (first runs pay lazy
    initialisation, which a slowed device would multiply), then ``runs`` more times:
    the fastest of those per piece of work, in seconds, keyed as
    :class:`SlowedBackend` keys it (its ``usual_s``)."""
    work: list[tuple[str, Callable[[], object]]] = []
    if backend.has_local:
        work.append((LOCAL_WORK, lambda: backend.local(frame.image)))
    for spec in backend.model.branches.values():
        if spec.kind == "split":
            work.append((spec.name, lambda spec=spec: backend.head(spec, frame.image)))
    fastest: dict[str, float] = {}
    for key, fn in work:
        fn()
        fastest[key] = _fastest_s(fn, runs)
    return fastest


async def _warm_up(client: Client, candidates: list[Candidate], frame) -> None:
    # First runs pay lazy initialisation on both sides; keep them out of the estimates.
    for candidate in candidates:
        for _ in range(2):
            await client.submit(frame, candidate.branch, bits=candidate.bits, deadline_ms=0)


async def run_demo(
    model: str,
    *,
    phase_s: float = 8.0,
    rates_mbps: tuple[float, ...] = (40.0, 4.0, 0.5, 0.15, 40.0),
    delay_ms: float = 10.0,
    sla_ms: float | None = None,
    fps: float | None = None,
    size: tuple[int, int] = (320, 240),
    split_branch: str | None = None,
    model_options: dict | None = None,
    broker: bool = True,
    out_dir: Path = Path("out/demo"),
    print_rows: bool = True,
    policy: str = "adaptive",
    profile: Path | None = None,
    device_slowdown: float | None = None,
    say: Callable[..., None] | None = None,
) -> DemoResult:
    """Run the demo; returns one row per frame (also written to ``out_dir``), the SLA
    and device slowdown used (``None``: set from this machine's measured speed).

    With ``broker`` an embedded MQTT broker runs too: the edge announces itself on
    it, the client finds the edge there (then reaches it through the link) and
    publishes telemetry every 10 frames. ``policy="adaptive"`` needs a scheduler
    ``profile`` (default :func:`default_profile` of the model).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if device_slowdown is not None and not device_slowdown >= 1.0:
        raise ValueError(f"device slowdown must be >= 1, got {device_slowdown:g}")
    if sla_ms is not None and not (sla_ms > 0 and math.isfinite(sla_ms)):
        raise ValueError(f"SLA must be a positive number of ms, got {sla_ms:g}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"camera frame rate must be a positive number of frames/s, got {fps:g}")
    scheduler_profile = None
    if policy == "adaptive":
        from splitedge.mobile_client.profile import ProfileError, load_profile

        path = profile or default_profile(model)
        if not path.is_file():
            raise ValueError(
                f"no scheduler profile {path} for {model}: measure one with "
                "`splitedge-client profile --accuracy-frames N ...` and pass --profile, "
                "or use --policy rate-rule"
            )
        try:
            scheduler_profile = load_profile(path)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
    trace = demo_trace(phase_s, rates_mbps)
    options = model_options or {}
    spec = model + "".join(
        f"{':' if i == 0 else ','}{k}={v}" for i, (k, v) in enumerate(options.items())
    )
    backend = await asyncio.to_thread(TorchHeadBackend, model, options)
    # First runs pay lazy initialisation; on the emulated slow device that one-off cost
    # would be multiplied too. Run the device's model and heads once before anything.
    first = next(open_source("synthetic", size=size))
    usual_s = await asyncio.to_thread(warm_device, backend, first)
    host_local_ms = await asyncio.to_thread(measure_local_ms, backend, first)
    # By default the device is pinned at DEVICE_LOCAL_MS whatever this machine's speed
    # does during the run; an explicit slowdown stays that factor.
    pinned_ms = DEVICE_LOCAL_MS if device_slowdown is None and host_local_ms else None
    if device_slowdown is None:
        device_slowdown = max(1.0, DEVICE_LOCAL_MS / host_local_ms) if host_local_ms else 1.0
    slower = max(1.0, host_local_ms / REFERENCE_LOCAL_MS)
    if sla_ms is None:
        sla_ms = DEFAULT_SLA_MS * slower
    if fps is None:
        # The camera slows with the SLA: at 5 frames/s a frame whose answer takes the
        # stretched SLA would be counted as missing the next one, and the scheduler
        # would rightly keep full frames off the link even at 40 Mbps.
        fps = DEFAULT_FPS / slower
    if device_slowdown != 1.0:
        backend = SlowedBackend(  # type: ignore[assignment]
            backend, device_slowdown, usual_s=usual_s, target_local_ms=pinned_ms
        )
    say = say or (print if print_rows else (lambda *a, **k: None))
    say(
        f"this machine runs the detector in {host_local_ms:.0f} ms; the emulated device in "
        f"~{host_local_ms * device_slowdown:.0f} ms ({device_slowdown:.2f}x slower); "
        f"SLA {sla_ms:.0f} ms, camera {fps:.3g} frames/s",
        flush=True,
    )
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = tmp / "edge.toml"
        config.write_text("[batching]\nmax_queue_delay_ms = 0.0\n")
        edge_args = ["--config", str(config), "--model", spec, "--log-level", "WARNING"]
        fleet = None
        if broker:
            from splitedge.control_plane.broker import EmbeddedBroker
            from splitedge.mobile_client.fleet import FleetSession

            mqtt = await stack.enter_async_context(EmbeddedBroker(port=0))
            edge_args += ["--broker", mqtt.url, "--server-id", "demo-edge"]
        edge = await asyncio.to_thread(EdgeProcess(edge_args).start)
        stack.push_async_callback(asyncio.to_thread, edge.stop)
        upstream = ("127.0.0.1", edge.port)
        if broker:
            fleet = await stack.enter_async_context(
                FleetSession(
                    mqtt.link_config(client_id="demo-client"),
                    model,
                    "demo-client",
                    telemetry_every=10,
                    sla_ms=sla_ms,
                )
            )
            server = await fleet.wait_for_server(30.0)
            host, _, port = server.address.rpartition(":")
            upstream = (host, int(port))
            say(
                f"found edge {server.server_id!r} at {server.address} on the embedded MQTT "
                f"broker (port {mqtt.port}); telemetry goes there every 10 frames"
            )
        link = await stack.enter_async_context(
            EmulatedLink(
                upstream, trace, constant(max(rates_mbps), trace.duration_s), delay_ms=delay_ms
            )
        )
        client = await stack.enter_async_context(
            Client(f"127.0.0.1:{link.port}", model, backend=backend, deadline_ms=sla_ms * 2)
        )
        frames = open_source("synthetic", size=size)
        if scheduler_profile is not None:
            from splitedge.mobile_client.adaptive import AdaptiveSession
            from splitedge.mobile_client.scheduler import Scheduler

            scheduler = Scheduler(
                scheduler_profile,
                sla_ms,
                branches=set(client.branches),
                frame_period_ms=1000.0 / fps,
            )
            remote = sorted({c.config.branch for c in scheduler.candidates if c.remote})
            warm = next(frames)
            await _warm_up(client, [Candidate(b) for b in remote], warm)
            session = AdaptiveSession(client, scheduler)
            await session.first_round_trip()  # the path's round trip, before the first frame
            await session.time_tracker(warm.image)  # and the tracker's time on this device
            if fleet is not None:
                fleet.on_control(session.apply_control)
            link.set_uplink(trace)  # the trace starts now, after the warm-up
            try:
                rows = await _run_adaptive(session, frames, trace, fps, fleet, say)
            finally:
                await session.aclose()
        else:
            candidates = candidates_for(client.branches, split_branch)
            await _warm_up(client, candidates, next(frames))
            link.set_uplink(trace)
            rule = RateRule(candidates, sla_ms=sla_ms, server_hint=_published_load(fleet, model))
            rows = await _run_frames(client, rule, frames, trace, fps, fleet, say)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(rows, out_dir / "demo.csv")
    _plot(rows, trace, sla_ms, out_dir / "demo.png")
    return DemoResult(rows, sla_ms, device_slowdown, host_local_ms)


def _published_load(
    fleet: FleetSession | None, model: str
) -> Callable[[Candidate], float | None] | None:
    """The edge's published queue wait + tail p95 for a branch, read from MQTT discovery."""
    if fleet is None or fleet.discovery is None:
        return None
    discovery = fleet.discovery

    def hint(candidate: Candidate) -> float | None:
        state = discovery.select(model)
        if state is None or not candidate.remote:
            return None
        return state.expected_ms(model, candidate.branch)

    return hint


StepResult = tuple[str, float, FrameOutcome, bool, tuple[str, bool] | None]
Step = Callable[[CameraFrame, float], Awaitable[StepResult]]
"""``step(frame, link_mbps)`` -> (branch label, bandwidth estimate, outcome, a probe
measured the link, (a fresh start's pick, this pick as accurate as it) or None)."""


async def _camera_loop(
    step: Step,
    frames: Iterator[CameraFrame],
    trace: BandwidthTrace,
    fps: float,
    fleet: FleetSession | None,
    say: Callable[..., None],
) -> list[DemoRow]:
    """One frame per camera period until the trace ends: ``step`` it, record, print."""
    _header(say)
    rows: list[DemoRow] = []
    start = next_at = time.monotonic()
    for frame in frames:
        t_s = time.monotonic() - start
        if t_s >= trace.duration_s:
            break
        label, estimate_mbps, outcome, probe, fresh = await step(frame, trace.rate_at(t_s))
        if fleet is not None:
            fleet.record(outcome)
        rows.append(_row(say, t_s, trace, estimate_mbps, label, outcome, probe, fresh))
        next_at = await _pace(next_at, fps)
    return rows


async def _run_frames(
    client: Client,
    rule: RateRule,
    frames: Iterator[CameraFrame],
    trace: BandwidthTrace,
    fps: float,
    fleet: FleetSession | None,
    say: Callable[..., None],
) -> list[DemoRow]:
    """The rate rule's loop: pick, submit, learn."""

    async def step(frame: CameraFrame, link_mbps: float) -> StepResult:
        candidate = rule.pick()
        outcome = await client.submit(frame, candidate.branch, bits=candidate.bits)
        rule.observe(candidate, outcome)
        return candidate.label, rule.bandwidth_mbps, outcome, False, None

    return await _camera_loop(step, frames, trace, fps, fleet, say)


def _header(say: Callable[..., None]) -> None:
    say(
        f"{'t_s':>6} {'link':>6} {'est':>6}  {'branch':<34} {'source':<7}"
        f" {'ms':>7} {'bytes':>7} {'dets':>4}"
    )


def _row(
    say: Callable[..., None],
    t_s: float,
    trace: BandwidthTrace,
    estimate_mbps: float,
    label: str,
    outcome: FrameOutcome,
    probe: bool = False,
    fresh: tuple[str, bool] | None = None,
) -> DemoRow:
    """One frame's row, printed as it is made."""
    row = DemoRow(
        t_s,
        trace.rate_at(t_s),
        estimate_mbps,
        label,
        outcome.source,
        outcome.reason,
        outcome.timing.total_ms,
        outcome.payload_bytes,
        detections_count(outcome),
        probe,
        *(fresh or ("", None)),
    )
    say(
        f"{row.t_s:6.1f} {row.link_mbps:6.1f} {row.estimate_mbps:6.1f}  "
        f"{row.branch + (' (probe)' if probe else ''):<34} {row.source:<7} "
        f"{row.latency_ms:7.1f} {row.payload_bytes:7d} {row.detections:4d}",
        flush=True,
    )
    return row


async def _pace(next_at: float, fps: float) -> float:
    """Wait for the camera's next frame; a late frame does not make the next ones come faster."""
    next_at = max(next_at + 1.0 / fps, time.monotonic())
    await asyncio.sleep(next_at - time.monotonic())
    return next_at


async def _run_adaptive(
    session: object,
    frames: Iterator[CameraFrame],
    trace: BandwidthTrace,
    fps: float,
    fleet: FleetSession | None,
    say: Callable[..., None],
) -> list[DemoRow]:
    """The scheduler's loop: the session picks, runs (or tracks) and learns."""
    from splitedge.mobile_client.adaptive import AdaptiveSession

    assert isinstance(session, AdaptiveSession)

    sched = session.scheduler
    by_key = {c.key: c for c in sched.candidates}

    async def step(frame: CameraFrame, link_mbps: float) -> StepResult:
        fresh_key, acc = sched.fresh_pick(bandwidth_mbps=link_mbps, now_s=sched.clock())
        decision, outcome = await session.process(frame)
        label = _label(decision.branch, decision.interval, decision.track)
        probe = decision.reason == "probe" or decision.probe is not None
        as_good = acc[decision.key] >= acc[fresh_key] - FRESH_TOLERANCE
        fresh = by_key[fresh_key].config
        fresh_label = _label(fresh.branch, fresh.detection_interval)
        return label, sched.bandwidth.estimate_mbps, outcome, probe, (fresh_label, as_good)

    return await _camera_loop(step, frames, trace, fps, fleet, say)


def _label(branch: str, interval: int, track: bool = False) -> str:
    """A row's branch label: ``branch[/kK[ track]]``."""
    if interval <= 1:
        return branch
    return f"{branch}/k{interval}" + (" track" if track else "")


FULL_FRAME_BYTES = 20_000  # a JPEG of the whole frame at high quality (q90 is ~28 kB)


def full_frame(row: DemoRow) -> bool:
    """A full-quality JPEG of the frame answered by the edge."""
    return (
        row.source == "edge"
        and row.branch.startswith("offload-jpeg")
        and (row.payload_bytes > FULL_FRAME_BYTES)
    )


def first_on_fresh(part: list[DemoRow], start_s: float) -> float | None:
    """Seconds from ``start_s`` to the first frame of ``part`` on a fresh start's pick
    (:attr:`DemoRow.on_fresh`) answered without a fallback (an edge answer or the
    device's own result); None: none (or not an adaptive run)."""
    return next(
        (
            r.t_s - start_s
            for r in part
            if r.on_fresh and r.reason in ("", "tracked") and r.source in ("edge", "local")
        ),
        None,
    )


def summarize(rows: list[DemoRow], phase_s: float, sla_ms: float) -> str:
    """One line per phase: link rate, what crossed the link, how soon a full JPEG did,
    median latency, SLA misses, probes, and the branch mix."""
    lines = [
        f"{'phase':>5} {'link_mbps':>9} {'frames':>6} {'kB/frame':>8} {'full_jpeg':>9} "
        f"{'on_fresh':>8} {'p50_ms':>7} {'sla_miss':>8} {'probes':>6}  branches"
    ]
    phases = sorted({int(r.t_s // phase_s) for r in rows})
    for p in phases:
        part = [r for r in rows if int(r.t_s // phase_s) == p]
        lat = sorted(r.latency_ms for r in part)
        mix: dict[str, int] = {}
        for r in part:
            mix[r.branch] = mix.get(r.branch, 0) + 1
        miss = sum(r.latency_ms > sla_ms for r in part)
        first_full = next((r.t_s - p * phase_s for r in part if full_frame(r)), None)
        full = "never" if first_full is None else f"+{first_full:.1f}s"
        back = first_on_fresh(part, p * phase_s)
        fresh = "-" if part[0].on_fresh is None else "never" if back is None else f"+{back:.1f}s"
        kb = sum(r.payload_bytes for r in part) / len(part) / 1000.0
        lines.append(
            f"{p:>5} {part[0].link_mbps:9.2f} {len(part):6d} {kb:8.1f} {full:>9} {fresh:>8} "
            f"{lat[len(lat) // 2]:7.1f} {miss:8d} {sum(r.probe for r in part):6d}  "
            + ", ".join(f"{b} x{n}" for b, n in sorted(mix.items(), key=lambda x: -x[1]))
        )
    lines.append(
        "full_jpeg: when the first full-quality JPEG frame (> 20 kB) was answered by the "
        "edge after the phase began; on_fresh: when the scheduler's pick was first as "
        f"accurate (predicted mAP50 within {FRESH_TOLERANCE:g}) as a fresh start's that "
        "knew the link's rate, answered without a fallback; probes: frames sent only to "
        "measure the link"
    )
    return "\n".join(lines)


def _write_csv(rows: list[DemoRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(DemoRow.__dataclass_fields__))
        for r in rows:
            writer.writerow([getattr(r, k) for k in DemoRow.__dataclass_fields__])


def _plot(rows: list[DemoRow], trace: BandwidthTrace, sla_ms: float, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        log.warning("matplotlib is not installed; no plot (pip install splitedge[sim])")
        return
    branches = sorted({r.branch for r in rows})
    fig, (ax_lat, ax_br, ax_bw) = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    colours = plt.get_cmap("tab20").colors
    for i, b in enumerate(branches):
        pts = [r for r in rows if r.branch == b]
        ax_lat.scatter(
            [r.t_s for r in pts],
            [r.latency_ms for r in pts],
            s=10,
            label=b,
            color=colours[i % len(colours)],
        )
    ax_lat.axhline(sla_ms, color="red", linestyle="--", linewidth=1, label="SLA")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_yscale("log")
    ax_lat.legend(fontsize=7, loc="upper left")
    ax_br.step([r.t_s for r in rows], [branches.index(r.branch) for r in rows], where="post")
    ax_br.set_yticks(range(len(branches)), branches, fontsize=7)
    ax_br.set_ylabel("branch")
    t = [s for seg in trace.segments() for s in seg[:2]]
    v = [seg[2] for seg in trace.segments() for _ in range(2)]
    ax_bw.plot(t, v, label="uplink trace")
    ax_bw.plot([r.t_s for r in rows], [r.estimate_mbps for r in rows], label="client estimate")
    ax_bw.set_ylabel("Mbps")
    ax_bw.set_yscale("log")
    ax_bw.set_xlabel("time (s)")
    ax_bw.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
