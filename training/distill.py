"""``splitedge-train hnd`` / ``ghnd``: distil a bottleneck student from a frozen teacher.

HND (head network distillation) matches the teacher's split-point feature only;
GHND (generalized HND) matches several downstream features, here every input of
the teacher's FPN: the split-point feature itself (``features.3``, stride 8) and
the frozen teacher's ``features.8`` (stride 16) and ``features.12`` (stride 32)
computed *from the decoded feature*, so the loss sees what the tail will see. As in
the paper the loss is the plain sum of the per-feature mean squared errors.

The teacher is frozen (eval mode, no parameter gradients; gradients still flow
through its later stages to the decoder). Quantization is in the loop
(:func:`splitedge.models.bottleneck.fake_quantize`, straight-through), each step
at a bit depth drawn from ``--bits``. Slimmable students follow the sandwich
rule: every step trains the widest width, the narrowest and one random width in
between, accumulating their gradients before one optimiser step.

Fine-tuning (every student recipe): ``--init`` starts from a trained student (a
checkpoint path or ``zoo:<entry>``) instead of a fresh one, and ``--task-weight W``
adds W times the frozen teacher's own task loss against the frames' ground truth,
computed from the features rebuilt from the decoded code (detector: RPN + RoI head
losses on the boxes; segmenter: cross-entropy of the LR-ASPP logits on the class
map), so the student is tuned for what the tail finally outputs, not only for
feature match.

The recipe writes ``<out>/<name>.pt`` (the student, well under 10 MB) and, in the
zoo folder, ``<name>.json`` (kind ``student``, builder ``bottleneck``), so
``splitedge-edge serve --model zoo:<name>`` serves it.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from splitedge.models import zoo
from splitedge.models.bottleneck import (
    BottleneckCheckpointError,
    BottleneckConfig,
    Student,
    load_student,
    save_student,
)
from splitedge.models.bottleneck_split import MODEL_NAME, build_teacher, teacher_rest
from splitedge.models.slimmable import DEFAULT_WIDTHS
from splitedge.models.split import image_to_tensor
from splitedge.proto.options import option_arg, size_hw_arg
from splitedge.training.teacher_data import scene_of, training_batch

LOSSES = ("hnd", "ghnd")
DEFAULT_NAME = {"hnd": "hnd-frcnn-small-c12", "ghnd": "ghnd-frcnn-small-c12"}


class DistillConfigError(ValueError):
    """A distillation setting that cannot work (one line naming the flag)."""


@dataclass
class StudentConfig:
    """What every student recipe sets (the detector's and the segmenter's add to it)."""

    teacher: str = "zoo:teacher-frcnn-small"
    teacher_options: dict[str, Any] = field(default_factory=dict)
    channels: int = 12
    widths: tuple[float, ...] = DEFAULT_WIDTHS
    bits: tuple[int, ...] = (8, 4)
    iterations: int = 4500
    batch_size: int = 4
    lr: float = 2e-3
    seed: int = 0
    data_seed: int = 0
    size_hw: tuple[int, int] = (240, 320)
    threads: int = 1
    init: str | None = None  # a student checkpoint path or zoo:<entry> to start from
    task_weight: float = 0.0  # weight of the teacher's task loss on rebuilt features

    def __post_init__(self) -> None:
        if not (self.task_weight >= 0 and math.isfinite(self.task_weight)):
            raise DistillConfigError(f"--task-weight must be >= 0, got {self.task_weight}")
        if self.iterations < 1 or self.batch_size < 1:
            raise DistillConfigError(
                f"--iterations and --batch-size must be >= 1, got {self.iterations}, "
                f"{self.batch_size}"
            )
        if not self.lr > 0:
            raise DistillConfigError(f"--lr must be > 0, got {self.lr}")
        if min(self.size_hw) < 16:
            h, w = self.size_hw
            raise DistillConfigError(f"--size must be at least 16x16, got {w}x{h}")

    def recipe_line(self, command: str, name: str, extra: str = "") -> str:
        """The ``splitedge-train`` command line that reproduces this run."""
        widths = ",".join(f"{w:g}" for w in self.widths)
        bits = ",".join(str(b) for b in self.bits)
        h, w = self.size_hw
        if self.init:
            extra += f"--init {self.init} "
        if self.task_weight > 0:
            extra += f"--task-weight {self.task_weight:g} "
        return (
            f"splitedge-train {command} --name {name} --teacher {self.teacher} "
            f"--channels {self.channels} --widths {widths} {extra}"
            f"--bits {bits} --iterations {self.iterations} --batch-size {self.batch_size} "
            f"--lr {self.lr:g} --size {w}x{h} --seed {self.seed} --data-seed {self.data_seed} "
            f"--threads {self.threads}"
        )


@dataclass
class DistillConfig(StudentConfig):
    """One detector distillation run; the defaults are the committed student's recipe."""

    loss: str = "ghnd"
    stride: int = 8

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise DistillConfigError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.task_weight > 0 and self.loss != "ghnd":
            raise DistillConfigError("--task-weight needs --loss ghnd (the rebuilt FPN inputs)")
        super().__post_init__()


