"""``splitedge-sim record-telemetry``: write the fleet's telemetry summaries to a file.

Subscribes to ``splitedge/v1/client/+/telemetry`` and appends every valid summary as
one JSON line (``{"received_at", "topic", "summary"}``, see docs/mqtt.md) for later
plots; invalid messages are counted and logged, never written. Runs for
``--seconds`` or until SIGINT/SIGTERM; a broker that is down is waited for
(reconnects with backoff), not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from splitedge.control_plane.address import BrokerAddress, parse_broker_address

if TYPE_CHECKING:
    from splitedge.control_plane.link import BrokerConfig

__all__ = ["add_parser", "main"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``record-telemetry`` sub-command on ``splitedge-sim``'s parser."""
    rec = sub.add_parser(
        "record-telemetry",
        help="append the devices' MQTT telemetry summaries to a JSON-lines file",
        description="Record every client telemetry summary published on the broker "
        "(splitedge/v1/client/+/telemetry) as one JSON line.",
    )
    rec.add_argument(
        "--broker",
        required=True,
        metavar="mqtt://HOST:PORT",
        help="MQTT broker, mqtts:// = TLS (a bare HOST:PORT is deprecated)",
    )
    rec.add_argument("--out", required=True, type=Path, help="JSON-lines file (appended to)")
    rec.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)"
    )
    rec.add_argument("--username", help="broker username")
    rec.add_argument("--password", help="broker password")
    rec.add_argument("--tls-ca", help="PEM CA of the broker: connect over TLS")


def main(args: argparse.Namespace) -> int:
    """Run the recorder; 0 on a clean stop, 2 on bad flags (one line on stderr)."""
    from splitedge.control_plane.link import BrokerConfig

    try:
        address = parse_broker_address(args.broker, "--broker")
        if args.seconds is not None and args.seconds <= 0:
            raise ValueError(f"--seconds must be > 0, got {args.seconds:g}")
        if args.tls_ca is not None and not Path(args.tls_ca).is_file():
            raise ValueError(f"--tls-ca: file {args.tls_ca!r} does not exist")
        if not args.out.parent.is_dir():
            raise ValueError(f"--out: folder {str(args.out.parent)!r} does not exist")
    except ValueError as exc:
        print(f"splitedge-sim: error: {exc}", file=sys.stderr)
        return 2
    broker = BrokerConfig(
        host=address.host,
        port=address.port,
        username=args.username,
        password=args.password,
        tls=address.tls,
        tls_ca=args.tls_ca,
    )
    recorded, rejected = asyncio.run(_record(broker, args.out, args.seconds))
    print(
        f"splitedge-sim: recorded {recorded} telemetry summaries to {args.out}"
        + (f" ({rejected} invalid ignored)" if rejected else ""),
        file=sys.stderr,
    )
    return 0


async def _record(broker: BrokerConfig, out: Path, seconds: float | None) -> tuple[int, int]:
    from splitedge.control_plane.link import MqttLink
    from splitedge.control_plane.telemetry import TelemetryRecorder

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    end_at = None if seconds is None else loop.time() + seconds
    async with MqttLink(broker) as link:
        recorder = TelemetryRecorder(link, out)
        task = asyncio.create_task(recorder.run(), name="telemetry-recorder")
        await asyncio.sleep(0)  # let the recorder register its subscription
        subscribed = await link.wait_subscribed(5.0 if seconds is None else min(5.0, seconds))
        if subscribed:
            # Tests and scripts wait for this line before publishing.
            print(f"splitedge-sim: recording telemetry to {out}", file=sys.stderr, flush=True)
        with contextlib.suppress(asyncio.TimeoutError):
            left_s = None if end_at is None else max(0.0, end_at - loop.time())
            await asyncio.wait_for(stop.wait(), left_s)
        # (0.1 s, not 0: asyncio.wait_for with no time left never lets the check run.)
        if not subscribed and not await link.wait_subscribed(0.1):
            # Waiting for a broker that is down is by design; saying so is not optional.
            print(
                "splitedge-sim: warning: never reached the broker at "
                f"{BrokerAddress(broker.host, broker.port, broker.uses_tls).url}",
                file=sys.stderr,
            )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return recorder.recorded_count, recorder.rejected_count
