"""``splitedge-train depth-prior``: the recipe of the committed monocular depth prior.

Every step draws a fresh batch of seeded synthetic scenes (:func:`make_scene`, with
random near/far ranges), adds sensor noise and a little blur (the server feeds the
prior an all-in-focus composite of a noisy stack, which is slightly soft), and
trains :mod:`~splitedge.models.depth.prior_net`'s U-Net with the
scale-and-shift-invariant loss on inverse depth. The defaults below *are* the
committed recipe: ``splitedge-train depth-prior`` reproduces
``models/zoo/depth_prior_tiny.pt`` and the JSON record beside it (bit-for-bit only
on the same torch build and thread count). ``--tiny`` is a seconds-long smoke recipe.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from splitedge.models.depth.errors import InvalidInputError
from splitedge.models.depth.fusion import apply_scale_shift, fit_scale_shift
from splitedge.models.depth.metrics import abs_rel
from splitedge.models.depth.prior_net import (
    DEFAULT_CHECKPOINT,
    build_prior_net,
    count_parameters,
    images_to_tensor,
    ssi_loss,
)
from splitedge.models.depth.scenes import make_scene
from splitedge.proto.options import size_hw_arg

log = logging.getLogger(__name__)

__all__ = [
    "RECIPE",
    "TINY_RECIPE",
    "TrainConfig",
    "TrainResult",
    "add_parser",
    "run",
    "train_prior",
]

# Seed ranges of the three synthetic sets never overlap: training draws from
# TRAIN_SEED_BASE * (seed + 1) upwards, validation and the benchmark sit far below.
TRAIN_SEED_BASE = 1_000_000
VAL_SEED_BASE = 700_000


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe; ``size_hw`` is the training crop (height, width)."""

    steps: int = 800
    batch_size: int = 16
    size_hw: tuple[int, int] = (96, 128)
    seed: int = 0
    device: str = "cpu"
    lr: float = 3e-3
    width: int = 16
    val_scenes: int = 24
    threads: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.val_scenes < 1 or self.threads < 1:
            raise InvalidInputError(
                "steps, batch size, validation scenes and threads must all be >= 1"
            )
        h, w = self.size_hw
        if h < 16 or w < 16 or h % 16 or w % 16:
            raise InvalidInputError(f"--size must be >= 16x16 and a multiple of 16, got {w}x{h}")
        if not self.lr > 0:
            raise InvalidInputError(f"learning rate must be > 0, got {self.lr}")


RECIPE = TrainConfig()
TINY_RECIPE = TrainConfig(steps=40, batch_size=4, size_hw=(32, 48), width=8, val_scenes=4)


@dataclass
class TrainResult:
    config: TrainConfig
    num_parameters: int
    training_time_s: float
    final_loss: float  # mean training loss of the last 10% of steps
    val_loss_initial: float
    val_loss_final: float
    val_abs_rel_prior_gtscale: float
    loss_history: list[float] = field(default_factory=list)


