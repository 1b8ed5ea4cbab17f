"""Runtime overhead: the full splitedge path against a bare grpc.aio round trip.

    python -m benchmarks.overhead [--quick]

Both servers run as separate local processes; the same payload sizes (1 KB, 40 KB,
200 KB of float32 noise, which zstd shrinks by ~7%) cross each, one frame in flight,
blocks of the paths interleaved so machine noise hits all alike. The splitedge path
is ``Client.submit`` with default settings on the echo model's split branch: head,
codec encode (zstd only where the client's ``auto`` compression finds it pays; the
``codec`` column says what it sent), bidi stream, server validation + decode +
batcher + no-op tail + reply, client decode. The raw path carries the same
serialized request splitedge sends. The *floor* path is the least Python any split
round trip needs (build a request, parse it, view the tensor, answer, parse the
answer; no validation; the same codec as the client chose: see
``benchmarks._rawgrpc``). Prints a table and ends with
``overhead_ratio_40k=<p50 ratio> floor_ratio_40k=<p50 ratio>`` (loopback).

For context it also measures both paths through an emulated link (default 50 Mbps
each way, 5 ms one-way delay; ``--link-mbps 0`` skips it), where the same fixed
runtime cost weighs against a real transfer time.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import zstandard

from benchmarks._rawgrpc import FLOOR_METHOD, MAX_MESSAGE_BYTES, METHOD
from benchmarks._stats import machine, pct, table
from splitedge.mobile_client import Client
from splitedge.mobile_client.messages import encode_head
from splitedge.mobile_client.sources import CameraFrame
from splitedge.mobile_client.transport import frame_request
from splitedge.models.types import BranchSpec, HeadOutput, Prediction
from splitedge.proto import splitedge_pb2 as pb
from splitedge.simulations.link import EmulatedLink
from splitedge.simulations.processes import EdgeProcess
from splitedge.simulations.traces import constant

SIZES = {"1k": 1_000, "40k": 40_000, "200k": 200_000}


class _FixedHead:
    """A trivial head: always the same random float32 tensor (incompressible, so the
    wire carries the nominal size). The rest of the client path runs as usual."""

    name = "fixed"
    has_local = False

    def __init__(self) -> None:
        self.output: HeadOutput | None = None

    def can_run(self, branch: BranchSpec) -> bool:
        return True

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput:
        assert self.output is not None
        return self.output

    def local(self, image: np.ndarray) -> Prediction:
        raise RuntimeError("no local model in this benchmark")


def _head_output(size_bytes: int, rng: np.random.Generator) -> HeadOutput:
    x = rng.standard_normal(size_bytes // 4).astype(np.float32)
    return HeadOutput({"x": x}, (1, 1), (1, 1))


def _wire_bytes(head: HeadOutput, zstd_level: int | None) -> bytes:
    # The raw baseline carries exactly the serialized request splitedge sends.
    payload = encode_head(head, bits=0, zstd_level=zstd_level)
    return frame_request(payload, model="echo", branch="split@x").SerializeToString()


async def _raw_block(
    stub: grpc.aio.StreamStreamMultiCallable, payload: bytes, n: int
) -> list[float]:
    call = stub()
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await call.write(payload)
        await call.read()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    await call.done_writing()
    return out


async def _floor_block(
    stub: grpc.aio.StreamStreamMultiCallable, values: np.ndarray, n: int, zstd_level: int | None
) -> list[float]:
    call = stub()
    out = []
    compressor = zstandard.ZstdCompressor(level=zstd_level) if zstd_level is not None else None
    for i in range(n):
        t0 = time.perf_counter_ns()
        request = pb.FrameRequest(frame_id=i, model="echo", branch="split@x")
        data = values.tobytes()
        request.tensors.add(
            name="x",
            dtype=pb.FLOAT32,
            shape=values.shape,
            compression=pb.RAW if compressor is None else pb.ZSTD,
            data=data if compressor is None else compressor.compress(data),
        )
        await call.write(request)
        result = await call.read()
        np.asarray(result.detections.boxes, np.float32).reshape(-1, 4)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    await call.done_writing()
    return out


async def _full_block(client: Client, frame: CameraFrame, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        outcome = await client.submit(frame, "split@x", deadline_ms=0)
        if outcome.source != "edge":
            raise RuntimeError(f"frame not served by the edge: {outcome.reason}")
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


async def measure(
    edge_address: str, raw_port: int, frames: int, blocks: int, sizes: dict[str, int], tag: str = ""
) -> list[list[object]]:
    rng = np.random.default_rng(0)
    head = _FixedHead()
    frame = CameraFrame(0, np.zeros((1, 1, 3), np.uint8), 0)
    rows = []
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}", options=options) as channel,
        Client(edge_address, "echo", backend=head, bits=0) as client,
    ):
        raw_stub = channel.stream_stream(METHOD)
        floor_stub = channel.stream_stream(
            FLOOR_METHOD,
            request_serializer=pb.FrameRequest.SerializeToString,
            response_deserializer=pb.FrameResult.FromString,
        )
        for label, size in sizes.items():
            head.output = _head_output(size, rng)
            values = head.output.tensors["x"]
            await _full_block(client, frame, 20)  # warm up; the client settles its codec
            zstd = client.compression_chooser.pays("split@x") is not False
            level = client.zstd_level if zstd else None
            payload = _wire_bytes(head.output, level)
            await _raw_block(raw_stub, payload, 20)
            await _floor_block(floor_stub, values, 20, level)
            raw: list[float] = []
            floor: list[float] = []
            full: list[float] = []
            per_block = max(1, frames // blocks)
            for _ in range(blocks):
                raw += await _raw_block(raw_stub, payload, per_block)
                floor += await _floor_block(floor_stub, values, per_block, level)
                full += await _full_block(client, frame, per_block)
            rows.append(
                [
                    label + tag,
                    "zstd" if zstd else "raw",
                    len(payload),
                    pct(raw, 50),
                    pct(raw, 95),
                    pct(floor, 50),
                    pct(full, 50),
                    pct(full, 95),
                    pct(floor, 50) / pct(raw, 50),
                    pct(full, 50) / pct(raw, 50),
                ]
            )
    return rows


async def _through_link(
    edge_port: int, raw_port: int, args: argparse.Namespace, frames: int, blocks: int
) -> list[list[object]]:
    trace = constant(args.link_mbps, 3600.0)
    tag = f"@{args.link_mbps:g}Mbps"
    async with (
        EmulatedLink(("127.0.0.1", edge_port), trace, delay_ms=args.link_delay_ms) as edge_link,
        EmulatedLink(("127.0.0.1", raw_port), trace, delay_ms=args.link_delay_ms) as raw_link,
    ):
        return await measure(
            f"127.0.0.1:{edge_link.port}", raw_link.port, frames, blocks, {"40k": 40_000}, tag
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 frames per size instead of 2000")
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per size (overrides --quick)"
    )
    parser.add_argument(
        "--link-mbps", type=float, default=50.0, help="emulated link rate (0 = skip)"
    )
    parser.add_argument("--link-delay-ms", type=float, default=5.0, help="emulated one-way delay")
    args = parser.parse_args(argv)
    frames, blocks = (300, 6) if args.quick else (2000, 20)
    if args.frames is not None:
        if args.frames < 1:
            parser.error(f"--frames must be at least 1, got {args.frames}")
        frames, blocks = args.frames, min(blocks, args.frames)
    raw = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._rawgrpc"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert raw.stdout is not None
        raw_port = int(raw.stdout.readline().rsplit(" ", 1)[1])
        with tempfile.TemporaryDirectory() as tmp:
            # One frame in flight: no batching window, so the tail starts at once.
            config = Path(tmp) / "edge.toml"
            config.write_text('[batching]\nmax_queue_delay_ms = 0.0\n\n[[models]]\nname = "echo"\n')
            with EdgeProcess(["--config", str(config)]) as edge:
                rows = asyncio.run(measure(edge.address, raw_port, frames, blocks, SIZES))
                if args.link_mbps > 0:
                    rows += asyncio.run(
                        _through_link(edge.port, raw_port, args, frames // 3, blocks)
                    )
    finally:
        raw.terminate()
        raw.wait()
    print(
        f"# overhead: {machine()}; {frames} frames per size (a third through the link), "
        "one in flight, ms per round trip"
    )
    print(
        table(
            [
                "tensor",
                "codec",
                "wire_bytes",
                "raw_p50",
                "raw_p95",
                "floor_p50",
                "splitedge_p50",
                "splitedge_p95",
                "floor_ratio",
                "ratio_p50",
            ],
            rows,
        )
    )
    row_40k = next(r for r in rows if r[0] == "40k")
    print(f"overhead_ratio_40k={row_40k[9]:.3f} floor_ratio_40k={row_40k[8]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
