"""Learned bottlenecks vs image offloading on the fixed-seed synthetic validation set.

    python -m benchmarks.bottleneck [--quick] [--record]

For every committed student in the zoo (kind ``student``), every branch
``bottleneck-<C>-w<width>-<bits>bit`` (bits 8, 4 and 2) runs head -> codec bytes
(per-tensor min/max quantization + zstd level 3, exactly what the runtime ships)
-> decode -> tail on the validation frames
(:func:`splitedge.training.teacher_data.validation_set`, 32 frames with ``--quick``,
else 64, or ``--frames N``). Printed per branch: mAP@[.5:.95], mAP@.5 (a segmentation student's rows
fill an extra mIoU column instead, shown only when one is benchmarked), bytes/frame
mean and p95, head params and MACs at that width, head latency at 1 thread. The
teacher's ``local`` row and JPEG q50/q75/q95 and PNG bytes of the same frames come
first. Then the slimmable switch cost against loading a separate model, and each
committed prefilter's recall and share of uplink saved on synthetic video.

``--record`` merges the per-branch numbers into the student's zoo record
(``metrics.branches``), which the edge server's Describe reports as profiles.
The last line is ``summary: bytes_vs_jpeg95=<ratio> map_drop=<points> branch=<name>``
for the best branch: the fewest bytes among those within 2 mAP points of the
teacher (else the most accurate one); segmentation students get their own
``segmentation summary: ... miou_drop=<points>`` line before it (it is the last line
when no detector student runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks._stats import machine, pct, table
from splitedge.models import zoo
from splitedge.models.types import TailInput
from splitedge.proto import codec

MAP_DROP_BUDGET = 2.0  # points; the aim
BENCH_BITS = (8, 4, 2)


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    with torch.inference_mode():
        fn()  # warm-up: the first call allocates
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def conv_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every convolution/linear layer in ``module`` on input ``x``."""
    from splitedge.models.slimmable import SlimmableConv2d

    total = 0

    def hook(layer: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        conv = layer.conv if isinstance(layer, SlimmableConv2d) else layer
        if isinstance(conv, nn.Conv2d):
            k = conv.kernel_size[0] * conv.kernel_size[1]
            total += int(output.numel()) * (conv.in_channels // conv.groups) * k
        elif isinstance(conv, nn.Linear):
            total += int(output.numel()) * conv.in_features

    leaves = [
        m
        for m in module.modules()
        if isinstance(m, SlimmableConv2d)
        or (isinstance(m, nn.Conv2d | nn.Linear) and not _inside_slimmable(module, m))
    ]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _inside_slimmable(root: nn.Module, layer: nn.Module) -> bool:
    from splitedge.models.slimmable import SlimmableConv2d

    return any(isinstance(m, SlimmableConv2d) and m.conv is layer for m in root.modules())


def image_rows(frames: list[np.ndarray]) -> dict[str, list[int]]:
    sizes: dict[str, list[int]] = {}
    for quality in (50, 75, 95):
        sizes[f"jpeg-q{quality}"] = [
            codec.encode_image(f, "jpeg", quality).size_bytes for f in frames
        ]
    sizes["png"] = [codec.encode_image(f, "png").size_bytes for f in frames]
    return sizes


def run_branch(model: Any, branch: str, val: Any) -> tuple[dict[str, float], list[int]]:
    """mAP (mIoU for a segmenter) of ``branch`` through real codec bytes, and the bytes
    of every frame."""
    from splitedge.training.teacher_data import detection_metrics, segmentation_metrics

    spec = model.branches[branch]
    sizes: list[int] = []

    def predict(image: np.ndarray) -> Any:
        head = model.run_head(branch, image)
        encoded = {
            name: codec.encode_tensor(t, name, bits=spec.default_bits, compression="zstd")
            for name, t in head.tensors.items()
        }
        sizes.append(sum(e.size_bytes for e in encoded.values()))
        tensors = {name: codec.decode_tensor(e) for name, e in encoded.items()}
        item = TailInput(head.orig_size, head.input_size, tensors=tensors)
        return model.run_tail(branch, [item])[0]

    if model.task == "segmentation":
        return segmentation_metrics(predict, val, model.num_classes), sizes
    return detection_metrics(predict, val), sizes


def switch_vs_reload(name: str, zoo_dir: Path | None, repeats: int = 20) -> dict[str, float]:
    """Width switch (in place) vs building the student again from its checkpoint."""
    from splitedge.models.bottleneck import load_student

    path = zoo.get_entry(name, zoo_dir).checkpoint_path(zoo_dir)
    student, _ = load_student(path)
    widths = student.config.widths
    x = torch.zeros(1, 3, 256, 320)
    t0 = time.perf_counter()
    for i in range(repeats):
        student.head.set_width(widths[i % len(widths)])
    switch_us = (time.perf_counter() - t0) / repeats * 1e6
    t0 = time.perf_counter()
    fresh, _ = load_student(path)
    reload_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    with torch.inference_mode():
        fresh.head(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    steady_ms = _median_ms(lambda: fresh.head(x), 5)
    return {
        "switch_us": switch_us,
        "reload_ms": reload_ms,
        "first_run_ms": first_ms,
        "steady_run_ms": steady_ms,
    }


def _best(candidates: list[tuple[str, float, float]]) -> tuple[str, float, float]:
    """Fewest bytes within the accuracy budget, else the most accurate branch."""
    within = [c for c in candidates if c[2] <= MAP_DROP_BUDGET]
    return min(within, key=lambda c: c[1]) if within else min(candidates, key=lambda c: c[2])


def main(argv: list[str] | None = None) -> int:
    from splitedge.models.bottleneck import CODE_TENSOR
    from splitedge.models.bottleneck_split import branch_name
    from splitedge.models.prefilter import load_prefilter
    from splitedge.training.prefilter_train import uplink_saving
    from splitedge.training.teacher_data import (
        detection_metrics,
        segmentation_metrics,
        validation_set,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 validation frames, not 64")
    parser.add_argument(
        "--frames", type=int, default=None, help="validation frames (overrides --quick's 32 / 64)"
    )
    parser.add_argument("--record", action="store_true", help="write metrics into the zoo")
    parser.add_argument("--student", action="append", default=None, help="zoo student entry")
    parser.add_argument("--zoo-dir", type=Path, default=None, help="zoo folder (models/zoo)")
    args = parser.parse_args(argv)
    if args.frames is not None and args.frames < 1:
        parser.error(f"--frames must be at least 1, got {args.frames}")
    torch.set_num_threads(1)
    val_images = args.frames or (32 if args.quick else 64)
    entries = zoo.list_entries(args.zoo_dir)
    students = args.student or [e.name for e in entries if e.kind == "student"]
    prefilters = [e for e in entries if e.kind == "prefilter"]
    print(f"# bottleneck benchmark: {val_images} validation frames, 1 thread, {machine()}")
    if not students:
        print("# no committed student in models/zoo: train one with `splitedge-train ghnd`")
        return 1
    val = validation_set(val_images)
    frames = [s.image for s in val.samples]
    images = image_rows(frames)
    jpeg95 = float(np.mean(images["jpeg-q95"]))
    rows: list[list[object]] = []
    candidates = []
    seg_candidates = []
    # Column 3 holds mIoU (segmentation rows); it is dropped when no segmenter runs.
    for name in students:
        model = zoo.load(name, args.zoo_dir, branch_bits=BENCH_BITS)
        seg = model.task == "segmentation"
        if seg:
            teacher_m = segmentation_metrics(model.run_local, val, model.num_classes)
            teacher_acc = 100 * teacher_m["mIoU"]
            rows.append(["teacher (local)", "-", "-", teacher_acc, "-", "-", "-", "-", "-"])
        else:
            teacher_m = detection_metrics(model.run_local, val)
            teacher_map = 100 * teacher_m["map"]
            rows.append(
                [
                    "teacher (local)",
                    100 * teacher_m["map"],
                    100 * teacher_m["map50"],
                    "",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                ]
            )
        for fmt, sizes in images.items():
            rows.append(
                [
                    f"offload {fmt}",
                    "",
                    "",
                    "",
                    float(np.mean(sizes)),
                    pct(sizes, 95),
                    "-",
                    "-",
                    "-",
                ]
            )
        head = model.student.head
        frame = frames[0]
        batch, _ = model.preprocess([torch.from_numpy(frame).permute(2, 0, 1).float() / 255])
        # The teacher's own head up to the split point, shipped as is (no bottleneck).
        front = nn.Sequential(*model.rest.front)
        with torch.inference_mode():
            split_bytes = [
                codec.encode_tensor(
                    front(
                        model.preprocess([torch.from_numpy(f).permute(2, 0, 1) / 255.0])[0]
                    ).numpy(),
                    "x",
                    bits=8,
                ).size_bytes
                for f in frames
            ]
        split_stage = getattr(model.rest, "split_stage", "features.3")
        rows.append(
            [
                f"teacher split@{split_stage} 8bit",
                "",
                "",
                "",
                float(np.mean(split_bytes)),
                pct(split_bytes, 95),
                sum(p.numel() for p in front.parameters()),
                f"{conv_macs(front, batch) / 1e6:.1f}M",
                _median_ms(lambda f=front, x=batch: f(x), 10),
            ]
        )
        params = sum(p.numel() for p in head.parameters())
        recorded: dict[str, dict[str, float]] = {}
        for width in sorted(model.config.widths, reverse=True):
            for bits in BENCH_BITS:
                branch = branch_name(model.config.channels, width, bits)
                metrics, sizes = run_branch(model, branch, val)
                head.set_width(width)
                macs = conv_macs(head, batch)
                latency = _median_ms(lambda m=model, b=branch, f=frame: m.run_head(b, f), 10)
                mean_bytes = float(np.mean(sizes))
                if seg:
                    accuracy = ["-", "-", 100 * metrics["mIoU"]]
                else:
                    accuracy = [100 * metrics["map"], 100 * metrics["map50"], ""]
                rows.append(
                    [
                        f"{name} {branch}",
                        *accuracy,
                        mean_bytes,
                        pct(sizes, 95),
                        params,
                        f"{macs / 1e6:.1f}M",
                        latency,
                    ]
                )
                costs = {
                    "bytes_per_frame_mean": round(mean_bytes, 1),
                    "bytes_per_frame_p95": round(pct(sizes, 95), 1),
                    "head_macs": macs,
                    "head_latency_ms": round(latency, 3),
                }
                if seg:
                    recorded[branch] = {
                        "mIoU": round(metrics["mIoU"], 4),
                        "pixel_accuracy": round(metrics["pixel_accuracy"], 4),
                    } | costs
                    seg_candidates.append(
                        (branch, mean_bytes / jpeg95, teacher_acc - 100 * metrics["mIoU"])
                    )
                    continue
                recorded[branch] = {
                    "mAP": round(metrics["map"], 4),
                    "mAP50": round(metrics["map50"], 4),
                } | costs
                candidates.append((branch, mean_bytes / jpeg95, teacher_map - 100 * metrics["map"]))
        if args.record:
            teacher_record = (
                {"teacher_mIoU": round(teacher_m["mIoU"], 4)}
                if seg
                else {"teacher_mAP": round(teacher_m["map"], 4)}
            )
            zoo.record_metrics(
                name,
                {
                    **teacher_record,
                    "val_images": val_images,
                    "jpeg95_bytes_mean": round(jpeg95, 1),
                    "head_params": params,
                    "code_tensor": CODE_TENSOR,
                    "branches": recorded,
                },
                args.zoo_dir,
            )
    header = ["branch", "mAP", "mAP50", "mIoU"]
    if not seg_candidates:
        header.pop()
        rows = [row[:3] + row[4:] for row in rows]
    print(
        table(
            [
                *header,
                "bytes mean",
                "bytes p95",
                "head params",
                "head MACs",
                "head ms",
            ],
            rows,
        )
    )
    print()
    for name in students:
        s = switch_vs_reload(name, args.zoo_dir)
        print(
            f"slimmable {name}: switch width {s['switch_us']:.1f} us (no reload) vs reload "
            f"{s['reload_ms']:.1f} ms + first run {s['first_run_ms']:.1f} ms "
            f"(steady run {s['steady_run_ms']:.1f} ms)"
        )
    for entry in prefilters:
        pre = load_prefilter(entry.checkpoint_path(args.zoo_dir))
        video = uplink_saving(pre, 4 if args.quick else 16)
        m = entry.metrics
        print(
            f"prefilter {entry.name}: val recall {m.get('val_recall')} (threshold "
            f"{pre.threshold:.4f}), video recall {video['video_recall']:.3f}, uplink saved "
            f"{video['video_uplink_saved']:.3f} of {video['video_frames']} frames "
            f"(empty share {video['video_empty_share']:.3f}), {m.get('latency_ms')} ms"
        )
    if not prefilters:
        print("# no committed prefilter in models/zoo: train one with `splitedge-train prefilter`")
    if seg_candidates:
        best = _best(seg_candidates)
        print(
            f"{'segmentation summary' if candidates else 'summary'}: "
            f"bytes_vs_jpeg95={best[1]:.3f} miou_drop={best[2]:.2f} branch={best[0]}"
        )
    if candidates:
        best = _best(candidates)
        print(f"summary: bytes_vs_jpeg95={best[1]:.3f} map_drop={best[2]:.2f} branch={best[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
