"""The scheduler in the field: real runs over recorded cellular uplink/downlink pairs.

    python -m benchmarks.field [--quick] [--traces DIR] [--out DIR] [--trace NAME ...]
                               [--duration-s S] [--devices 1,6] [--policies a,b,...]
                               [--repeats N]
    python -m benchmarks.field --judge out/field/field.csv [more.csv ...]

Every run is :func:`splitedge.simulations.runner.run_scenario`: a real edge server
process serving the trained student ``zoo:ghnd-frcnn-small-c12``, a real client,
and a user-space emulated link that replays a recorded Mahimahi pair
(``X.up`` / ``X.down`` from ``../shared/traces/cellular/`` beside the repository,
or ``--traces DIR``; the first ``--duration-s`` seconds of each file). Camera at
5 fps, SLA 200 ms, 40 ms one-way delay, the client's deadline 2 x SLA (then the
local fallback). The video: 320x240 synthetic scenes of 50 frames (10 s) each, seed
1, as many frames as the run plays (no loop), so mAP50 averages over several scenes as
the profile's accuracies do (32 scenes of seed 424242). One scene alone moves a
branch's mAP50 far more than the profile's spread between branches: the runner's
default video (one blurred scene of 16 frames, looped) rates the student's codes at a
quarter of their profile accuracy (``configs/profiles/README.md``). Scenes are long
because every cut (and every loop of a short video) hands a tracker boxes of another
scene for up to three frames, which a camera does not do and the profile never
measures (its groups start at each clip's first frame). Measured on 16-frame scenes
of this seed (``splitedge-client profile --accuracy-seed 1 --accuracy-frames 160
--accuracy-clip-frames 16``): local 0.512, JPEG q90 0.496, w0.5 4-bit code 0.429, at
k = 4 0.426 / 0.411 / 0.364; the profile's ratios between branches hold.

Traces: TMobile-UMTS-driving, ATT-LTE-driving-2016, Verizon-LTE-short and
TMobile-LTE-short for 100 s each (``--trace NAME`` picks others, ``--trace all``
every pair in the folder); ``--quick``: ATT-LTE-driving-2016 only (two fades in
its first 30 s), 30 s. Devices: this machine (``device_slowdown = 1``) and the
demo's slowed device (``pi``: the slowdown that makes this machine's detector take
the demo's ~240 ms, a Raspberry Pi-class CPU, measured at start and then kept at
~240 ms as this machine's speed drifts, the scenario's ``device_local_ms``; the client
sleeps the rest of each head and local run; the schedulers are not told). A fixed factor
(``--devices 1,6``) puts the device wherever this machine's speed does: x6 of a
32 ms detector is ~190 ms, at the 200 ms SLA, where a few percent of host noise
moved local-only between 6 % and 58 % violations in two runs of the same day.

Branches: every policy chooses from the same list, the branches of the adaptive
scheduler profile (``configs/profiles/ghnd-frcnn-small-c12.json``) that the model
serves: the remote ones most accurate first (the profile's accuracy at detection
interval 1), then ``local`` (the rate rule's order: the edge preferred, the device
the last resort, as in ``configs/scenarios/adaptive-step.toml``).

Policies (:mod:`splitedge.simulations.policies`): ``adaptive`` (the device's
scheduler over the whole profile: every branch at detection interval 1 and 4,
tracking in between), ``rate-rule``, ``oracle`` (sees the future traces; ranks the
branches by the profile's accuracy, which this benchmark writes into the measured
cost profile, and plans with that profile's median costs), ``oracle-q95`` (the same
oracle planning with the 95th percentile of the device's and the tail's measured
times: it knows the future link, not the future draws, and the median plan misses
the SLA on about half of the frames it plans at the edge of it), ``neurosurgeon``,
``local``, ``offload`` (``offload-jpeg90``) and one fixed split
(``fixed:bottleneck-12-w0.5-4bit``). ``fixed-all`` is left out: it is one fixed
policy per branch, ten more runs per trace and device, and the split above stands
for them. The oracle and Neurosurgeon need a cost profile; it is measured once per
device (the slowed device's with the slowed backend, as the runner would).

Per trace x device x policy the table gives frames captured, answered within the
SLA %, SLA violation % (late or dropped, over frames captured), COCO mAP50 over
the run's answers (the runner's), mAP50_sla (COCO mAP50 over every frame captured,
an answer past the SLA or none counting as no boxes: what an application that
waits at most the SLA gets; local-only on a device slower than the SLA scores 0),
uplink MB (the frames' payloads and adaptive's link probes beside frames), frames
dropped by reason, local fallbacks, link probes (adaptive's frames sent only to measure
the link, beside a frame or in its place) and answered % (frames with an edge answer,
a tracked or a local result: not dropped). Per device overall: sums
over traces, and both mAP50s as the mean of the runs' (every run has the same
number of frames). ``frames.csv``, the
summary and the plots of each run go to ``--out`` (default ``out/field``)
``/<trace>-x<slowdown>/`` (``-r<run>`` appended with ``--repeats``); ``field.csv`` there
holds the table, one row per run and policy, and ``field.png`` every policy's violation
% against its mAP50_sla per trace and device (each run and the runs' mean). ``--judge
CSV ...`` runs nothing: it reads saved tables (several invocations' runs judged
together) and prints the per-trace targets and the summary line.

Recovery (adaptive only). The uplink trace is cut into 1 s windows (their mean
rate). A *fade* is a window under 0.2 Mbps; it *ends* at the start ``t_r`` of the
first later window that begins 3 whole windows all over 1 Mbps (inside the run).
The *fresh-start pick* is measured: a second real run of adaptive alone, a fresh
client started at ``t_r`` on the traces from ``t_r`` on, for ``FRESH_S`` (5 s);
its most frequent pick after its first second (answered, no fallback) is what a
fresh start picks on the link that came back, and its profile accuracy is the
target. ``--no-fresh`` skips those runs and approximates the pick twice instead:
the oracle's most frequent pick in ``[t_r, t_r + 3 s)`` (it plans with the true
future link) and adaptive's own most frequent pick in the run's first 3 s (its
choice before any fade, usually on a fast link), the target being the lower of
their profile accuracies (either alone when the other is missing). Every fade end
prints all three picks. Adaptive is *back* at its first frame at or after ``t_r`` answered
without fallback on an entry whose profile accuracy (its detection interval
included: a ``/k4`` or ``+track`` frame counts at the k = 4 accuracy) is within
0.01 of the target, so a tie such as local vs offload-jpeg90 (0.462 / 0.461)
counts as back. ``recovery_s`` = that frame's capture time - ``t_r``; never back
before the run ends: run end - ``t_r``, printed with ``>``. Each run prints every
fade end, its target and both references; the summary takes the worst over runs.

Per-trace targets (issue 12): per trace and device where some policy kept its violations
under 20 %, adaptive against every other policy but the oracles; *met* when adaptive is
not worse by more than 1 point of SLA violations or 0.01 accuracy and better on at least
one of the two, judged once by mAP50 over answers and once by mAP50_sla. Against a
policy whose every answer is late (local-only on a device slower than the SLA) the
first reading cannot be met by any policy that keeps the SLA. ``--repeats N`` runs
each trace and device N times (every trace once, then again); the rule is judged on
the mean of the N runs (each policy's violations over all its frames, its mean mAP50s)
and each difference gets its 95 % interval (Student's t over the per-run differences):
one run of one policy on a fading trace moves by more than the rule's 0.01. A check
not met where adaptive ties the other policy on both counts (within half a point and
0.002) and that policy ties or beats the oracle on both is labelled *tie at oracle*:
the other policy already does what the oracle plans with the future link, which no
policy is expected to beat (on this machine as the device: the device's own model, the
profile's most accurate branch, within the SLA on every frame); it still counts as not
met.

Last line: ``field_viol_pct=<adaptive's SLA violation % over every run>
rate_rule_viol_pct=<rate-rule's> acc_vs_oracle=<adaptive's mean mAP50 / the
oracle's> answered_pct=<adaptive's frames answered or run locally, %>
recovery_s=<worst> acc_vs_oracle_q95=<adaptive's mAP50 / oracle-q95's>
acc_sla_vs_oracle=<adaptive's mAP50_sla / the oracle's> per_trace_met=<met>/<checks>
per_trace_met_sla=<met>/<checks> oracle_ties=<not met by mAP50, tie at oracle>
oracle_ties_sla=<the same by mAP50_sla>`` (``nan`` where a policy did not run or no fade
ended).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks._stats import count_arg, half95, machine, table
from splitedge.mobile_client.profile import Profile, load_profile
from splitedge.simulations.profiles import CostProfile
from splitedge.simulations.report import FrameRow, PolicySummary
from splitedge.simulations.scenario import Scenario, ScenarioError, scenario_from_dict
from splitedge.simulations.traces import BandwidthTrace

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRACE_DIR = REPO.parent / "shared" / "traces" / "cellular"
MODEL = "zoo:ghnd-frcnn-small-c12"
SCENE_FRAMES = 50  # 10 s at 5 fps: a scene cut hands the tracker another scene's boxes
SCHEDULER_PROFILE = REPO / "configs" / "profiles" / "ghnd-frcnn-small-c12.json"
DEFAULT_TRACES = (
    "TMobile-UMTS-driving",
    "ATT-LTE-driving-2016",
    "Verizon-LTE-short",
    "TMobile-LTE-short",
)
QUICK_TRACE = "ATT-LTE-driving-2016"
POLICIES = (
    "adaptive",
    "rate-rule",
    "oracle",
    "oracle-q95",
    "neurosurgeon",
    "local",
    "offload",
    "fixed",
)
ORACLES = ("oracle", "oracle-q95")
PIN_SETTLE_RUNS = 12  # local runs before a pinned device's costs are measured
VIOLATION_CAP_PCT = 20.0  # a trace counts for the per-trace targets when a policy stays under
SKIPPED = {
    "fixed-all": "one fixed policy per branch (ten more runs per trace and device); "
    "the fixed split stands for them",
}
SPLIT_BRANCH = "bottleneck-12-w0.5-4bit"

FADE_BELOW_MBPS = 0.2
BACK_ABOVE_MBPS = 1.0
HOLD_S = 3
FRESH_S = 5.0  # a fresh start's reference run after each fade end
FRESH_SETTLE_S = 1.0  # its first second (first estimates) does not count
WINDOW_S = 1.0
ACCURACY_TOLERANCE = 0.01
# A tie (adaptive with another policy, that policy with the oracle): within half a point
# of violations (about one frame of a 45 s run) and 0.002 mAP50.
TIE_VIOL_PTS = 0.5
TIE_ACC = 0.002


@dataclass
class Run:
    trace: str
    slowdown: float
    summaries: list[PolicySummary]
    recoveries: list[Recovery] = field(default_factory=list)
    repeat: int = 1  # 1..--repeats: runs of one trace and device judged together

    @property
    def device(self) -> str:
        return f"x{self.slowdown:g}"


# ---------------------------------------------------------------------- traces


def trace_pairs(folder: Path) -> list[str]:
    """Names ``X`` with both ``X.up`` and ``X.down`` in ``folder``, sorted."""
    return sorted(p.stem for p in folder.glob("*.up") if p.with_suffix(".down").is_file())


def fade_ends(trace: BandwidthTrace, duration_s: float) -> list[float]:
    """Starts of the 1 s windows where the uplink comes back from a fade (module docstring)."""
    n = int(duration_s // WINDOW_S + 1e-9)
    if n < HOLD_S:
        return []
    starts, means = trace.mean_rates(WINDOW_S, n * WINDOW_S)
    ends, in_fade = [], False
    for i in range(n):
        if means[i] < FADE_BELOW_MBPS:
            in_fade = True
        elif (
            in_fade and i + HOLD_S <= n and all(m > BACK_ABOVE_MBPS for m in means[i : i + HOLD_S])
        ):
            ends.append(float(starts[i]))
            in_fade = False
    return ends


# ---------------------------------------------------------------------- recovery


def entry_accuracy(profile: Profile) -> dict[tuple[str, int], float]:
    """(branch, detection interval) -> the profile's accuracy (best over widths/sizes)."""
    out: dict[tuple[str, int], float] = {}
    for e in profile.entries:
        if e.accuracy is not None:
            key = (e.config.branch, e.config.detection_interval)
            out[key] = max(out.get(key, 0.0), e.accuracy)
    return out


