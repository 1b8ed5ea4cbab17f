"""DES validation: the same small scenario on the real system and in the discrete-event simulator.

Two checks: the default one (latency, an ``echo`` model) and ``--field`` (the
adaptive policy on a recorded cellular trace: SLA violations and accuracy).

Default check. Measures a profile of the ``echo`` model (20 ms tail per batch, so the numbers
are about the network, queueing and batching, not CPU luck), runs the real
runner (edge process, emulated links, N clients) and the DES from that profile
for the same scenario (a step uplink), and prints p50/p95 per policy side by
side with the error of the DES. The last line is
``des_p50_error_pct=<x> des_p95_error_pct=<y>``: the mean absolute error over
policies, in percent of the real value.

    python -m benchmarks.des_validation --quick            # 3 clients, 3 x 3 s phases
    python -m benchmarks.des_validation --aligned --out out/desval

Field check (``--field``; ``--quick --field``: 25 s, about 5 min on a 2-core machine).
The first ``--duration-s`` seconds (default 60, quick 25) of ``ATT-LTE-driving-2016``
(``.up``/``.down`` in ``../shared/traces/cellular/`` beside the repository, or
``--traces DIR``; skipped with a message when absent), the scenario of
:func:`benchmarks.field.field_scenario` (``zoo:ghnd-frcnn-small-c12``, the branches of
its scheduler profile ``configs/profiles/ghnd-frcnn-small-c12.json`` the model serves,
5 fps, SLA 200 ms, 40 ms one-way delay, one client) on each ``--devices`` slowdown
(default 1; ``pi``: the field benchmark's Pi-class device, its detector held at ~240 ms
as this machine's speed drifts, where a fixed factor moves with that speed), policies
``adaptive``, ``rate-rule``, ``local``, ``offload``. Its video is one scene of exactly
the frames the run plays (``[video] seed = --video-seed``, ``frames = clip_frames`` =
duration x fps), and before anything runs every entry of the
scheduler profile is re-scored on those very frames
(:func:`splitedge.training.branch_accuracy.make_video_validator` with that seed,
frame count and clip length: what ``splitedge-client profile --accuracy-seed S
--accuracy-frames N --accuracy-clip-frames N`` measures). Those accuracies replace the
profile's (averages over 32 other scenes) for both sides: the real adaptive scheduler
decides with them and the DES predicts with them. Costs: one profile measured against
the real edge on the scenario's device (:func:`benchmarks.field.cost_profile`, the
slowed backend for a slowdown > 1); the DES's adaptive policy uses it where it has the
candidate and the scheduler profile's own costs x slowdown for the rest
(:func:`splitedge.simulations.des_adaptive.adaptive_costs`), device and tail times drawn
from the samples (``jitter``); its scheduler sees each answer's boxes on the run's video
(:func:`splitedge.simulations.des_adaptive.replay_content`: a detection's, or for a
tracked answer the tracker's boxes moved from the detection it answers with), as the
real one picks by the accuracy of the content bins its answers fall into. ``--repeats N``
runs the real side N times, each run with the cost profile measured afresh just before
it, and the DES with max(N, ``--des-seeds``) seeds (its draws; default 8, they cost
seconds) shared out over those profiles: the table gives the means, the real runs'
ranges and the DES runs' mAP50 range. ``--policies adaptive`` runs the adaptive policy
alone (a run about 4x shorter, for many repeats). With ``--out``, a batch keeps each
run's cost profile, rows and summary and its parameters (``batch.json``); ``--des-only
OUT/field-pi`` then runs the DES alone against those real runs, as it would have been
run beside them (seeds and pairs alike): a DES change checked in minutes on the same
real runs. Which frames a run happens to detect on moves its mAP50 by ~0.03 (a
detection every second frame on the field video: 0.365 on the even frames, 0.394 on
the odd), so one DES draw is as noisy as one real run. One policy's mAP50 on 125 frames
moved by 0.07 between two runs of the same command (docs/benchmarks.md), more than the
5 % target: one run cannot show the target met.

Per policy: SLA violation % (late or dropped, over frames captured), real vs DES and
the difference in points; accuracy: the runner's COCO mAP50 over the run's answered
frames (``real_mAP50``) against ``des_mAP50``, the same metric over the DES's answered
frames, each given the boxes the real path gives it on the run's video
(:func:`splitedge.simulations.des_adaptive.replayed_map50`: a detection frame its
branch's detections from the re-scoring pass, a frame answered ``track_age`` frames
after its boxes' detection the device's tracker moved from that frame to it, as the
session does), and the DES's error in percent of the real value. ``replay_mAP50`` is
the same replay of the real run's own rows (the real client records each answer's
track age): how far the replay itself is from the runner's scoring. ``des_acc_mean``
is the older estimate, the mean over answered frames of the re-scored entry accuracy
of what produced each (a tracked frame its fresh accuracy less a loss per frame of
age): mAP over a subset of frames is not a mean of whole-video mAPs. ``real_acc_mean``
is the same estimate over the real runs' rows and ``mix_err_%`` the DES's error on it:
it compares what each side answered with (branch, detection or tracked, the boxes'
age), free of which frames each happened to detect on. That luck is large: the real
side's 3-run mean mAP50 of adaptive was 0.325 in one batch and 0.362 in the next with
the same real system (docs/benchmarks.md), 11 % apart. Below the table,
adaptive's answers by track age, real / DES. Last line
``des_adaptive_viol_err_pts=<DES - real, adaptive> des_adaptive_acc_err_pct=<same,
des_mAP50> des_adaptive_mix_err_pct=<same, acc_mean> des_viol_err_pts_max=<largest
|difference| over policies> des_acc_err_pct_max=<same>`` (worst over devices); targets:
3 points, 5 %. With ``--repeats`` > 1 the table adds ``err_pts_ci95`` and ``err_%_ci95``
(half-widths of the errors' 95 % intervals: Student's t over the runs' paired
differences, each real run against the mean of the DES runs from its own cost profile,
so the cost measurement's noise is in them) and the last line
``des_adaptive_viol_err_ci95_pts`` and
``des_adaptive_acc_err_ci95_pct``: an error is shown within its target only when the
error and its interval both are. Below the table, per policy, the DES's link replayed
against the real runs' edge answers (:func:`link_replay_errors`: each sent at its real
send time over the DES's model of the same traces): how far the DES's network times are
from the real ones when the decisions are the same.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks._stats import count_arg, half95, machine, table
from benchmarks.field import parse_devices as _devices
from splitedge.simulations.des import DesConfig, one_way, policy_factory, simulate
from splitedge.simulations.profiles import CostProfile, LinkModel, measure_cost_profile
from splitedge.simulations.report import FrameRow, PolicySummary, read_csv, summarize
from splitedge.simulations.runner import (
    profile_batch_sizes,
    run_scenario,
    synthetic_videos,
    write_outputs,
)
from splitedge.simulations.scenario import Scenario, scenario_from_dict


def validation_scenario(
    *, clients: int, phase_s: float, aligned: bool, tail_delay_ms: float = 20.0
) -> Scenario:
    doc: dict[str, Any] = {
        "name": "des-validation",
        "model": "echo",
        "model_options": {"tail_delay_ms": tail_delay_ms},
        "branches": ["offload-jpeg90", "split@x/8", "split@x/2", "local"],
        "duration_s": 3 * phase_s,
        "clients": clients,
        "fps": 5,
        "sla_ms": 150,
        "delay_ms": 10,
        "camera_phase": "aligned" if aligned else "staggered",
        "uplink": {"kind": "steps", "steps": [[0, 20], [phase_s, 2], [2 * phase_s, 20]]},
        "downlink": {"kind": "constant", "rate_mbps": 50},
        "video": {"width": 160, "height": 120, "frames": 8},
        "edge": {"max_batch_size": 8, "max_queue_delay_ms": 2, "tail_workers": 1},
        "policies": [
            {"kind": "offload"},
            {"kind": "fixed", "branch": "split@x/8"},
            {"kind": "fixed", "branch": "split@x/2"},
            {"kind": "oracle"},
            {"kind": "rate-rule"},
        ],
    }
    return scenario_from_dict(doc, source="des-validation")


def _err(des: float, real: float) -> float:
    return 100.0 * (des - real) / real


async def validate(scenario: Scenario, out: Path | None) -> tuple[float, float]:
    images = [s.image for s in synthetic_videos(scenario)[0][:4]]
    profile = await measure_cost_profile(
        scenario.model,
        scenario.branches,
        images,
        model_options=scenario.model_options,
        repeats=8,
        batch_sizes=profile_batch_sizes(scenario),
    )
    real = await run_scenario(scenario, out, profile=profile)
    des_cfg = DesConfig.from_scenario(scenario)
    des_rows = []
    des: dict[str, PolicySummary] = {}
    for policy in scenario.policies:
        result = simulate(
            des_cfg,
            profile,
            policy_factory(policy, scenario.branches, des_cfg, profile),
            name=policy.name,
        )
        des[policy.name] = result.summary
        des_rows += result.rows
    if out is not None:
        write_outputs(des_rows, summarize(des_rows), scenario, out / "des")
    rows = []
    p50_errors, p95_errors = [], []
    for s in real.summaries:
        d = des[s.policy]
        e50, e95 = _err(d.p50_ms, s.p50_ms), _err(d.p95_ms, s.p95_ms)
        p50_errors.append(abs(e50))
        p95_errors.append(abs(e95))
        rows.append(
            (
                s.policy,
                round(s.p50_ms, 1),
                round(d.p50_ms, 1),
                f"{e50:+.1f}",
                round(s.p95_ms, 1),
                round(d.p95_ms, 1),
                f"{e95:+.1f}",
                f"{s.sla_violation_pct:.1f}/{d.sla_violation_pct:.1f}",
                f"{s.mean_batch:.2f}/{d.mean_batch:.2f}",
            )
        )
    print(
        table(
            (
                "policy",
                "real_p50",
                "des_p50",
                "err_%",
                "real_p95",
                "des_p95",
                "err_%",
                "sla_viol_%",
                "batch",
            ),
            rows,
        )
    )
    print("(sla_viol_% and batch: real/des)")
    return sum(p50_errors) / len(p50_errors), sum(p95_errors) / len(p95_errors)


# ---------------------------------------------------------------------- field check

FIELD_TRACE = "ATT-LTE-driving-2016"
FIELD_POLICIES = ("adaptive", "rate-rule", "local", "offload")
VIOLATION_TARGET_PTS = 3.0
ACCURACY_TARGET_PCT = 5.0


def link_replay_errors(
    rows: Sequence[Any],
    uplink: Any,
    downlink: Any,
    *,
    delay_ms: float,
    costs: Any,
) -> list[float]:
    """The DES's network time minus the real one, in ms, for each of a real run's edge
    answers (``rows``, one client), each sent at its real send time (capture + device
    time) over the DES's link model of the same traces (:class:`LinkModel`, FIFO in send
    order, :func:`~splitedge.simulations.des.one_way` as the DES crosses it), with the
    real server time between the two directions and the cost profile's wire and per-frame
    overheads: the DES's link checked frame by frame against the real path, apart
    from the decisions (probes and Status RPCs are not in the rows, so a frame queued
    behind one reads faster in the DES)."""
    remote = [cp for cp in costs.candidates.values() if cp.remote]
    if not remote:
        return []
    extra = statistics.median(cp.uplink_wire_bytes - cp.payload_bytes for cp in remote)
    reply = statistics.median(cp.downlink_wire_bytes for cp in remote)
    up, down = LinkModel(uplink), LinkModel(downlink)
    delay, overhead = delay_ms / 1000, costs.overhead_ms / 1000
    errors = []
    for r in sorted((r for r in rows if r.source == "edge"), key=lambda r: r.t_s):
        sent = r.t_s + r.device_ms / 1000
        server = r.server_ms / 1000
        at_server = one_way(up, sent, r.payload_bytes + extra, delay, overhead)
        back = one_way(down, at_server + server, reply, delay)
        errors.append((back - sent - server) * 1000 - r.network_ms)
    return errors


def _trace_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "cellular"


def rescored(
    profile: Any, model: Any, *, seed: int, frames: int, served: set[str]
) -> tuple[Any, Any]:
    """``profile`` with every served entry's accuracy measured on the run's own frames,
    and the validator that measured it (its detections on each frame are kept)."""
    from splitedge.training.branch_accuracy import make_video_validator

    validator = make_video_validator(
        model, frames=frames, seed=seed, size=(320, 240), clip_frames=frames, metric="mAP50"
    )
    entries = []
    for e in profile.entries:
        if e.config.branch in served:
            record = validator(e.config)
            e = replace(e, accuracy=record.overall, accuracy_by_bin=dict(record.by_bin))
        entries.append(e)
    return replace(profile, entries=entries, accuracy_video=validator.accuracy_video), validator


BATCH_FILE = "batch.json"
RUN_FILES = ("profile.json", "frames.csv", "summary.csv")


class FieldBatchError(ValueError):
    """A finished batch's folder that cannot be read back (``--des-only``)."""


