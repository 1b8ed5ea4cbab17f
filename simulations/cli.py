"""``splitedge-sim``: study split computing over emulated networks on one machine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from splitedge.simulations import record_telemetry


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitedge-sim",
        description="Run splitedge's real edge server and client through emulated links.",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
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
        default="fasterrcnn_mobilenet_v3_large_fpn",
        help="registry model (default fasterrcnn_mobilenet_v3_large_fpn)",
    )
    demo.add_argument(
        "--rates",
        type=_rates,
        default=(40.0, 4.0, 0.5, 40.0),
        help="uplink Mbps per phase (default 40,4,0.5,40)",
    )
    demo.add_argument("--phase-s", type=float, default=8.0, help="seconds per phase (default 8)")
    demo.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay (default 10)")
    demo.add_argument("--sla-ms", type=float, default=400.0, help="latency SLA (default 400)")
    demo.add_argument("--fps", type=float, default=5.0, help="camera frame rate (default 5)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    record_telemetry.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "demo":
        from splitedge.simulations.demo import run_demo, summarize

        print(
            f"splitedge demo: model {args.model}, uplink {args.rates} Mbps x {args.phase_s:g} s, "
            f"delay {args.delay_ms:g} ms, SLA {args.sla_ms:g} ms",
            flush=True,
        )
        try:
            rows = asyncio.run(
                run_demo(
                    args.model,
                    phase_s=args.phase_s,
                    rates_mbps=args.rates,
                    delay_ms=args.delay_ms,
                    sla_ms=args.sla_ms,
                    fps=args.fps,
                    out_dir=args.out,
                )
            )
        except KeyboardInterrupt:
            return 130
        except (ValueError, RuntimeError) as exc:
            print(f"splitedge-sim: error: {exc}", file=sys.stderr)
            return 2
        print()
        print(summarize(rows, args.phase_s, args.sla_ms))
        print(f"\nwrote {args.out / 'demo.csv'} and {args.out / 'demo.png'}")
    if args.command == "record-telemetry":
        return record_telemetry.main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
