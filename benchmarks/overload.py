"""Goodput under overload: does refusing frames starve the frames being served?

    python -m benchmarks.overload [--quick] [--model NAME] [--branch NAME]

A real edge server process (default batching: max batch 8, 5 ms window, admission
queue of 64 frames) runs the model's tail. First its *capacity*: closed loop,
``--capacity-streams`` bidi streams with one frame in flight each (enough to keep
full batches coming). Then *overload*: ``--streams`` streams with ``--in-flight``
frames each (default 64 x 4 = 256 in flight, 4x the admission queue); every answer,
served or refused (RESOURCE_EXHAUSTED), is followed at once by the stream's next
frame, so refusals come as fast as the server can answer them. Goodput is the served
frames per second; a cheap refusal leaves it near capacity.

The load generator re-sends one pre-computed head payload (only its frame id
changes) from a separate process, so its Python does not share the benchmark's GIL;
on a small machine it still shares the server's cores, as real devices' traffic
does not: the ratio is a lower bound there. Prints a table and ends with
``overload_goodput_ratio=<overload goodput / capacity> capacity_fps=.. overload_goodput_fps=..``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import grpc

from benchmarks._stats import machine, pct, table
from splitedge.edge.config import BatchingConfig, EdgeConfig, ModelConfig, dump_config
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.messages import encode_head
from splitedge.mobile_client.sources import open_source
from splitedge.mobile_client.transport import MAX_MESSAGE_BYTES, frame_request
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.options import size_arg
from splitedge.proto.status import StatusCode
from splitedge.simulations.processes import EdgeProcess

STREAM_METHOD = "/splitedge.v1.EdgeInference/Stream"


def _request_bytes(model: str, branch: str, size: tuple[int, int]) -> bytes:
    """One frame's serialized request, without its frame id (the generator adds it)."""
    backend = TorchHeadBackend(model)
    spec = backend.model.branches.get(branch)
    if spec is None or spec.kind == "local":
        served = ", ".join(n for n, b in backend.model.branches.items() if b.kind != "local")
        raise SystemExit(f"--branch: {model} has no edge branch {branch!r}; it has: {served}")
    frame = next(open_source("synthetic", max_frames=1, size=size))
    if spec.kind == "offload":
        from splitedge.mobile_client.messages import encode_offload

        payload = encode_offload(frame.image, spec)
    else:
        head = backend.head(spec, frame.image)
        payload = encode_head(head, bits=spec.default_bits or 8, zstd_level=3)
    return frame_request(payload, model=model, branch=branch).SerializeToString()


def _with_frame_id(frame_id: int, request: bytes) -> bytes:
    # Field 1 (frame_id, varint) prepended: a parser merges it with the rest of the message.
    out = bytearray(b"\x08")
    while True:
        byte, frame_id = frame_id & 0x7F, frame_id >> 7
        out.append(byte | (0x80 if frame_id else 0))
        if not frame_id:
            return bytes(out) + request


async def _stream(
    channel: grpc.aio.Channel,
    request: bytes,
    in_flight: int,
    window: tuple[float, float],
    stop_at: float,
    served: list[float],
    refused: list[float],
    other: list[str],
) -> None:
    """One stream keeping ``in_flight`` frames outstanding until ``stop_at``; latencies of
    answers that arrive inside ``window`` land in ``served`` / ``refused`` (ms)."""
    call = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=None,
        response_deserializer=pb.FrameResult.FromString,
    )()
    sent: dict[int, int] = {}
    slots = asyncio.Semaphore(in_flight)
    next_id = 1

    async def write() -> None:
        nonlocal next_id
        while time.perf_counter() < stop_at:
            await slots.acquire()
            sent[next_id] = time.perf_counter_ns()
            await call.write(_with_frame_id(next_id, request))
            next_id += 1
        await call.done_writing()

    writer = asyncio.create_task(write())
    try:
        async for result in call:
            now = time.perf_counter()
            latency_ms = (time.perf_counter_ns() - sent.pop(result.frame_id)) / 1e6
            slots.release()
            if not window[0] <= now < window[1]:
                continue
            if result.status_code == 0:
                served.append(latency_ms)
            elif result.status_code == StatusCode.RESOURCE_EXHAUSTED:
                refused.append(latency_ms)
            else:
                other.append(result.status_message)
    finally:
        writer.cancel()


async def _load_async(
    address: str, request: bytes, streams: int, in_flight: int, warmup_s: float, seconds: float
) -> dict[str, object]:
    served: list[float] = []
    refused: list[float] = []
    other: list[str] = []
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        await channel.channel_ready()
        start = time.perf_counter() + warmup_s
        window = (start, start + seconds)
        await asyncio.gather(
            *(
                _stream(channel, request, in_flight, window, window[1], served, refused, other)
                for _ in range(streams)
            )
        )
    return {
        "served_fps": len(served) / seconds,
        "served_p50": pct(served, 50),
        "served_p99": pct(served, 99),
        "refused": len(refused),
        "refused_fps": len(refused) / seconds,
        "refused_p50": pct(refused, 50),
        "refused_p99": pct(refused, 99),
        "other": len(other),
        "other_example": other[0] if other else "",
    }