def tag_accuracy(tag: str, accuracy: dict[tuple[str, int], float]) -> float | None:
    """Accuracy of a row's candidate tag ``branch[~..][/Nbit][/kK][+track]``."""
    parts = tag.removesuffix("+track").split("/")
    branch = parts[0].split("~")[0]
    interval = next((int(p[1:]) for p in parts[1:] if p[:1] == "k" and p[1:].isdigit()), 1)
    return accuracy.get((branch, interval), accuracy.get((branch, 1)))


@dataclass
class Recovery:
    """One fade's end for one run: how long adaptive took to be back (module docstring)."""

    fade_end_s: float
    seconds: float
    censored: bool  # not back before the run ended: seconds = run end - fade end
    target: float | None  # the accuracy it had to reach (None: any answered frame)
    oracle_pick: str = ""  # the oracle's most frequent pick in the 3 s after the fade
    start_pick: str = ""  # adaptive's most frequent pick in the run's first 3 s
    fresh_pick: str = ""  # a fresh client's most frequent pick, started at the fade's end


def _most_common(rows: Sequence[FrameRow]) -> str:
    """The most frequent entry of answered, non-fallback rows (a tracked frame is its entry's)."""
    tags = Counter(r.candidate.removesuffix("+track") for r in rows if r.answered and not r.reason)
    return tags.most_common(1)[0][0] if tags else ""


