"""Branch profiles measured from the real system, and the link model that predicts with them.

A :class:`CostProfile` records, per candidate (branch, bit depth): device time (head +
encode on this machine, or the whole model for ``local``), payload bytes and the
bytes that actually cross the link each way (gRPC/HTTP2 framing included, read
from the emulated link's counters), server decode/encode time and tail time per
batch size, plus the fixed per-frame overhead of the round trip (gRPC, relay,
event loops). The oracle, Neurosurgeon and the discrete-event simulator read
their costs from it. :func:`measure_cost_profile` measures one against a real edge
server process through a real (very fast) emulated link; :func:`measure_tracker` adds
the device's tracker, alone and beside the device's own model; ``save``/``load`` keep
it as JSON.

:class:`LinkModel` is the emulated link in closed form: a direction's trace is cut
into 1500-byte delivery opportunities where its cumulative capacity crosses a
multiple of 1500 B (as ``mm-link`` and :class:`~splitedge.simulations.link.EmulatedLink`
do), a message of ``n`` bytes leaves at the ``ceil(n / 1500)``-th opportunity
after it is queued, FIFO behind whatever is queued already.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.mobile_client.policy import Candidate
from splitedge.simulations.traces import PACKET_BYTES, BandwidthTrace, constant

__all__ = [
    "CandidateProfile",
    "CostProfile",
    "CostProfileError",
    "LinkModel",
    "measure_cost_profile",
    "measure_tracker",
]

_PACKET_MEGABITS = PACKET_BYTES * 8 / 1e6
# Absorbs float rounding so a capacity landing exactly on a packet boundary counts.
_EPS = 1e-9


class CostProfileError(ValueError):
    """A profile file that cannot be read, or a candidate the profile does not know."""


@dataclass
class CandidateProfile:
    """What one candidate costs; times in ms, sizes in bytes (medians of the samples)."""

    label: str
    branch: str
    bits: int | None
    remote: bool
    device_ms: float  # head + encode (local: the whole model)
    payload_bytes: float = 0.0
    uplink_wire_bytes: float = 0.0
    downlink_wire_bytes: float = 0.0
    decode_ms: float = 0.0
    server_encode_ms: float = 0.0
    tail_ms_by_batch: dict[int, float] = field(default_factory=dict)  # the whole batch's tail
    accuracy: float | None = None  # optional, for ordering by accuracy
    device_ms_samples: list[float] = field(default_factory=list)
    tail_ms_samples: list[float] = field(default_factory=list)  # batch size 1

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.branch, self.bits, self.remote)

    def tail_ms(self, batch_size: int) -> float:
        """Tail time of a batch: measured, else linear between/beyond the measured sizes."""
        table = self.tail_ms_by_batch
        if not table:
            return 0.0
        if batch_size in table:
            return table[batch_size]
        sizes = sorted(table)
        if len(sizes) == 1:
            return table[sizes[0]] * batch_size / sizes[0]
        lo = max([s for s in sizes if s < batch_size], default=sizes[0])
        hi = min([s for s in sizes if s > batch_size], default=sizes[-1])
        if lo == hi:  # beyond the table: extend the last slope
            lo, hi = sizes[-2], sizes[-1]
        slope = (table[hi] - table[lo]) / (hi - lo)
        return max(0.0, table[lo] + slope * (batch_size - lo))

    def server_ms(self, batch_size: int = 1) -> float:
        return self.decode_ms + self.tail_ms(batch_size) + self.server_encode_ms


@dataclass
class CostProfile:
    model: str
    candidates: dict[str, CandidateProfile]  # by Candidate.label
    overhead_ms: float = 0.0  # per-frame round-trip cost beyond link bytes and server time
    overhead_ms_samples: list[float] = field(default_factory=list)
    measured_on: str = ""
    created_unix_s: float = 0.0
    # The device's tracker, per update (ms; :func:`measure_tracker`): alone, and beside the
    # device's own model running (the session's background detection). Empty: not measured.
    tracker_ms_samples: list[float] = field(default_factory=list)
    tracker_busy_ms_samples: list[float] = field(default_factory=list)

    def get(self, candidate: Candidate) -> CandidateProfile:
        try:
            return self.candidates[candidate.label]
        except KeyError:
            raise CostProfileError(
                f"profile of {self.model!r} has no candidate {candidate.label!r}; "
                f"it has: {', '.join(self.candidates)}"
            ) from None

    def predict_ms(
        self,
        candidate: Candidate,
        uplink_mbps: float,
        *,
        downlink_mbps: float | None = None,
        delay_ms: float = 0.0,
    ) -> float:
        """Latency at steady rates (no queueing): device + transfers + delays + server."""
        cp = self.get(candidate)
        if not cp.remote:
            return cp.device_ms
        down = uplink_mbps if downlink_mbps is None else downlink_mbps
        up_ms = _steady_transfer_ms(cp.uplink_wire_bytes, uplink_mbps)
        down_ms = _steady_transfer_ms(cp.downlink_wire_bytes, down)
        return cp.device_ms + up_ms + down_ms + 2 * delay_ms + cp.server_ms(1) + self.overhead_ms

    @property
    def local(self) -> CandidateProfile | None:
        return next((c for c in self.candidates.values() if not c.remote), None)

    # ------------------------------------------------------------ JSON

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        for cp in data["candidates"].values():
            cp["tail_ms_by_batch"] = {str(k): v for k, v in cp["tail_ms_by_batch"].items()}
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> CostProfile:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CostProfileError(f"{path}: cannot read profile: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise CostProfileError(f"{path}: not JSON: {exc}") from exc
        try:
            candidates = {}
            for label, cp in data.pop("candidates").items():
                cp["tail_ms_by_batch"] = {
                    int(k): float(v) for k, v in cp["tail_ms_by_batch"].items()
                }
                candidates[label] = CandidateProfile(**cp)
            profile = cls(candidates=candidates, **data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CostProfileError(f"{path}: not a splitedge profile: {exc!r}") from exc
        for name in ("tracker_ms_samples", "tracker_busy_ms_samples"):
            samples = getattr(profile, name)
            if not isinstance(samples, list) or not all(
                isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t < math.inf
                for t in samples
            ):
                raise CostProfileError(
                    f"{path}: {name} must be a list of times in ms (>= 0), got {samples!r:.80}"
                )
        return profile


def _steady_transfer_ms(size_bytes: float, rate_mbps: float) -> float:
    if size_bytes <= 0:
        return 0.0
    if rate_mbps <= 0:
        return math.inf
    packets = math.ceil(size_bytes / PACKET_BYTES)
    return packets * PACKET_BYTES * 8 / (rate_mbps * 1000)


class LinkModel:
    """One direction of the emulated link over ``trace`` (time 0 = the trace's start)."""

    def __init__(self, trace: BandwidthTrace, offset_s: float = 0.0) -> None:
        # Plain lists and bisect: this runs per frame in the DES, where numpy's
        # per-call overhead on scalars would dominate.
        self.offset_s = float(offset_s)  # time t here is the trace's t + offset_s
        self.starts = [float(s) for s in trace.start_s]
        self.rates = [float(r) for r in trace.rate_mbps]
        self.duration_s = float(trace.duration_s)
        cum = [0.0]
        ends = [*self.starts[1:], self.duration_s]
        for s, e, r in zip(self.starts, ends, self.rates, strict=True):
            cum.append(cum[-1] + r * (e - s))
        self.cum = cum  # megabits at each segment start, and at the period's end
        self.total = cum[-1]
        self.next_free = 0  # index of the first opportunity not yet used

    def fork(self, offset_s: float = 0.0) -> LinkModel:
        """A fresh idle link over the same trace (tables shared), shifted by ``offset_s``."""
        other = object.__new__(LinkModel)
        other.__dict__.update(self.__dict__)
        other.offset_s, other.next_free = float(offset_s), 0
        return other

    def megabits_at(self, t_s: float) -> float:
        loops = math.floor(t_s / self.duration_s)
        rem = t_s - loops * self.duration_s
        i = bisect.bisect_right(self.starts, rem) - 1
        return loops * self.total + self.cum[i] + self.rates[i] * (rem - self.starts[i])

    def time_of(self, megabits: float) -> float:
        """Earliest time the cumulative capacity reaches ``megabits``."""
        if self.total <= 0:
            return math.inf
        loops = math.floor(megabits / self.total)
        rem = megabits - loops * self.total
        if rem <= 0 and megabits > 0:
            loops, rem = loops - 1, self.total
        i = max(0, bisect.bisect_left(self.cum, rem) - 1)
        i = min(i, len(self.rates) - 1)
        while self.rates[i] <= 0 and i + 1 < len(self.rates):
            i += 1
        within = (rem - self.cum[i]) / self.rates[i] if self.rates[i] > 0 else 0.0
        return loops * self.duration_s + self.starts[i] + within

    def send(self, start_s: float, size_bytes: float, *, commit: bool = True) -> float:
        """When the last byte of ``size_bytes`` queued at ``start_s`` leaves (no delay added).

        With ``commit`` the opportunities are taken (FIFO: later sends queue behind);
        without, it only predicts.
        """
        if size_bytes <= 0:
            return start_s
        first = math.floor(self.megabits_at(start_s + self.offset_s) / _PACKET_MEGABITS + _EPS) + 1
        first = max(first, self.next_free)
        last = first + math.ceil(size_bytes / PACKET_BYTES) - 1
        if commit:
            self.next_free = last + 1
        return self.time_of(last * _PACKET_MEGABITS) - self.offset_s


# ---------------------------------------------------------------------- measurement


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def machine_description() -> str:
    import os

    return (
        f"{platform.machine()} x{os.cpu_count()} {platform.system()}, "
        f"python {platform.python_version()}"
    )


async def measure_cost_profile(
    model: str,
    candidates: Sequence[Candidate],
    images: Sequence[np.ndarray],
    *,
    model_options: dict[str, Any] | None = None,
    repeats: int = 5,
    batch_sizes: Sequence[int] = (1,),
    backend: Any = None,
    edge_args: Sequence[str] = (),
) -> CostProfile:
    """Measure ``candidates`` of ``model`` against a real edge server on this machine.

    Device times come from this process (``backend``: the client's head backend,
    default a torch backend for ``model``); server times from the edge's own
    per-frame timing; wire bytes from a real emulated link at 10 Gbps, so that
    framing overhead is counted and transfer time is negligible. Tail time per
    batch size: ``b`` frames sent at once on one stream, with a batching window
    long enough that the server groups them.
    """
    from splitedge.mobile_client import CameraFrame, Client
    from splitedge.mobile_client.heads import TorchHeadBackend
    from splitedge.simulations.link import EmulatedLink
    from splitedge.simulations.processes import EdgeProcess

    if repeats < 1 or not images:
        raise ValueError("measure_cost_profile needs repeats >= 1 and at least one image")
    options = model_options or {}
    if backend is None:
        backend = await asyncio.to_thread(TorchHeadBackend, model, options)
    spec = model + "".join(
        f"{':' if i == 0 else ','}{k}={v}" for i, (k, v) in enumerate(options.items())
    )
    frames = [CameraFrame(i, img, 0) for i, img in enumerate(images)]
    max_batch = max(batch_sizes)
    result: dict[str, CandidateProfile] = {}
    overhead: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edge.toml"
        # A window long enough for concurrent frames to meet in one batch; queue time
        # is not part of what is measured here.
        config.write_text(
            f"[batching]\nmax_batch_size = {max_batch}\nmax_queue_delay_ms = 30.0\n"
            f"queue_capacity = {max(64, 4 * max_batch)}\n"
        )
        edge = await asyncio.to_thread(
            EdgeProcess(
                ["--config", str(config), "--model", spec, "--log-level", "WARNING", *edge_args]
            ).start
        )
        try:
            fast = constant(10_000.0, 3600.0)
            async with (
                EmulatedLink(("127.0.0.1", edge.port), fast, fast) as link,
                Client(link.address, model, backend=backend, deadline_ms=0) as client,
            ):
                for cand in candidates:
                    result[cand.label] = await _measure_one(
                        client, link, cand, frames, repeats, batch_sizes, overhead
                    )
        finally:
            await asyncio.to_thread(edge.stop)
    return CostProfile(
        model=model,
        candidates=result,
        overhead_ms=_median(overhead),
        overhead_ms_samples=overhead,
        measured_on=machine_description(),
        created_unix_s=time.time(),
    )


async def measure_tracker(
    backend: Any,
    images: Sequence[np.ndarray],
    *,
    updates: int = 24,
    boxes: int = 24,
    tracker: Any = None,
) -> tuple[list[float], list[float]]:
    """The device's tracker per update (ms): (alone, beside the device's own model).

    The adaptive session tracks frames while the device's own detection runs in the
    background (:class:`~splitedge.mobile_client.adaptive.AdaptiveSession`); on a small
    device the two share its cores, and the tracker then takes several times its time
    alone (here 4-14 ms in a real run against 0.9 profiled). Each update follows the
    boxes the device's own model finds on one of ``images`` (its time grows with them)
    to the next image; without a local model, ``boxes`` boxes on a grid (as
    ``AdaptiveSession.time_tracker`` warms it). ``updates`` of each kind, the busy ones
    back to back while ``backend.local`` runs (so they fall all along its run), after
    one untimed round. ``backend`` without a local model: the busy list is empty.
    ``tracker``: the one to time (default: a new
    :class:`~splitedge.mobile_client.tracker.BoxTracker`)."""
    from splitedge.mobile_client.adaptive import grid_boxes
    from splitedge.mobile_client.tracker import BoxTracker
    from splitedge.models.types import Detections

    if updates < 1 or len(images) < 1:
        raise ValueError("measure_tracker needs updates >= 1 and at least one image")
    tracker = BoxTracker() if tracker is None else tracker
    has_local = bool(getattr(backend, "has_local", False))
    found: list[np.ndarray] = []
    for image in images if has_local else ():
        pred = await asyncio.to_thread(backend.local, image)
        if isinstance(pred, Detections) and len(pred.boxes):
            found.append(np.asarray(pred.boxes, np.float32).reshape(-1, 4))
        else:
            found.append(grid_boxes(image.shape, boxes))

    def one(i: int) -> float:
        j = i % len(images)
        first, second = images[j], images[(j + 1) % len(images)]
        tracker.init(first, found[j] if found else grid_boxes(first.shape, boxes))
        start = time.perf_counter_ns()
        tracker.update(second)
        return (time.perf_counter_ns() - start) / 1e6

    def alone() -> list[float]:
        one(0)  # lazy initialisation, not counted
        return [one(i) for i in range(updates)]

    def beside(started: threading.Event, done: threading.Event, first: int) -> list[float]:
        # Updates back to back while the model runs, at least one (begun while it ran: a
        # model faster than one update would otherwise never get a sample beside it).
        started.wait()
        out = [one(first)]
        while not done.is_set() and first + len(out) < updates:
            out.append(one(first + len(out)))
        return out

    def model(started: threading.Event, done: threading.Event) -> None:
        started.set()
        try:
            backend.local(images[0])
        finally:
            done.set()

    quiet = await asyncio.to_thread(alone)
    busy: list[float] = []
    while has_local and len(busy) < updates:
        started, done = threading.Event(), threading.Event()
        running = asyncio.create_task(asyncio.to_thread(model, started, done))
        busy += await asyncio.to_thread(beside, started, done, len(busy))
        await running
    return quiet, busy


async def _measure_one(
    client: Any,
    link: Any,
    cand: Candidate,
    frames: list[Any],
    repeats: int,
    batch_sizes: Sequence[int],
    overhead: list[float],
) -> CandidateProfile:
    def frame(i: int) -> Any:
        return frames[i % len(frames)]

    if not cand.remote:
        samples = []
        for i in range(repeats + 1):
            outcome = await client.submit(frame(i), cand.branch)
            if i:  # the first run pays lazy initialisation
                samples.append(outcome.timing.local_ms)
        return CandidateProfile(
            cand.label, cand.branch, cand.bits, False, _median(samples), device_ms_samples=samples
        )
    for i in range(2):  # warm-up: lazy initialisation on both sides
        await client.submit(frame(i), cand.branch, bits=cand.bits)
    before = link.stats()
    device, payload, decode, encode, tail1 = [], [], [], [], []
    for i in range(repeats):
        outcome = await client.submit(frame(i), cand.branch, bits=cand.bits)
        if outcome.source != "edge":
            raise RuntimeError(
                f"profiling {cand.label}: the edge did not answer ({outcome.reason})"
            )
        t = outcome.timing
        device.append(t.head_ms + t.encode_ms)
        payload.append(float(outcome.payload_bytes))
        decode.append(t.server.decode_ms)
        encode.append(t.server.encode_ms)
        tail1.append(t.server.tail_ms)
        overhead.append(t.network_ms)
    after = link.stats()
    tails: dict[int, list[float]] = {1: tail1}
    for b in batch_sizes:
        if b <= 1:
            continue
        for r in range(repeats):
            outcomes = await asyncio.gather(
                *(client.submit(frame(r * b + j), cand.branch, bits=cand.bits) for j in range(b))
            )
            for o in outcomes:
                if o.source == "edge":
                    server = o.timing.server
                    tails.setdefault(server.batch_size, []).append(server.tail_ms)
    return CandidateProfile(
        cand.label,
        cand.branch,
        cand.bits,
        True,
        device_ms=_median(device),
        payload_bytes=_median(payload),
        uplink_wire_bytes=(after.uplink.bytes_in - before.uplink.bytes_in) / repeats,
        downlink_wire_bytes=(after.downlink.bytes_in - before.downlink.bytes_in) / repeats,
        decode_ms=_median(decode),
        server_encode_ms=_median(encode),
        tail_ms_by_batch={b: _median(v) for b, v in sorted(tails.items())},
        device_ms_samples=device,
        tail_ms_samples=tail1,
    )
