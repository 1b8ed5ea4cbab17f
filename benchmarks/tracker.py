"""How well the device's tracker carries boxes between detections: recall by age, cost.

    python -m benchmarks.tracker [--frames N] [--seed S] [--clip-frames C] [--methods a,b]

The video is the field benchmark's (320x240 synthetic scenes, ``--clip-frames`` 50 per
scene, seed 1 by default); the boxes are the trained student's own local detections
(``zoo:ghnd-frcnn-small-c12``, the device's model). For every frame ``t`` with five
more frames in its scene, the tracker starts on ``t``'s detections and is updated
frame by frame to ``t + 5``; per age (1..5 frames) the table gives the recall at
IoU 0.5 (the runner's ``score_frame``: greedy, highest score first) over every
ground-truth object of those frames, and the mean wall time of an update. Two
references bound it: ``hold`` (the boxes left where they were detected) and
``motion-perfect`` (each detected box moved and resized as its ground-truth object
was: what a tracker that knew the motion would get; new objects stay missed).
A second pass starts the tracker on ``t`` and first updates it on ``t + 2``, as the
adaptive client does when a background detection of ``t`` ends after the next frame
(ages 2..5, column ``skip1``).

Last line: ``tracker_recall_age4_<method>=<x>`` for each method, then
``detect_recall=<y>``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

from benchmarks._stats import machine, table
from splitedge.mobile_client.tracker import METHODS, BoxTracker
from splitedge.models.data import SceneConfig, VideoConfig, generate_clips
from splitedge.models.data.synthetic import Sample
from splitedge.models.types import Detections
from splitedge.simulations.runner import _gt_boxes, _iou_matrix, score_frame

AGES = (1, 2, 3, 4, 5)
MODEL = "zoo:ghnd-frcnn-small-c12"


def _recall(counts: dict[int, list[int]]) -> dict[int, float]:
    return {a: tp / gt if gt else float("nan") for a, (tp, gt) in counts.items()}


def _starts(n: int, clip: int) -> list[int]:
    return [t for t in range(n) if t % clip + max(AGES) < clip]


def tracked_recall(
    samples: list[Sample], dets: list[Detections], clip: int, method: str, skip_first: bool
) -> tuple[dict[int, float], float]:
    """Recall by age of boxes carried by ``method``; mean update cost (ms)."""
    counts = {a: [0, 0] for a in AGES}
    costs: list[float] = []
    for t in _starts(len(samples), clip):
        tracker = BoxTracker(method=method)
        tracker.init(samples[t].image, dets[t].boxes)
        for f in range(t + (2 if skip_first else 1), t + max(AGES) + 1):
            boxes = tracker.update(samples[f].image).copy()
            costs.append(tracker.last_cost_ms)
            carried = Detections(boxes, dets[t].scores, dets[t].labels)
            _, gt, tp, _ = score_frame(carried, samples[f])
            counts[f - t][0] += tp
            counts[f - t][1] += gt
    return _recall(counts), float(np.mean(costs)) if costs else float("nan")


def reference_recall(
    samples: list[Sample], dets: list[Detections], clip: int, perfect: bool
) -> dict[int, float]:
    """``hold`` (perfect=False) or ``motion-perfect`` recall by age."""
    counts = {a: [0, 0] for a in AGES}
    for t in _starts(len(samples), clip):
        d, s = dets[t], samples[t]
        gt0, ids = _gt_boxes(s), [i.track_id for i in s.instances]
        det = np.asarray(d.boxes, np.float64).reshape(-1, 4)
        iou = _iou_matrix(det, gt0) if len(det) and len(gt0) else None
        for a in AGES:
            later = samples[t + a]
            gt1 = _gt_boxes(later)
            where = {inst.track_id: k for k, inst in enumerate(later.instances)}
            boxes = det.copy()
            if perfect and iou is not None:
                for r in range(len(det)):
                    j = int(np.argmax(iou[r]))
                    if iou[r, j] <= 0.1 or ids[j] not in where:
                        continue
                    g0, g1 = gt0[j], gt1[where[ids[j]]]
                    shift = (g1[:2] + g1[2:]) / 2 - (g0[:2] + g0[2:]) / 2
                    size = (g1[2:] - g1[:2]) / np.maximum(g0[2:] - g0[:2], 1e-6)
                    centre = (det[r, :2] + det[r, 2:]) / 2 + shift
                    half = (det[r, 2:] - det[r, :2]) / 2 * size
                    boxes[r] = np.concatenate([centre - half, centre + half])
            _, gt, tp, _ = score_frame(
                Detections(boxes.astype(np.float32), d.scores, d.labels), later
            )
            counts[a][0] += tp
            counts[a][1] += gt
    return _recall(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames of video (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="the video's seed (default 1)")
    parser.add_argument("--clip-frames", type=int, default=50, help="frames per scene")
    parser.add_argument("--methods", default=",".join(METHODS), help="tracker methods to compare")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        parser.error(f"--methods: one or more of {', '.join(METHODS)}, got {args.methods!r}")
    if args.frames < 1 or args.clip_frames <= max(AGES):
        parser.error(f"--frames must be >= 1 and --clip-frames > {max(AGES)}")

    from splitedge.models.registry import create_model  # torch: only when run

    scene = SceneConfig(width=320, height=240, min_object_px=8.0)
    samples = generate_clips(scene, VideoConfig(), args.seed, args.frames, args.clip_frames)
    model = create_model(MODEL)
    start = time.perf_counter()
    dets = [model.run_local(s.image) for s in tqdm(samples, desc="detect", file=sys.stderr)]
    print(f"{machine()}; {len(samples)} frames, seed {args.seed}, detector "
          f"{(time.perf_counter() - start) * 1000 / len(samples):.0f} ms/frame")  # fmt: skip
    tp = gt = 0
    for d, s in zip(dets, samples, strict=True):
        _, g, t, _ = score_frame(d, s)
        tp, gt = tp + t, gt + g
    detect_recall = tp / gt if gt else float("nan")

    rows: list[list[object]] = []
    summary: list[str] = []

    def fmt(r: dict[int, float], ages: tuple[int, ...] = AGES) -> list[str]:
        return [f"{r[a]:.3f}" if a in ages else "-" for a in AGES]

    for method in methods:
        seq, cost = tracked_recall(samples, dets, args.clip_frames, method, skip_first=False)
        skip, _ = tracked_recall(samples, dets, args.clip_frames, method, skip_first=True)
        rows.append([method, *fmt(seq), " ".join(fmt(skip, AGES[1:])[1:]), f"{cost:.2f}"])
        summary.append(f"tracker_recall_age4_{method}={seq[4]:.3f}")
    rows.append(["hold", *fmt(reference_recall(samples, dets, args.clip_frames, False)), "", ""])
    rows.append(
        ["motion-perfect", *fmt(reference_recall(samples, dets, args.clip_frames, True)), "", ""]
    )
    headers = ["tracker", *[f"age {a}" for a in AGES], "skip1 (ages 2-5)", "ms/update"]
    print(table(headers, rows))
    print(f"detections themselves: recall {detect_recall:.3f}")
    print(" ".join([*summary, f"detect_recall={detect_recall:.3f}"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