def fresh_pick(rows: Sequence[FrameRow], policy: str = "adaptive") -> str:
    """A fresh start's pick: its most frequent after its first estimates settled."""
    return _most_common([r for r in rows if r.policy == policy and r.t_s >= FRESH_SETTLE_S])


def recoveries(
    rows: Sequence[FrameRow],
    trace: BandwidthTrace,
    duration_s: float,
    accuracy: dict[tuple[str, int], float],
    policy: str = "adaptive",
    fresh: dict[float, str] | None = None,
) -> list[Recovery]:
    """One :class:`Recovery` per fade that ends in the run (module docstring);
    ``fresh``: fade end -> a fresh start's pick there (measured), when it was run."""
    mine = [r for r in rows if r.policy == policy]
    oracle = [r for r in rows if r.policy == "oracle"]
    start_pick = _most_common([r for r in mine if r.t_s < HOLD_S])
    out = []
    for t_r in fade_ends(trace, duration_s):
        oracle_pick = _most_common([r for r in oracle if t_r <= r.t_s < t_r + HOLD_S])
        fresh_tag = (fresh or {}).get(t_r, "")
        fresh_acc = tag_accuracy(fresh_tag, accuracy) if fresh_tag else None
        refs = [tag_accuracy(t, accuracy) for t in (oracle_pick, start_pick) if t]
        known = [a for a in refs if a is not None]
        if fresh_acc is not None:
            target: float | None = fresh_acc
        else:
            target = min(known) if known else None
        back = None
        for r in mine:
            if r.t_s < t_r or not r.answered or r.reason:
                continue
            acc = tag_accuracy(r.candidate, accuracy)
            if target is None or (acc is not None and acc >= target - ACCURACY_TOLERANCE):
                back = r.t_s
                break
        seconds = duration_s - t_r if back is None else back - t_r
        out.append(Recovery(t_r, seconds, back is None, target, oracle_pick, start_pick, fresh_tag))
    return out


def recovery_text(items: Sequence[Recovery], accuracy: dict[tuple[str, int], float]) -> str:
    if not items:
        return "no fade ends in the run"

    def pick(tag: str) -> str:
        acc = tag_accuracy(tag, accuracy) if tag else None
        return f"{tag or '-'} {acc:.3f}" if acc is not None else tag or "-"

    return "; ".join(
        f"fade ends at {r.fade_end_s:.0f} s -> {'>' if r.censored else ''}{r.seconds:.1f} s"
        f" (target {'any' if r.target is None else f'{r.target:.3f}'}:"
        f"{f' fresh start {pick(r.fresh_pick)},' if r.fresh_pick else ''}"
        f" oracle {pick(r.oracle_pick)}, start {pick(r.start_pick)})"
        for r in items
    )


# ---------------------------------------------------------------------- scenario


def branch_list(profile: Profile, served: set[str]) -> list[str]:
    """The profile's branches the model serves: remote most accurate first, then local."""
    acc = entry_accuracy(profile)
    names = {e.config.branch for e in profile.entries} & served
    remote = sorted((b for b in names if b != "local"), key=lambda b: (-acc.get((b, 1), 0.0), b))
    return remote + (["local"] if "local" in names else [])


