"""Run a scenario for real: an edge server process, one emulated link per client, N clients.

For each policy in turn, every client gets a fresh :class:`EmulatedLink` (its
uplink/downlink traces restart at the policy's time 0, after a warm-up on a fast
link) and its own policy instance, and plays its own synthetic video
(:func:`splitedge.models.data.generate_clips`: ``[video] frames`` frames in scenes
of ``clip_frames``, looped) at the scenario's frame rate. A client handles one frame
at a time, like a camera pipeline that always takes the newest frame: camera ticks
that pass while it is busy are recorded as dropped with reason ``busy``. Each
answered frame is scored against the video's ground truth.

An ``adaptive`` policy is the device's own loop: each client gets a
:class:`~splitedge.mobile_client.scheduler.Scheduler` over the policy's scheduler
profile (restricted to the branches the client and server offer, told the
camera's frame period) inside an
:class:`~splitedge.mobile_client.adaptive.AdaptiveSession`, which per frame
picks, then detects (submit on the decision's branch, bits and input size) or
tracks on the device (nothing crosses the link), and learns from the outcome.
Its rows are labelled ``branch[/Nbit][/kK][+track]``; tracked frames carry the
tracker's boxes and are scored like any other frame.

Quality, and why two numbers: the torchvision split models here have random-init
weights, and ``echo`` predicts nothing, so class-aware COCO mAP
(:func:`~splitedge.models.data.evaluate_detections`, reported per policy as
``map50``) is ~0 whatever the branch. The per-frame ``quality`` column is a
class-agnostic recall at IoU 0.5 (true positives / ground-truth objects, greedy
matching by score), which at least moves with box quality once weights are
trained; for segmentation models it is the foreground IoU of the mask.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.edge.config import BatchingConfig, EdgeConfig, dump_config
from splitedge.mobile_client import CameraFrame, Client
from splitedge.mobile_client.adaptive import AdaptiveSession
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.policy import Candidate
from splitedge.mobile_client.profile import request_bits
from splitedge.mobile_client.scheduler import Scheduler, SchedulerError
from splitedge.models.data import (
    SceneConfig,
    VideoConfig,
    box_annotations,
    evaluate_detections,
    generate_clips,
)
from splitedge.models.data.synthetic import Sample
from splitedge.models.types import Detections, SegmentationMask
from splitedge.simulations.demo import SlowedBackend, warm_device
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.policies import (
    PROFILED_KINDS,
    Policy,
    make_policy,
    scheduler_candidates,
)
from splitedge.simulations.processes import EdgeProcess
from splitedge.simulations.profiles import CostProfile, measure_cost_profile, measure_tracker
from splitedge.simulations.report import (
    FrameRow,
    PolicySummary,
    format_summary,
    plot_all,
    summarize,
    write_csv,
    write_summary,
)
from splitedge.simulations.scenario import (
    PolicyConfig,
    Scenario,
    ScenarioError,
    adaptive_branches,
)
from splitedge.simulations.traces import constant

__all__ = [
    "RunResult",
    "Step",
    "adaptive_step",
    "busy_row",
    "edge_config_text",
    "frame_row",
    "frames_in",
    "next_start",
    "policy_step",
    "run_scenario",
    "score_frame",
    "synthetic_videos",
    "write_outputs",
]

log = logging.getLogger(__name__)

_WARMUP_LINK = constant(1000.0, 3600.0)

Step = Callable[[CameraFrame, float], Awaitable[tuple[Candidate, FrameOutcome]]]
"""``step(frame, start_s)`` -> (what ran it, its outcome): one client's per-frame work."""


@dataclass
class RunResult:
    rows: list[FrameRow]
    summaries: list[PolicySummary]
    profile: CostProfile | None
    files: list[Path]

    def table(self) -> str:
        return format_summary(self.summaries)