def read_batch_run(
    batch: Path, index: int, repeats: int
) -> tuple[CostProfile, list[FrameRow], dict[str, tuple[float, float]]]:
    """Run ``index`` of a finished field batch (its folder ``batch``; with one run the
    folder itself): its cost profile, its rows and each policy's (SLA violation %, mAP50)
    as its summary.csv has them. Raises :class:`FieldBatchError` naming the missing or
    unreadable file."""
    run = _run_dir(batch, index, repeats)
    paths = [run / name for name in RUN_FILES]
    try:
        costs = CostProfile.load(paths[0])
        rows = read_csv(paths[1])
        with paths[2].open(newline="") as f:
            figures = {
                row["policy"]: (float(row["sla_violation_pct"]), float(row["map50"]))
                for row in csv.DictReader(f)
            }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FieldBatchError(f"{run}: unreadable run ({exc})") from exc
    return costs, rows, figures


def _run_dir(batch: Path, index: int, repeats: int) -> Path:
    return batch if repeats == 1 else batch / f"run{index + 1}"


def check_batch_runs(batch: Path, repeats: int) -> None:
    """Every run's files are there (before the minutes of re-scoring a --des-only run
    spends first); :class:`FieldBatchError` names the first one missing."""
    for index in range(repeats):
        for name in RUN_FILES:
            path = _run_dir(batch, index, repeats) / name
            if not path.is_file():
                raise FieldBatchError(f"{path}: no such file (is {batch} a finished batch?)")