def policy_docs(kinds: Sequence[str], branches: Sequence[str], split: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for kind in kinds:
        if kind == "adaptive":
            docs.append({"kind": kind, "profile": str(SCHEDULER_PROFILE), "branches": [*branches]})
        elif kind == "fixed":
            docs.append({"kind": kind, "branch": split})
        elif kind == "oracle-q95":
            docs.append({"kind": "oracle", "name": kind, "quantile": 0.95})
        else:
            docs.append({"kind": kind})
    return docs


def field_scenario(
    trace_dir: Path,
    trace: str,
    *,
    slowdown: float,
    duration_s: float,
    branches: Sequence[str],
    policies: list[dict[str, Any]],
    sla_ms: float,
    fps: float,
    delay_ms: float,
    device_local_ms: float = 0.0,
) -> Scenario:
    doc: dict[str, Any] = {
        "name": f"field-{trace}-x{slowdown:g}",
        "model": MODEL,
        "branches": [*branches],
        "duration_s": duration_s,
        "fps": fps,
        "sla_ms": sla_ms,
        "delay_ms": delay_ms,
        "warmup_frames": 1,
        "device_slowdown": slowdown,
        "device_local_ms": device_local_ms,
        "uplink": {"kind": "file", "path": f"{trace}.up", "duration_s": duration_s},
        "downlink": {"kind": "file", "path": f"{trace}.down", "duration_s": duration_s},
        "video": {
            "width": 320,
            "height": 240,
            "frames": max(SCENE_FRAMES, math.ceil(duration_s * fps / SCENE_FRAMES) * SCENE_FRAMES),
            "clip_frames": SCENE_FRAMES,
            "seed": 1,
        },
        "edge": {"max_batch_size": 4, "max_queue_delay_ms": 2},
        "policies": policies,
    }
    return scenario_from_dict(doc, source=f"benchmarks.field:{trace}", base_dir=trace_dir)


async def fresh_start(
    args: argparse.Namespace,
    trace: str,
    slowdown: float,
    t_r: float,
    branches: Sequence[str],
    out_dir: Path,
    device_local_ms: float = 0.0,
) -> str:
    """A fresh adaptive client's pick on the traces from ``t_r`` on (real run, ``FRESH_S``)."""
    from splitedge.simulations.runner import run_scenario

    whole = field_scenario(
        args.traces,
        trace,
        slowdown=slowdown,
        duration_s=t_r + FRESH_S,
        branches=branches,
        policies=policy_docs(["adaptive"], branches, args.split_branch),
        sla_ms=args.sla_ms,
        fps=args.fps,
        delay_ms=args.delay_ms,
        device_local_ms=device_local_ms,
    )
    scenario = replace(
        whole,
        name=f"{whole.name}-fresh-{t_r:g}s",
        uplink=whole.uplink.slice(t_r, t_r + FRESH_S),
        downlink=whole.downlink.slice(t_r, t_r + FRESH_S),
        duration_s=FRESH_S,
        video=replace(whole.video, frames=SCENE_FRAMES),  # 5 s: one scene, not t_r's worth
    )
    result = await run_scenario(scenario, out_dir)
    return fresh_pick(result.rows)


async def cost_profile(scenario: Scenario, accuracy: dict[tuple[str, int], float]) -> CostProfile:
    """The oracle's and Neurosurgeon's costs on this device, with the profile's accuracies."""
    from splitedge.mobile_client import CameraFrame
    from splitedge.mobile_client.heads import TorchHeadBackend
    from splitedge.simulations.profiles import measure_cost_profile, measure_tracker
    from splitedge.simulations.runner import emulated_device, profile_batch_sizes, synthetic_videos

    images = [s.image for s in synthetic_videos(scenario)[0][:4]]
    backend: Any = await asyncio.to_thread(TorchHeadBackend, scenario.model)
    backend = await emulated_device(backend, scenario, CameraFrame(0, images[0], 0))
    if scenario.device_local_ms > 0 and backend.has_local:
        # A pinned device's slowdown is re-read after each local run from this machine's
        # usual time, seeded by a warm-up that can be far off (40 ms against a steady
        # 23 ms): its first ~8 runs took 155-260 ms for a 240 ms device. Let it settle
        # before its times are measured (the profile's five samples were 242-262 ms
        # while the run's own local frames took 240.6 ms at the median).
        for i in range(PIN_SETTLE_RUNS):
            await asyncio.to_thread(backend.local, images[i % len(images)])
    profile = await measure_cost_profile(
        scenario.model,
        scenario.branches,
        images,
        backend=backend,
        repeats=5,
        batch_sizes=profile_batch_sizes(scenario),
    )
    for cp in profile.candidates.values():
        cp.accuracy = accuracy.get((cp.branch, 1))
    # The device's tracker, alone and beside its own model (the DES's adaptive sessions).
    profile.tracker_ms_samples, profile.tracker_busy_ms_samples = await measure_tracker(
        backend, images
    )
    return profile


# ---------------------------------------------------------------------- tables


def _drops(drops: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(drops.items())) or "-"


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else math.nan


def _row(label: Sequence[str], s: PolicySummary) -> list[object]:
    return [
        *label,
        s.policy,
        s.frames,
        f"{100.0 - s.sla_violation_pct:.1f}",
        f"{s.sla_violation_pct:.1f}",
        f"{s.map50:.3f}",
        f"{s.map50_in_sla:.3f}",
        f"{s.uplink_mb:.2f}",
        _drops(s.drops),
        s.fallbacks,
        s.probes,
        f"{_pct(s.answered, s.frames):.1f}",
    ]


COLUMNS = (
    "policy",
    "frames",
    "in_sla_%",
    "viol_%",
    "mAP50",
    "mAP50_sla",
    "up_MB",
    "dropped (why)",
    "fallbacks",
    "probes",
    "answered_%",
)


def combine(summaries: Sequence[PolicySummary]) -> PolicySummary:
    """One policy's runs as one: sums, violation % over all frames, mean mAP50."""
    frames = sum(s.frames for s in summaries)
    drops: Counter[str] = Counter()
    for s in summaries:
        drops.update(s.drops)
    maps = [s.map50 for s in summaries if not math.isnan(s.map50)]
    maps_sla = [s.map50_in_sla for s in summaries if not math.isnan(s.map50_in_sla)]
    return PolicySummary(
        policy=summaries[0].policy,
        frames=frames,
        answered=sum(s.answered for s in summaries),
        p50_ms=math.nan,
        p95_ms=math.nan,
        p99_ms=math.nan,
        sla_violation_pct=_pct(
            sum(s.sla_violation_pct * s.frames / 100 for s in summaries), frames
        ),
        fallbacks=sum(s.fallbacks for s in summaries),
        drops=dict(drops),
        uplink_mb=sum(s.uplink_mb for s in summaries),
        mean_batch=math.nan,
        quality=math.nan,
        map50=sum(maps) / len(maps) if maps else math.nan,
        map50_in_sla=sum(maps_sla) / len(maps_sla) if maps_sla else math.nan,
        probes=sum(s.probes for s in summaries),
        probe_mb=sum(s.probe_mb for s in summaries),
    )


def by_policy(runs: Sequence[Run]) -> dict[str, PolicySummary]:
    names = list(dict.fromkeys(s.policy for r in runs for s in r.summaries))
    return {n: combine([s for r in runs for s in r.summaries if s.policy == n]) for n in names}


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def meets(d_viol: float, d_acc: float) -> bool:
    """Issue 12's per-trace rule for adaptive against one policy: never worse by more
    than 1 point of violations or 0.01 accuracy, and better on at least one of the two
    (``d_viol`` = adaptive's violation % - the other's; ``d_acc`` = adaptive's - the other's)."""
    return d_viol <= 1.0 and d_acc >= -0.01 and (d_viol < 0 or d_acc > 0)


def tie_at_oracle(d_viol: float, d_acc: float, o_viol: float, o_acc: float) -> bool:
    """Adaptive ties the other policy on both counts (within ``TIE_VIOL_PTS`` /
    ``TIE_ACC``), and the other policy is no worse than the oracle on either
    (``o_viol`` = the other's violation % - the oracle's, ``o_acc`` = the other's
    accuracy - the oracle's): a static policy that is already the oracle's plan, which
    no policy choosing from the same branches is expected to beat. Reported beside the
    rule, never counted as met (NaN without an oracle run: False)."""
    return (
        abs(d_viol) <= TIE_VIOL_PTS
        and abs(d_acc) <= TIE_ACC
        and o_viol <= TIE_VIOL_PTS
        and o_acc >= -TIE_ACC
    )


@dataclass
class TargetCheck:
    """Adaptive against one other policy on one trace and device (issue 12's per-trace
    rule), on the mean of the ``repeats`` runs; ``half_*`` are the 95 % half-widths of
    the per-run differences (NaN for one run); ``o_*`` the other policy minus the
    oracle (NaN without an oracle run)."""

    trace: str
    device: str
    against: str
    d_viol: float
    d_map50: float
    d_map50_sla: float
    repeats: int = 1
    half_viol: float = math.nan
    half_map50: float = math.nan
    half_map50_sla: float = math.nan
    o_viol: float = math.nan
    o_map50: float = math.nan
    o_map50_sla: float = math.nan

    @property
    def by_map50(self) -> bool:
        return meets(self.d_viol, self.d_map50)

    @property
    def by_map50_sla(self) -> bool:
        return meets(self.d_viol, self.d_map50_sla)

    @property
    def oracle_tie(self) -> bool:
        """Not met by mAP50 only because adaptive ties a policy that ties the oracle."""
        return not self.by_map50 and tie_at_oracle(
            self.d_viol, self.d_map50, self.o_viol, self.o_map50
        )

    @property
    def oracle_tie_sla(self) -> bool:
        return not self.by_map50_sla and tie_at_oracle(
            self.d_viol, self.d_map50_sla, self.o_viol, self.o_map50_sla
        )


def _diffs(mine: Sequence[Run], name: str, other: str) -> tuple[list[float], ...]:
    """Per repeat that ran both: (viol, mAP50, mAP50_sla) of ``name`` - ``other``."""
    out: tuple[list[float], ...] = ([], [], [])
    for run in mine:
        by = {s.policy: s for s in run.summaries}
        if name in by and other in by:
            a, b = by[name], by[other]
            out[0].append(a.sla_violation_pct - b.sla_violation_pct)
            out[1].append(a.map50 - b.map50)
            out[2].append(a.map50_in_sla - b.map50_in_sla)
    return out


def target_checks(runs: Sequence[Run]) -> list[TargetCheck]:
    """Adaptive against every policy but the oracles, per trace and device on the mean
    of its repeats (:func:`combine`), where some policy kept its mean violations under
    ``VIOLATION_CAP_PCT``, judged by mAP50 over answers and by mAP50_sla (late answers
    count as none)."""
    groups: dict[tuple[str, float], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.trace, run.slowdown), []).append(run)
    out = []
    for (trace, _), mine in groups.items():
        by = by_policy(mine)
        me = by.get("adaptive")
        if me is None or min(s.sla_violation_pct for s in by.values()) >= VIOLATION_CAP_PCT:
            continue
        oracle = by.get("oracle")
        for name, other in by.items():
            if name == "adaptive" or name in ORACLES:
                continue
            dv, dm, ds = _diffs(mine, "adaptive", name)
            o = (
                (
                    other.sla_violation_pct - oracle.sla_violation_pct,
                    other.map50 - oracle.map50,
                    other.map50_in_sla - oracle.map50_in_sla,
                )
                if oracle is not None
                else (math.nan,) * 3
            )
            out.append(
                TargetCheck(
                    trace,
                    mine[0].device,
                    name,
                    me.sla_violation_pct - other.sla_violation_pct,
                    me.map50 - other.map50,
                    me.map50_in_sla - other.map50_in_sla,
                    len(dv),
                    half95(dv),
                    half95(dm),
                    half95(ds),
                    *o,
                )
            )
    return out