TINY = {"iterations": 40, "batch_size": 2, "size_hw": (96, 128), "lr": 3e-3}


def sandwich_widths(widths: tuple[float, ...], rng: np.random.Generator) -> list[float]:
    """Widest, narrowest and one random middle width (all of them when there are <= 3)."""
    ordered = sorted(widths, reverse=True)
    if len(ordered) <= 3:
        return ordered
    middle = ordered[1:-1]
    return [ordered[0], ordered[-1], float(middle[int(rng.integers(len(middle)))])]


def train_student(
    config: Any,
    rest: Any,
    preprocess: Any,
    *,
    stride: int,
    ghnd: bool,
    label: str,
    progress: bool = True,
    task_loss: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """The distillation loop shared by the detector and segmenter recipes.

    ``rest`` is the frozen teacher after the split (``teacher_split_feature(batch)``
    and ``rest(split_feature) -> {name: feature}``); ``preprocess`` turns frames into
    the teacher's input batch. HND (``ghnd=False``) matches the split feature only;
    GHND every feature ``rest`` returns. ``config.init`` names a trained student to
    start from (its bottleneck must match ``config``). ``task_loss(rebuilt, batch,
    image_sizes, frames)`` (GHND only), times ``config.task_weight``, is added to the
    feature loss. Returns (student in eval mode, record).
    """
    init, init_record = init_student(config)
    task_weight = config.task_weight if task_loss is not None else 0.0
    torch.set_num_threads(config.threads)
    for p in rest.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        split_channels = int(rest.teacher_split_feature(torch.zeros(1, 3, 64, 64)).shape[1])
    bconfig = BottleneckConfig(
        channels=config.channels,
        widths=tuple(config.widths),
        stride=stride,
        split_channels=split_channels,
        train_bits=tuple(config.bits),
    )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if init is not None:
        mismatch = [
            f"{key} {getattr(init.config, key)} (checkpoint) != {getattr(bconfig, key)} (recipe)"
            for key in ("channels", "widths", "stride", "split_channels")
            if getattr(init.config, key) != getattr(bconfig, key)
        ]
        if mismatch:
            raise DistillConfigError(f"--init student does not fit: {'; '.join(mismatch)}")
        bconfig = init.config
    student = (init if init is not None else Student(bconfig)).train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=1e-4)
    warmup = max(1, min(50, config.iterations // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, config.iterations - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    scene = scene_of(config.size_hw)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(config.iterations), desc=label, unit="step", disable=not progress)
    for step in bar:
        frames = training_batch(scene, config.data_seed, step, config.batch_size, rng)
        with torch.no_grad():
            batch, image_sizes = preprocess(
                [image_to_tensor(f[0], torch.device("cpu")) for f in frames]
            )
            target_split = rest.teacher_split_feature(batch)
            targets = rest(target_split) if ghnd else None
        step_loss = 0.0
        for width in sandwich_widths(bconfig.widths, rng):
            bits = int(config.bits[int(rng.integers(len(config.bits)))])
            decoded = student(batch, width, bits)
            if targets is None:
                loss = F.mse_loss(decoded, target_split)
            else:
                rebuilt = rest(decoded)
                loss = sum(F.mse_loss(rebuilt[k], targets[k]) for k in targets)
                if task_weight > 0:
                    loss = loss + task_weight * task_loss(rebuilt, batch, image_sizes, frames)
            loss.backward()
            step_loss += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(step_loss)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    window = max(1, min(20, len(losses) // 4))
    record = {
        "loss": label,
        "teacher": config.teacher,
        "teacher_options": dict(config.teacher_options),
        "bottleneck": bconfig.to_json(),
        "iterations": config.iterations,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "data_seed": config.data_seed,
        "size_hw": list(config.size_hw),
        "threads": config.threads,
        "loss_first": round(float(np.mean(losses[:window])), 5),
        "loss_last": round(float(np.mean(losses[-window:])), 5),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        **init_record,
        "task_weight": task_weight,
    }
    return student.eval(), record


def teacher_detection_loss(torch_model: Any) -> Any:
    """``loss(features, batch, image_sizes, frames)``: the frozen teacher's RPN + RoI
    head losses on FPN inputs ``features`` against the frames' boxes (rescaled to the
    transformed image sizes). Only the two heads' training switches are turned on, for
    the call, so every batch norm stays in eval mode."""
    from torchvision.models.detection.image_list import ImageList

    fpn, rpn, roi_heads = torch_model.backbone.fpn, torch_model.rpn, torch_model.roi_heads

    def loss(features: Any, batch: Any, image_sizes: Any, frames: Any) -> Any:
        targets = []
        for (image, _, target), (h, w) in zip(frames, image_sizes, strict=True):
            sy, sx = h / image.shape[0], w / image.shape[1]
            scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
            targets.append(
                {
                    "boxes": torch.from_numpy(target.boxes_xyxy).float() * scale,
                    "labels": torch.from_numpy(target.labels).long(),
                }
            )
        pyramid = fpn(features)
        images = ImageList(batch, [(int(h), int(w)) for h, w in image_sizes])
        rpn.training = roi_heads.training = True
        try:
            proposals, rpn_losses = rpn(images, pyramid, targets)
            _, head_losses = roi_heads(pyramid, proposals, images.image_sizes, targets)
        finally:
            rpn.training = roi_heads.training = False
        return sum(rpn_losses.values()) + sum(head_losses.values())

    return loss


def init_student(config: StudentConfig) -> tuple[Any, dict[str, Any]]:
    """``--init`` (a checkpoint path or ``zoo:<entry>``): (student, fields for the
    training record); (None, {}) without it."""
    if not config.init:
        return None, {}
    path: str | Path = config.init
    try:
        if config.init.startswith("zoo:"):
            path = zoo.get_entry(config.init[4:]).checkpoint_path()
        student, meta = load_student(path)
    except (zoo.ZooError, BottleneckCheckpointError) as exc:
        raise DistillConfigError(f"--init {config.init}: {exc}") from exc
    if meta.get("teacher") not in ("", config.teacher):
        raise DistillConfigError(
            f"--init student was distilled from {meta['teacher']}, not {config.teacher}"
        )
    return student, {"init": config.init, "init_recipe": meta.get("extra", {}).get("recipe", "")}


def distill(config: DistillConfig, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """Train a detector student; returns (student in eval mode, training record)."""
    from splitedge.models.detection import DetectionPreprocess

    teacher = build_teacher(config.teacher, config.teacher_options)
    rest = teacher_rest(teacher)
    torch_model = teacher.torch_model  # type: ignore[attr-defined]
    preprocess = DetectionPreprocess(torch_model.transform).eval()
    student, record = train_student(
        config,
        rest,
        preprocess,
        stride=config.stride,
        ghnd=config.loss == "ghnd",
        label=config.loss,
        progress=progress,
        task_loss=teacher_detection_loss(torch_model) if config.task_weight > 0 else None,
    )
    record["ghnd_features"] = (
        ["backbone.body.3", "backbone.body.8", "backbone.body.12"]
        if config.loss == "ghnd"
        else ["backbone.body.3"]
    )
    return student, record


def recipe_line(config: DistillConfig, name: str) -> str:
    """The command line that reproduces ``config``."""
    return config.recipe_line(config.loss, name, f"--stride {config.stride} ")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from exc


def add_student_arguments(p: argparse.ArgumentParser, d: Any, name: str, *, stride: bool) -> None:
    """The options every student recipe takes (``d``: its config's defaults)."""
    p.add_argument("--name", default=name, help="zoo entry / checkpoint stem")
    p.add_argument("--teacher", default=d.teacher, help="registry name or zoo:<entry>")
    p.add_argument(
        "--teacher-option",
        type=option_arg("--teacher-option"),
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="teacher builder option, typed as every KEY=VALUE flag (e.g. score_thresh=0.3)",
    )
    p.add_argument("--channels", type=int, default=d.channels, help="code channels at w1.0")
    p.add_argument("--widths", type=_floats, default=d.widths, help="e.g. 0.25,0.5,0.75,1")
    if stride:
        p.add_argument("--stride", type=int, default=d.stride, choices=(8, 16))
    p.add_argument("--bits", type=_ints, default=d.bits, help="bit depths in the loop")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument(
        "--size",
        type=size_hw_arg(),
        default=None,
        metavar="WIDTHxHEIGHT",
        help="frame size (default 320x240)",
    )
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--data-seed", type=int, default=d.data_seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument(
        "--init", default=None, help="start from this student (checkpoint or zoo:<entry>)"
    )
    p.add_argument(
        "--task-weight",
        type=float,
        default=d.task_weight,
        help="add the teacher's task loss (ground truth) on rebuilt features, times this",
    )
    p.add_argument("--tiny", action="store_true", help="the ~1 minute test recipe")
    p.add_argument("--out", type=Path, default=None, help="checkpoint folder (models/zoo)")
    p.add_argument("--no-zoo", action="store_true", help="do not write a zoo record")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def common_config(
    args: argparse.Namespace, tiny: dict[str, Any], size_hw: tuple[int, int]
) -> dict[str, Any]:
    """Config fields every student recipe reads from its options (``tiny``: the test recipe)."""
    base = dict(tiny) if args.tiny else {}
    for key in ("iterations", "batch_size", "lr"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    if args.size is not None:
        base["size_hw"] = args.size
    options = dict(args.teacher_option)
    if args.tiny or args.size is not None:
        # The teacher's transform would resize a small frame up to its min_size.
        h, w = base.get("size_hw", size_hw)
        options.setdefault("min_size", min(h, w))
        options.setdefault("max_size", max(h, w))
    return dict(
        base,
        teacher=args.teacher,
        teacher_options=options,
        channels=args.channels,
        widths=tuple(args.widths),
        bits=tuple(args.bits),
        seed=args.seed,
        data_seed=args.data_seed,
        threads=args.threads,
        init=args.init,
        task_weight=args.task_weight,
    )


def add_parser(subparsers: Any) -> None:
    """Register ``hnd`` and ``ghnd`` with ``splitedge-train``."""
    d = DistillConfig()
    for loss in LOSSES:
        p = subparsers.add_parser(
            loss,
            help=f"distil a bottleneck student with {loss.upper()} (teacher frozen)",
            description=__doc__.split("\n\n")[1] if loss == "ghnd" else __doc__.split("\n\n")[0],
        )
        add_student_arguments(p, d, DEFAULT_NAME[loss], stride=True)
        p.set_defaults(func=run, loss=loss)


def config_from_args(args: argparse.Namespace) -> DistillConfig:
    return DistillConfig(
        loss=args.loss,
        stride=args.stride,
        **common_config(args, TINY, DistillConfig.size_hw),
    )


def save_and_record(
    args: argparse.Namespace,
    config: Any,
    student: Any,
    record: dict[str, Any],
    *,
    builder: str,
    recipe: str,
    description: str,
) -> int:
    """Save the checkpoint in ``--out`` (the zoo by default) and, unless ``--no-zoo``,
    its zoo record; shared by the detector and segmenter recipes."""
    out_dir = args.out if args.out is not None else zoo.ZOO_DIR
    path = save_student(
        student,
        Path(out_dir) / f"{args.name}.pt",
        config.teacher,
        {"teacher_options": dict(config.teacher_options), "recipe": recipe},
    )
    size_bytes = path.stat().st_size
    print(
        f"{record['loss']}: wrote {path} ({size_bytes} bytes), "
        f"loss {record['loss_first']} -> {record['loss_last']} in {record['wall_time_s']} s"
    )
    if not args.no_zoo:
        entry = zoo.ZooEntry(
            name=args.name,
            kind="student",
            builder=builder,
            checkpoint=path.name,
            recipe=recipe,
            metrics={"checkpoint_bytes": size_bytes},
            training=record,
            description=description,
        )
        print(f"zoo record: {zoo.write_entry(entry, out_dir)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Train, save the checkpoint and (unless ``--no-zoo``) its zoo record."""
    config = config_from_args(args)
    student, record = distill(config, progress=not args.no_progress)
    return save_and_record(
        args,
        config,
        student,
        record,
        builder=MODEL_NAME,
        recipe=recipe_line(config, args.name) + (" --tiny" if args.tiny else ""),
        description=(
            f"{config.loss.upper()} student of {config.teacher}: {config.channels}-channel "
            f"slimmable bottleneck (widths {list(config.widths)}), stride {config.stride}"
        ),
    )
