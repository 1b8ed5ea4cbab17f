"""Past one box: the ray engine on a local multi-node Ray cluster, against the DES.

``python -m benchmarks.scale --quick`` starts a ``ray.cluster_utils.Cluster`` with
several logical nodes on this machine, runs a real edge server in-process with
``[engine] kind = "ray"`` on it, and drives it with many client streams over real
gRPC (each stream a camera at ``--fps`` that skips a tick while its last frame is
out, as the device and the DES do). It measures:

- a tail whose cost is a fixed wait (echo ``tail_delay_ms``: a stand-in for GPU time,
  so the two CPU cores are not what limits), at 1, 2 and 4 replicas: throughput,
  p50/p95 of the client's round trip, scaling efficiency (throughput at N replicas
  over N times that at 1; "of nominal": over N x 1000 / tail ms, what N replicas
  could answer if a frame cost only the wait), and the DES's p95 for the same
  arrival process (:mod:`splitedge.simulations.des`, one "GPU" per replica), given
  the nominal wait and, when every replica was kept busy, the service time the run
  shows (N x run time / answered frames: the wait plus Ray's per-request work);
- a real student tail (``zoo:ghnd-lraspp-small-c12``) at 1, 2 and 4 replicas
  (CPU-bound here: its replicas share this machine's cores);
- autoscaling: min 1 .. max 4 replicas, a step up in load and back down, replica
  count over time;
- a fault: one of two replicas SIGKILLed mid-load; frames answered, UNAVAILABLE
  (the device falls back), and lost (sent, never answered: must be 0).

Prints tables and one summary line; never asserted on in tests (wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time

import grpc
import numpy as np

from benchmarks._stats import machine, pct, table
from splitedge.edge.config import load_config, parse_model_spec
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer
from splitedge.mobile_client.policy import Candidate
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.simulations.des import DesConfig, simulate
from splitedge.simulations.policies import Fixed
from splitedge.simulations.profiles import CandidateProfile, CostProfile
from splitedge.simulations.traces import constant

log = logging.getLogger("benchmarks.scale")


@dataclasses.dataclass
class Load:
    streams: int
    fps: float
    seconds: float


@dataclasses.dataclass
class Measured:
    sent: int
    answered: int
    errors: int
    busy: int  # ticks skipped while the stream's last frame was out
    latencies_ms: list[float]
    seconds: float
    codes: dict[int, int] = dataclasses.field(default_factory=dict)  # error status -> frames

    @property
    def fps(self) -> float:
        return self.answered / self.seconds


async def drive(address: str, frame: pb.FrameRequest, load: Load) -> Measured:
    """``load.streams`` cameras, each stream one gRPC channel, ticks offset evenly."""
    period = 1.0 / load.fps
    out = Measured(0, 0, 0, 0, [], load.seconds)

    async def camera(i: int, stub: pb_grpc.EdgeInferenceStub, t0: float) -> None:
        tick = t0 + i * period / load.streams
        end = t0 + load.seconds
        pending: asyncio.Task | None = None
        while tick < end:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            tick += period
            if pending is not None and not pending.done():
                out.busy += 1
                continue
            pending = asyncio.create_task(one(stub))
        if pending is not None:
            await pending

    async def one(stub: pb_grpc.EdgeInferenceStub) -> None:
        out.sent += 1
        start = time.monotonic()
        result = await stub.Infer(frame)
        if result.status_code == 0:
            out.answered += 1
            out.latencies_ms.append((time.monotonic() - start) * 1000.0)
        else:
            out.errors += 1
            out.codes[result.status_code] = out.codes.get(result.status_code, 0) + 1

    channels = [grpc.aio.insecure_channel(address) for _ in range(load.streams)]
    try:
        stubs = [pb_grpc.EdgeInferenceStub(c) for c in channels]
        t0 = time.monotonic() + 0.2
        await asyncio.gather(*(camera(i, s, t0) for i, s in enumerate(stubs)))
    finally:
        for c in channels:
            await c.close()
    return out


def des_p95(load: Load, replicas: int, tail_ms: float, overhead_ms: float) -> float:
    """The DES's p95 round trip for the same cameras, service time and replica count."""
    candidate = Candidate("split@x", 32)
    remote = CandidateProfile(
        candidate.label, "split@x", 32, True, 0.0,
        payload_bytes=100, uplink_wire_bytes=200, downlink_wire_bytes=100,
        decode_ms=0.0, server_encode_ms=0.0, tail_ms_by_batch={1: tail_ms},
    )  # fmt: skip
    local = CandidateProfile("local", "local", None, False, 1000.0)
    profile = CostProfile("scale", {remote.label: remote, "local": local}, overhead_ms=overhead_ms)
    config = DesConfig(
        clients=load.streams,
        duration_s=load.seconds,
        fps=load.fps,
        sla_ms=10_000,
        deadline_ms=10_000,
        uplink=constant(10_000, load.seconds),
        downlink=constant(10_000, load.seconds),
        gpus=replicas,
        max_batch_size=1,
        max_queue_delay_ms=0.0,
        queue_capacity=10_000,
        keep_rows=False,
    )
    result = simulate(config, profile, lambda client, clock: Fixed(candidate), name="des")
    return result.summary.p95_ms