def _verdict(met: bool, tie: bool) -> str:
    return "met" if met else ("tie at oracle" if tie else "no")


def _pm(value: float, half: float, digits: int) -> str:
    text = f"{value:+.{digits}f}"
    return text if math.isnan(half) else f"{text}±{half:.{digits}f}"


def targets_table(checks: Sequence[TargetCheck]) -> str:
    rows = [
        [c.trace, c.device, c.against, c.repeats, _pm(c.d_viol, c.half_viol, 1),
         _pm(c.d_map50, c.half_map50, 3), _pm(c.d_map50_sla, c.half_map50_sla, 3),
         _verdict(c.by_map50, c.oracle_tie), _verdict(c.by_map50_sla, c.oracle_tie_sla)]
        for c in checks
    ]  # fmt: skip
    headers = ["trace", "device", "adaptive vs", "runs", "d_viol", "d_mAP50", "d_mAP50_sla",
               "by mAP50", "by mAP50_sla"]  # fmt: skip
    return table(headers, rows)


def summary_line(runs: Sequence[Run]) -> str:
    overall = by_policy(runs)
    nan = PolicySummary("", 0, 0, *(math.nan,) * 4, 0, {}, 0.0, math.nan, math.nan)
    adaptive, rate, oracle, q95 = (
        overall.get(p, nan) for p in ("adaptive", "rate-rule", "oracle", "oracle-q95")
    )
    worst = max((x.seconds for r in runs for x in r.recoveries), default=math.nan)
    checks = target_checks(runs)
    return (
        f"field_viol_pct={adaptive.sla_violation_pct:.1f} "
        f"rate_rule_viol_pct={rate.sla_violation_pct:.1f} "
        f"acc_vs_oracle={_ratio(adaptive.map50, oracle.map50):.3f} "
        f"answered_pct={_pct(adaptive.answered, adaptive.frames):.1f} recovery_s={worst:.1f} "
        f"acc_vs_oracle_q95={_ratio(adaptive.map50, q95.map50):.3f} "
        f"acc_sla_vs_oracle={_ratio(adaptive.map50_in_sla, oracle.map50_in_sla):.3f} "
        f"per_trace_met={sum(c.by_map50 for c in checks)}/{len(checks)} "
        f"per_trace_met_sla={sum(c.by_map50_sla for c in checks)}/{len(checks)} "
        f"oracle_ties={sum(c.oracle_tie for c in checks)} "
        f"oracle_ties_sla={sum(c.oracle_tie_sla for c in checks)}"
    )