def synthetic_videos(scenario: Scenario) -> list[list[Sample]]:
    """One seeded video per client (rendered once, looped during the run).

    Client ``c`` plays scenes ``c * n .. c * n + n - 1`` of the seed (``n`` scenes of
    ``clip_frames`` each), so client 0's video is exactly the frames that
    ``splitedge-client profile --accuracy-seed SEED --accuracy-frames FRAMES
    --accuracy-clip-frames CLIP`` scores (at this size, >= 80 px a side).
    """
    v = scenario.video
    scene = SceneConfig(
        width=v.width, height=v.height, min_object_px=min(8.0, 0.1 * min(v.width, v.height))
    )
    clip = v.clip_frames or v.frames
    scenes = -(-v.frames // clip)
    return [
        generate_clips(scene, VideoConfig(), v.seed, v.frames, clip, first_video=client * scenes)
        for client in range(scenario.clients)
    ]


def edge_config_text(scenario: Scenario) -> str:
    """The edge's TOML for ``scenario`` (its batching; the model comes as ``--model``)."""
    e = scenario.edge
    batching = BatchingConfig(
        max_batch_size=e.max_batch_size,
        max_queue_delay_ms=float(e.max_queue_delay_ms),
        queue_capacity=e.queue_capacity,
        tail_workers=e.tail_workers,
    )
    return dump_config(EdgeConfig(batching=batching))


def model_spec(model: str, options: dict[str, Any]) -> str:
    return model + "".join(
        f"{':' if i == 0 else ','}{k}={v}" for i, (k, v) in enumerate(options.items())
    )


# ---------------------------------------------------------------------- quality


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _gt_boxes(sample: Sample) -> np.ndarray:
    if not sample.instances:
        return np.zeros((0, 4), np.float64)
    xywh = np.asarray([i.bbox_xywh for i in sample.instances], np.float64)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def score_frame(prediction: Any, sample: Sample) -> tuple[int, int, int, float]:
    """(detections, gt objects, true positives, quality) of one answered frame."""
    gt = _gt_boxes(sample)
    if isinstance(prediction, SegmentationMask):
        pred_fg, gt_fg = prediction.mask > 0, sample.semantic > 0
        union = np.logical_or(pred_fg, gt_fg).sum()
        iou = float(np.logical_and(pred_fg, gt_fg).sum() / union) if union else 1.0
        return -1, len(gt), -1, iou
    if not isinstance(prediction, Detections):
        return -1, len(gt), -1, math.nan
    boxes = np.asarray(prediction.boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(prediction.scores, np.float64))
    tp = 0
    if len(boxes) and len(gt):
        iou = _iou_matrix(boxes[order], gt)
        taken = np.zeros(len(gt), bool)
        for row in iou:  # greedy, highest score first (as COCO matching)
            row = np.where(taken, -1.0, row)
            j = int(np.argmax(row))
            if row[j] >= 0.5:
                taken[j] = True
                tp += 1
    recall = tp / len(gt) if len(gt) else (1.0 if len(boxes) == 0 else 0.0)
    return len(boxes), len(gt), tp, recall


def frame_row(
    policy: str,
    client: int,
    frame_index: int,
    t_s: float,
    uplink_mbps: float,
    candidate: Candidate,
    outcome: FrameOutcome,
    sla_ms: float,
) -> FrameRow:
    """A row from a client's outcome (the DES builds the same from simulated timings).

    ``candidate`` is recorded by its tag (``branch[/Nbit][/kK][+track]``). A tracked
    frame puts nothing on the link (no payload) and is an answer, not a fallback: its
    reason is "" as in the DES (the session's "tracked" is in the ``+track`` tag).
    """
    t = outcome.timing
    return FrameRow(
        policy=policy,
        client=client,
        frame_index=frame_index,
        t_s=t_s,
        uplink_mbps=uplink_mbps,
        candidate=candidate.tag,
        source=outcome.source,
        reason="" if candidate.track and outcome.reason == "tracked" else outcome.reason,
        latency_ms=t.total_ms,
        device_ms=t.head_ms + t.encode_ms,
        network_ms=t.network_ms,
        server_ms=t.server.server_total_ms,
        queue_ms=t.server.queue_ms,
        tail_ms=t.server.tail_ms,
        local_ms=t.local_ms,
        batch_size=t.server.batch_size,
        payload_bytes=outcome.payload_bytes if candidate.uses_link else 0,
        sla_met=outcome.source != "dropped" and t.total_ms <= sla_ms,
        track_age=outcome.track_age,
    )


def frames_in(duration_s: float, fps: float) -> int:
    """Camera frames captured per client in a run: ``duration_s * fps``, rounded up."""
    return math.ceil(duration_s * fps - 1e-9)


def next_start(k: int, now_s: float, period_s: float) -> tuple[float, int]:
    """(start time, frame index) of a client that is free at ``now_s`` and next owes frame ``k``.

    It takes the newest frame the camera has captured: if ticks passed while it
    was busy, it starts at once on the newest (the ones between are skipped);
    otherwise it waits for tick ``k``. The DES follows the same rule.
    """
    newest = math.floor(now_s / period_s + 1e-9)
    if newest >= k:
        return now_s, newest
    return k * period_s, k


def busy_row(
    policy: str, client: int, frame_index: int, t_s: float, uplink_mbps: float
) -> FrameRow:
    return FrameRow(policy, client, frame_index, t_s, uplink_mbps, "", "dropped", "busy")


# ---------------------------------------------------------------------- running


def policy_step(policy: Policy, client: Client) -> Step:
    """A :class:`~splitedge.simulations.policies.Policy`'s frame: pick, submit, observe."""

    async def step(frame: CameraFrame, start_s: float) -> tuple[Candidate, FrameOutcome]:
        candidate = policy.pick(frame.index, start_s)
        outcome = await client.submit(frame, candidate.branch, bits=candidate.bits)
        policy.observe(candidate, outcome)
        return candidate, outcome

    return step


def adaptive_step(session: AdaptiveSession, candidates: dict[str, Candidate]) -> Step:
    """An adaptive session's frame; ``candidates``: profile entry key -> its row label."""

    async def step(frame: CameraFrame, start_s: float) -> tuple[Candidate, FrameOutcome]:
        decision, outcome = await session.process(frame)
        candidate = candidates[decision.key]
        return (replace(candidate, track=True) if decision.track else candidate), outcome

    return step


async def _client_loop(
    scenario: Scenario,
    name: str,
    step: Step,
    client_index: int,
    video: list[Sample],
    t0: float,
    rows: list[FrameRow],
    scored: list[tuple[Sample, Any, bool]],
    tick: Callable[[int], None],
) -> None:
    period_s = 1.0 / scenario.fps
    phase_s = scenario.phase_s(client_index)
    uplink = scenario.client_traces(client_index)[0]
    total = frames_in(scenario.duration_s, scenario.fps)
    k = 0
    while k < total:
        # Camera time: this client's ticks are at phase_s + k * period_s.
        now = time.monotonic() - t0 - phase_s
        start_s, newest = next_start(k, now, period_s)
        # The camera kept ticking while the client was busy: those frames are gone.
        for skipped in range(k, min(newest, total)):
            t_skip = phase_s + skipped * period_s
            rows.append(busy_row(name, client_index, skipped, t_skip, uplink.rate_at(t_skip)))
            scored.append((video[skipped % len(video)], None, False))
            tick(1)
        k = newest
        if k >= total:
            break
        start_s += phase_s
        await asyncio.sleep(max(0.0, t0 + start_s - time.monotonic()))
        t_s = phase_s + k * period_s
        sample = video[k % len(video)]
        candidate, outcome = await step(CameraFrame(k, sample.image, time.time_ns()), start_s)
        row = frame_row(
            name,
            client_index,
            k,
            t_s,
            uplink.rate_at(t_s),
            candidate,
            outcome,
            scenario.sla_ms,
        )
        if outcome.prediction is not None:
            row.detections, row.gt_objects, row.true_positives, row.quality = score_frame(
                outcome.prediction, sample
            )
        scored.append((sample, outcome.prediction, row.sla_met))
        rows.append(row)
        tick(1)
        k += 1


def _map50(scored: list[tuple[Sample, Any, bool]], in_sla: bool = False) -> float:
    """COCO mAP@0.5 over the frames answered (any time), or with ``in_sla`` over every
    frame captured, where an answer that missed the SLA (or none) counts as no boxes."""
    if not any(isinstance(p, Detections) for _, p, _ in scored):
        return math.nan
    if in_sla:
        frames = [(s, p if ok and isinstance(p, Detections) else None) for s, p, ok in scored]
    else:
        frames = [(s, p) for s, p, _ in scored if isinstance(p, Detections)]
    images, annotations, preds = [], [], []
    for image_id, (sample, pred) in enumerate(frames, start=1):
        h, w = sample.semantic.shape
        images.append({"id": image_id, "width": int(w), "height": int(h), "file_name": ""})
        annotations += box_annotations(sample.instances, image_id, len(annotations) + 1)
        if pred is None:
            continue
        preds.append(
            {
                "image_id": image_id,
                "boxes": pred.boxes,
                "scores": pred.scores,
                "labels": pred.labels,
            }
        )
    from splitedge.models.data.export import CATEGORIES

    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    return float(evaluate_detections(gt, preds)["map50"])


async def _run_policy(
    scenario: Scenario,
    edge_port: int,
    backend: Any,
    videos: list[list[Sample]],
    profile: CostProfile | None,
    config_index: int,
    tick: Callable[[int], None],
) -> tuple[list[FrameRow], float, float, tuple[int, int]]:
    """One policy's run: its rows, mAP50 over its answers and within the SLA, and its
    adaptive sessions' link probes (sent, payload bytes of those sent beside frames)."""
    config = scenario.policies[config_index]
    rows: list[FrameRow] = []
    scored: list[tuple[Sample, Any, bool]] = []
    async with contextlib.AsyncExitStack() as stack:
        links, clients, steps, warmups, sessions = [], [], [], [], []
        for i in range(scenario.clients):
            link = await stack.enter_async_context(
                EmulatedLink(
                    ("127.0.0.1", edge_port), _WARMUP_LINK, _WARMUP_LINK, delay_ms=scenario.delay_ms
                )
            )
            client = await stack.enter_async_context(
                Client(
                    link.address, scenario.model, backend=backend, deadline_ms=scenario.deadline_ms
                )
            )
            missing = [c.label for c in scenario.branches if c.branch not in client.branches]
            if missing:
                raise ScenarioError(
                    f"{scenario.source}: branches: model {scenario.model!r} has no branch "
                    f"{missing[0]!r}; it has: {', '.join(sorted(client.branches))}"
                )
            if config.kind == "adaptive":
                session = _adaptive_session(scenario, config, client)
                stack.push_async_callback(session.aclose)
                sessions.append(session)
                entries = session.scheduler.candidates
                steps.append(
                    adaptive_step(session, scheduler_candidates(session.scheduler.profile))
                )
                # What the scheduler may run: each branch at each bit depth it has a profile for.
                warmups.append(
                    sorted(
                        {(e.config.branch, request_bits(e.kind, e.config.bits)) for e in entries},
                        key=lambda bb: (bb[0], bb[1] or 0),
                    )
                )
            else:
                up, down = scenario.client_traces(i)
                policy = make_policy(
                    config,
                    scenario.branches,
                    sla_ms=scenario.sla_ms,
                    uplink=up,
                    downlink=down,
                    delay_ms=scenario.delay_ms,
                    profile=profile,
                )
                steps.append(policy_step(policy, client))
                warmups.append([(c.branch, c.bits) for c in scenario.branches])
            links.append(link)
            clients.append(client)
        warm = CameraFrame(0, videos[0][0].image, 0)
        for client, branches in zip(clients, warmups, strict=True):
            for branch, bits in branches:
                for _ in range(scenario.warmup_frames):
                    await client.submit(warm, branch, bits=bits, deadline_ms=0)
        for session in sessions:
            # The session's round trip at connect (its path's delay, before the trace
            # starts), as a client measures it before its camera's first frame, and its
            # tracker's time on this device.
            await session.first_round_trip()
            await session.time_tracker(warm.image)
        for i, link in enumerate(links):
            up, down = scenario.client_traces(i)
            link.set_uplink(up)
            link.set_downlink(down)
        # The links' traces restarted just now; the run's clock starts with them.
        t0 = time.monotonic()
        await asyncio.gather(
            *(
                _client_loop(scenario, config.name, steps[i], i, videos[i], t0, rows, scored, tick)
                for i in range(scenario.clients)
            )
        )
    rows.sort(key=lambda r: (r.t_s, r.client))
    probes = (sum(s.scheduler.probes for s in sessions), sum(s.probe_bytes for s in sessions))
    return rows, _map50(scored), _map50(scored, in_sla=True), probes


def _adaptive_session(scenario: Scenario, config: PolicyConfig, client: Client) -> AdaptiveSession:
    """One client's scheduler (over what it and the server offer) and session."""
    assert config.scheduler_profile is not None
    branches = adaptive_branches(
        config, client.branches, source=scenario.source, model=scenario.model
    )
    options: dict[str, Any] = {}
    if config.latency_weight is not None:
        options["latency_weight"] = config.latency_weight
    try:
        scheduler = Scheduler(
            config.scheduler_profile,
            scenario.sla_ms,
            branches=branches,
            frame_period_ms=1000.0 / scenario.fps,
            **options,
        )
    except SchedulerError as exc:
        raise ScenarioError(
            f"{scenario.source}: policy {config.name!r}: profile {config.profile}: {exc}"
        ) from exc
    return AdaptiveSession(client, scheduler)


async def emulated_device(
    backend: TorchHeadBackend, scenario: Scenario, frame: CameraFrame
) -> TorchHeadBackend | SlowedBackend:
    """The scenario's device: ``backend`` itself, or ``device_slowdown`` x slower, or
    pinned at ``device_local_ms`` when set. Lazy initialisation would be slowed down
    too: it is paid once at full speed first, on ``frame``, which also gives the
    slowed device this machine's warm times."""
    if scenario.device_slowdown <= 1.0 and scenario.device_local_ms <= 0:
        return backend
    usual_s = await asyncio.to_thread(warm_device, backend, frame)
    return SlowedBackend(
        backend,
        scenario.device_slowdown,
        usual_s=usual_s,
        target_local_ms=scenario.device_local_ms or None,
    )


async def run_scenario(
    scenario: Scenario,
    out_dir: str | Path | None = None,
    *,
    profile: CostProfile | None = None,
    progress: bool = False,
) -> RunResult:
    """Run every policy of ``scenario`` against one real edge server; write results to ``out_dir``.

    ``profile`` feeds Neurosurgeon and the oracle; if they are asked for and none
    is given (here or as the scenario's ``profile`` file), one is measured first.
    """
    if profile is None and scenario.profile is not None:
        profile = CostProfile.load(scenario.profile)
    videos = await asyncio.to_thread(synthetic_videos, scenario)
    backend = await asyncio.to_thread(TorchHeadBackend, scenario.model, scenario.model_options)
    backend = await emulated_device(backend, scenario, CameraFrame(0, videos[0][0].image, 0))  # type: ignore[assignment]
    if profile is None and any(p.kind in PROFILED_KINDS for p in scenario.policies):
        images = [s.image for s in videos[0][:4]]
        profile = await measure_cost_profile(
            scenario.model,
            scenario.branches,
            images,
            model_options=scenario.model_options,
            backend=backend,
            repeats=5,
            batch_sizes=profile_batch_sizes(scenario),
        )
        # The device's tracker too: the DES's adaptive sessions draw from it (profile.json).
        profile.tracker_ms_samples, profile.tracker_busy_ms_samples = await measure_tracker(
            backend, images
        )
    rows: list[FrameRow] = []
    map50: dict[str, float] = {}
    map50_in_sla: dict[str, float] = {}
    probes: dict[str, tuple[int, int]] = {}
    expected = (
        len(scenario.policies) * scenario.clients * frames_in(scenario.duration_s, scenario.fps)
    )
    bar = _progress(expected, progress, scenario.name)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edge.toml"
        config.write_text(edge_config_text(scenario))
        spec = model_spec(scenario.model, scenario.model_options)
        edge = await asyncio.to_thread(
            EdgeProcess(["--config", str(config), "--model", spec, "--log-level", "WARNING"]).start
        )
        try:
            for i, policy in enumerate(scenario.policies):
                if bar is not None:
                    bar.set_postfix_str(policy.name)
                (
                    part,
                    map50[policy.name],
                    map50_in_sla[policy.name],
                    probes[policy.name],
                ) = await _run_policy(
                    scenario,
                    edge.port,
                    backend,
                    videos,
                    profile,
                    i,
                    bar.update if bar is not None else (lambda n: None),
                )
                rows += part
        finally:
            await asyncio.to_thread(edge.stop)
            if bar is not None:
                bar.close()
    summaries = summarize(rows, map50, map50_in_sla, probes)
    files: list[Path] = []
    if out_dir is not None:
        files = write_outputs(rows, summaries, scenario, Path(out_dir), profile)
    return RunResult(rows, summaries, profile, files)


def write_outputs(
    rows: list[FrameRow],
    summaries: list[PolicySummary],
    scenario: Scenario,
    out_dir: Path,
    profile: CostProfile | None = None,
) -> list[Path]:
    """frames.csv, summary.txt/.csv, the three plots (and profile.json when there is one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [write_csv(rows, out_dir / "frames.csv"), *write_summary(summaries, out_dir)]
    files += plot_all(
        rows, scenario.uplink, scenario.sla_ms, out_dir, duration_s=scenario.duration_s
    )
    if profile is not None:
        files.append(profile.save(out_dir / "profile.json"))
    return files


def profile_batch_sizes(scenario: Scenario) -> tuple[int, ...]:
    """Batch sizes worth measuring: powers of two up to what the clients can fill."""
    top = min(scenario.clients, scenario.edge.max_batch_size)
    return tuple(sorted({b for b in (1, 2, 4, 8, 16, 32) if b <= top} | {top}))


def _progress(total: int, enabled: bool, name: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return None
    return tqdm(total=total, desc=name, unit="frame")