def echo_frame() -> pb.FrameRequest:
    tensor = wire.tensor_to_pb(codec.encode_tensor(np.arange(12, dtype=np.float32), "x"))
    return pb.FrameRequest(
        frame_id=1, model="echo", branch="split@x", tensors=[tensor],
        orig_height=3, orig_width=4, input_height=3, input_width=4, deadline_ms=10_000,
    )  # fmt: skip


def student_frame(model_name: str, size: tuple[int, int]) -> tuple[pb.FrameRequest, str]:
    from splitedge.models.registry import create_model

    model = create_model(model_name)
    branch = next(b for b, s in model.branches.items() if s.kind == "split")
    image = (np.random.default_rng(0).random((*size, 3)) * 255).astype(np.uint8)
    head = model.run_head(branch, image)
    tensors = [
        wire.tensor_to_pb(codec.encode_tensor(a, n, bits=8)) for n, a in head.tensors.items()
    ]
    frame = pb.FrameRequest(
        frame_id=1, model=model_name, branch=branch, tensors=tensors,
        orig_height=head.orig_size[0], orig_width=head.orig_size[1],
        input_height=head.input_size[0], input_width=head.input_size[1], deadline_ms=30_000,
    )  # fmt: skip
    return frame, branch


def engine_toml(replicas: tuple[int, int], *, upscale_s: float = 1.0, down_s: float = 3.0) -> str:
    return f"""
[batching]
max_batch_size = 1
max_queue_delay_ms = 0.0
queue_capacity = 256
[engine]
kind = "ray"
num_cpus = 0.25
min_replicas = {replicas[0]}
max_replicas = {replicas[1]}
target_ongoing_requests = 1.0
max_ongoing_requests = 2
upscale_delay_s = {upscale_s}
downscale_delay_s = {down_s}
"""


async def with_server(toml: str, spec: str, tmp: str, body):
    path = f"{tmp}/edge.toml"
    with open(path, "w") as f:
        f.write(toml)
    config = load_config(path, models=[parse_model_spec(spec)], port=0)
    registry = ModelRegistry.from_config(config.models, config.limits.codec_limits(), "cpu")
    async with EdgeServer(config, registry) as server:
        return await body(server)


async def wait_replicas(server: EdgeServer, model: str, n: int, timeout_s: float = 60) -> None:
    end = time.monotonic() + timeout_s
    while server.service.batcher.replicas(model, "") != n and time.monotonic() < end:
        await asyncio.sleep(0.2)