def write_table(runs: Sequence[Run], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trace", "device", "run", *COLUMNS, "recovery_s"])
        for run in runs:
            worst = max((x.seconds for x in run.recoveries), default=math.nan)
            for s in run.summaries:
                rec = f"{worst:.2f}" if s.policy == "adaptive" else ""
                writer.writerow([*_row((run.trace, run.device, str(run.repeat)), s), rec])
    return path


def read_table(path: Path) -> list[Run]:
    """The runs of a ``field.csv`` this benchmark wrote (files from before ``run``
    existed read as run 1). Each run keeps what the table holds: per policy its
    frames, answered, violations, both mAP50s, uplink, fallbacks and probes, and
    adaptive's worst recovery (as one fade end)."""
    runs: dict[tuple[str, float, int], Run] = {}
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                frames = int(row["frames"])
                key = (
                    row["trace"],
                    float(row["device"].removeprefix("x")),
                    int(row.get("run") or 1),
                )
                s = PolicySummary(
                    row["policy"], frames, round(frames * float(row["answered_%"]) / 100.0),
                    math.nan, math.nan, math.nan, float(row["viol_%"]), int(row["fallbacks"]),
                    {}, float(row["up_MB"]), math.nan, math.nan, float(row["mAP50"]),
                    float(row["mAP50_sla"]), probes=int(row["probes"]),
                )  # fmt: skip
                rec = row.get("recovery_s") or ""
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{path}:{line}: not a benchmarks.field table row ({exc})"
                ) from None
            run = runs.setdefault(key, Run(key[0], key[1], [], repeat=key[2]))
            run.summaries.append(s)
            if rec and not math.isnan(float(rec)):
                run.recoveries.append(Recovery(math.nan, float(rec), False, None))
    return list(runs.values())


