"""``splitedge-train prefilter``: train a prefilter, pick its threshold, measure the saving.

Frames come from the synthetic generator, half still frames (its default share
of empty frames), half video frames (objects entering and leaving); a frame is
positive when it holds at least one annotated object (distractor-only frames are
negatives). The threshold is set on the fixed-seed validation frames (stills and
videos of the validation seed) for recall >= 0.99; recall and the share of uplink
saved are then measured on held-out synthetic videos
(:func:`splitedge.models.data.generate_video`, seed 77). Writes
``prefilter-<input>.pt`` and its zoo record (kind ``prefilter``; load it with
:func:`splitedge.models.prefilter.load_prefilter`, or give it to the
``bottleneck`` model as ``prefilter=<file>``).
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from splitedge.models import zoo
from splitedge.models.data import SceneConfig, VideoConfig, generate_image, generate_video
from splitedge.models.prefilter import (
    INPUTS,
    TARGET_RECALL,
    Prefilter,
    build_net,
    frames_to_tensor,
    recall_and_drop,
    resolve_path,
    save_prefilter,
    threshold_for_recall,
)
from splitedge.training.teacher_data import VAL_DATA_SEED

VIDEO_SEED = 77
_INPUT_WORDS = {"head": "student head's stride-4 features", "frame": "120x160 frame"}


@dataclass
class PrefilterRecipe:
    input_kind: str = "frame"
    student: str | None = None  # student checkpoint (head prefilter)
    train_frames: int = 2400
    val_frames: int = 400
    iterations: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    data_seed: int = 1
    videos: int = 16
    target_recall: float = TARGET_RECALL
    threads: int = 1


TINY = {"train_frames": 96, "val_frames": 120, "iterations": 60, "batch_size": 16, "videos": 2}


def _frames(seed: int, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` frames of ``seed``: half stills, half video frames (objects enter and leave)."""
    stills = count // 2
    samples = [generate_image(SceneConfig(), seed, i) for i in range(stills)]
    video = 0
    while len(samples) < count:
        # Video streams are keyed apart from still streams, so one seed serves both.
        samples += generate_video(SceneConfig(), VideoConfig(), seed, video)[: count - len(samples)]
        video += 1
    labels = np.asarray([len(s.instances) > 0 for s in samples], bool)
    return [s.image for s in samples], labels


def _scores(prefilter: Any, images: list[np.ndarray], chunk: int = 32) -> np.ndarray:
    return np.concatenate(
        [prefilter.scores(images[i : i + chunk]) for i in range(0, len(images), chunk)]
    )


def uplink_saving(prefilter: Any, videos: int, seed: int = VIDEO_SEED) -> dict[str, float]:
    """Recall and share of frames dropped on ``videos`` synthetic videos."""
    images, labels = [], []
    for v in range(videos):
        for sample in generate_video(SceneConfig(), VideoConfig(), seed, v):
            images.append(sample.image)
            labels.append(len(sample.instances) > 0)

    labels_arr = np.asarray(labels, bool)
    recall, dropped = recall_and_drop(_scores(prefilter, images), labels_arr, prefilter.threshold)
    return {
        "video_frames": len(images),
        "video_empty_share": round(float(1.0 - labels_arr.mean()), 4),
        "video_recall": round(recall, 4),
        "video_uplink_saved": round(dropped, 4),
    }