def write_batch(out: Path, **params: Any) -> Path:
    """``out/batch.json``: what :func:`read_batch` needs to run the DES again against the
    batch's real runs (``duration_s``, ``slowdown``, ``device_local_ms``, ``video_seed``,
    ``repeats``, ``policies``)."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"trace": FIELD_TRACE, **params, "policies": list(params["policies"])}
    path = out / BATCH_FILE
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def read_batch(batch: Path) -> dict[str, Any]:
    """A finished field batch's parameters (its batch.json), checked."""
    path = batch / BATCH_FILE
    if not path.is_file():
        raise FieldBatchError(
            f"{path}: no such file (--des-only takes the folder a --field run wrote with "
            "--out, e.g. OUT/field-pi)"
        )
    try:
        doc = json.loads(path.read_text())
        params = {
            "duration_s": float(doc["duration_s"]),
            "slowdown": float(doc["slowdown"]),
            "device_local_ms": float(doc["device_local_ms"]),
            "video_seed": int(doc["video_seed"]),
            "repeats": int(doc["repeats"]),
            "policies": tuple(doc["policies"]),
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise FieldBatchError(f"{path}: not a field batch's parameters ({exc!r:.80})") from exc
    if doc.get("trace") != FIELD_TRACE:
        raise FieldBatchError(f"{path}: trace {doc.get('trace')!r}, this check runs {FIELD_TRACE}")
    bad = [p for p in params["policies"] if p not in FIELD_POLICIES]
    if bad or params["repeats"] < 1 or not params["slowdown"] >= 1.0:
        raise FieldBatchError(f"{path}: not a field batch's parameters ({doc!r:.80})")
    return params


async def field_check(
    trace_dir: Path,
    *,
    duration_s: float,
    slowdown: float,
    video_seed: int,
    out: Path | None,
    device_local_ms: float = 0.0,
    repeats: int = 1,
    des_seeds: int = 1,
    policies: Sequence[str] = FIELD_POLICIES,
    reuse: Path | None = None,
) -> list[FieldCheck]:
    """Real vs DES per policy: ``repeats`` real runs, each with the cost profile measured
    just before it and ceil(max(repeats, ``des_seeds``) / repeats) DES runs from that
    profile (run r's seeds r*k..r*k+k-1; the first one's rows are written beside real run
    r's): each real run and its DES runs are a pair, so the errors' intervals come from
    the pairs' differences and cover the cost measurement's own noise.

    ``reuse``: a finished batch's folder (its ``--out``/field-<device>): no real run and no
    measurement, each run's cost profile, rows and summary are read from it
    (:func:`read_batch_run`) and only the DES runs, as they would have been run then.
    Otherwise, with ``out``, the batch's parameters go to ``out/batch.json`` for that.

    ``device_local_ms`` > 0 pins the real device's own detector at that time (the field
    benchmark's ``pi`` device; ``slowdown`` is then the factor that made it so at start,
    which the DES applies to the scheduler profile's device times)."""
    from benchmarks.field import (
        MODEL,
        SCHEDULER_PROFILE,
        branch_list,
        cost_profile,
        entry_accuracy,
        field_scenario,
        policy_docs,
    )
    from splitedge.mobile_client.profile import load_profile
    from splitedge.models.registry import create_model
    from splitedge.simulations import des_adaptive
    from splitedge.simulations.runner import frames_in

    fps, sla_ms, delay_ms = 5.0, 200.0, 40.0
    frames = frames_in(duration_s, fps)
    sched = load_profile(SCHEDULER_PROFILE)
    model = await asyncio.to_thread(create_model, MODEL)
    served = set(model.branches)
    t0 = time.monotonic()
    sched, validator = await asyncio.to_thread(
        rescored, sched, model, seed=video_seed, frames=frames, served=served
    )
    print(
        f"re-scored {sum(e.config.branch in served for e in sched.entries)} profile entries "
        f"on the run's {frames} frames (seed {video_seed}) in {time.monotonic() - t0:.0f} s",
        flush=True,
    )
    branches = branch_list(sched, served)
    scenario = field_scenario(
        trace_dir,
        FIELD_TRACE,
        slowdown=slowdown,
        duration_s=duration_s,
        branches=branches,
        policies=policy_docs(tuple(policies), branches, ""),
        sla_ms=sla_ms,
        fps=fps,
        delay_ms=delay_ms,
        device_local_ms=device_local_ms,
    )
    scenario = replace(
        scenario,
        video=replace(scenario.video, seed=video_seed, frames=frames, clip_frames=frames),
        policies=tuple(
            replace(p, scheduler_profile=sched) if p.kind == "adaptive" else p
            for p in scenario.policies
        ),
    )
    by_tag = des_adaptive.accuracy_by_tag(sched, scenario.branches)
    by_age = des_adaptive.accuracy_by_age(sched)
    fallback = by_tag.get("local")
    configs = des_adaptive.detection_configs(sched, scenario.branches)
    checks = {p.name: FieldCheck(p.name) for p in scenario.policies}
    per_run = -(-max(repeats, des_seeds) // repeats)

    def des_run(seed: int, costs: Any) -> tuple[list[Any], dict[str, tuple[float, float]]]:
        """Every policy in the DES with draws ``seed``: its rows (per policy in order) and
        each policy's violation % and replayed mAP50."""
        base = DesConfig.from_scenario(scenario, jitter=True, seed=seed)
        des_rows, figures = [], {}
        for policy in scenario.policies:
            check = checks[policy.name]
            cfg, policy_costs, options = base, costs, {}
            if policy.kind == "adaptive":
                policy_costs = des_adaptive.adaptive_costs(
                    sched, measured=costs, device_slowdown=scenario.device_slowdown
                )
                cfg = replace(base, **des_adaptive.tracker_costs(sched, costs))
                # The video's boxes, as the real session sees them (its own tracker state
                # per run).
                options = {"content": des_adaptive.replay_content(validator, configs)}
            factory = policy_factory(policy, scenario.branches, cfg, policy_costs, **options)
            d = simulate(cfg, policy_costs, factory, name=policy.name)
            des_rows += d.rows
            figures[policy.name] = (
                d.summary.sla_violation_pct,
                des_adaptive.replayed_map50(d.rows, validator, configs),
            )
            check.des_viol.append(figures[policy.name][0])
            check.des_map.append(figures[policy.name][1])
            check.des_acc.append(des_adaptive.predicted_accuracy(d.rows, by_tag, fallback, by_age))
            check.des_ages.update(r.track_age for r in d.rows)
        return des_rows, figures

    if reuse is None and out is not None:
        write_batch(
            out, duration_s=duration_s, slowdown=slowdown, device_local_ms=device_local_ms,
            video_seed=video_seed, repeats=repeats, policies=policies,
        )  # fmt: skip
    for r in range(repeats):
        run_dir = None if out is None else out if repeats == 1 else out / f"run{r + 1}"
        if reuse is not None:
            costs, real_rows, real_figures = read_batch_run(reuse, r, repeats)
        else:
            t0 = time.monotonic()
            # Measured afresh for each run: its noise (five samples per candidate) moves the
            # DES's mean as much as its draws do, so each pair carries its own.
            costs = await cost_profile(scenario, entry_accuracy(sched))
            if r == 0:
                print(f"measured the cost profile in {time.monotonic() - t0:.0f} s", flush=True)
            real = await run_scenario(scenario, run_dir, profile=costs, progress=False)
            real_rows = real.rows
            real_figures = {s.policy: (s.sla_violation_pct, s.map50) for s in real.summaries}
        for policy in scenario.policies:
            check = checks[policy.name]
            viol, map50 = real_figures[policy.name]
            check.real_viol.append(viol)
            check.real_map.append(map50)
            mine = [r for r in real_rows if r.policy == policy.name]
            check.replay_map.append(des_adaptive.replayed_map50(mine, validator, configs))
            check.real_acc.append(des_adaptive.predicted_accuracy(mine, by_tag, fallback, by_age))
            check.real_ages.update(r.track_age for r in mine)
            check.link_errors += link_replay_errors(
                mine, *scenario.client_traces(0), delay_ms=scenario.delay_ms, costs=costs
            )
        pair: dict[str, list[tuple[float, float]]] = {p.name: [] for p in scenario.policies}
        for j in range(per_run):
            des_rows, figures = des_run(r * per_run + j, costs)
            for name, fig in figures.items():
                pair[name].append(fig)
            if j == 0 and run_dir is not None:
                write_outputs(des_rows, summarize(des_rows), scenario, run_dir / "des")
        for name, figs in pair.items():
            checks[name].pairs.append(
                (
                    statistics.mean(f[0] for f in figs) - checks[name].real_viol[-1],
                    statistics.mean(f[1] for f in figs) - checks[name].real_map[-1],
                )
            )
        if repeats > 1:
            print(f"run {r + 1} of {repeats} done", flush=True)
    return list(checks.values())


@dataclass
class FieldCheck:
    """One policy's real and DES figures over the field check's repeats."""

    policy: str
    real_viol: list[float] = field(default_factory=list)  # SLA violation %, per real run
    des_viol: list[float] = field(default_factory=list)  # per DES run (its own seed)
    real_map: list[float] = field(default_factory=list)  # the runner's COCO mAP50
    des_acc: list[float] = field(default_factory=list)  # mean of its frames' entry accuracy
    real_acc: list[float] = field(default_factory=list)  # the same over the real run's rows
    # mAP50 over the DES's answered frames with the real path's boxes on them
    # (des_adaptive.replayed_map50): the runner's metric on the DES's choices.
    des_map: list[float] = field(default_factory=list)
    # The same replay of the real run's own rows: how well the replay reproduces real_map.
    replay_map: list[float] = field(default_factory=list)
    # Frames by the age of the boxes that answered them (-1: dropped, or not recorded).
    real_ages: Counter[int] = field(default_factory=Counter)
    des_ages: Counter[int] = field(default_factory=Counter)

    def ages_text(self) -> str:
        """Answers by track age, real / DES, over every run: ``age real/des, ...``."""

        def bucketed(ages: Counter[int]) -> Counter[str]:
            return Counter(str(a) if a < 6 else "6+" for a in ages.elements() if a >= 0)

        real, des = bucketed(self.real_ages), bucketed(self.des_ages)
        keys = sorted(set(real) | set(des), key=lambda k: int(k.rstrip("+")))
        return ", ".join(f"{k}: {real[k]}/{des[k]}" for k in keys)

    # The DES's network time minus the real one for each real edge answer, replayed at its
    # send time over the DES's link (link_replay_errors), over every run.
    link_errors: list[float] = field(default_factory=list)
    # Per real run, (DES - real) violations in points and mAP50, the DES's side the mean
    # of the runs from that real run's cost profile.
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def error_ci95(self) -> tuple[float, float]:
        """Half-widths of the 95 % intervals of the DES's errors (violations in points,
        mAP50 in % of the real mean): Student's t over the pairs' differences (nan with
        fewer than two pairs). The error is shown within a target only when the error
        plus this is within it."""
        viol = half95([p[0] for p in self.pairs])
        real_a = statistics.mean(self.real_map) if self.real_map else math.nan
        if math.isnan(viol) or not real_a > 0:
            return viol, math.nan
        return viol, half95([p[1] for p in self.pairs]) * 100.0 / real_a

    def link_text(self) -> str:
        """The link replay in words ('' without edge answers)."""
        errors = self.link_errors
        if not errors:
            return ""
        within = sorted(abs(e) for e in errors)[math.ceil(0.9 * len(errors)) - 1]
        return (
            f"the DES's link on the real runs' {len(errors)} edge answers at their send "
            f"times: network time DES - real median {statistics.median(errors):+.1f} ms, "
            f"90 % within {within:.1f} ms"
        )

    @staticmethod
    def spread(values: list[float]) -> str:
        """``min-max`` of the runs ('' for one run)."""
        if len(values) < 2:
            return ""
        return f"{min(values):.3g}-{max(values):.3g}"


def _des_only_error(exc: FieldBatchError) -> int:
    print(f"python -m benchmarks.des_validation: error: --des-only: {exc}", file=sys.stderr)
    return 2


def _field_main(args: argparse.Namespace) -> int:
    batch: dict[str, Any] | None = None
    if args.des_only is not None:
        try:
            batch = read_batch(args.des_only)
            check_batch_runs(args.des_only, batch["repeats"])
        except FieldBatchError as exc:
            return _des_only_error(exc)
    trace_dir = args.traces or _trace_dir()
    if not (trace_dir / f"{FIELD_TRACE}.up").is_file():
        print(
            f"no {FIELD_TRACE}.up/.down in {trace_dir}: skipping the field check "
            "(pass --traces DIR with the Mahimahi pair)"
        )
        return 0
    duration_s = batch["duration_s"] if batch else args.duration_s or (25.0 if args.quick else 60.0)
    what = (
        f"the DES only, against the real runs in {args.des_only}"
        if batch
        else "devices " + ", ".join(d if d == "pi" else f"x{d:g}" for d in args.devices)
    )
    print(
        f"DES validation, field: {FIELD_TRACE} (first {duration_s:g} s), "
        f"zoo:ghnd-frcnn-small-c12, 5 fps, SLA 200 ms, delay 40 ms, {what}; {machine()}",
        flush=True,
    )
    t_start = time.monotonic()
    worst: dict[str, float] = {"viol": 0.0, "acc": 0.0}
    adaptive: dict[str, float] = {
        "viol": math.nan, "acc": math.nan, "mix": math.nan, "viol_ci": math.nan, "acc_ci": math.nan
    }  # fmt: skip
    repeats = batch["repeats"] if batch else args.repeats
    for device in [None] if batch else args.devices:
        if batch:
            pinned_ms, slowdown = batch["device_local_ms"], batch["slowdown"]
            label = f"pi(x{slowdown:g})" if pinned_ms > 0 else f"x{slowdown:g}"
        else:
            pinned_ms, slowdown, label = 0.0, device, f"x{device:g}" if device != "pi" else ""
        if device == "pi":
            from benchmarks.field import pi_slowdown
            from splitedge.simulations.demo import DEVICE_LOCAL_MS

            # The field benchmark's Pi-class device: its detector held at ~240 ms while
            # this machine's speed drifts, where a fixed factor moves with it.
            host_ms, slowdown = asyncio.run(pi_slowdown())
            pinned_ms, label = DEVICE_LOCAL_MS, f"pi(x{slowdown:g})"
            print(
                f"device pi: this machine's detector {host_ms:.0f} ms, slowed {slowdown:g}x, "
                f"held at {DEVICE_LOCAL_MS:g} ms",
                flush=True,
            )
        out = args.out / f"field-{label.partition('(')[0]}" if args.out is not None else None
        try:
            checks = asyncio.run(
                field_check(
                    trace_dir,
                    duration_s=duration_s,
                    slowdown=slowdown,
                    video_seed=batch["video_seed"] if batch else args.video_seed,
                    out=out,
                    device_local_ms=pinned_ms,
                    repeats=repeats,
                    des_seeds=args.des_seeds,
                    policies=batch["policies"] if batch else args.policies,
                    reuse=args.des_only,
                )
            )
        except FieldBatchError as exc:  # a run's file there but unreadable
            return _des_only_error(exc)
        rows = []
        for c in checks:
            real_v, des_v = statistics.mean(c.real_viol), statistics.mean(c.des_viol)
            real_a, des_a = statistics.mean(c.real_map), statistics.mean(c.des_map)
            viol_pts = des_v - real_v
            acc_pct = _err(des_a, real_a) if real_a > 0 else math.nan
            worst["viol"] = max(worst["viol"], abs(viol_pts))
            if not math.isnan(acc_pct):
                worst["acc"] = max(worst["acc"], abs(acc_pct))
            real_mix, des_mix = statistics.mean(c.real_acc), statistics.mean(c.des_acc)
            mix_pct = _err(des_mix, real_mix) if real_mix > 0 else math.nan
            viol_ci, acc_ci = c.error_ci95()
            if c.policy == "adaptive" and not (abs(viol_pts) <= abs(adaptive["viol"])):
                adaptive = {  # the worst device's
                    "viol": viol_pts, "acc": acc_pct, "mix": mix_pct,
                    "viol_ci": viol_ci, "acc_ci": acc_ci,
                }  # fmt: skip
            spreads = (
                (c.spread(c.real_viol), c.spread(c.real_map), c.spread(c.des_map))
                if max(repeats, args.des_seeds) > 1
                else ()
            )
            cis = (f"{viol_ci:.1f}", f"{acc_ci:.1f}") if repeats > 1 else ()
            rows.append(
                (
                    f"{c.policy} {label}",
                    f"{real_v:.1f}",
                    f"{des_v:.1f}",
                    f"{viol_pts:+.1f}",
                    f"{real_a:.3f}",
                    f"{statistics.mean(c.replay_map):.3f}",
                    f"{des_a:.3f}",
                    f"{acc_pct:+.1f}",
                    f"{real_mix:.3f}",
                    f"{des_mix:.3f}",
                    f"{mix_pct:+.1f}",
                    *spreads,
                    *cis,
                )
            )
        head = [
            "policy", "real_viol_%", "des_viol_%", "err_pts", "real_mAP50", "replay_mAP50",
            "des_mAP50", "err_%", "real_acc_mean", "des_acc_mean", "mix_err_%",
        ]  # fmt: skip
        if max(repeats, args.des_seeds) > 1:
            head += ["real_viol_range", "real_mAP50_range", "des_mAP50_range"]
        if repeats > 1:
            head += ["err_pts_ci95", "err_%_ci95"]
        print(table(tuple(head), rows), flush=True)
        for c in checks:
            if c.policy == "adaptive" and c.ages_text():  # 0: a detection on the frame
                print(f"adaptive {label}: answers by track age (real/DES): {c.ages_text()}")
        for c in checks:
            if c.link_text():
                print(f"{c.policy} {label}: {c.link_text()}")
    print(
        f"wall time {time.monotonic() - t_start:.0f} s; targets: |err_pts| <= "
        f"{VIOLATION_TARGET_PTS:g}, |err_%| <= {ACCURACY_TARGET_PCT:g}"
    )
    print(
        f"des_adaptive_viol_err_pts={adaptive['viol']:+.1f} "
        f"des_adaptive_acc_err_pct={adaptive['acc']:+.1f} "
        f"des_adaptive_mix_err_pct={adaptive['mix']:+.1f} "
        f"des_viol_err_pts_max={worst['viol']:.1f} des_acc_err_pct_max={worst['acc']:.1f}"
        + (
            f" des_adaptive_viol_err_ci95_pts={adaptive['viol_ci']:.1f}"
            f" des_adaptive_acc_err_ci95_pct={adaptive['acc_ci']:.1f}"
            if repeats > 1
            else ""
        )
    )
    return 0


def _policies(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",")))
    if not names or not all(n in FIELD_POLICIES for n in names):
        raise argparse.ArgumentTypeError(
            f"expected some of {', '.join(FIELD_POLICIES)} separated by commas, got {text!r}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.des_validation", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 clients, 3 s phases (--field: 25 s of trace)"
    )
    parser.add_argument(
        "--field",
        action="store_true",
        help="the adaptive check instead: real runs vs the DES on the first seconds of "
        f"{FIELD_TRACE} (SLA violation %% and accuracy per policy; see the module doc)",
    )
    parser.add_argument(
        "--traces",
        type=Path,
        default=None,
        help=f"--field: folder of Mahimahi X.up/X.down pairs (default {_trace_dir()})",
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="--field: seconds (default 60, quick 25)"
    )
    parser.add_argument(
        "--devices",
        type=_devices,
        default=[1.0],
        help="--field: device slowdowns, comma-separated (default 1; e.g. 1,6); 'pi': the "
        "field benchmark's Pi-class device, its detector held at ~240 ms",
    )
    parser.add_argument(
        "--repeats",
        type=count_arg,
        default=1,
        help="--field: real runs per device, each with its cost profile measured afresh "
        "and its own DES runs (at least one); the table gives means, the real runs' range "
        "and, for more than one, each error's 95 %% interval over the runs (default 1)",
    )
    parser.add_argument(
        "--des-seeds",
        type=count_arg,
        default=8,
        help="--field: DES runs per device, each with its own draws, shared out over the "
        "real runs' cost profiles (default 8; at least --repeats); the table gives their "
        "mean",
    )
    parser.add_argument(
        "--policies",
        type=_policies,
        default=FIELD_POLICIES,
        help=f"--field: which of {', '.join(FIELD_POLICIES)} to run, comma-separated "
        "(default all; 'adaptive' alone makes a run about 4x shorter)",
    )
    parser.add_argument(
        "--des-only",
        type=Path,
        default=None,
        metavar="DIR",
        help="--field: no real run: the DES against a finished batch's real runs (DIR: the "
        "field-<device> folder a run wrote with --out; its batch.json gives the device, "
        "duration, repeats and policies, and those options are ignored); for checking a "
        "DES change against the same runs",
    )
    parser.add_argument(
        "--video-seed", type=int, default=0, help="--field: the run's video seed (default 0)"
    )
    parser.add_argument("--clients", type=int, default=None, help="clients (default 3)")
    parser.add_argument("--phase-s", type=float, default=None, help="seconds per trace step")
    parser.add_argument("--aligned", action="store_true", help="all cameras tick at once")
    parser.add_argument("--out", type=Path, default=None, help="keep CSV/plots here")
    args = parser.parse_args(argv)
    if args.duration_s is not None and not (math.isfinite(args.duration_s) and args.duration_s > 0):
        parser.error(f"--duration-s: expected a number > 0, got {args.duration_s}")
    if args.field:
        return _field_main(args)
    clients = args.clients or 3
    phase_s = args.phase_s or (3.0 if args.quick else 6.0)
    scenario = validation_scenario(clients=clients, phase_s=phase_s, aligned=args.aligned)
    print(
        f"DES validation: echo (20 ms tail), {clients} clients, uplink 20/2/20 Mbps x "
        f"{phase_s:g} s, 5 fps, {scenario.camera_phase} cameras; {machine()}",
        flush=True,
    )
    p50, p95 = asyncio.run(validate(scenario, args.out))
    print(f"des_p50_error_pct={p50:.1f} des_p95_error_pct={p95:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