def plot_field(runs: Sequence[Run], path: Path) -> Path:
    """``field.png``: per device (rows) and trace (columns), every policy's SLA
    violation % against its mAP50_sla, each run a small dot and the runs' mean a marker
    (adaptive a red star, the oracles green): up and to the left is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(dict.fromkeys(r.device for r in runs))
    traces = list(dict.fromkeys(r.trace for r in runs))
    fig, axes = plt.subplots(
        len(devices), len(traces), figsize=(3.6 * len(traces) + 1, 3.2 * len(devices) + 0.6),
        squeeze=False,
    )  # fmt: skip
    for (i, device), (j, trace) in itertools.product(enumerate(devices), enumerate(traces)):
        ax = axes[i][j]
        mine = [r for r in runs if r.device == device and r.trace == trace]
        labels: dict[tuple[float, float], list[str]] = {}  # one label per point
        for name, mean in by_policy(mine).items():
            colour, marker, size = {
                "adaptive": ("tab:red", "*", 170),
                "oracle": ("tab:green", "P", 90),
                "oracle-q95": ("tab:olive", "P", 90),
            }.get(name, ("tab:gray", "o", 50))
            each = [s for r in mine for s in r.summaries if s.policy == name]
            if len(each) > 1:
                ax.scatter([s.sla_violation_pct for s in each],
                           [s.map50_in_sla for s in each], c=colour, s=10, alpha=0.5)  # fmt: skip
            ax.scatter(mean.sla_violation_pct, mean.map50_in_sla, c=colour, marker=marker,
                       s=size, zorder=3 if name == "adaptive" else 2)  # fmt: skip
            at = (round(mean.sla_violation_pct, 1), round(mean.map50_in_sla, 3))
            labels.setdefault(at, []).append(name.replace("fixed:", ""))
        for (x, y), names in labels.items():
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 3),
                        fontsize=7)  # fmt: skip
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(-0.5, 105)
        ax.set_title(f"{trace}, {device} ({len(mine)} run(s))", fontsize=9)
        ax.set_xlabel("SLA violations %", fontsize=8)
        ax.set_ylabel("mAP50_sla", fontsize=8)
    fig.suptitle("benchmarks.field: every policy per trace (up and left is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- main


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_devices(text: str) -> list[float | str]:
    """``--devices``: slowdown factors >= 1 and ``pi``, comma-separated."""
    values: list[float | str] = []
    for t in _csv_list(text):
        if t == "pi":
            values.append(t)
            continue
        try:
            v = float(t)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v >= 1.0):
            values = []
            break
        values.append(v)
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected numbers >= 1 or 'pi' separated by commas, got {text!r}"
        )
    return values


async def pi_slowdown() -> tuple[float, float]:
    """(this machine's detector ms, the slowdown that makes it the demo's ~240 ms device)."""
    from splitedge.mobile_client.heads import TorchHeadBackend
    from splitedge.mobile_client.sources import open_source
    from splitedge.simulations.demo import DEVICE_LOCAL_MS, measure_local_ms, warm_device

    backend = await asyncio.to_thread(TorchHeadBackend, MODEL)
    first = next(open_source("synthetic", size=(320, 240)))
    await asyncio.to_thread(warm_device, backend, first)
    host_ms = await asyncio.to_thread(measure_local_ms, backend, first, 5)
    return host_ms, round(max(1.0, DEVICE_LOCAL_MS / host_ms), 1) if host_ms else 1.0


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.field", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help=f"{QUICK_TRACE} only, 30 s")
    p.add_argument(
        "--traces",
        type=Path,
        default=DEFAULT_TRACE_DIR,
        help=f"folder of Mahimahi X.up/X.down pairs (default {DEFAULT_TRACE_DIR})",
    )
    p.add_argument(
        "--trace",
        action="append",
        default=None,
        metavar="NAME",
        help="a pair X to run (repeatable; 'all': every pair in --traces)",
    )
    p.add_argument("--out", type=Path, default=Path("out/field"), help="default out/field")
    p.add_argument(
        "--duration-s",
        type=_positive,
        default=None,
        help="seconds of each trace (default 100, --quick 30)",
    )
    p.add_argument(
        "--devices",
        type=parse_devices,
        default=[1.0, "pi"],
        help="device slowdowns, comma-separated: numbers >= 1, or pi (the demo's ~240 ms "
        "detector, measured at start); default 1,pi",
    )
    p.add_argument(
        "--policies",
        type=_csv_list,
        default=list(POLICIES),
        help=f"comma-separated, of {', '.join(POLICIES)} (default all)",
    )
    p.add_argument(
        "--branches",
        type=_csv_list,
        default=None,
        help="the branch list every policy chooses from (default: the profile's)",
    )
    p.add_argument(
        "--no-fresh",
        dest="fresh",
        action="store_false",
        help=f"skip the fresh-start runs ({FRESH_S:g} s of adaptive alone after each fade "
        "end) and approximate a fresh start's pick by the oracle's and adaptive's first",
    )
    p.add_argument(
        "--repeats",
        type=count_arg,
        default=1,
        help="runs of each trace and device (default 1); the per-trace targets are judged "
        "on their mean, with 95 %% intervals",
    )
    p.add_argument(
        "--judge",
        type=Path,
        nargs="+",
        default=None,
        metavar="CSV",
        help="run nothing: judge the runs of these field.csv tables together (per-trace "
        "targets, field.png beside the first, the summary line)",
    )
    p.add_argument("--split-branch", default=SPLIT_BRANCH, help="the fixed policy's branch")
    p.add_argument("--sla-ms", type=_positive, default=200.0)
    p.add_argument("--fps", type=_positive, default=5.0)
    p.add_argument("--delay-ms", type=float, default=40.0, help="one-way link delay")
    args = p.parse_args(argv)
    unknown = [k for k in args.policies if k not in POLICIES]
    if unknown or not args.policies:
        p.error(f"--policies: unknown {unknown or 'empty'}; choose from {', '.join(POLICIES)}")
    return args


def choose_traces(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(pairs to run, requested names without a pair)."""
    pairs = trace_pairs(args.traces)
    if args.trace:
        wanted = pairs if args.trace == ["all"] else args.trace
    elif args.quick:
        wanted = [QUICK_TRACE] if QUICK_TRACE in pairs else pairs[:1]
    else:
        wanted = list(DEFAULT_TRACES)
    return [t for t in wanted if t in pairs], [t for t in wanted if t not in pairs]