async def main_async(args: argparse.Namespace) -> None:
    import tempfile

    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False},
    )
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, namespace="splitedge", log_to_driver=False)
    rows: list[list[object]] = []
    auto_rows: list[list[object]] = []
    fault_rows: list[list[object]] = []
    summary: dict[str, float] = {}
    tmp = tempfile.mkdtemp(prefix="splitedge-scale-")
    seconds = 4.0 if args.quick else 15.0
    try:
        sleep_load = Load(args.streams, args.fps, seconds)
        frame = echo_frame()
        thr1 = 0.0
        for n in (1, 2, 4):

            async def run(server: EdgeServer, n: int = n) -> tuple[Measured, Measured]:
                await wait_replicas(server, "echo", n)
                address = f"127.0.0.1:{server.port}"
                light = await drive(address, frame, Load(1, 5, 2.0))  # warm; unloaded cost
                return light, await drive(address, frame, sleep_load)

            light, m = await with_server(
                engine_toml((n, n)), f"echo:tail_delay_ms={args.tail_ms}", tmp, run
            )
            thr1 = thr1 or m.fps
            eff = m.fps / (n * thr1)
            # The DES gets the tail as service time and, as fixed overhead, what a frame
            # costs beyond it with no queue (gRPC, decode, the handle hop), measured here.
            overhead = max(0.0, pct(light.latencies_ms, 50) - args.tail_ms)
            nominal = des_p95(sleep_load, n, args.tail_ms, overhead_ms=overhead)
            # What a replica really spends per frame under this load (the tail's wait plus
            # Ray's per-request work, which on a small shared machine is not negligible):
            # its busy time per answered frame, when the load keeps every replica busy.
            service = n * m.seconds * 1000.0 / max(m.answered, 1)
            saturated = m.busy > 0 and service > args.tail_ms
            predicted = (
                des_p95(sleep_load, n, service, overhead_ms=overhead) if saturated else nominal
            )
            p95 = pct(m.latencies_ms, 95)
            rows.append(
                [f"sleep {args.tail_ms:.0f}ms", n, args.streams, round(m.fps, 1),
                 round(pct(m.latencies_ms, 50), 1), round(p95, 1), m.errors, m.busy,
                 round(eff, 2), round(m.fps * args.tail_ms / (1000.0 * n), 2),
                 round(nominal, 1), round(service, 1), round(predicted, 1),
                 f"{(p95 - predicted) / predicted:+.0%}"]
            )  # fmt: skip
            summary[f"eff{n}"] = eff
            summary[f"des_err{n}"] = (p95 - predicted) / predicted
        # A real student tail (CPU-bound on this machine).
        sframe, _ = student_frame(args.student, (96, 128))
        student_load = Load(args.student_streams, 4, seconds)
        for n in (1, 2, 4):

            async def srun(server: EdgeServer, n: int = n) -> Measured:
                await wait_replicas(server, args.student, n)
                await drive(f"127.0.0.1:{server.port}", sframe, Load(2, 2, 1.0))
                return await drive(f"127.0.0.1:{server.port}", sframe, student_load)

            m = await with_server(engine_toml((n, n)), args.student, tmp, srun)
            rows.append(
                [args.student, n, student_load.streams, round(m.fps, 1),
                 round(pct(m.latencies_ms, 50), 1), round(pct(m.latencies_ms, 95), 1),
                 m.errors, m.busy, "", "", "", "", "", ""]
            )  # fmt: skip

        # Autoscaling: a step up in load, then back down.
        async def auto(server: EdgeServer) -> None:
            address = f"127.0.0.1:{server.port}"
            t0 = time.monotonic()
            samples: list[tuple[float, int, str]] = []
            phase = "light"

            async def sample() -> None:
                while True:
                    n = server.service.batcher.replicas("echo", "")
                    samples.append((time.monotonic() - t0, n, phase))
                    await asyncio.sleep(0.5)

            sampler = asyncio.create_task(sample())
            await drive(address, frame, Load(1, 5, 3.0))
            phase = "step"
            step = await drive(address, frame, Load(args.streams, args.fps, 10.0))
            phase = "after"
            await drive(address, frame, Load(1, 5, 12.0))
            sampler.cancel()
            peak = max(n for _, n, p in samples if p != "light")
            peak_t = min(t for t, n, p in samples if n == peak and p != "light")
            final = samples[-1][1]
            auto_rows.append(
                ["min 1 max 4", samples[0][1], peak, round(peak_t - 3.0, 1), final,
                 round(step.fps, 1), round(pct(step.latencies_ms, 95), 1)]
            )  # fmt: skip
            summary["auto_peak"] = peak
            summary["auto_final"] = final

        await with_server(
            engine_toml((1, 4), upscale_s=1.0, down_s=3.0), f"echo:tail_delay_ms={args.tail_ms}",
            tmp, auto,
        )  # fmt: skip

        # A replica killed mid-load: every frame is answered, or UNAVAILABLE (the device
        # falls back), none lost; the frames at the dead replica are sent again.
        async def fault(server: EdgeServer) -> None:
            import os
            import signal

            await wait_replicas(server, "echo", 2)
            address = f"127.0.0.1:{server.port}"
            victim = sorted(await server.service.batcher.replica_pids("echo"))[0]
            load = Load(args.streams, args.fps, 6.0)

            async def kill() -> None:
                await asyncio.sleep(2.0)
                os.kill(victim, signal.SIGKILL)

            killer = asyncio.create_task(kill())
            m = await drive(address, frame, load)
            await killer
            unavailable = m.codes.get(grpc.StatusCode.UNAVAILABLE.value[0], 0)
            fault_rows.append(
                ["2 replicas, one SIGKILLed at 2 s", m.sent, m.answered, unavailable,
                 m.errors - unavailable, m.sent - m.answered - m.errors]
            )  # fmt: skip
            summary["fault_lost"] = m.sent - m.answered - m.errors

        await with_server(engine_toml((2, 2)), f"echo:tail_delay_ms={args.tail_ms}", tmp, fault)
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    print(f"# {machine()}; Ray cluster of {args.nodes} logical nodes x 2 CPUs")
    print(
        table(
            ["tail", "replicas", "streams", "fps", "p50 ms", "p95 ms", "errors", "busy",
             "scaling eff", "of nominal", "DES p95 (nominal) ms", "service ms",
             "DES p95 ms", "p95 vs DES"],
            rows,
        )
    )  # fmt: skip
    print()
    print(
        table(
            ["autoscaling", "replicas before", "peak", "s to peak", "replicas after",
             "step fps", "step p95 ms"],
            auto_rows,
        )
    )  # fmt: skip
    print()
    print(
        table(
            ["fault", "frames sent", "answered", "UNAVAILABLE", "other errors", "lost"],
            fault_rows,
        )
    )
    worst = max((abs(v) for k, v in summary.items() if k.startswith("des_err")), default=0.0)
    print(
        f"scale: efficiency at 4 replicas {summary.get('eff4', 0):.2f}, autoscaled 1 -> "
        f"{summary.get('auto_peak', 0):.0f} -> {summary.get('auto_final', 0):.0f} replicas, "
        f"worst p95 vs DES {worst:.0%}, frames lost to a killed replica "
        f"{summary.get('fault_lost', -1):.0f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per point (else 15 s)")
    parser.add_argument("--nodes", type=int, default=3, help="logical Ray nodes (2 CPUs each)")
    parser.add_argument("--streams", type=int, default=24, help="client streams")
    parser.add_argument("--fps", type=float, default=5.0, help="frames/s per stream")
    parser.add_argument("--tail-ms", type=float, default=50.0, help="the fixed-wait tail")
    parser.add_argument("--student", default="zoo:ghnd-lraspp-small-c12")
    parser.add_argument(
        "--student-streams", type=int, default=8, help="client streams for the student tail"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