def train_prefilter(recipe: PrefilterRecipe, progress: bool = True) -> Any:
    """Train; returns a :class:`~splitedge.models.prefilter.Prefilter` with its metrics."""
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    start = time.perf_counter()
    images, labels = _frames(recipe.data_seed, recipe.train_frames)
    net = build_net(recipe.input_kind, recipe.student).train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.iterations)
    # Positives outnumber empty frames 4:1; weigh negatives up so both are learned.
    neg_weight = float(labels.mean() / max(1e-6, 1.0 - labels.mean()))
    losses = []
    bar = tqdm(range(recipe.iterations), desc="prefilter", unit="step", disable=not progress)
    for _ in bar:
        idx = rng.integers(len(images), size=recipe.batch_size)
        batch = frames_to_tensor([images[i] for i in idx])
        if rng.random() < 0.5:
            batch = batch.flip(3)
        target = torch.from_numpy(labels[idx].astype(np.float32))
        weight = torch.where(
            target > 0, torch.ones_like(target), torch.full_like(target, neg_weight)
        )
        loss = F.binary_cross_entropy_with_logits(net(batch), target, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
    prefilter = Prefilter(net.eval(), 0.5, {})
    val_images, val_labels = _frames(VAL_DATA_SEED, recipe.val_frames)
    val_scores = _scores(prefilter, val_images)
    prefilter.threshold = threshold_for_recall(val_scores, val_labels, recipe.target_recall)
    recall, dropped = recall_and_drop(val_scores, val_labels, prefilter.threshold)
    frame = val_images[0]
    prefilter.keep(frame)
    t0 = time.perf_counter()
    for _ in range(5):
        prefilter.keep(frame)
    prefilter.metrics = {
        "input": recipe.input_kind,
        "threshold": round(prefilter.threshold, 6),
        "val_frames": recipe.val_frames,
        "val_empty_share": round(float(1.0 - val_labels.mean()), 4),
        "val_recall": round(recall, 4),
        "val_dropped_share": round(dropped, 4),
        "latency_ms": round((time.perf_counter() - t0) / 5 * 1e3, 2),
        "params": int(sum(p.numel() for p in net.parameters())),
        "loss_first": round(float(np.mean(losses[:10])), 4),
        "loss_last": round(float(np.mean(losses[-10:])), 4),
    }
    prefilter.metrics |= uplink_saving(prefilter, recipe.videos)
    prefilter.metrics["wall_time_s"] = round(time.perf_counter() - start, 1)
    return prefilter


def add_parser(subparsers: Any) -> None:
    """Register ``prefilter`` with ``splitedge-train``."""
    d = PrefilterRecipe()
    p = subparsers.add_parser(
        "prefilter",
        help="train a frame prefilter (threshold for recall >= 0.99)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--input", choices=INPUTS, default=d.input_kind, dest="input_kind")
    p.add_argument("--student", default=None, help="student checkpoint (for --input head)")
    p.add_argument("--name", default=None, help="checkpoint stem (default prefilter-<input>)")
    for flag in ("train_frames", "val_frames", "iterations", "batch_size", "videos"):
        p.add_argument("--" + flag.replace("_", "-"), type=int, default=None)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data-seed", type=int, default=d.data_seed)
    p.add_argument("--target-recall", type=float, default=d.target_recall)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--tiny", action="store_true", help="the test-sized recipe")
    p.add_argument("--out", type=Path, default=None, help="output folder (models/zoo)")
    p.add_argument("--no-zoo", action="store_true", help="do not write a zoo record")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    sizes = dict(TINY) if args.tiny else {}
    for key in ("train_frames", "val_frames", "iterations", "batch_size", "videos"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    student = str(resolve_path(args.student)) if args.student else None
    recipe = PrefilterRecipe(
        input_kind=args.input_kind,
        student=student,
        lr=args.lr,
        seed=args.seed,
        data_seed=args.data_seed,
        target_recall=args.target_recall,
        threads=args.threads,
        **sizes,
    )
    prefilter = train_prefilter(recipe, progress=not args.no_progress)
    name = args.name or f"prefilter-{recipe.input_kind}"
    out_dir = args.out if args.out is not None else zoo.ZOO_DIR
    path = save_prefilter(prefilter, Path(out_dir) / f"{name}.pt")
    print(f"prefilter: wrote {path} ({path.stat().st_size} bytes): {prefilter.metrics}")
    if not args.no_zoo:
        command = (
            f"splitedge-train prefilter --input {recipe.input_kind} --name {name} "
            f"--seed {recipe.seed} --data-seed {recipe.data_seed} --threads {recipe.threads}"
            + (f" --student {args.student}" if args.student else "")
            + (" --tiny" if args.tiny else "")
        )
        entry = zoo.ZooEntry(
            name=name,
            kind="prefilter",
            builder="prefilter",  # not a SplitModel: load with prefilter.load_prefilter
            checkpoint=path.name,
            recipe=command,
            metrics=dict(prefilter.metrics),
            training={
                **{k: v for k, v in vars(recipe).items() if k != "student"},
                "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
            },
            description=f"prefilter on the {_INPUT_WORDS[recipe.input_kind]}, "
            f"threshold for recall >= {recipe.target_recall}",
        )
        print(f"zoo record: {zoo.write_entry(entry, out_dir)}")
    return 0