def generate(
    address: str, request: bytes, streams: int, in_flight: int, warmup_s: float, seconds: float
) -> dict[str, object]:
    """The load generator's entry point (runs in its own process)."""
    return asyncio.run(_load_async(address, request, streams, in_flight, warmup_s, seconds))


def _wait(future: Future[dict[str, object]], label: str, seconds: float) -> dict[str, object]:
    """The generator's result; a progress bar on a terminal meanwhile."""
    start = time.monotonic()
    while not future.done():
        if sys.stderr.isatty():
            done = min(1.0, (time.monotonic() - start) / seconds)
            bar = "#" * int(30 * done)
            print(f"\r{label:<24} [{bar:<30}] {done:4.0%}", end="", file=sys.stderr, flush=True)
        time.sleep(0.5)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return future.result()


def _config(path: Path, model: str, queue_capacity: int) -> None:
    config = EdgeConfig(
        batching=BatchingConfig(queue_capacity=queue_capacity), models=(ModelConfig(model),)
    )
    path.write_text(dump_config(config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per phase instead of 20 s")
    parser.add_argument("--seconds", type=float, default=None, help="per phase (overrides --quick)")
    parser.add_argument("--model", default="zoo:ghnd-frcnn-small-c12")
    parser.add_argument("--branch", default=None, help="edge branch (default: the first split)")
    parser.add_argument(
        "--size", type=size_arg(), default=(320, 240), help="frame size WIDTHxHEIGHT"
    )
    parser.add_argument("--capacity-streams", type=int, default=16, help="capacity phase streams")
    parser.add_argument("--streams", type=int, default=64, help="overload phase streams")
    parser.add_argument("--in-flight", type=int, default=4, help="overload frames per stream")
    parser.add_argument("--queue-capacity", type=int, default=64, help="edge admission queue")
    args = parser.parse_args(argv)
    for flag in ("capacity_streams", "streams", "in_flight", "queue_capacity"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    seconds = args.seconds if args.seconds is not None else (5.0 if args.quick else 20.0)
    if seconds <= 0:
        parser.error(f"--seconds must be > 0, got {seconds}")
    warmup_s = min(3.0, seconds / 2)
    w, h = args.size
    backend = TorchHeadBackend(args.model)
    branch = args.branch or next(n for n, b in backend.model.branches.items() if b.kind == "split")
    request = _request_bytes(args.model, branch, (w, h))
    phases = (
        ("capacity", args.capacity_streams, 1),
        ("overload", args.streams, args.in_flight),
    )
    results: dict[str, dict[str, object]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool,
    ):
        cfg = Path(tmp) / "edge.toml"
        _config(cfg, args.model, args.queue_capacity)
        with EdgeProcess(["--config", str(cfg)]) as edge:
            for name, streams, in_flight in phases:
                future = pool.submit(
                    generate, edge.address, request, streams, in_flight, warmup_s, seconds
                )
                results[name] = _wait(future, f"{name} {streams}x{in_flight}", warmup_s + seconds)
    rows = [
        [
            name,
            streams,
            in_flight,
            results[name]["served_fps"],
            results[name]["served_p50"],
            results[name]["served_p99"],
            results[name]["refused"],
            results[name]["refused_fps"],
            results[name]["refused_p50"],
            results[name]["refused_p99"],
            results[name]["other"],
        ]
        for name, streams, in_flight in phases
    ]
    capacity = float(results["capacity"]["served_fps"])  # type: ignore[arg-type]
    goodput = float(results["overload"]["served_fps"])  # type: ignore[arg-type]
    ratio = goodput / capacity if capacity > 0 else 0.0
    print(
        f"# overload: {machine()}; model {args.model} branch {branch}, "
        f"queue_capacity {args.queue_capacity}, {seconds:g} s per phase after {warmup_s:g} s "
        "warm-up; load from a separate process on the same machine"
    )
    print(
        table(
            [
                "phase",
                "streams",
                "in_flight",
                "goodput_fps",
                "served_p50_ms",
                "served_p99_ms",
                "refused",
                "refused_per_s",
                "refusal_p50_ms",
                "refusal_p99_ms",
                "other_errors",
            ],
            rows,
        )
    )
    for name in results:
        if results[name]["other"]:
            print(f"# {name}: other errors, e.g. {results[name]['other_example']}")
    print(
        f"overload_goodput_ratio={ratio:.3f} capacity_fps={capacity:.1f} "
        f"overload_goodput_fps={goodput:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
