"""DES validation: the same small scenario on the real system and in the discrete-event simulator.

Measures a profile of the ``echo`` model (20 ms tail per batch, so the numbers
are about the network, queueing and batching, not CPU luck), runs the real
runner (edge process, emulated links, N clients) and the DES from that profile
for the same scenario (a step uplink), and prints p50/p95 per policy side by
side with the error of the DES. The last line is
``des_p50_error_pct=<x> des_p95_error_pct=<y>``: the mean absolute error over
policies, in percent of the real value.

    python -m benchmarks.des_validation --quick            # 3 clients, 3 x 3 s phases
    python -m benchmarks.des_validation --aligned --out out/desval
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from benchmarks._stats import machine, table
from splitedge.simulations.des import DesConfig, policy_factory, simulate
from splitedge.simulations.profiles import measure_profile
from splitedge.simulations.report import PolicySummary, summarize
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
    profile = await measure_profile(
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 clients, 3 s phases")
    parser.add_argument("--clients", type=int, default=None, help="clients (default 3)")
    parser.add_argument("--phase-s", type=float, default=None, help="seconds per trace step")
    parser.add_argument("--aligned", action="store_true", help="all cameras tick at once")
    parser.add_argument("--out", type=Path, default=None, help="keep CSV/plots here")
    args = parser.parse_args(argv)
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
