"""Chaos: a real device client streams while its edges die, the broker restarts, the link cuts.

    python -m benchmarks.chaos [--quick] [--fps 10] [--model echo]

Starts mosquitto (or, without it, the embedded broker as a child process) and two real
edge processes, ``a`` and ``b``, each behind its own emulated link (real sockets; the
edges advertise the link's address on MQTT, so every frame crosses a link). The
device is the splitedge-client code path: a :class:`FleetSession` discovers the edges
and fails over between them, a :class:`Client` with the model's local fallback runs
``Client.run`` on the offload branch. While it streams, a scripted timeline:

  kill -9 the serving edge, restart it 2 s later (same port);
  stop the broker, start it again 2 s later (same port, empty retained state);
  cut the serving edge's link (rate 0 both ways) for 3 s;
  kill -9 the serving edge again, restart it.

Prints the timeline, a table of outcomes (edge / local / dropped, each with its
reason) and ``frames=… edge=… local=… dropped=… lost_silently=… failovers=…``; a frame
with no outcome at all is *lost silently* (target 0; exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._stats import machine, table
from splitedge.control_plane.link import BrokerConfig
from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.fleet import FleetSession
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.sources import CameraFrame
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.processes import (
    EdgeProcess,
    Mosquitto,
    free_port,
    mosquitto_binary,
    wait_listening,
)
from splitedge.simulations.traces import constant

BRANCH = "offload-jpeg90"
LINK_MBPS = 50.0
CUT_S = 3.0
DOWN_S = 2.0


class Broker:
    """mosquitto (or the embedded broker) on a fixed port; ``stop()``/``start()`` keep it."""

    def __init__(self, workdir: Path) -> None:
        binary = mosquitto_binary()
        self.mosquitto = Mosquitto(binary, workdir, timeout_s=20.0) if binary else None
        self.port = self.mosquitto.port if self.mosquitto else free_port()
        self.kind = "mosquitto" if self.mosquitto else "embedded broker"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.mosquitto is not None:
            self.mosquitto.start()
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "splitedge.control_plane.broker",
             "--listen", f"mqtt://127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_listening(self.port, 20.0):
            self.stop()
            raise RuntimeError(f"{self.kind} did not listen on port {self.port}")

    def stop(self) -> None:
        if self.mosquitto is not None:
            self.mosquitto.stop()
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class Edge:
    """One edge process on a fixed port behind its own emulated link."""

    server_id: str
    model: str
    broker_port: int
    port: int = field(default_factory=free_port)
    link: EmulatedLink | None = None
    proc: EdgeProcess | None = None

    def args(self) -> list[str]:
        assert self.link is not None
        return [
            "--model", self.model, "--port", str(self.port),
            "--broker", f"mqtt://127.0.0.1:{self.broker_port}", "--server-id", self.server_id,
            "--advertise", f"127.0.0.1:{self.link.port}",
        ]  # fmt: skip

    def start(self) -> None:
        self.proc = EdgeProcess(self.args()).start()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()


@dataclass
class ChaosReport:
    sent: int = 0
    outcomes: list[FrameOutcome] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    failovers: int = 0
    client_error: str = ""
    broker: str = ""

    @property
    def lost_silently(self) -> list[int]:
        answered = {o.frame_id for o in self.outcomes}
        return [i for i in range(self.sent) if i not in answered]

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((o.source, o.reason or "-") for o in self.outcomes)


async def _timeline(
    edges: dict[str, Edge], broker: Broker, client: Client, report: ChaosReport, t0: float,
    phase_s: float,
) -> None:  # fmt: skip
    def note(what: str) -> None:
        report.events.append((time.monotonic() - t0, what))

    def serving() -> Edge:
        by_link = {f"127.0.0.1:{e.link.port}": e for e in edges.values() if e.link}
        return by_link.get(client.server, next(iter(edges.values())))

    async def kill_and_restart() -> None:
        edge = serving()
        edge.kill()
        note(f"kill -9 edge {edge.server_id}")
        await asyncio.sleep(DOWN_S)
        await asyncio.to_thread(edge.start)
        note(f"edge {edge.server_id} restarted")

    await asyncio.sleep(phase_s)
    await kill_and_restart()
    await asyncio.sleep(phase_s)
    await asyncio.to_thread(broker.stop)
    note(f"{broker.kind} stopped")
    await asyncio.sleep(DOWN_S)
    await asyncio.to_thread(broker.start)
    note(f"{broker.kind} started")
    await asyncio.sleep(phase_s)
    edge = serving()
    assert edge.link is not None
    edge.link.set_uplink(constant(0.0, 3600.0))
    edge.link.set_downlink(constant(0.0, 3600.0))
    note(f"link of edge {edge.server_id} cut (0 Mbps)")
    await asyncio.sleep(CUT_S)
    edge.link.set_uplink(constant(LINK_MBPS, 3600.0))
    edge.link.set_downlink(constant(LINK_MBPS, 3600.0))
    note(f"link of edge {edge.server_id} restored")
    await asyncio.sleep(phase_s)
    await kill_and_restart()


async def run_chaos(
    *, model: str = "echo", fps: float = 10.0, phase_s: float = 4.0, deadline_ms: float = 1000.0
) -> ChaosReport:
    report = ChaosReport()
    duration_s = 4 * phase_s + 2 * DOWN_S + CUT_S + phase_s + 3.0
    frames_total = int(duration_s * fps)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp))
        report.broker = broker.kind
        broker.start()
        edges = {sid: Edge(sid, model, broker.port) for sid in ("a", "b")}
        try:
            for edge in edges.values():
                edge.link = await EmulatedLink(
                    ("127.0.0.1", edge.port), constant(LINK_MBPS, 3600.0), delay_ms=2.0
                ).start()
            await asyncio.gather(*(asyncio.to_thread(e.start) for e in edges.values()))
            config = BrokerConfig(
                port=broker.port, client_id="chaos-cam", reconnect_min_s=0.05, reconnect_max_s=0.5
            )
            fleet = FleetSession(config, model, "chaos-cam", telemetry_every=0)
            async with fleet:
                chosen = await fleet.wait_for_server(20)
                async with Client(
                    chosen.address, model, backend=TorchHeadBackend(model), deadline_ms=deadline_ms
                ) as client:
                    fleet.attach(client)
                    await client.submit(_frames(1, 99).__next__(), BRANCH)  # warm up

                    def counted() -> Iterator[CameraFrame]:
                        for frame in _frames(frames_total, 0):
                            report.sent += 1
                            yield frame

                    t0 = time.monotonic()
                    chaos = asyncio.create_task(
                        _timeline(edges, broker, client, report, t0, phase_s), name="chaos"
                    )
                    try:
                        async for outcome in client.run(
                            counted(), BRANCH, max_in_flight=2, fps=fps
                        ):
                            report.outcomes.append(outcome)
                            fleet.record(outcome)
                    except Exception as exc:  # reported: frames after it have no outcome
                        report.client_error = f"{type(exc).__name__}: {exc}"
                    await chaos
                    report.failovers = fleet.switch_count
        finally:
            for edge in edges.values():
                edge.stop()
                if edge.link is not None:
                    await edge.link.close()
            broker.stop()
    return report


def _frames(n: int, seed: int) -> Iterator[CameraFrame]:
    # Fresh ids from 0 (the warm-up frame's id is its own stream's).
    for i, frame in enumerate(open_source("synthetic", max_frames=n, size=(160, 120), seed=seed)):
        yield CameraFrame(i, frame.image, frame.capture_ns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2.5 s between events instead of 6")
    parser.add_argument("--fps", type=float, default=10.0, help="camera frame rate")
    parser.add_argument("--model", default="echo", help="model both edges serve")
    parser.add_argument(
        "--deadline-ms", type=float, default=1000.0, help="per-frame deadline of the client"
    )
    args = parser.parse_args(argv)
    if not args.fps > 0:
        parser.error(f"--fps must be > 0, got {args.fps}")
    report = asyncio.run(
        run_chaos(
            model=args.model, fps=args.fps, phase_s=2.5 if args.quick else 6.0,
            deadline_ms=args.deadline_ms,
        )
    )  # fmt: skip
    print(f"# chaos: {machine()}; model {args.model}, {args.fps:g} fps, {report.broker}, 2 edges")
    for t, what in report.events:
        print(f"#  t={t:5.1f} s  {what}")
    rows = [[src, reason, n] for (src, reason), n in sorted(report.counts().items())]
    print(table(["source", "reason", "frames"], rows))
    if report.client_error:
        print(f"# client.run raised: {report.client_error}")
    lost = report.lost_silently
    if lost:
        print(f"# lost silently: frames {lost[:20]}{' ...' if len(lost) > 20 else ''}")
    by = Counter(o.source for o in report.outcomes)
    print(
        f"frames={report.sent} edge={by['edge']} local={by['local']} dropped={by['dropped']} "
        f"lost_silently={len(lost)} failovers={report.failovers}"
    )
    return 1 if lost or report.client_error else 0


if __name__ == "__main__":
    sys.exit(main())