async def run(args: argparse.Namespace) -> int:
    from splitedge.models.registry import create_model
    from splitedge.simulations.runner import run_scenario

    t_start = time.monotonic()
    traces, missing = choose_traces(args)
    if missing:
        print(f"no .up/.down pair in {args.traces} for: {', '.join(missing)} (skipped)")
    if not traces:
        print(f"no trace pair to run in {args.traces}; pass --trace NAME of an X.up/X.down pair")
        return 0
    duration_s = args.duration_s or (30.0 if args.quick else 100.0)

    pinned_ms: dict[float, float] = {}  # device slowdown -> its pinned detector ms
    if "pi" in args.devices:
        from splitedge.simulations.demo import DEVICE_LOCAL_MS

        host_ms, factor = await pi_slowdown()
        print(f"device pi: this machine's detector {host_ms:.0f} ms, slowed {factor:g}x")
        args.devices = [factor if d == "pi" else d for d in args.devices]
        # The pi device stays a ~240 ms detector whatever this machine's speed does.
        pinned_ms[factor] = DEVICE_LOCAL_MS
    sched = load_profile(SCHEDULER_PROFILE)
    accuracy = entry_accuracy(sched)
    served = set((await asyncio.to_thread(create_model, MODEL)).branches)
    default = branch_list(sched, served)
    branches = args.branches or default
    bad = [b for b in branches if b not in default]
    if bad:
        print(
            f"--branches: {', '.join(bad)} not both in the profile and served by {MODEL}; "
            f"choose from {', '.join(default)}"
        )
        return 2
    kinds, skipped = [], dict(SKIPPED)
    for kind in args.policies:
        if kind == "offload" and not any(b.startswith("offload") for b in branches):
            skipped[kind] = "no offload branch in the list"
        elif kind == "fixed" and args.split_branch not in served:
            skipped[kind] = f"{MODEL} serves no branch {args.split_branch!r}"
        elif kind == "local" and "local" not in served:
            skipped[kind] = f"{MODEL} has no local model"
        else:
            kinds.append(kind)
    docs = policy_docs(kinds, branches, args.split_branch)

    print(f"# benchmarks.field on {machine()}")
    print(
        f"model {MODEL}, SLA {args.sla_ms:g} ms, {args.fps:g} fps, delay {args.delay_ms:g} ms "
        f"one way, {duration_s:g} s per trace, devices "
        f"{', '.join(f'x{d:g}' for d in args.devices)}"
    )
    print(f"traces ({args.traces}): {', '.join(traces)}")
    print(f"branches (every policy): {', '.join(branches)}")
    print(
        f"policies: {', '.join(kinds)}; skipped: "
        + "; ".join(f"{k} ({why})" for k, why in skipped.items())
    )

    runs: list[Run] = []
    failed = 0
    plan = [(r, t) for r in range(1, args.repeats + 1) for t in traces]
    for slowdown in args.devices:
        profile: CostProfile | None = None
        for repeat, trace in plan:  # each trace once, then again: drift spreads over all
            out_dir = args.out / f"{trace}-x{slowdown:g}"
            if args.repeats > 1:
                out_dir = out_dir.with_name(f"{out_dir.name}-r{repeat}")
            try:
                scenario = field_scenario(
                    args.traces,
                    trace,
                    slowdown=slowdown,
                    duration_s=duration_s,
                    branches=branches,
                    policies=docs,
                    sla_ms=args.sla_ms,
                    fps=args.fps,
                    delay_ms=args.delay_ms,
                    device_local_ms=pinned_ms.get(slowdown, 0.0),
                )
                if profile is None and any(k in (*ORACLES, "neurosurgeon") for k in kinds):
                    profile = await cost_profile(scenario, accuracy)
                result = await run_scenario(scenario, out_dir, profile=profile, progress=True)
            except ScenarioError as exc:
                print(f"{trace} x{slowdown:g}: cannot run: {exc}")
                failed += 1
                continue
            item = Run(trace, slowdown, result.summaries, repeat=repeat)
            if "adaptive" in kinds:
                fresh = {}
                if args.fresh:
                    for t_r in fade_ends(scenario.uplink, duration_s):
                        fresh[t_r] = await fresh_start(
                            args, trace, slowdown, t_r, branches, out_dir / f"fresh-{t_r:g}s",
                            pinned_ms.get(slowdown, 0.0),
                        )  # fmt: skip
                item.recoveries = recoveries(
                    result.rows, scenario.uplink, duration_s, accuracy, fresh=fresh
                )
            runs.append(item)
            of = f", run {repeat} of {args.repeats}" if args.repeats > 1 else ""
            print(f"\n{trace}, device x{slowdown:g}{of} ({out_dir})")
            print(table(COLUMNS, [_row((), s) for s in item.summaries]))
            if "adaptive" in kinds:
                print(f"adaptive recovery: {recovery_text(item.recoveries, accuracy)}")
            sys.stdout.flush()

    for slowdown in args.devices:
        mine = [r for r in runs if r.slowdown == slowdown]
        if mine:
            print(f"\noverall, device x{slowdown:g} ({len(mine)} run(s))")
            print(table(COLUMNS, [_row((), s) for s in by_policy(mine).values()]))
    checks = target_checks(runs)
    if checks:
        print(
            f"\nper-trace targets (traces where some policy kept violations under "
            f"{VIOLATION_CAP_PCT:g} %; met = not worse by > 1 point or 0.01, better on one; "
            "on the mean of the runs, ± its 95 % interval; tie at oracle = adaptive ties a "
            "policy that ties the oracle)"
        )
        print(targets_table(checks))
    if runs:
        print(f"\ntable: {write_table(runs, args.out / 'field.csv')}")
        print(f"plot: {plot_field(runs, args.out / 'field.png')}")
    print(f"wall time {time.monotonic() - t_start:.0f} s")
    print(summary_line(runs))
    return 1 if failed else 0


def judge(paths: Sequence[Path]) -> int:
    """``--judge``: the per-trace targets, plot and summary of saved tables, together."""
    runs: list[Run] = []
    for path in paths:
        try:
            runs += read_table(path)
        except OSError as exc:
            print(f"--judge: cannot read {path}: {exc.strerror or exc}")
            return 2
        except ValueError as exc:
            print(f"--judge: {exc}")
            return 2
    if not runs:
        print(f"--judge: no runs in {', '.join(map(str, paths))}")
        return 2
    print(targets_table(target_checks(runs)))
    print(f"plot: {plot_field(runs, paths[0].with_name('field.png'))}")
    print(summary_line(runs))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.judge:
        return judge(args.judge)
    if not args.traces.is_dir():
        print(
            f"no trace folder at {args.traces}: skipping the field benchmark "
            "(pass --traces DIR with Mahimahi X.up/X.down pairs)"
        )
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
