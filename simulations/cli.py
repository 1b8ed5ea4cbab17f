"""``splitedge-sim``: study split computing over emulated networks on one machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitedge.simulations import record_telemetry

if TYPE_CHECKING:
    from splitedge.simulations.profiles import CostProfile
    from splitedge.simulations.scenario import Scenario


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected Mbps values like 40,4,0.5,40, got {text!r}"
        ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"rates must be positive Mbps values, got {text!r}")
    return rates


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts like 100,1000, got {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"counts must be >= 1, got {text!r}")
    return counts


def _add_scenario_parsers(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser(
        "run",
        help="run a scenario file for real: edge server, emulated links, N clients, each policy",
        description="Start a real edge server and N real clients, each behind its own emulated "
        "link following the scenario's traces, and run every policy in turn. Writes "
        "frames.csv, summary.txt/.csv, timeline.png, branches.png, latency_cdf.png (and "
        "profile.json when Neurosurgeon/oracle needed one) to --out.",
    )
    run.add_argument("scenario", type=Path, help="scenario file (.toml, .yaml)")
    run.add_argument("--out", type=Path, default=None, help="output folder (default out/<name>)")
    run.add_argument("--profile", type=Path, default=None, help="profile JSON (else measured)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    des = sub.add_parser(
        "des",
        help="discrete-event simulation of many clients sharing edge GPUs (what-if)",
        description="Simulate the scenario's policies with many clients from a measured "
        "profile. Default: one table of every policy. --min-gpus: fewest GPUs keeping SLA "
        "violations under --max-violation-pct for each --clients count. --batching: the "
        "same load with and without dynamic batching. An adaptive policy runs the device's "
        "scheduler over its scheduler profile: measured costs for the branches the profile "
        "has, the scheduler profile's own for the rest (device times x device_slowdown); its "
        "mAP50 column is predicted from the profile's per-entry accuracies. A given --profile "
        "is taken as the run's device (as `splitedge-sim run` measures and saves it); one "
        "measured here is scaled by device_slowdown.",
    )
    des.add_argument("scenario", type=Path, help="scenario file (.toml, .yaml)")
    des.add_argument("--profile", type=Path, default=None, help="profile JSON (else measured)")
    des.add_argument("--clients", type=_counts, default=None, help="client counts, e.g. 100,1000")
    des.add_argument(
        "--gpus", type=int, default=None, help="GPUs / tail workers (default: scenario)"
    )
    des.add_argument("--duration-s", type=float, default=None, help="simulated seconds")
    des.add_argument("--policy", default=None, help="only this policy (name from the scenario)")
    des.add_argument("--min-gpus", action="store_true", help="find the fewest GPUs per count")
    des.add_argument("--max-violation-pct", type=float, default=5.0, help="target (default 5)")
    des.add_argument("--batching", action="store_true", help="compare batching on and off")
    des.add_argument("--jitter", action="store_true", help="draw times from profile samples")
    des.add_argument("--out", type=Path, default=None, help="write CSV/plots (small runs only)")
    des.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load(args: argparse.Namespace) -> tuple[Scenario, CostProfile | None]:
    from splitedge.simulations.profiles import CostProfile
    from splitedge.simulations.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    path = args.profile or scenario.profile
    return scenario, (CostProfile.load(path) if path is not None else None)


def _run(args: argparse.Namespace) -> int:
    from splitedge.simulations.profiles import CostProfileError
    from splitedge.simulations.runner import run_scenario
    from splitedge.simulations.scenario import ScenarioError

    try:
        scenario, profile = _load(args)
        out = args.out or Path("out") / scenario.name
        print(
            f"splitedge run {scenario.name}: model {scenario.model}, {scenario.clients} client(s), "
            f"{len(scenario.policies)} policies x {scenario.duration_s:g} s, "
            f"SLA {scenario.sla_ms:g} ms",
            flush=True,
        )
        result = asyncio.run(
            run_scenario(scenario, out, profile=profile, progress=not args.no_progress)
        )
    except KeyboardInterrupt:
        return 130
    except (ScenarioError, CostProfileError, ValueError, RuntimeError) as exc:
        print(f"splitedge-sim: error: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    print(f"\nwrote {', '.join(str(f) for f in result.files)}")
    return 0


def _des(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from splitedge.mobile_client.scheduler import SchedulerError
    from splitedge.simulations import des as sim
    from splitedge.simulations import des_adaptive
    from splitedge.simulations.policies import PolicyError
    from splitedge.simulations.profiles import CostProfileError, measure_cost_profile
    from splitedge.simulations.report import format_summary, plot_all, write_csv
    from splitedge.simulations.runner import profile_batch_sizes, synthetic_videos
    from splitedge.simulations.scenario import ScenarioError

    try:
        scenario, profile = _load(args)
        policies = [p for p in scenario.policies if args.policy in (None, p.name)]
        if not policies:
            raise ScenarioError(f"--policy {args.policy!r}: no such policy in {scenario.source}")
        if profile is None:
            print("no profile given: measuring one against a real edge server ...", flush=True)
            measured = asyncio.run(
                measure_cost_profile(
                    scenario.model,
                    scenario.branches,
                    [s.image for s in synthetic_videos(replace(scenario, clients=1))[0][:4]],
                    model_options=scenario.model_options,
                    batch_sizes=profile_batch_sizes(replace(scenario, clients=8)),
                )
            )
            # Measured on this machine's plain backend; the run's device is slower.
            profile = des_adaptive.slowed(measured, scenario.device_slowdown)
        base = sim.DesConfig.from_scenario(scenario, jitter=args.jitter)
        if args.gpus is not None:
            base = replace(base, gpus=args.gpus)
        if args.duration_s is not None:
            base = replace(base, duration_s=args.duration_s)
        counts = args.clients or (scenario.clients,)
        # Per policy: its costs and its setting. An adaptive policy picks from its scheduler
        # profile's entries: measured costs where the profile has them, else the entry's own.
        setups = []
        for policy in policies:
            costs, cfg = profile, base
            if policy.kind == "adaptive":
                sched = policy.scheduler_profile
                if sched is None:
                    raise ScenarioError(f"policy {policy.name!r}: no scheduler profile loaded")
                costs = des_adaptive.adaptive_costs(
                    sched, measured=profile, device_slowdown=scenario.device_slowdown
                )
                cfg = replace(base, **des_adaptive.tracker_costs(sched, profile))
            # Built once here so that a profile the policy cannot use fails before any run.
            sim.policy_factory(policy, scenario.branches, cfg, costs)
            setups.append((policy, costs, cfg))
    except KeyboardInterrupt:
        return 130
    except (
        ScenarioError,
        CostProfileError,
        PolicyError,
        SchedulerError,
        ValueError,
        RuntimeError,
    ) as exc:
        print(f"splitedge-sim: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    jobs = [(n, setup) for n in counts for setup in setups]
    bar = _bar(len(jobs), not args.no_progress)
    lines: list[str] = []
    summaries = []
    rows = []
    for n, (policy, costs, policy_cfg) in jobs:
        cfg = replace(policy_cfg, clients=n, keep_rows=n <= 100)
        factory = sim.policy_factory(policy, scenario.branches, cfg, costs)
        label = f"{policy.name} N={n}"
        if args.min_gpus:
            gpus, tried = sim.min_gpus(
                cfg, costs, factory, max_violation_pct=args.max_violation_pct
            )
            tried_text = ", ".join(
                f"{k}:{v.sla_violation_pct:.1f}%" for k, v in sorted(tried.items())
            )
            lines.append(f"{label:<36} min_gpus={gpus if gpus else '>256'}  tried {tried_text}")
        elif args.batching:
            for which, s in sim.batching_effect(cfg, costs, factory).items():
                s.policy = f"{label} {which}"
                summaries.append(s)
        else:
            result = sim.simulate(cfg, costs, factory, name=label)
            if policy.kind == "adaptive" and result.rows:
                assert policy.scheduler_profile is not None
                by_tag = des_adaptive.accuracy_by_tag(policy.scheduler_profile)
                local = next((c for c in costs.candidates.values() if not c.remote), None)
                result.summary.map50 = des_adaptive.predicted_accuracy(
                    result.rows,
                    by_tag,
                    by_tag.get(local.label) if local else None,
                    des_adaptive.accuracy_by_age(policy.scheduler_profile),
                )
            summaries.append(result.summary)
            if args.out is not None:
                rows += result.rows
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if lines:
        print(f"SLA {scenario.sla_ms:g} ms, violations <= {args.max_violation_pct:g}%:")
        print("\n".join(lines))
    if summaries:
        print(format_summary(summaries))
        if any(p.kind == "adaptive" for p in policies) and not (args.min_gpus or args.batching):
            print(
                "(adaptive mAP50: predicted from its scheduler profile's per-entry accuracies, "
                "mean over answered frames)"
            )
    if args.out is not None and rows:
        write_csv(rows, args.out / "des_frames.csv")
        plot_all(rows, scenario.uplink, scenario.sla_ms, args.out, duration_s=base.duration_s)
        print(f"\nwrote {args.out / 'des_frames.csv'} and plots in {args.out}")
    return 0


def _bar(total: int, enabled: bool) -> Any:
    if not enabled or total < 2:
        return None
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return None
    return tqdm(total=total, unit="run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitedge-sim",
        description="Run splitedge's real edge server and client through emulated links.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="edge server + trace-driven link + adaptive client; branches switch as bandwidth does",
        description="Start an edge server and a client on this machine, the client reaching the "
        "server only through an emulated link whose uplink steps through --rates. Prints one "
        "line per frame and a per-phase summary; writes demo.csv and demo.png to --out.",
    )
    demo.add_argument(
        "--model",
        default="zoo:ghnd-frcnn-small-c12",
        help="registry model or zoo:<entry> (default zoo:ghnd-frcnn-small-c12, the project's "
        "trained detector with its learned, slimmable bottleneck)",
    )
    demo.add_argument(
        "--policy",
        choices=("adaptive", "rate-rule"),
        default="adaptive",
        help="adaptive: the device's scheduler over --profile (default); rate-rule: the "
        "simple rule over offload / vanilla split / local",
    )
    demo.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="scheduler profile JSON (default configs/profiles/<zoo entry>.json)",
    )
    demo.add_argument(
        "--device-slowdown",
        type=float,
        default=None,
        help="make this machine's device work (heads, local runs) N x slower (1 = as fast "
        "as this machine); default: whatever makes the detector take ~240 ms, a Raspberry "
        "Pi-class device, measured at start-up",
    )
    demo.add_argument(
        "--rates",
        type=_rates,
        default=(40.0, 4.0, 0.5, 0.15, 40.0),
        help="uplink Mbps per phase (default 40,4,0.5,0.15,40)",
    )
    demo.add_argument("--phase-s", type=float, default=8.0, help="seconds per phase (default 8)")
    demo.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay (default 10)")
    demo.add_argument(
        "--sla-ms",
        type=float,
        default=None,
        help="latency SLA; default 150 ms, stretched on a machine slower than the reference "
        "(detector over 40 ms), whose edge is slower too",
    )
    demo.add_argument(
        "--fps",
        type=float,
        default=None,
        help="camera frame rate; default 5, slowed like the SLA on a slower machine",
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument(
        "--no-broker",
        dest="broker",
        action="store_false",
        help="skip the embedded MQTT broker (by default the edge announces itself on one, "
        "the client discovers it there and publishes telemetry)",
    )
    record_telemetry.add_parser(sub)
    _add_scenario_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "demo":
        from splitedge.simulations.demo import run_demo, summarize

        print(
            f"splitedge demo: model {args.model}, policy {args.policy}, uplink {args.rates} Mbps "
            f"x {args.phase_s:g} s, delay {args.delay_ms:g} ms",
            flush=True,
        )
        try:
            result = asyncio.run(
                run_demo(
                    args.model,
                    phase_s=args.phase_s,
                    rates_mbps=args.rates,
                    delay_ms=args.delay_ms,
                    sla_ms=args.sla_ms,
                    fps=args.fps,
                    out_dir=args.out,
                    broker=args.broker,
                    policy=args.policy,
                    profile=args.profile,
                    device_slowdown=args.device_slowdown,
                )
            )
        except KeyboardInterrupt:
            return 130
        except (ValueError, RuntimeError) as exc:
            print(f"splitedge-sim: error: {exc}", file=sys.stderr)
            return 2
        print()
        print(summarize(result.rows, args.phase_s, result.sla_ms))
        print(f"\nwrote {args.out / 'demo.csv'} and {args.out / 'demo.png'}")
    if args.command == "record-telemetry":
        return record_telemetry.main(args)
    if args.command == "run":
        return _run(args)
    if args.command == "des":
        return _des(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