def _scene_batch(
    seeds: list[int], size_hw: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """RGB (B, H, W, 3) uint8 with noise/blur augmentation, inverse depth (B, H, W)."""
    h, w = size_hw
    images, inv_depths = [], []
    for scene_seed in seeds:
        near_m = float(rng.uniform(0.2, 0.5))
        far_m = float(rng.uniform(2.0, 6.0))
        scene = make_scene(h, w, seed=scene_seed, near_m=near_m, far_m=far_m)
        rgb = scene.rgb.astype(np.float32)
        if rng.random() < 0.5:
            rgb = cv2.GaussianBlur(rgb, (0, 0), float(rng.uniform(0.3, 1.0)))
        rgb += float(rng.uniform(0.0, 3.0)) * rng.standard_normal(rgb.shape).astype(np.float32)
        images.append(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
        inv_depths.append(1.0 / scene.depth_m)
    return np.stack(images), np.stack(inv_depths).astype(np.float32)


def _validation_set(config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(VAL_SEED_BASE)
    seeds = [VAL_SEED_BASE + i for i in range(config.val_scenes)]
    return _scene_batch(seeds, config.size_hw, rng)


def _evaluate(
    net: Any, images: np.ndarray, inv_depths: np.ndarray, device: str
) -> tuple[float, float]:
    """(SSI loss, AbsRel of the prior with scale/shift fitted to ground truth)."""
    import torch

    net.eval()
    with torch.inference_mode():
        pred = net(images_to_tensor(images).to(device)).float().cpu()
        loss = float(ssi_loss(pred, torch.from_numpy(inv_depths)))
    errors = []
    for rel, inv in zip(pred.numpy(), inv_depths, strict=True):
        fit = fit_scale_shift(rel, inv.astype(np.float64), robust=False)
        errors.append(abs_rel(apply_scale_shift(rel, fit), 1.0 / inv))
    return loss, float(np.mean(errors))


def train_prior(config: TrainConfig, *, progress: bool = True) -> tuple[Any, TrainResult]:
    """Train a prior network with ``config``; returns (network in eval mode, result)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    # channels_last runs these small convolutions about twice as fast on x86 CPUs.
    net = build_prior_net(config.width).to(config.device, memory_format=torch.channels_last)
    val_images, val_inv = _validation_set(config)
    val_loss_initial, _ = _evaluate(net, val_images, val_inv, config.device)

    optimiser = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    warmup = max(1, config.steps // 20)

    def lr_factor(step: int) -> float:
        # Linear warm-up, then cosine decay to zero: stable for BatchNorm from scratch.
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, config.steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    history: list[float] = []
    first_seed = TRAIN_SEED_BASE * (config.seed + 1)
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc="depth-prior", unit="step", disable=not progress)
    for step in bar:
        net.train()
        seeds = [first_seed + step * config.batch_size + j for j in range(config.batch_size)]
        images, inv = _scene_batch(seeds, config.size_hw, rng)
        x = images_to_tensor(images).to(config.device, memory_format=torch.channels_last)
        pred = net(x)
        loss = ssi_loss(pred, torch.from_numpy(inv).to(config.device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        history.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(history[-50:]):.4f}")
    training_time_s = time.perf_counter() - start
    val_loss_final, val_abs_rel = _evaluate(net, val_images, val_inv, config.device)
    tail = history[-max(1, config.steps // 10) :]
    result = TrainResult(
        config=config,
        num_parameters=count_parameters(net),
        training_time_s=training_time_s,
        final_loss=float(np.mean(tail)),
        val_loss_initial=val_loss_initial,
        val_loss_final=val_loss_final,
        val_abs_rel_prior_gtscale=val_abs_rel,
        loss_history=history,
    )
    return net.eval(), result


def save_checkpoint(net: Any, result: TrainResult, out: Path) -> Path:
    """Write ``out`` (a state_dict) and its ``.json`` record beside it; returns the JSON path."""
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, out)
    cfg = asdict(result.config)
    cfg["size_hw"] = list(result.config.size_hw)
    record = {
        "name": out.stem,
        "task": "monocular relative inverse depth (prior for HybridDepth fusion)",
        "architecture": f"TinyDepthUNet(width={result.config.width})",
        "recipe": cfg,
        "command": (
            "splitedge-train depth-prior "
            + ("" if out.resolve() == DEFAULT_CHECKPOINT else f"--out {out} ")
            + f"--steps {cfg['steps']} "
            f"--batch-size {cfg['batch_size']} --size {cfg['size_hw'][1]}x{cfg['size_hw'][0]} "
            f"--seed {cfg['seed']} --device {cfg['device']}"
        ),
        "seed": result.config.seed,
        "num_parameters": result.num_parameters,
        "checkpoint_bytes": out.stat().st_size,
        "training_time_s": round(result.training_time_s, 1),
        "final_loss": round(result.final_loss, 5),
        "validation": {
            "scenes": result.config.val_scenes,
            "seed_base": VAL_SEED_BASE,
            "loss_initial": round(result.val_loss_initial, 5),
            "loss_final": round(result.val_loss_final, 5),
            "abs_rel_prior_gtscale": round(result.val_abs_rel_prior_gtscale, 4),
        },
        "torch": torch.__version__,
        "trained_on": datetime.date.today().isoformat(),
    }
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return json_path


def add_parser(subparsers: Any) -> None:
    """Register the ``depth-prior`` sub-command (defaults: the committed recipe)."""
    r = RECIPE
    p = subparsers.add_parser(
        "depth-prior",
        help="train the tiny monocular depth prior on synthetic scenes",
        description="Train the monocular relative-inverse-depth prior used by the DepthFromFocus "
        "endpoint. Defaults reproduce models/zoo/depth_prior_tiny.pt; --tiny is a smoke run.",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="checkpoint path; a .json record is written beside it "
        "(default: the package's zoo/depth_prior_tiny.pt; --tiny needs an explicit --out)",
    )
    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {r.steps})")
    p.add_argument(
        "--batch-size", type=int, default=None, help=f"scenes per step (default {r.batch_size})"
    )
    p.add_argument(
        "--size",
        type=size_hw_arg(),
        default=None,
        metavar="WIDTHxHEIGHT",
        help=f"training frame size (default {r.size_hw[1]}x{r.size_hw[0]})",
    )
    p.add_argument("--seed", type=int, default=r.seed, help=f"random seed (default {r.seed})")
    p.add_argument("--device", default=r.device, help=f"torch device (default {r.device})")
    p.add_argument(
        "--threads", type=int, default=r.threads, help=f"torch CPU threads (default {r.threads})"
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help=f"smoke recipe: {TINY_RECIPE.steps} steps of {TINY_RECIPE.batch_size} "
        f"{TINY_RECIPE.size_hw[1]}x{TINY_RECIPE.size_hw[0]} scenes, width {TINY_RECIPE.width}",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe (or the tiny one) with the flags given on the command line applied."""
    base = TINY_RECIPE if args.tiny else RECIPE
    return TrainConfig(
        steps=args.steps if args.steps is not None else base.steps,
        batch_size=args.batch_size if args.batch_size is not None else base.batch_size,
        size_hw=args.size if args.size is not None else base.size_hw,
        seed=args.seed,
        device=args.device,
        lr=base.lr,
        width=base.width,
        val_scenes=base.val_scenes,
        threads=args.threads,
    )


def run(args: argparse.Namespace) -> int:
    """Train, save the checkpoint and its JSON record, print a one-line summary."""
    config = config_from_args(args)
    if args.out is None and args.tiny:
        # A smoke run must never replace the committed checkpoint by accident.
        raise InvalidInputError("--tiny needs --out (the default is the committed checkpoint)")
    out = Path(args.out) if args.out is not None else DEFAULT_CHECKPOINT
    net, result = train_prior(config, progress=not args.no_progress)
    json_path = save_checkpoint(net, result, out)
    print(
        f"depth-prior: {result.num_parameters} params, {result.training_time_s:.0f} s, "
        f"final loss {result.final_loss:.4f}, val AbsRel (gt scale) "
        f"{result.val_abs_rel_prior_gtscale:.3f} -> {out} (+ {json_path.name})"
    )
    return 0
