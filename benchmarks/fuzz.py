"""Hostile traffic against a real edge process: fuzz (``--requests N``) and soak (``--minutes M``).

    python -m benchmarks.fuzz --requests 2000 [--model echo|zoo:ghnd-frcnn-small-c12]
                              [--seed S] [--streams K] [--quick] [--no-auth | --token T]
    python -m benchmarks.fuzz --minutes 10      # soak: the same mix for 10 min, RSS slope

Starts ``python -m splitedge.edge.cli serve`` (a real process, port 0) and sends a
seeded mix of requests over ``Infer`` and several concurrent ``Stream`` calls: valid
frames interleaved with every class of malformed frame the edge must refuse cleanly
(wrong dtype, shape/size mismatch, zstd bombs, corrupt zstd, truncated data, bad
bits, bad quantization parameters, unknown model/branch, huge rank, a code whose
spatial size disagrees with its input size, a consistent but huge input), random
bytes as raw gRPC bodies (to ``Infer``, ``Stream``, ``Health/Check`` and reflection),
abandoned streams, and bad tokens (unknown, malformed, missing). The edge is started
with a generated token (an ``[auth] tokens`` config written for the run) that every
other request carries; ``--no-auth`` runs without tokens (and without ``bad_token``),
``--token T`` uses an edge you configured (``--edge-arg=--config=...``).
Request ``i`` of seed ``S`` is the same on every run (its own generator, seeded
``[S, i]``), so a failure found once can be replayed.

A side task calls Health.Check / Status every 100 ms (a call over 1 s is a *hang*),
samples the edge's VmRSS and watches for the process exiting (a *crash*). The soak's
RSS slope is fitted over the second half to the lowest RSS of each 5 s window (the
resident floor; a refused bomb inflates RSS for a moment without leaking).

Prints one table row per class (sent, answer codes) with an example of each
INTERNAL/UNKNOWN answer, then ``crashes=… hangs=… internal_unknown=… valid_failed=…
health_p99_ms=… rss_growth_mb=…`` (soak adds ``rss_slope_mb_per_min=… flat=…``).
Exits 1 unless: 0 crashes, 0 hangs, 0 INTERNAL/UNKNOWN, every valid frame answered
correctly, no hostile request accepted (random bytes answered OK, a bad token not
answered UNAUTHENTICATED: ``accepted_hostile``), health p99 < 100 ms, RSS growth
< 64 MB (soak: slope under ``--max-slope-mb-per-min`` over the second half).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import zstandard
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from benchmarks._stats import machine, pct, table
from splitedge.edge.auth import hash_token
from splitedge.mobile_client.messages import encode_head
from splitedge.mobile_client.transport import frame_request
from splitedge.models.types import HeadOutput
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto import splitedge_pb2_grpc as pb_grpc
from splitedge.simulations.processes import EdgeProcess

SERVICE = "/splitedge.v1.EdgeInference"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
# Where random bytes go (relative frequencies): the edge's own methods and the standard
# services beside them, all of which must answer INVALID_ARGUMENT.
RANDOM_BYTES_METHODS = ("Infer", "Stream", "Infer", "Stream", "Check", "Reflection")
_RAW_MESSAGES = {
    "Check": health_pb2.HealthCheckRequest,
    "Reflection": reflection_pb2.ServerReflectionRequest,
}
# Classes of request; weights are relative frequencies in the mix.
WEIGHTS: dict[str, float] = {
    "valid": 8.0,
    "wrong_dtype": 1.0,
    "size_mismatch": 1.0,
    "zstd_bomb": 0.5,
    "bad_zstd": 1.0,
    "truncated": 1.0,
    "bad_bits": 1.0,
    "bad_quant": 1.0,
    "unknown_model": 0.7,
    "unknown_branch": 0.7,
    "huge_rank": 0.5,
    "spatial_mismatch": 1.0,
    "huge_input": 0.3,
    "random_bytes": 1.0,
    "abandoned": 0.5,
    "bad_token": 0.5,
}
CLASSES = tuple(WEIGHTS)
BAD_CODES = {"INTERNAL", "UNKNOWN"}
MAX_CLIENT_MESSAGE = 256 * 2**20
ANSWER_TIMEOUT_S = 60.0
HANG_MS = 1000.0
PROBE_EVERY_S = 0.1
ZOO_BRANCH = "bottleneck-12-w0.5-4bit"
TARGET_HEALTH_P99_MS = 100.0
TARGET_RSS_GROWTH_MB = 64.0
RSS_WINDOW_S = 5.0  # soak: the slope is fitted to the lowest RSS of each window


# ---------------------------------------------------------------- requests


@dataclass
class Templates:
    """Valid requests of one model and the bombs, built once (bombs are costly to make)."""

    model: str
    branch: str
    valid: list[pb.FrameRequest]
    detection: bool
    spatial: bool  # the split code has (1, C, H, W) and input size matters
    code_shape: tuple[int, ...]
    bomb_2bit: bytes = b""
    bomb_f16: bytes = b""


def _zeros_zstd(n: int) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(bytes(n))


def build_templates(model: str, seed: int) -> Templates:
    rng = np.random.default_rng(seed)
    if model == "echo":
        heads = [
            HeadOutput({"x": rng.standard_normal(int(n)).astype(np.float32)}, (48, 64), (48, 64))
            for n in rng.integers(16, 2000, 8)
        ]
        branch, detection, spatial, bits = "split@x", True, False, 0
    else:
        from splitedge.mobile_client.sources import open_source
        from splitedge.models.registry import create_model

        split = create_model(model)
        branch = (
            ZOO_BRANCH
            if ZOO_BRANCH in split.branches
            else next(b.name for b in split.branches.values() if b.kind == "split")
        )
        bits = split.branches[branch].default_bits
        frames = open_source("synthetic", max_frames=4, size=(320, 240), seed=seed)
        heads = [split.run_head(branch, f.image) for f in frames]
        detection, spatial = split.task == "detection", True
    valid = []
    for i, head in enumerate(heads):
        payload = encode_head(head, bits=bits, zstd_level=3 if i % 2 else None)
        valid.append(frame_request(payload, model=model, branch=branch))
    code_shape = tuple(valid[0].tensors[0].shape)
    return Templates(
        model,
        branch,
        valid,
        detection,
        spatial,
        code_shape,
        bomb_2bit=_zeros_zstd(codec.packed_size_bytes(16_777_216, 2)),
        bomb_f16=_zeros_zstd(33_554_432 * 2),
    )


@dataclass
class Item:
    """One request to send: a message, raw bytes, or an action (``abandon``)."""

    index: int
    cls: str
    request: pb.FrameRequest | None = None
    raw: bytes = b""
    method: str = ""  # random_bytes: where they go (RANDOM_BYTES_METHODS)
    metadata: tuple[tuple[str, str], ...] | None = None  # bad_token: instead of the good one


def _tensor(x: np.ndarray, name: str, bits: int, zstd: bool = True) -> pb.Tensor:
    t = codec.encode_tensor(x, name, bits=bits, compression="zstd" if zstd else "raw")
    return wire.tensor_to_pb(t)


def make_item(t: Templates, seed: int, index: int, cls: str, *, huge: bool = True) -> Item:
    """Request ``index`` of class ``cls``: deterministic in (seed, index)."""
    rng = np.random.default_rng([seed, index])
    req = pb.FrameRequest()
    req.CopyFrom(t.valid[int(rng.integers(len(t.valid)))])
    req.frame_id = index
    req.client_send_unix_ns = 0
    tensor = req.tensors[0]
    choice = int(rng.integers(1 << 30))
    if cls == "valid":
        pass
    elif cls == "wrong_dtype":
        tensor.dtype = [0, 99, pb.UINT8, pb.INT8, pb.FLOAT16, -5][choice % 6]
    elif cls == "size_mismatch":
        if choice % 3 == 0:
            tensor.shape[-1] += 1 + choice % 7
        elif choice % 3 == 1:
            tensor.shape.append(2)
        else:
            tensor.shape[0] = 0
    elif cls == "zstd_bomb":
        # A few KB declaring 64 MB once inflated: 2-bit [16777216] or float16 [33554432].
        del tensor.shape[:], tensor.scale[:], tensor.zero_point[:]
        tensor.compression = pb.ZSTD
        if choice % 2:
            tensor.dtype, tensor.quant, tensor.bits = pb.FLOAT32, pb.QUANT_PER_TENSOR, 2
            tensor.scale.append(1.0), tensor.zero_point.append(0.0)
            tensor.shape.extend(_spread(16_777_216, t.code_shape))
            tensor.data = t.bomb_2bit
        else:
            tensor.dtype, tensor.quant, tensor.bits = pb.FLOAT16, pb.QUANT_NONE, 0
            tensor.shape.extend(_spread(33_554_432, t.code_shape))
            tensor.data = t.bomb_f16
    elif cls == "bad_zstd":
        tensor.compression = pb.ZSTD
        junk = rng.bytes(int(rng.integers(1, 512)))
        tensor.data = [
            junk,
            b"\x28\xb5\x2f\xfd" + junk,  # zstd magic, then garbage
            _zeros_zstd(len(tensor.data) + 64)[:-3],  # truncated frame
            _zeros_zstd(len(tensor.data) * 4 + 1000),  # decodes to too many bytes
        ][choice % 4]
    elif cls == "truncated":
        tensor.data = tensor.data[: int(rng.integers(len(tensor.data)))]
    elif cls == "bad_bits":
        tensor.quant = pb.QUANT_PER_TENSOR if choice % 2 else tensor.quant
        tensor.bits = [1, 3, 5, 7, 9, 16, 32, 4_000_000_000][choice % 8]
    elif cls == "bad_quant":
        tensor.quant, tensor.bits = pb.QUANT_PER_TENSOR, tensor.bits or 8
        del tensor.scale[:], tensor.zero_point[:]
        match choice % 6:
            case 0:
                tensor.scale.append(float("nan")), tensor.zero_point.append(0.0)
            case 1:
                tensor.scale.append(float("inf")), tensor.zero_point.append(float("-inf"))
            case 2:
                pass  # no parameters at all
            case 3:
                tensor.quant, tensor.axis = pb.QUANT_PER_CHANNEL, 1_000_000
                tensor.scale.append(1.0), tensor.zero_point.append(0.0)
            case 4:
                tensor.quant, tensor.axis = pb.QUANT_PER_CHANNEL, -7
                tensor.scale.extend([1.0] * 3), tensor.zero_point.extend([0.0] * 3)
            case _:
                tensor.quant = 77
    elif cls == "unknown_model":
        req.model = ["", "nope", "x" * 10_000, "echo\x00", t.model.upper()][choice % 5]
    elif cls == "unknown_branch":
        req.branch = ["", "nope", "local", "offload-jpeg90", "b" * 10_000][choice % 5]
    elif cls == "huge_rank":
        del tensor.shape[:]
        ranks = [9, 64, 6000, 200_000] + ([23_000_000] if huge and choice % 50 == 0 else [])
        tensor.shape.extend([1] * ranks[choice % len(ranks)])
    elif cls == "spatial_mismatch":
        if t.spatial:  # e.g. a 32x41 code declared for a 240x320 input
            n, c, h, w = t.code_shape
            dh, dw = [(0, 1), (1, 0), (-3, 5), (h, w)][choice % 4]
            z = rng.standard_normal((n, c, h + dh, w + dw)).astype(np.float32)
            req.ClearField("tensors")
            req.tensors.append(_tensor(z, tensor.name, tensor.bits))
        else:
            z = rng.standard_normal((4, len(tensor.data) // 16 + 1)).astype(np.float32)
            req.ClearField("tensors")
            req.tensors.append(_tensor(z, tensor.name, 0))
    elif cls == "huge_input":
        # Consistent but huge: an all-zero code for an 8000x10400 input (stride 8).
        req.orig_height = req.input_height = 8000
        req.orig_width = req.input_width = 10400
        if t.spatial:
            n, c, _, _ = t.code_shape
            z = np.zeros((n, c, 1000, 1300), np.float32)
            req.ClearField("tensors")
            req.tensors.append(_tensor(z, tensor.name, tensor.bits or 4))
    elif cls == "random_bytes":
        size = int(rng.integers(0, 4096))
        body = rng.bytes(size)
        method = RANDOM_BYTES_METHODS[int(rng.integers(len(RANDOM_BYTES_METHODS)))]
        if method in ("Infer", "Stream") and choice % 3 == 0:  # a frame cut short, then noise
            good = req.SerializeToString()
            body = good[: int(rng.integers(len(good)))] + body[:64]
        elif method not in ("Infer", "Stream") and _parses(method, body):
            # A health or reflection request that parses is a real one (b"" is "is the
            # server SERVING?"): one more byte, a tag of wire type 7, makes it garbage.
            body += b"\x0f"
        return Item(index, cls, raw=body, method=method)
    elif cls == "abandoned":
        return Item(index, cls, request=req)
    elif cls == "bad_token":
        metadata = [
            (("authorization", f"Bearer {rng.bytes(12).hex()}"),),  # a token not configured
            (("authorization", f"Basic {rng.bytes(12).hex()}"),),  # not a bearer token
            (),  # none at all
        ][choice % 3]
        return Item(index, cls, request=req, metadata=metadata)
    else:
        raise ValueError(f"unknown request class {cls!r}")
    return Item(index, cls, request=req)


def _parses(method: str, body: bytes) -> bool:
    """Whether ``body`` is a valid request of the standard service ``method``."""
    try:
        _RAW_MESSAGES[method].FromString(body)
    except Exception:  # DecodeError and whatever else the parser raises: not a request
        return False
    return True


def _spread(count: int, like: tuple[int, ...]) -> list[int]:
    """``count`` elements in a shape of the same rank as ``like`` (the last dim takes it)."""
    return [1] * (len(like) - 1) + [count]


def schedule(seed: int, classes: tuple[str, ...]) -> Callable[[int], str]:
    """The class of request ``i``: every class once first, then the weighted mix."""
    weights = np.array([WEIGHTS[c] for c in classes])
    cum = np.cumsum(weights / weights.sum())

    def cls(i: int) -> str:
        if i < len(classes):
            return classes[i]
        u = np.random.default_rng([seed, i, 1]).random()
        return classes[min(int(np.searchsorted(cum, u)), len(classes) - 1)]

    return cls


# ---------------------------------------------------------------- run


@dataclass
class Report:
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # INTERNAL/UNKNOWN, per class
    valid_sent: int = 0
    valid_failed: int = 0
    valid_example: str = ""
    accepted_hostile: int = 0  # random bytes answered OK, bad tokens not UNAUTHENTICATED
    accepted_example: str = ""
    crashed: bool = False
    crash_output: str = ""
    hangs: int = 0
    probe_ms: list[float] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (t_s, MB)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def sent(self) -> int:
        return sum(sum(c.values()) for c in self.codes.values())

    @property
    def internal_unknown(self) -> int:
        return sum(n for c in self.codes.values() for k, n in c.items() if k in BAD_CODES)

    @property
    def rss_peak_mb(self) -> float:
        return max((m for _, m in self.rss_mb), default=0.0)

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb

    @property
    def health_p99_ms(self) -> float:
        return pct(self.probe_ms, 99)

    def rss_floor_mb(self, window_s: float = RSS_WINDOW_S) -> list[tuple[float, float]]:
        """The lowest RSS of each ``window_s`` window: the resident floor, without the
        transient peaks that refused bombs cause while they are being decoded."""
        floors: dict[int, tuple[float, float]] = {}
        for t, m in self.rss_mb:
            k = int(t // window_s)
            if (k + 1) * window_s > self.elapsed_s:
                continue  # a partial window at the end (and the probes after the run)
            if k not in floors or m < floors[k][1]:
                floors[k] = (k * window_s, m)
        return [floors[k] for k in sorted(floors)]

    def rss_slope_mb_per_min(self) -> float:
        """Least-squares slope of the RSS floor over the second half of the run."""
        half = [(t, m) for t, m in self.rss_floor_mb() if t >= self.elapsed_s / 2]
        if len(half) < 3:
            return 0.0
        ts, ms = np.array(half).T
        return float(np.polyfit(ts / 60.0, ms, 1)[0])

    def record(self, item: Item, code: str, detail: str = "", ok_answer: bool = True) -> None:
        self.codes.setdefault(item.cls, Counter())[code] += 1
        if code in BAD_CODES and item.cls not in self.examples:
            self.examples[item.cls] = f"#{item.index}: {code}: {detail[:160]}"
        if (item.cls == "random_bytes" and code == "OK") or (
            item.cls == "bad_token" and code != "UNAUTHENTICATED"
        ):
            self.accepted_hostile += 1
            self.accepted_example = self.accepted_example or (
                f"#{item.index} {item.cls}: {code}: {detail[:160]}"
            )
        if item.cls == "valid":
            self.valid_sent += 1
            if code != "OK" or not ok_answer:
                self.valid_failed += 1
                self.valid_example = self.valid_example or f"#{item.index}: {code}: {detail[:160]}"


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _code_name(code: int) -> str:
    try:
        return grpc.StatusCode(_GRPC_BY_VALUE[code]).name if code else "OK"
    except KeyError:
        return f"CODE_{code}"


_GRPC_BY_VALUE = {c.value[0]: c.value for c in grpc.StatusCode}


def _answer_ok(t: Templates, result: pb.FrameResult) -> bool:
    if result.status_code != 0:
        return False
    if t.detection:
        d = result.detections
        return result.HasField("detections") and len(d.boxes) == 4 * len(d.scores)
    return result.WhichOneof("output") is not None


class Fuzzer:
    def __init__(
        self,
        edge: EdgeProcess,
        templates: Templates,
        *,
        seed: int,
        streams: int,
        token: str | None,
        huge: bool,
    ) -> None:
        self.edge = edge
        self.t = templates
        self.seed = seed
        self.streams = streams
        self.token = token
        self.huge = huge
        self.report = Report()
        classes = tuple(c for c in CLASSES if c != "bad_token" or token)
        if not token:
            self.report.skipped.append("bad_token (--no-auth: the edge takes no tokens)")
        self.cls = schedule(seed, classes)
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=4 * streams)
        self._meta = (("authorization", f"Bearer {token}"),) if token else ()
        self._start = 0.0
        self.stop = asyncio.Event()

    def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            self.edge.address,
            options=[
                ("grpc.max_send_message_length", MAX_CLIENT_MESSAGE),
                ("grpc.max_receive_message_length", MAX_CLIENT_MESSAGE),
            ],
        )

    def _metadata(self, item: Item) -> tuple[tuple[str, str], ...]:
        return self._meta if item.metadata is None else item.metadata

    # -- side task: health, status, RSS, crash ----------------------------------------

    def probe(
        self, rss_every_s: float, halt: threading.Event, loop: asyncio.AbstractEventLoop
    ) -> None:
        """In its own thread, on a blocking channel: the sender's busy event loop must not
        delay the probes (only the GIL's switch interval, 5 ms, can)."""
        proc = self.edge.proc
        assert proc is not None
        with grpc.insecure_channel(self.edge.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.EdgeInferenceStub(channel)
            last_rss, n = -rss_every_s, 0
            while not halt.is_set():
                if proc.poll() is not None:
                    self.report.crashed = True
                    self.report.crash_output = "\n".join(list(self.edge.output)[-15:])
                    loop.call_soon_threadsafe(self.stop.set)
                    return
                t0 = time.perf_counter()
                try:
                    if n % 2:
                        stub.Status(pb.StatusRequest(), timeout=5, metadata=self._meta)
                    else:
                        request = health_pb2.HealthCheckRequest()
                        health.Check(request, timeout=5, metadata=self._meta)
                    ms = (time.perf_counter() - t0) * 1000
                except grpc.RpcError:
                    ms = (time.perf_counter() - t0) * 1000
                    self.report.hangs += ms >= HANG_MS  # a fast refusal is no hang
                else:
                    self.report.hangs += ms > HANG_MS
                self.report.probe_ms.append(ms)
                n += 1
                now = time.monotonic() - self._start
                if now - last_rss >= rss_every_s:
                    self.report.rss_mb.append((now, _rss_mb(proc.pid)))
                    last_rss = now
                halt.wait(PROBE_EVERY_S)

    # -- senders ----------------------------------------------------------------------

    async def _special(self, channel: grpc.aio.Channel, item: Item) -> bool:
        """Items that need their own call; True when handled."""
        if item.cls == "random_bytes":
            await self._send_raw(channel, item)
            return True
        if item.cls == "abandoned":
            call = pb_grpc.EdgeInferenceStub(channel).Stream(metadata=self._meta)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call.write(item.request)
                if item.index % 2:
                    await asyncio.sleep(0.02)
            call.cancel()  # no read, no half-close: the client vanished
            self.report.record(item, "ABANDONED")
            return True
        return False

    async def _send_raw(self, channel: grpc.aio.Channel, item: Item) -> None:
        """Random bytes as the body of ``item.method``: every answer they get is recorded
        (a Stream's own per-frame status, not the stream's OK)."""
        method, timeout = item.method, ANSWER_TIMEOUT_S
        try:
            if method == "Infer":
                await channel.unary_unary(f"{SERVICE}/Infer")(
                    item.raw, timeout=timeout, metadata=self._meta
                )
            elif method == "Check":
                check = channel.unary_unary(HEALTH_CHECK)
                await check(item.raw, timeout=timeout, metadata=self._meta)
            else:
                path = f"{SERVICE}/Stream" if method == "Stream" else REFLECTION
                call = channel.stream_stream(path)(timeout=timeout, metadata=self._meta)
                await call.write(item.raw)
                await call.done_writing()
                answers = [answer async for answer in call]
                await call.code()
                if method == "Stream":  # one FrameResult, with the frame's own status
                    results = [pb.FrameResult.FromString(a) for a in answers]
                    if not results:
                        self.report.record(item, "NO_ANSWER", "Stream: ended without a result")
                    for r in results:
                        self.report.record(item, _code_name(r.status_code), r.status_message)
                    return
            self.report.record(item, "OK", method)
        except grpc.aio.AioRpcError as e:
            self.report.record(item, e.code().name, f"{method}: {e.details()}")

    async def infer_worker(self) -> None:
        async with self._channel() as channel:
            stub = pb_grpc.EdgeInferenceStub(channel)
            while (item := await self.queue.get()) is not None:
                if await self._special(channel, item):
                    continue
                try:
                    result = await stub.Infer(
                        item.request, timeout=ANSWER_TIMEOUT_S, metadata=self._metadata(item)
                    )
                    self.report.record(
                        item, _code_name(result.status_code), "", _answer_ok(self.t, result)
                    )
                except grpc.aio.AioRpcError as e:
                    self.report.record(item, e.code().name, f"Infer: {e.details()}")

    async def stream_worker(self, wid: int) -> None:
        rng = np.random.default_rng([self.seed, 10**9 + wid])
        async with self._channel() as channel:
            stub = pb_grpc.EdgeInferenceStub(channel)
            call = None
            done = False
            while not done:
                burst: list[Item] = []
                for _ in range(int(rng.integers(1, 5))):
                    item = await self.queue.get()
                    if item is None:
                        done = True
                        break
                    if await self._special(channel, item):
                        continue
                    if item.metadata is not None:  # a bad token is a call of its own
                        await self._stream_once(stub, item)
                        continue
                    burst.append(item)
                if not burst:
                    continue
                if call is None:
                    call = stub.Stream(metadata=self._meta)
                call = await self._stream_burst(call, burst)
            if call is not None:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await call.done_writing()
                call.cancel()

    async def _stream_once(self, stub: pb_grpc.EdgeInferenceStub, item: Item) -> None:
        """A Stream with a bad token, half-closed at once: the edge refuses it on its
        headers. (A frame written meanwhile can race the refusal, and grpc's aio client
        then ends the call INTERNAL "Internal error from Core" on its own side: a failed
        local write, not the edge's answer.) An edge that took the token would end the
        empty stream OK: counted as accepted."""
        call = stub.Stream(iter(()), metadata=self._metadata(item), timeout=ANSWER_TIMEOUT_S)
        try:
            async for _ in call:
                pass
            self.report.record(item, (await call.code()).name, "Stream")
        except grpc.aio.AioRpcError as e:
            self.report.record(item, e.code().name, f"Stream: {e.details()}")

    async def _stream_burst(
        self, call: grpc.aio.StreamStreamCall, burst: list[Item]
    ) -> grpc.aio.StreamStreamCall | None:
        """Write the burst, read its answers; the call to go on with (None: it failed)."""
        pending = {item.index: item for item in burst}
        try:
            for item in burst:
                await call.write(item.request)
            deadline = time.monotonic() + ANSWER_TIMEOUT_S
            while pending:
                left = deadline - time.monotonic()
                result = await asyncio.wait_for(call.read(), max(left, 0.001))
                if result is grpc.aio.EOF:
                    code = await call.code()
                    raise _StreamEnded(code.name, await call.details() or "stream ended early")
                item = pending.pop(result.frame_id, None)
                if item is None:
                    continue  # an answer to an id we did not send: ignore
                self.report.record(
                    item, _code_name(result.status_code), result.status_message,
                    _answer_ok(self.t, result),
                )  # fmt: skip
            return call
        except grpc.aio.AioRpcError as e:
            code, detail = e.code().name, f"Stream: {e.details()}"
        except _StreamEnded as e:
            code, detail = e.code, f"Stream: {e.detail}"
        except TimeoutError:
            code, detail = "NO_ANSWER", f"no answer in {ANSWER_TIMEOUT_S:.0f} s"
        for item in pending.values():
            self.report.record(item, code, detail)
        call.cancel()
        return None

    async def produce(self, requests: int | None, deadline_s: float | None, bar) -> None:
        i = 0
        while not self.stop.is_set():
            now = time.monotonic() - self._start
            if (requests is not None and i >= requests) or (
                deadline_s is not None and now >= deadline_s
            ):
                break
            item = make_item(self.t, self.seed, i, self.cls(i), huge=self.huge)
            await self.queue.put(item)
            i += 1
            if bar is not None:
                bar.update(1 if requests is not None else int(now) - bar.n)
        for _ in range(self.streams + max(1, self.streams // 2)):
            await self.queue.put(None)

    async def warm_up(self) -> None:
        """Valid frames before the RSS baseline: one at a time, then bursts as wide as the
        fuzz's own concurrency, so that the model's first runs at every batch size
        (allocator pools, per-thread scratch of a torch tail) count as the baseline,
        not as growth the hostile traffic caused."""
        async with self._channel() as channel:
            stub = pb_grpc.EdgeInferenceStub(channel)
            for request in self.t.valid * 2:
                await stub.Infer(request, timeout=120, metadata=self._meta)
            width = 4 * (self.streams + max(1, self.streams // 2))
            for _ in range(3):
                await asyncio.gather(
                    *(
                        stub.Infer(self.t.valid[i % len(self.t.valid)], timeout=120,
                                   metadata=self._meta)
                        for i in range(width)
                    )
                )  # fmt: skip

    async def run(self, requests: int | None, minutes: float | None, progress: bool) -> Report:
        await self.warm_up()
        pid = self.edge.proc.pid  # type: ignore[union-attr]
        self.report.rss_before_mb = _rss_mb(pid)
        self._start = time.monotonic()
        deadline_s = None if minutes is None else minutes * 60.0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(
                total=requests if requests is not None else int(deadline_s or 0),
                desc="fuzz" if requests is not None else "soak",
                unit="req" if requests is not None else "s",
                file=sys.stderr,
            )
        rss_every_s = PROBE_EVERY_S  # every probe: /proc is cheap, peaks are short
        halt = threading.Event()
        prober = threading.Thread(
            target=self.probe, args=(rss_every_s, halt, asyncio.get_running_loop()), name="probe"
        )
        prober.start()
        workers = [
            asyncio.create_task(self.stream_worker(w), name=f"stream-{w}")
            for w in range(self.streams)
        ] + [
            asyncio.create_task(self.infer_worker(), name=f"infer-{w}")
            for w in range(max(1, self.streams // 2))
        ]
        producer = asyncio.create_task(self.produce(requests, deadline_s, bar), name="produce")
        try:
            await producer
            # Workers end on their None; a crash stops them (their calls fail fast).
            await asyncio.gather(*workers)
        finally:
            self.report.elapsed_s = time.monotonic() - self._start
            await asyncio.sleep(0.5)  # let the edge drop what the last calls held
            self.stop.set()
            halt.set()
            await asyncio.to_thread(prober.join)
            for w in workers:
                w.cancel()
            if bar is not None:
                bar.close()
        if self.edge.proc.poll() is not None:  # type: ignore[union-attr]
            self.report.crashed = True
            self.report.crash_output = "\n".join(list(self.edge.output)[-15:])
        else:
            self.report.rss_after_mb = _rss_mb(pid)
        return self.report


class _StreamEnded(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def run_fuzz(
    requests: int | None = 2000,
    *,
    model: str = "echo",
    seed: int = 0,
    streams: int = 4,
    minutes: float | None = None,
    token: str | None = None,
    auth: bool = True,
    edge_args: tuple[str, ...] = (),
    progress: bool = False,
    huge: bool = True,
) -> Report:
    """Start an edge process serving ``model``, fuzz it, stop it; the report.

    ``token``: one the edge accepts (``edge_args`` configure it); else, with ``auth``,
    the edge is started with a generated token (an ``[auth] tokens`` config of its
    SHA-256, the way ``splitedge-edge hash-token`` writes it); without, no tokens at
    all (and no ``bad_token`` class)."""
    templates = build_templates(model, seed)
    with tempfile.TemporaryDirectory(prefix="splitedge-fuzz-") as folder:
        args = ["--model", model, *edge_args]
        if token is None and auth:
            token = secrets.token_urlsafe(32)
            config = Path(folder) / "edge.toml"
            config.write_text(
                f'[auth]\ntokens = [{{ client = "fuzz", sha256 = "{hash_token(token)}" }}]\n'
            )
            args += ["--config", str(config)]
        with EdgeProcess(args) as edge:
            fuzzer = Fuzzer(edge, templates, seed=seed, streams=streams, token=token, huge=huge)
            return asyncio.run(fuzzer.run(requests, minutes, progress))


# ---------------------------------------------------------------- output


def report_table(report: Report) -> str:
    rows = []
    for cls in CLASSES:
        codes = report.codes.get(cls)
        if not codes:
            continue
        hist = " ".join(f"{k}:{v}" for k, v in sorted(codes.items(), key=lambda kv: -kv[1]))
        bad = sum(v for k, v in codes.items() if k in BAD_CODES)
        rows.append([cls, sum(codes.values()), bad, hist])
    return table(["class", "sent", "internal_unknown", "answers"], rows)


def verdict(
    report: Report, *, soak: bool = False, max_slope_mb_per_min: float = 1.0
) -> tuple[str, list[str]]:
    """The summary line and the list of failed targets."""
    failed = []
    if report.crashed:
        failed.append("crashes")
    if report.hangs:
        failed.append("hangs")
    if report.internal_unknown:
        failed.append("internal_unknown")
    if report.valid_failed:
        failed.append("valid_failed")
    if report.accepted_hostile:
        failed.append("accepted_hostile")
    if report.health_p99_ms >= TARGET_HEALTH_P99_MS:
        failed.append("health_p99_ms")
    if report.rss_growth_mb >= TARGET_RSS_GROWTH_MB:
        failed.append("rss_growth_mb")
    line = (
        f"crashes={int(report.crashed)} hangs={report.hangs} "
        f"internal_unknown={report.internal_unknown} valid_failed={report.valid_failed} "
        f"accepted_hostile={report.accepted_hostile} "
        f"health_p99_ms={report.health_p99_ms:.1f} rss_growth_mb={report.rss_growth_mb:.1f}"
    )
    if soak:
        slope = report.rss_slope_mb_per_min()
        flat = slope < max_slope_mb_per_min
        if not flat:
            failed.append("rss_slope_mb_per_min")
        line += f" rss_slope_mb_per_min={slope:.2f} flat={'yes' if flat else 'no'}"
    return line, failed


def print_report(report: Report, args: argparse.Namespace) -> list[str]:
    soak = args.minutes is not None
    what = f"{args.minutes:g} min soak" if soak else f"{report.sent} requests"
    print(
        f"# fuzz: {machine()}; model {args.model}, seed {args.seed}, {args.streams} streams + "
        f"{max(1, args.streams // 2)} Infer callers, {what} in {report.elapsed_s:.1f} s"
    )
    print(report_table(report))
    for cls, example in report.examples.items():
        print(f"# {cls}: {example}")
    if report.valid_example:
        print(f"# valid frame not answered correctly: {report.valid_example}")
    if report.accepted_example:
        print(f"# hostile request accepted: {report.accepted_example}")
    for skipped in report.skipped:
        print(f"# skipped: {skipped}")
    if report.crashed:
        print(f"# edge process exited; its last output:\n{report.crash_output}")
    print(
        f"# health/Status probes: {len(report.probe_ms)}, p50 {pct(report.probe_ms, 50):.1f} ms, "
        f"max {max(report.probe_ms, default=0):.1f} ms; RSS before {report.rss_before_mb:.1f} MB, "
        f"after {report.rss_after_mb:.1f} MB, peak {report.rss_peak_mb:.1f} MB"
    )
    if soak:
        floors = report.rss_floor_mb()
        samples = floors[:: max(1, len(floors) // 12)]
        print(
            f"# RSS floor per {RSS_WINDOW_S:g} s (s: MB): "
            + ", ".join(f"{t:.0f}: {m:.1f}" for t, m in samples)
        )
    line, failed = verdict(report, soak=soak, max_slope_mb_per_min=args.max_slope_mb_per_min)
    print(line)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=None, help="requests to send (default 5000)"
    )
    parser.add_argument(
        "--minutes", type=float, default=None, help="soak: send the mix for this long instead"
    )
    parser.add_argument(
        "--model", default="echo", help="echo or a zoo student, e.g. zoo:ghnd-frcnn-small-c12"
    )
    parser.add_argument("--seed", type=int, default=0, help="request i is the same for a seed")
    parser.add_argument("--streams", type=int, default=4, help="concurrent Stream calls")
    parser.add_argument(
        "--quick", action="store_true", help="500 requests, no 23-million-dimension shape"
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        help="a token the edge accepts, for an edge you configure with --edge-arg=--config=FILE "
        "(default: a generated token and config)",
    )
    auth.add_argument(
        "--no-auth", action="store_true", help="an edge without tokens (no bad_token class)"
    )
    parser.add_argument(
        "--edge-arg", action="append", default=[], metavar="ARG",
        help="extra `splitedge-edge serve` argument (repeatable), e.g. --edge-arg=--config=e.toml",
    )  # fmt: skip
    parser.add_argument(
        "--max-slope-mb-per-min", type=float, default=1.0,
        help="soak: the RSS slope (second half) under which memory counts as flat",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.requests is not None and args.minutes is not None:
        parser.error("give --requests or --minutes, not both")
    if args.requests is not None and args.requests < len(CLASSES):
        parser.error(
            f"--requests must be at least {len(CLASSES)} (one per class), got {args.requests}"
        )
    if args.minutes is not None and not args.minutes > 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if args.streams < 1:
        parser.error(f"--streams must be at least 1, got {args.streams}")
    if (
        args.token is None
        and not args.no_auth
        and any(a.startswith("--config") for a in args.edge_arg)
    ):
        parser.error(
            "--edge-arg --config: the fuzz writes its own config with a generated token; "
            "give --token (one your config accepts) or --no-auth"
        )
    requests = (
        None if args.minutes is not None else (args.requests or (500 if args.quick else 5000))
    )
    report = run_fuzz(
        requests,
        model=args.model,
        seed=args.seed,
        streams=args.streams,
        minutes=args.minutes,
        token=args.token,
        auth=not args.no_auth,
        edge_args=tuple(args.edge_arg),
        progress=not args.no_progress and sys.stderr.isatty(),
        huge=not args.quick and args.minutes is None,
    )
    failed = print_report(report, args)
    if failed:
        print(f"# targets missed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
