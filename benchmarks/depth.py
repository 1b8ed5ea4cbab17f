"""HybridDepth accuracy and offloading cost on a fixed-seed synthetic test set.

    python -m benchmarks.depth [--quick]

Scenes from :func:`make_scene` (seeds 800000 + i, 96x128, 0.3-3 m), each rendered
into a 16-slice focal stack (thin lens f = 8 mm, f/1.4, 5 um pixels, focus
0.28-4 m evenly in dioptres, 1 level of sensor noise). Methods, all with the
committed prior ``models/zoo/depth_prior_tiny.pt``:

* ``dff``: depth from focus alone (the server's focus measure and window);
* ``prior_gtscale``: the prior with scale/shift fitted to ground truth, an upper
  bound of what the prior can give;
* ``prior_dffscale_plain``: the prior scaled by ordinary least squares on every
  DFF pixel, no confidence mask, as the published HybridDepth code does;
* ``prior_dffscale``: the prior scaled by a robust weighted fit on the confident
  DFF pixels (the real pipeline without refinement; ``DepthService`` with
  ``refine=False``);
* ``fused``: the same plus the local refinement (``refine=True``).

The two last rows are what ``DepthService.infer`` returns (float16 depth). The
offloading part starts a real edge server process (``splitedge-edge serve
--depth``) and calls it with the device API ``request_depth`` once per stack
and slice encoding over loopback; it reports request payload bytes and server /
round-trip latency. The last line is
``summary: absrel_fused=<x> absrel_dff=<y> absrel_prior_gtscale=<z>``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import grpc
import numpy as np

from benchmarks._stats import machine, pct, table
from splitedge.edge.depth_service import DepthService
from splitedge.mobile_client.depth import build_request, request_depth
from splitedge.models.depth import (
    Camera,
    FocalStack,
    all_in_focus,
    apply_scale_shift,
    depth_from_focus,
    depth_metrics,
    fit_scale_shift,
    fit_scale_shift_plain,
    focus_sweep_m,
    make_scene,
    render_focal_stack,
)
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.simulations.processes import EdgeProcess

SEED_BASE = 800_000
SIZE_HW = (96, 128)
NEAR_M, FAR_M = 0.3, 3.0
SWEEP_M = (0.28, 4.0)
NUM_SLICES = 16
NOISE_STD = 1.0
CAMERA = Camera(focal_length_mm=8.0, f_number=1.4, pixel_pitch_um=5.0)
METHODS = ("dff", "prior_gtscale", "prior_dffscale_plain", "prior_dffscale", "fused")


@dataclass
class Sample:
    stack: FocalStack
    depth_m: np.ndarray


def test_set(num_scenes: int) -> list[Sample]:
    """The fixed-seed scenes and their rendered stacks."""
    samples = []
    for i in range(num_scenes):
        scene = make_scene(*SIZE_HW, seed=SEED_BASE + i, near_m=NEAR_M, far_m=FAR_M)
        stack = render_focal_stack(
            scene.rgb,
            scene.depth_m,
            focus_sweep_m(*SWEEP_M, NUM_SLICES),
            CAMERA,
            noise_std=NOISE_STD,
            seed=i,
        )
        samples.append(Sample(stack, scene.depth_m))
    return samples


def _service_depth(service: DepthService, stack: FocalStack, refine: bool) -> np.ndarray:
    # zstd slices are lossless, so this measures the pipeline, not the image codec.
    result = service.infer(build_request(stack, image_format="zstd", refine=refine))
    return codec.decode_tensor(wire.tensor_from_pb(result.depth)).astype(np.float32)


def accuracy(service: DepthService, samples: list[Sample]) -> dict[str, np.ndarray]:
    """Per method, (num_scenes, 3) of AbsRel, RMSE (m), delta1."""
    rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in METHODS}
    for sample in samples:
        dff = depth_from_focus(
            sample.stack, method=service.focus_measure, window_px=service.window_px
        )
        prior_rel = np.asarray(service.prior(all_in_focus(sample.stack, dff)), np.float32)
        gt_fit = fit_scale_shift(prior_rel, 1.0 / sample.depth_m.astype(np.float64), robust=False)
        preds = {
            "dff": dff.depth_m,
            "prior_gtscale": apply_scale_shift(prior_rel, gt_fit),
            "prior_dffscale_plain": apply_scale_shift(
                prior_rel, fit_scale_shift_plain(prior_rel, dff.depth_m)
            ),
            "prior_dffscale": _service_depth(service, sample.stack, refine=False),
            "fused": _service_depth(service, sample.stack, refine=True),
        }
        for method, pred in preds.items():
            m = depth_metrics(pred, sample.depth_m)
            rows[method].append((m.abs_rel, m.rmse_m, m.delta1))
    return {m: np.asarray(r) for m, r in rows.items()}


async def offload(
    address: str, samples: list[Sample], formats: tuple[str, ...]
) -> list[list[object]]:
    """One row per slice encoding: payload, reply size, latencies, AbsRel over the wire."""
    rows: list[list[object]] = []
    async with grpc.aio.insecure_channel(address) as channel:
        await request_depth(channel, samples[0].stack, image_format="png")  # warm-up
        for fmt in formats:
            payload, reply, server_ms, rtt_ms, errors = [], [], [], [], []
            for sample in samples:
                response = await request_depth(channel, sample.stack, image_format=fmt, refine=True)
                payload.append(response.payload_bytes)
                reply.append(response.response_bytes)
                server_ms.append(response.timing["server_total_ms"])
                rtt_ms.append(response.timing["round_trip_ms"])
                errors.append(depth_metrics(response.depth_m, sample.depth_m).abs_rel)
            rows.append(
                [
                    fmt,
                    int(np.median(payload)),
                    int(np.median(reply)),
                    pct(server_ms, 50),
                    pct(server_ms, 95),
                    pct(rtt_ms, 50),
                    float(np.mean(errors)),
                ]
            )
    return rows


def stage_times(service: DepthService, samples: list[Sample]) -> list[list[object]]:
    """Median server time per stage (ms) over the set, refine on, zstd slices."""
    stages: dict[str, list[float]] = {}
    for sample in samples:
        result = service.infer(build_request(sample.stack, image_format="zstd", refine=True))
        for field in pb.DepthTiming.DESCRIPTOR.fields:
            stages.setdefault(field.name, []).append(getattr(result.timing, field.name))
    return [[name, pct(values, 50)] for name, values in stages.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="12 scenes, PNG and zstd only (default: 24, +JPEG)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    num_scenes = 12 if args.quick else 24
    formats = ("png", "zstd") if args.quick else ("png", "jpeg", "zstd")
    t0 = time.perf_counter()
    samples = test_set(num_scenes)
    service = DepthService()
    print(f"# benchmarks.depth on {machine()}, torch threads {args.threads}")
    print(
        f"# {num_scenes} scenes {SIZE_HW[0]}x{SIZE_HW[1]}, {NUM_SLICES} slices "
        f"{SWEEP_M[0]}-{SWEEP_M[1]} m, prior {service.prior!r}, DFF {service.focus_measure}/"
        f"{service.window_px}px (rendered in {time.perf_counter() - t0:.1f} s)"
    )
    metrics = accuracy(service, samples)
    print()
    print(
        table(
            ["method", "AbsRel", "RMSE_m", "delta1"],
            [[m, *(float(v) for v in metrics[m].mean(axis=0))] for m in METHODS],
        )
    )
    print()
    print(table(["server stage", "p50_ms"], stage_times(service, samples)))
    print()
    with EdgeProcess(["--depth", "--log-level", "WARNING"]) as edge:
        rows = asyncio.run(offload(edge.address, samples, formats))
    print(
        table(
            [
                "slices",
                "payload_bytes",
                "reply_bytes",
                "server_p50_ms",
                "server_p95_ms",
                "rtt_p50_ms",
                "AbsRel",
            ],
            rows,
        )
    )
    means = {m: float(metrics[m][:, 0].mean()) for m in METHODS}
    print(
        f"summary: absrel_fused={means['fused']:.4f} absrel_dff={means['dff']:.4f} "
        f"absrel_prior_gtscale={means['prior_gtscale']:.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
