"""Edge throughput and latency under concurrent streams, dynamic batching on vs off.

    python -m benchmarks.batching [--quick] [--model NAME] [--branch NAME]

A real edge server process runs the model's tail (on its GPU when it has one,
else CPU). Each of 1/4/16 concurrent bidi streams keeps one frame in flight,
re-sending one pre-computed head payload, so the client side costs next to
nothing and the server is what is measured. Batching on = max batch 8 with a
5 ms gather window; off = max batch 1. Prints a table and ends with
``batching_speedup_16=<throughput on / off at 16 streams>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import grpc

from benchmarks._stats import machine, pct, table
from splitedge.edge.config import BatchingConfig, EdgeConfig, ModelConfig, dump_config
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.messages import encode_head
from splitedge.mobile_client.sources import open_source
from splitedge.mobile_client.transport import frame_request
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.proto.options import size_arg
from splitedge.simulations.processes import EdgeProcess

STREAMS = (1, 4, 16)


def _request(model: str, branch: str, size: tuple[int, int]) -> pb.FrameRequest:
    backend = TorchHeadBackend(model)
    frame = next(open_source("synthetic", max_frames=1, size=size))
    spec = backend.model.branches[branch]
    head = backend.head(spec, frame.image)
    payload = encode_head(head, bits=spec.default_bits or 8, zstd_level=3)
    return frame_request(payload, model=model, branch=branch)


def _copy(request: pb.FrameRequest) -> pb.FrameRequest:
    # Each stream numbers its own frames, so each needs its own message.
    copy = pb.FrameRequest()
    copy.CopyFrom(request)
    return copy


async def _stream(stub, request: pb.FrameRequest, until: float, lat: list[float]) -> int:
    call = stub.Stream()
    done = 0
    frame_id = 0
    while time.perf_counter() < until:
        frame_id += 1
        request.frame_id = frame_id
        t0 = time.perf_counter_ns()
        await call.write(request)
        result = await call.read()
        if result.status_code != 0:
            raise RuntimeError(f"edge refused a frame: {result.status_message}")
        lat.append((time.perf_counter_ns() - t0) / 1e6)
        done += 1
    await call.done_writing()
    return done


async def _load(address: str, request: pb.FrameRequest, streams: int, seconds: float):
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.EdgeInferenceStub(channel)
        # Warm-up outside the measured window (first batches pay allocator/JIT costs).
        warm: list[float] = []
        await asyncio.gather(
            *(
                _stream(stub, _copy(request), time.perf_counter() + 1.0, warm)
                for _ in range(streams)
            )
        )
        lat: list[float] = []
        t0 = time.perf_counter()
        counts = await asyncio.gather(
            *(_stream(stub, _copy(request), t0 + seconds, lat) for _ in range(streams))
        )
        elapsed = time.perf_counter() - t0
        status = await stub.Status(pb.StatusRequest(), timeout=5.0)
    return sum(counts) / elapsed, pct(lat, 50), pct(lat, 99), len(lat), status.device


def _config(path: Path, model: str, batching: bool) -> None:
    config = EdgeConfig(
        batching=BatchingConfig(
            max_batch_size=8 if batching else 1,
            max_queue_delay_ms=5.0 if batching else 0.0,
            queue_capacity=256,
        ),
        models=(ModelConfig(model),),
    )
    path.write_text(dump_config(config))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s per point instead of 15 s")
    parser.add_argument("--model", default="fasterrcnn_mobilenet_v3_large_320_fpn")
    parser.add_argument("--branch", default=None, help="split branch (default: the first)")
    parser.add_argument(
        "--size", type=size_arg(), default=(320, 240), help="frame size WIDTHxHEIGHT"
    )
    args = parser.parse_args(argv)
    seconds = 4.0 if args.quick else 15.0
    w, h = args.size
    backend = TorchHeadBackend(args.model)
    branch = args.branch or next(n for n, b in backend.model.branches.items() if b.kind == "split")
    request = _request(args.model, branch, (w, h))
    rows = []
    device = "?"
    with tempfile.TemporaryDirectory() as tmp:
        for batching in (False, True):
            cfg = Path(tmp) / f"edge-{batching}.toml"
            _config(cfg, args.model, batching)
            with EdgeProcess(["--config", str(cfg)]) as edge:
                for streams in STREAMS:
                    fps, p50, p99, n, device = asyncio.run(
                        _load(edge.address, request, streams, seconds)
                    )
                    rows.append(["on" if batching else "off", streams, fps, p50, p99, n])
    print(
        f"# batching: {machine()}; model {args.model} branch {branch}, tail on {device}, "
        f"{seconds:.0f} s per point"
    )
    print(table(["batching", "streams", "frames_per_s", "p50_ms", "p99_ms", "frames"], rows))
    fps = {(r[0], r[1]): r[2] for r in rows}
    print(f"batching_speedup_16={fps[('on', 16)] / fps[('off', 16)]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
