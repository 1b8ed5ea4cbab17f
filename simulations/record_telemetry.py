"""``splitedge-sim record-telemetry``: write the fleet's telemetry summaries to a file.

Subscribes to ``splitedge/v1/client/+/telemetry`` and appends every valid summary as
one JSON line (``{"received_at", "topic", "summary"}``, see docs/mqtt.md) for later
plots; invalid messages are counted and logged, never written. Runs for
``--seconds`` or until SIGINT/SIGTERM; a broker that is down is waited for
(reconnects with backoff), not an error. Its broker flags are the edge's and the
client's: ``--broker mqtt://HOST:PORT`` (``mqtts://`` = TLS), ``--mqtt-username``,
``--mqtt-password``, ``--mqtt-tls-ca``; the older ``--username``, ``--password`` and
``--tls-ca`` still work and log one deprecation line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from splitedge.control_plane.address import BrokerAddress, parse_broker_address

if TYPE_CHECKING:
    from splitedge.control_plane.link import BrokerConfig

__all__ = ["add_parser", "main"]

log = logging.getLogger(__name__)

# (flag, its older name): the same broker flags as splitedge-edge and splitedge-client.
_RENAMED = (
    ("--mqtt-username", "--username"),
    ("--mqtt-password", "--password"),
    ("--mqtt-tls-ca", "--tls-ca"),
)
_HELP = {
    "--mqtt-username": "broker username",
    "--mqtt-password": "broker password",
    "--mqtt-tls-ca": "PEM CA of the broker: connect over TLS",
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


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
    for flag, old in _RENAMED:
        either = rec.add_mutually_exclusive_group()
        either.add_argument(flag, help=_HELP[flag])
        either.add_argument(old, help=f"older name of {flag}")


def main(args: argparse.Namespace) -> int:
    """Run the recorder; 0 on a clean stop, 2 on bad flags (one line on stderr)."""
    from splitedge.control_plane.link import BrokerConfig

    given = {}  # new flag -> the spelling used, when given
    for flag, old in _RENAMED:
        if getattr(args, _dest(old)) is not None:
            log.warning("%s is deprecated; write %s", old, flag)
            setattr(args, _dest(flag), getattr(args, _dest(old)))
            given[flag] = old
        elif getattr(args, _dest(flag)) is not None:
            given[flag] = flag
    try:
        address = parse_broker_address(args.broker, "--broker")
        if args.seconds is not None and args.seconds <= 0:
            raise ValueError(f"--seconds must be > 0, got {args.seconds:g}")
        if args.mqtt_tls_ca is not None and not Path(args.mqtt_tls_ca).is_file():
            raise ValueError(f"{given['--mqtt-tls-ca']}: file {args.mqtt_tls_ca!r} does not exist")
        if args.mqtt_password is not None and args.mqtt_username is None:
            raise ValueError(f"{given['--mqtt-password']} needs --mqtt-username")
        if not args.out.parent.is_dir():
            raise ValueError(f"--out: folder {str(args.out.parent)!r} does not exist")
    except ValueError as exc:
        print(f"splitedge-sim: error: {exc}", file=sys.stderr)
        return 2
    broker = BrokerConfig(
        host=address.host,
        port=address.port,
        username=args.mqtt_username,
        password=args.mqtt_password,
        tls=address.tls,
        tls_ca=args.mqtt_tls_ca,
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
