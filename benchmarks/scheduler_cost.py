"""What the adaptive scheduler costs per frame: pick + observe, over a realistic profile.

    python -m benchmarks.scheduler_cost [--frames N] [--seed S]

A synthetic but realistic profile of 60 candidates (local at two widths and two
input sizes, splits at three bottlenecks x three bit depths x two widths,
offload at four JPEG qualities and two input sizes; each at detection interval
1 and 4) drives a :class:`~splitedge.mobile_client.scheduler.Scheduler` through
a simulated run: the uplink steps 20 -> 5 -> 1 -> 12 Mbps with noise, the device
gets busy for a while, the server's time jitters and the scene's objects move.
Only ``pick`` and ``observe`` are timed, never the simulation. Prints a table
(all frames, re-decision frames, held frames, tracked frames) and ends with
``decision_ms_p50=<x> decision_ms_p99=<y>`` (the issue's target: <= 0.2 ms).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from benchmarks._stats import machine, pct, table
from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.profile import BranchConfig, BranchProfile, Profile, Quantiles
from splitedge.mobile_client.scheduler import Decision, Scheduler
from splitedge.models.types import Detections
from splitedge.proto.status import ServerTiming

LEVEL_SLOWDOWN = (1.0, 1.8, 2.8)  # head latency at 0/1/2 busy cores, relative to idle


def _entry(
    cfg: BranchConfig, kind: str, group: str, head_ms: float, size_bytes: float, acc: float
) -> BranchProfile:
    # Fast motion hurts tracked configs; small objects hurt small inputs.
    small_penalty = 0.08 if cfg.input_size == 320 else 0.03
    track_penalty = 0.1 * (cfg.detection_interval > 1)
    return BranchProfile(
        config=cfg,
        kind=kind,
        load_group=group,
        head_latency_ms={
            lv: Quantiles(head_ms * f, head_ms * f, head_ms * f * 1.15)
            for lv, f in enumerate(LEVEL_SLOWDOWN)
        },
        bytes_per_frame=Quantiles(size_bytes, size_bytes * 0.97, size_bytes * 1.2),
        tail_latency_ms={1: 10.0, 4: 22.0} if kind != "local" else {},
        accuracy=acc,
        accuracy_by_bin={
            "motion:0": min(1.0, acc + 0.01),
            "motion:2": max(0.0, acc - track_penalty),
            "object_size:0": max(0.0, acc - small_penalty),
        },
    )


def realistic_profile() -> Profile:
    """60 candidates with the shape a measured detector profile has."""
    entries: list[BranchProfile] = []
    for k in (1, 4):
        tracked = 0.03 * (k > 1)
        for width in (1.0, 0.5):
            for size in (480, 320):
                scale = (0.45 if width < 1 else 1.0) * (0.45 if size == 320 else 1.0)
                acc = 0.66 - 0.07 * (width < 1) - 0.05 * (size == 320) - tracked
                cfg = BranchConfig("local", 0, width, size, k)
                entries.append(_entry(cfg, "local", "full", 180.0 * scale, 0.0, acc))
        for s, (head_ms, size_bytes) in enumerate(((15.0, 60e3), (30.0, 30e3), (55.0, 12e3))):
            for bits in (8, 4, 2):
                for width in (1.0, 0.5):
                    acc = 0.72 - 0.01 * s - {8: 0, 4: 0.01, 2: 0.05}[bits] - 0.04 * (width < 1)
                    cfg = BranchConfig(f"split@b{s}", bits, width, 480, k)
                    wf = 0.55 if width < 1 else 1.0
                    entries.append(
                        _entry(
                            cfg,
                            "split",
                            f"bneck{s}",
                            head_ms * wf,
                            size_bytes * bits / 8 * wf,
                            acc - tracked,
                        )
                    )
        for q, size_bytes in ((95, 90e3), (90, 60e3), (70, 35e3), (50, 25e3)):
            for size in (480, 320):
                acc = {95: 0.76, 90: 0.755, 70: 0.74, 50: 0.71}[q] - 0.06 * (size == 320)
                cfg = BranchConfig(f"offload-jpeg{q}", 0, 1.0, size, k)
                sf = 0.45 if size == 320 else 1.0
                entries.append(
                    _entry(cfg, "offload", "none", 6.0 * sf, size_bytes * sf, acc - tracked)
                )
    switch = {
        g: {h: 250.0 for h in ("full", "bneck0", "bneck1", "bneck2")}
        for g in ("full", "bneck0", "bneck1", "bneck2", "none")
    }
    return Profile(
        model="synthetic-detector",
        device="benchmark",
        contention_levels=(0, 1, 2),
        entries=entries,
        tracker_latency_ms={0: 3.0, 1: 5.0, 2: 8.0},
        switch_cost_ms=switch,
        frame_size=(480, 640),
    )


class World:
    """The simulated device, link, server and scene the decisions play out in."""

    def __init__(self, frames: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.frames = frames
        self.boxes = np.array([[100, 100, 180, 200], [300, 220, 360, 300]], np.float64)

    def bandwidth_mbps(self, i: int) -> float:
        steps = (20.0, 5.0, 1.0, 12.0)
        return steps[min(3, i * 4 // self.frames)] * float(self.rng.lognormal(0, 0.2))

    def outcome(self, sched: Scheduler, d: Decision, i: int) -> FrameOutcome:
        speed = 2.0 if i < self.frames // 2 else 12.0  # the scene speeds up halfway
        self.boxes += speed * self.rng.normal(1.0, 0.2, size=(len(self.boxes), 1))
        self.boxes %= 400
        det = Detections(
            self.boxes.astype(np.float32), np.ones(2, np.float32), np.ones(2, np.int64)
        )
        busy = 1.8 if self.frames // 3 <= i < self.frames // 2 else 1.0
        e = sched.candidates[d.index]
        if d.track:
            ms = 3.0 * busy
            return FrameOutcome(
                i, d.branch, "local", "", det, FrameTiming(local_ms=ms, total_ms=ms)
            )
        head = e.head_latency_ms[0].mean * busy * float(self.rng.lognormal(0, 0.1))
        if not e.remote:
            return FrameOutcome(
                i, d.branch, "local", "", det, FrameTiming(local_ms=head, total_ms=head)
            )
        size = int(e.bytes_per_frame.mean * self.rng.uniform(0.9, 1.1))
        network = 20.0 + size * 8 / (self.bandwidth_mbps(i) * 1000)
        server = 10.0 + float(self.rng.exponential(5.0))
        t = FrameTiming(
            head_ms=head,
            network_ms=network,
            roundtrip_ms=network + server,
            server=ServerTiming(queue_ms=server - 10.0, tail_ms=10.0, server_total_ms=server),
            total_ms=head + network + server,
        )
        return FrameOutcome(i, d.branch, "edge", "", det, t, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sla-ms", type=float, default=150.0)
    args = parser.parse_args(argv)

    profile = realistic_profile()
    sched = Scheduler(profile, args.sla_ms)
    world = World(args.frames, args.seed)
    costs: dict[str, list[float]] = {"all": [], "re-decision": [], "held": [], "tracked": []}
    branches: Counter[str] = Counter()
    for i in range(args.frames):
        now_s = i / 30.0
        decisions_before = sched.decisions
        t0 = time.perf_counter_ns()
        d = sched.pick(now_s)
        t1 = time.perf_counter_ns()
        outcome = world.outcome(sched, d, i)  # not timed: the world, not the scheduler
        t2 = time.perf_counter_ns()
        sched.observe(d, outcome)
        t3 = time.perf_counter_ns()
        ms = ((t1 - t0) + (t3 - t2)) / 1e6
        costs["all"].append(ms)
        kind = (
            "tracked"
            if d.track
            else "re-decision"
            if sched.decisions > decisions_before
            else "held"
        )
        costs[kind].append(ms)
        branches[d.key] += 1

    print(f"scheduler decision cost, {len(profile.entries)} candidates, {args.frames} frames")
    print(f"machine: {machine()}")
    rows = [
        (name, len(v), pct(v, 50), pct(v, 99), max(v, default=0.0)) for name, v in costs.items()
    ]
    print(table(["frames", "count", "p50_ms", "p99_ms", "max_ms"], rows))
    print(
        f"switches={sched.switches} violations={sched.violations} "
        f"margins={ {k: round(v, 3) for k, v in sched.margins.items()} }"
    )
    print("most used:", ", ".join(f"{k} x{n}" for k, n in branches.most_common(4)))
    print(
        f"decision_ms_p50={pct(costs['all'], 50):.4f} decision_ms_p99={pct(costs['all'], 99):.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
