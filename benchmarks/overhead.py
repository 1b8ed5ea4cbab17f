"""Runtime overhead: the full splitedge path against a bare grpc.aio round trip.

    python -m benchmarks.overhead [--quick]

Both servers run as separate local processes; the same payload sizes (1 KB, 40 KB,
200 KB of incompressible float32) cross each, one frame in flight, blocks of the two
paths interleaved so machine noise hits both alike. The splitedge path is
``Client.submit`` on the echo model's split branch: head, codec encode (zstd),
bidi stream, server validation + decode + batcher + no-op tail + reply, client
decode. Prints a table and ends with ``overhead_ratio_40k=<p50 ratio>``.
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

from benchmarks._rawgrpc import MAX_MESSAGE_BYTES, METHOD
from benchmarks._stats import machine, pct, table
from splitedge.mobile_client import Client
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.mobile_client.sources import Frame
from splitedge.simulations.processes import EdgeProcess

SIZES = {"1k": 1_000, "40k": 40_000, "200k": 200_000}


def _frame(size_bytes: int, rng: np.random.Generator) -> Frame:
    # The echo head ships the frame as float32: 12 bytes per pixel. Values are
    # random so zstd cannot shrink them and both paths carry the same bytes.
    pixels = size_bytes // 12
    image = rng.integers(0, 256, (pixels, 1, 3), dtype=np.uint8)
    return Frame(0, image, time.monotonic_ns())


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


async def _full_block(client: Client, frame: Frame, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        outcome = await client.submit(frame, "split@x", deadline_ms=0)
        if outcome.source != "edge":
            raise RuntimeError(f"frame not served by the edge: {outcome.reason}")
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


async def measure(edge_address: str, raw_port: int, frames: int, blocks: int) -> list[list[object]]:
    rng = np.random.default_rng(0)
    rows = []
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}", options=options) as channel,
        Client(edge_address, "echo", backend=TorchHeadBackend("echo"), bits=0) as client,
    ):
        raw_stub = channel.stream_stream(METHOD)
        for label, size in SIZES.items():
            frame = _frame(size, rng)
            payload = rng.bytes(size)
            await _raw_block(raw_stub, payload, 20)  # warm both paths
            await _full_block(client, frame, 20)
            raw: list[float] = []
            full: list[float] = []
            per_block = max(1, frames // blocks)
            for _ in range(blocks):
                raw += await _raw_block(raw_stub, payload, per_block)
                full += await _full_block(client, frame, per_block)
            ratio = pct(full, 50) / pct(raw, 50)
            rows.append([label, pct(raw, 50), pct(raw, 95), pct(full, 50), pct(full, 95), ratio])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 frames per size instead of 2000")
    args = parser.parse_args(argv)
    frames, blocks = (300, 6) if args.quick else (2000, 20)
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
                rows = asyncio.run(measure(edge.address, raw_port, frames, blocks))
    finally:
        raw.terminate()
        raw.wait()
    print(f"# overhead: {machine()}; {frames} frames per size, one in flight, ms per round trip")
    print(
        table(
            ["payload", "raw_p50", "raw_p95", "splitedge_p50", "splitedge_p95", "ratio_p50"], rows
        )
    )
    ratio_40k = next(r[5] for r in rows if r[0] == "40k")
    print(f"overhead_ratio_40k={ratio_40k:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
