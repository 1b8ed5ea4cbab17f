"""``splitedge-train teacher-detector`` / ``teacher-segmenter``: the committed teachers' recipes.

Trains a detector (default the small Faster R-CNN of
:mod:`splitedge.models.small_detectors`) or a segmenter (LR-ASPP MobileNetV3-Small)
on synthetic frames drawn on the fly (:mod:`splitedge.training.teacher_data`), with
flips and scale jitter, AdamW with linear warmup and cosine decay, a tqdm bar
showing the loss, and a periodic validation score (COCO mAP / mIoU on the fixed
validation set). Every validation writes the checkpoint and the zoo record
(``models/zoo/<name>.pt`` + ``.json``), so a run stopped early still leaves its
last checkpoint. ``--tiny`` is the tests' recipe (a few dozen small iterations).

The defaults reproduce the committed entries (bit-for-bit only on the same torch
build and thread count). ``--family fasterrcnn_resnet50_fpn --device cuda
--weights FasterRCNN_ResNet50_FPN_Weights.DEFAULT`` fine-tunes the ResNet-50-FPN
teacher on a GPU (the COCO box predictor is swapped for a 7-class one).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.models import zoo
from splitedge.models.registry import create_model
from splitedge.models.small_detectors import (
    SMALL_DETECTOR,
    SMALL_SEGMENTER,
    SYNTHETIC_NUM_CLASSES,
)
from splitedge.proto.options import size_hw_arg
from splitedge.training.teacher_data import (
    DEFAULT_VAL_IMAGES,
    detection_metrics,
    scene_of,
    segmentation_metrics,
    training_batch,
    validation_set,
)

log = logging.getLogger(__name__)

DETECTOR_ENTRY = "teacher-frcnn-small"
SEGMENTER_ENTRY = "teacher-lraspp-small"
SCALE_JITTER = (0.8, 1.2)  # multiples of min_size drawn per batch


@dataclass(frozen=True)
class TeacherConfig:
    """One teacher recipe. ``size_hw`` is the synthetic frame size."""

    task: str  # "detection" | "segmentation"
    family: str
    name: str
    iterations: int
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    data_seed: int = 0
    size_hw: tuple[int, int] = (240, 320)
    min_size: int = 240
    val_images: int = DEFAULT_VAL_IMAGES
    val_every: int = 250
    device: str = "cpu"
    threads: int = 1
    weights: str | None = None


DETECTOR_RECIPE = TeacherConfig(
    "detection", SMALL_DETECTOR, DETECTOR_ENTRY, iterations=3000, warmup=100, val_every=500
)
SEGMENTER_RECIPE = TeacherConfig(
    "segmentation", SMALL_SEGMENTER, SEGMENTER_ENTRY, iterations=2000, lr=2e-3, val_every=500
)
TINY = {
    "iterations": 30,
    "batch_size": 2,
    "size_hw": (96, 128),
    "min_size": 96,
    "val_images": 4,
    "val_every": 30,
    "warmup": 5,
    "lr": 2e-3,
}


@dataclass
class TeacherResult:
    checkpoint: Path
    record: Path
    losses: list[float]
    metrics: dict[str, float]
    wall_time_s: float


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _build(config: TeacherConfig) -> Any:
    """The split model to train; its ``torch_model`` is the torchvision module."""
    options: dict[str, Any] = {"min_size": config.min_size, "device": config.device}
    if config.weights is None:
        options["num_classes"] = SYNTHETIC_NUM_CLASSES
        return create_model(config.family, init_seed=config.seed, **options)
    # Pretrained (COCO / VOC) weights keep their label space; swap the last layer. A
    # checkpoint of ours already has the synthetic classes: training continues from it.
    if Path(config.weights).is_file():
        options["num_classes"] = SYNTHETIC_NUM_CLASSES
    model = create_model(config.family, weights=config.weights, **options)
    if model.num_classes != SYNTHETIC_NUM_CLASSES:
        _replace_classifier(model, SYNTHETIC_NUM_CLASSES)
    return model


def _replace_classifier(model: Any, num_classes: int) -> None:
    import torch
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

    net = model.torch_model
    if hasattr(net, "roi_heads"):
        old = net.roi_heads.box_predictor
        net.roi_heads.box_predictor = FastRCNNPredictor(old.cls_score.in_features, num_classes)
    elif hasattr(net.classifier, "low_classifier"):  # LR-ASPP
        head = net.classifier
        head.low_classifier = torch.nn.Conv2d(head.low_classifier.in_channels, num_classes, 1)
        head.high_classifier = torch.nn.Conv2d(head.high_classifier.in_channels, num_classes, 1)
    else:
        raise ValueError(f"cannot swap the classifier of {model.name}: only Faster R-CNN / LR-ASPP")
    net.to(model.device)
    model.num_classes = num_classes


def _detection_loss(net: Any, batch: list, device: Any, min_size: int, rng: Any) -> Any:
    import torch

    images, targets = [], []
    for image, _, target in batch:
        images.append(torch.from_numpy(image).to(device).permute(2, 0, 1).float().div_(255.0))
        targets.append(
            {
                "boxes": torch.from_numpy(target.boxes_xyxy).to(device),
                "labels": torch.from_numpy(target.labels).to(device),
            }
        )
    jitter = float(rng.uniform(*SCALE_JITTER))
    net.transform.min_size = (round(min_size * jitter),)
    net.transform.max_size = round(net.transform.min_size[0] * 4 / 3) + 1
    losses = net(images, targets)
    return sum(losses.values())


def _segmentation_loss(
    net: Any, preprocess: Any, batch: list, device: Any, min_size: int, rng: Any
) -> Any:
    import torch
    import torch.nn.functional as F

    images = [
        torch.from_numpy(im).to(device).permute(2, 0, 1).float().div_(255.0) for im, _, _ in batch
    ]
    masks = torch.stack([torch.from_numpy(sem.astype(np.int64)) for _, sem, _ in batch]).to(device)
    h, w = masks.shape[-2:]
    size = (round(h * min_size / min(h, w) * rng.uniform(*SCALE_JITTER)),) * 1
    scale = size[0] / min(h, w)
    out_hw = (round(h * scale), round(w * scale))
    x = torch.stack(images)
    x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    x = (x - preprocess.mean) / preprocess.std
    target = F.interpolate(masks[:, None].float(), size=out_hw, mode="nearest")[:, 0].long()
    logits = F.interpolate(net(x)["out"], size=out_hw, mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, target)


def _validate(model: Any, config: TeacherConfig, val: Any) -> dict[str, float]:
    if config.task == "detection":
        m = detection_metrics(model.run_local, val)
        return {"mAP": m["map"], "mAP50": m["map50"], "mAP75": m["map75"]}
    return segmentation_metrics(model.run_local, val, model.num_classes)


def train_teacher(
    config: TeacherConfig, zoo_dir: Path | None = None, progress: bool = True
) -> TeacherResult:
    """Run ``config``; writes ``<zoo_dir>/<name>.pt`` and its zoo record."""
    import torch
    from tqdm import tqdm

    if config.task not in ("detection", "segmentation"):
        raise ValueError(f"task must be detection or segmentation, got {config.task!r}")
    if config.iterations < 1 or config.batch_size < 1:
        raise ValueError("iterations and batch size must be >= 1")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(config.device)
    model = _build(config)
    net = model.torch_model
    preprocess = model._parts.preprocess
    val = validation_set(config.val_images, scene_of(config.size_hw))
    scene = scene_of(config.size_hw)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.iterations, config.warmup)
    )
    folder = zoo.ZOO_DIR if zoo_dir is None else Path(zoo_dir)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"{config.name}.pt"
    transform = getattr(net, "transform", None)
    eval_sizes = (transform.min_size, transform.max_size) if transform is not None else None
    losses: list[float] = []
    metrics: dict[str, float] = {}
    start = time.perf_counter()
    bar = tqdm(range(config.iterations), desc=config.name, disable=not progress, unit="it")
    for step in bar:
        net.train()
        batch = training_batch(scene, config.data_seed, step, config.batch_size, rng)
        if config.task == "detection":
            loss = _detection_loss(net, batch, device, config.min_size, rng)
        else:
            loss = _segmentation_loss(net, preprocess, batch, device, config.min_size, rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        last = step + 1 == config.iterations
        if (step + 1) % config.val_every == 0 or last:
            net.eval()
            if eval_sizes is not None:
                transform.min_size, transform.max_size = eval_sizes
            metrics = _validate(model, config, val)
            log.info("%s step %d: loss %.3f %s", config.name, step + 1, losses[-1], metrics)
            wall = time.perf_counter() - start
            _save(model, config, checkpoint, folder, losses, metrics, step + 1, wall, last)
    net.eval()
    wall = time.perf_counter() - start
    record = folder / f"{config.name}.json"
    return TeacherResult(checkpoint, record, losses, metrics, wall)


def recipe_command(config: TeacherConfig) -> str:
    sub = "teacher-detector" if config.task == "detection" else "teacher-segmenter"
    flags = [
        f"--family {config.family}",
        f"--name {config.name}",
        f"--iterations {config.iterations}",
        f"--batch-size {config.batch_size}",
        f"--lr {config.lr}",
        f"--size {config.size_hw[1]}x{config.size_hw[0]}",  # WIDTHxHEIGHT
        f"--min-size {config.min_size}",
        f"--seed {config.seed}",
        f"--data-seed {config.data_seed}",
        f"--threads {config.threads}",
        f"--device {config.device}",
    ]
    if config.weights:
        flags.append(f"--weights {config.weights}")
    return f"splitedge-train {sub} " + " ".join(flags)


def _save(
    model: Any,
    config: TeacherConfig,
    checkpoint: Path,
    folder: Path,
    losses: list[float],
    metrics: dict[str, float],
    iterations_done: int,
    wall_s: float,
    complete: bool,
) -> None:
    import torch

    net = model.torch_model
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save(state, checkpoint)
    params = sum(p.numel() for p in net.parameters())
    kind = "teacher-detector" if config.task == "detection" else "teacher-segmenter"
    entry = zoo.ZooEntry(
        name=config.name,
        kind=kind,
        builder=config.family,
        checkpoint=checkpoint.name,
        options={"num_classes": SYNTHETIC_NUM_CLASSES, "min_size": config.min_size},
        recipe=recipe_command(config),
        metrics={**metrics, "params": params, "checkpoint_bytes": checkpoint.stat().st_size},
        training={
            **{k: v for k, v in asdict(config).items() if k not in ("name",)},
            "iterations_done": iterations_done,
            "complete": complete,
            "wall_time_s": round(wall_s, 1),
            "loss_first20": round(float(np.mean(losses[:20])), 4),
            "loss_last20": round(float(np.mean(losses[-20:])), 4),
            "val_images": config.val_images,
            "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        },
        created=datetime.date.today().isoformat(),
        description=f"{config.family} trained on synthetic shapes ({config.task}), 7 classes",
    )
    zoo.write_entry(entry, folder)


def _add(sub: Any, command: str, recipe: TeacherConfig, help_text: str) -> None:
    p = sub.add_parser(command, help=help_text, description=help_text)
    p.add_argument("--family", default=recipe.family, help=f"registry family ({recipe.family})")
    p.add_argument("--name", default=recipe.name, help=f"zoo entry name ({recipe.name})")
    p.add_argument("--iterations", type=int, default=recipe.iterations)
    p.add_argument("--batch-size", type=int, default=recipe.batch_size)
    p.add_argument("--lr", type=float, default=recipe.lr)
    p.add_argument(
        "--size",
        type=size_hw_arg(minimum=32),
        default=recipe.size_hw,
        metavar="WIDTHxHEIGHT",
        help=f"frame size ({recipe.size_hw[1]}x{recipe.size_hw[0]})",
    )
    p.add_argument("--min-size", type=int, default=recipe.min_size)
    p.add_argument("--val-images", type=int, default=recipe.val_images)
    p.add_argument("--val-every", type=int, default=recipe.val_every)
    p.add_argument("--seed", type=int, default=recipe.seed)
    p.add_argument("--data-seed", type=int, default=recipe.data_seed)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument(
        "--weights", default=None, help="torchvision weights name or checkpoint to start from"
    )
    p.add_argument("--zoo-dir", type=Path, default=None, help="output folder (models/zoo)")
    p.add_argument("--tiny", action="store_true", help="the tests' seconds-long recipe")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run, recipe=recipe)


def add_parser(subparsers: Any) -> None:
    """Register ``teacher-detector`` and ``teacher-segmenter`` with ``splitedge-train``."""
    _add(subparsers, "teacher-detector", DETECTOR_RECIPE, "train a teacher detector")
    _add(subparsers, "teacher-segmenter", SEGMENTER_RECIPE, "train a teacher segmenter")


def config_from_args(args: argparse.Namespace) -> TeacherConfig:
    config = replace(
        args.recipe,
        family=args.family,
        name=args.name,
        iterations=args.iterations,
        batch_size=args.batch_size,
        lr=args.lr,
        size_hw=tuple(args.size),
        min_size=args.min_size,
        val_images=args.val_images,
        val_every=args.val_every,
        seed=args.seed,
        data_seed=args.data_seed,
        device=args.device,
        threads=args.threads,
        weights=args.weights,
    )
    return replace(config, **TINY) if args.tiny else config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    result = train_teacher(config, args.zoo_dir, progress=not args.no_progress)
    print(
        f"{config.name}: {len(result.losses)} iterations in {result.wall_time_s:.0f} s, "
        f"loss {np.mean(result.losses[:10]):.3f} -> {np.mean(result.losses[-10:]):.3f}, "
        f"val {result.metrics}; wrote {result.checkpoint} and {result.record}"
    )
    return 0
