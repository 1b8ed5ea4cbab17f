"""``splitedge-train hnd`` / ``ghnd``: distil a bottleneck student from a frozen teacher.

HND (head network distillation) matches the teacher's split-point feature only;
GHND (generalized HND) matches several downstream features: the split-point feature
and every level the teacher's tail reads after it (each FPN input; the segmentation
head's inputs), computed by the frozen teacher *from the decoded feature*, so the
loss sees what the tail will see. As in the paper the loss is the plain sum of the
per-feature mean squared errors. The teacher is any torchvision detector or segmenter
family of the registry (or a ``zoo:`` teacher); ``--split-at`` names the stage the
student stands in for (default: the family's,
``splitedge.models.bottleneck_split.DEFAULT_SPLIT_AT``). Data
(``--data``), device, mixed precision, ``torchrun`` processes, periodic checkpoints
and ``--resume``: :mod:`.student_data` and :mod:`.student_run`; the score on the
data's validation split: :mod:`.student_eval`.

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
    BottleneckConfigError,
    Student,
    load_student,
    save_student,
)
from splitedge.models.bottleneck_split import (
    MODEL_NAME,
    BottleneckSplitModel,
    build_teacher,
    teacher_parts,
    teacher_rest,
)
from splitedge.models.slimmable import DEFAULT_WIDTHS
from splitedge.proto.options import option_arg, size_hw_arg
from splitedge.training import student_run
from splitedge.training.student_data import (
    IGNORE_INDEX,
    FolderBatches,
    StudentDataset,
    find_splits,
    synthetic_batches,
)
from splitedge.training.student_eval import evaluate_student

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
    split_at: str | None = None  # teacher stage the student stands in for (None: default)
    data: str | None = None  # a COCO-format folder (None: generated frames)
    val_data: str | None = None  # a validation folder, when --data has no val split
    val_images: int = 500  # at most this many validation frames are scored
    crop_size: int | None = None  # segmentation crops (default: the teacher's min_size)
    num_classes: int = 256  # set from the teacher: class ids above it are ignored

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
        if self.val_images < 0:
            raise DistillConfigError(f"--val-images must be >= 0, got {self.val_images}")
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
        if self.split_at:
            extra += f"--split-at {self.split_at} "
        if self.data:
            extra += f"--data {self.data} "
        if self.val_data:
            extra += f"--val-data {self.val_data} "
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
    stride: int | None = None  # code stride (None: 8, or the split stage's when coarser)

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


@dataclass
class RunOptions:
    """How a student recipe runs (not what it learns): device, precision, data loader
    processes, periodic checkpoints (:mod:`splitedge.training.student_run`)."""

    device: str = "cpu"
    amp: bool = False
    workers: int = 2
    checkpoint_every: int = 0  # steps; 0: none
    resume: str | None = None  # a training checkpoint to continue from
    out_dir: Path | None = None  # where periodic checkpoints go (the zoo by default)
    name: str = "student"

    def __post_init__(self) -> None:
        if self.workers < 0 or self.checkpoint_every < 0:
            raise DistillConfigError(
                f"--workers and --checkpoint-every must be >= 0, got {self.workers}, "
                f"{self.checkpoint_every}"
            )


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
    task: str = "detection",
    runtime: student_run.Runtime | None = None,
    run: RunOptions | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The distillation loop shared by every student recipe.

    ``rest`` is the frozen teacher after the split (``teacher_split_feature(batch)``
    and ``rest(split_feature) -> {name: feature}``); ``preprocess`` turns frames into
    the teacher's input batch. HND (``ghnd=False``) matches the split feature only;
    GHND the split feature and every level ``rest`` returns (every FPN input, the
    segmentation head's inputs). ``config.init`` names a trained student to start from
    (its bottleneck must match ``config``). ``task_loss(rebuilt, batch, image_sizes,
    images, targets)`` (GHND only), times ``config.task_weight``, is added to the feature
    loss. Frames come from ``config.data`` (a COCO folder) or are generated. Returns
    (student in eval mode, record).
    """
    run = run or RunOptions()
    runtime = runtime or student_run.Runtime(torch.device("cpu"), None)
    device = runtime.device
    init, init_record = init_student(config)
    task_weight = config.task_weight if task_loss is not None else 0.0
    torch.set_num_threads(config.threads)
    for p in rest.parameters():
        p.requires_grad_(False)
    bconfig = BottleneckConfig(
        channels=config.channels,
        widths=tuple(config.widths),
        stride=stride,
        split_channels=rest.split_channels,
        split_stride=rest.split_stride,
        train_bits=tuple(config.bits),
    )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if init is not None:
        mismatch = [
            f"{key} {getattr(init.config, key)} (checkpoint) != {getattr(bconfig, key)} (recipe)"
            for key in ("channels", "widths", "stride", "split_channels", "split_stride")
            if getattr(init.config, key) != getattr(bconfig, key)
        ]
        if mismatch:
            raise DistillConfigError(f"--init student does not fit: {'; '.join(mismatch)}")
        bconfig = init.config
    student = (init if init is not None else Student(bconfig)).to(device).train()
    model = student_run.wrap(student, runtime)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=1e-4)
    warmup = max(1, min(50, config.iterations // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, config.iterations - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    scaler = runtime.scaler()
    losses: list[float] = []
    start_step = 0
    resume_fields = {
        "recipe": label,
        "teacher": config.teacher,
        "split_at": rest.split_stage,
        "bottleneck": bconfig.to_json(),
        "iterations": config.iterations,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "data_seed": config.data_seed,
        "data": config.data,
        "world_size": runtime.world_size,
    }
    if run.resume:
        state = student_run.load_training_state(Path(run.resume), resume_fields)
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        losses = list(state["losses"])
        start_step = int(state["step"])
    batches = training_batches(config, task, rest, runtime, run, rng, start_step)
    start = time.perf_counter()
    bar = tqdm(
        range(start_step, config.iterations),
        desc=label,
        unit="step",
        initial=start_step,
        total=config.iterations,
        disable=not (progress and runtime.main),
    )
    for step in bar:
        images, targets = next(batches)
        images = [im.to(device, non_blocking=True) for im in images]
        with torch.no_grad(), runtime.autocast():
            batch, image_sizes = preprocess(images)
            target_split = rest.teacher_split_feature(batch)
            target_features = rest(target_split) if ghnd else None
        step_loss = 0.0
        widths = sandwich_widths(bconfig.widths, rng)
        for j, width in enumerate(widths):
            bits = int(config.bits[int(rng.integers(len(config.bits)))])
            with student_run.no_sync(model, last=j == len(widths) - 1):
                with runtime.autocast():
                    decoded = model(batch, width, bits)
                    loss = _feature_loss(rest, decoded, target_split, target_features)
                    if task_weight > 0:
                        rebuilt = rest(decoded)
                        loss = loss + task_weight * task_loss(
                            rebuilt, batch, image_sizes, images, targets
                        )
                scaler.scale(loss).backward()
            step_loss += float(loss.detach())
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(step_loss)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
        done = step + 1
        every = run.checkpoint_every
        if every and done % every == 0 and done < config.iterations and runtime.main:
            student_run.save_training_state(
                student_run.checkpoint_path(run.out_dir or zoo.ZOO_DIR, run.name, done),
                step=done,
                student=student,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                rng=rng,
                losses=losses,
                recipe=resume_fields,
            )
    window = max(1, min(20, len(losses) // 4))
    record = {
        "loss": label,
        "task": task,
        "teacher": config.teacher,
        "teacher_options": dict(config.teacher_options),
        "split_at": rest.split_stage,
        "bottleneck": bconfig.to_json(),
        "iterations": config.iterations,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "seed": config.seed,
        "data_seed": config.data_seed,
        "data": config.data or "generated",
        "size_hw": list(config.size_hw),
        "threads": config.threads,
        "loss_first": round(float(np.mean(losses[:window])), 5),
        "loss_last": round(float(np.mean(losses[-window:])), 5),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        "device": str(device),
        "amp": str(runtime.amp_dtype).removeprefix("torch.") if runtime.amp_dtype else "off",
        "world_size": runtime.world_size,
        "rank": runtime.rank,
        **init_record,
        "task_weight": task_weight,
    }
    if start_step:
        record["resumed_at"] = start_step
    return student.cpu().eval(), record


def _feature_loss(rest: Any, decoded: Any, target_split: Any, targets: Any) -> Any:
    """HND: the split feature's MSE; GHND: the plain sum of the MSEs of every level the
    tail reads, rebuilt from the decoded feature (plus the split feature itself when the
    tail does not read it directly)."""
    split_loss = F.mse_loss(decoded.float(), target_split.float())
    if targets is None:
        return split_loss
    rebuilt = rest(decoded)
    loss = sum(F.mse_loss(rebuilt[k].float(), targets[k].float()) for k in targets)
    return loss if rest.split_emit is not None else loss + split_loss


def training_batches(
    config: Any,
    task: str,
    rest: Any,
    runtime: student_run.Runtime,
    run: RunOptions,
    rng: np.random.Generator,
    start_step: int,
) -> Any:
    """``(images, targets)`` batches: the COCO folder ``config.data`` or generated frames."""
    if not config.data:
        return synthetic_batches(
            config.size_hw,
            config.data_seed,
            config.batch_size,
            rng,
            start_step,
            runtime.rank,
            runtime.world_size,
        )
    train, _ = find_splits(Path(config.data), _path(config.val_data))
    dataset = StudentDataset(
        train,
        task,
        seed=config.data_seed,
        crop=config.crop_size,
        num_classes=config.num_classes,
    )
    loader = FolderBatches(
        dataset,
        config.batch_size,
        workers=run.workers,
        seed=config.data_seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
    )
    return loader.iterate(start_step)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def teacher_detection_loss(torch_model: Any) -> Any:
    """``loss(features, batch, image_sizes, images, targets)``: the frozen Faster R-CNN
    teacher's RPN + RoI head losses on FPN inputs ``features`` against the targets'
    boxes (rescaled from each image to its transformed size). Only the two heads'
    training switches are turned on, for the call, so every batch norm stays in eval
    mode."""
    from torchvision.models.detection.image_list import ImageList

    if not hasattr(torch_model, "roi_heads"):
        raise DistillConfigError(
            f"--task-weight needs a Faster R-CNN teacher (RPN + RoI heads); "
            f"{type(torch_model).__name__} has none"
        )
    fpn, rpn, roi_heads = torch_model.backbone.fpn, torch_model.rpn, torch_model.roi_heads

    def loss(features: Any, batch: Any, image_sizes: Any, images: Any, targets: Any) -> Any:
        scaled = []
        for image, target, (h, w) in zip(images, targets, image_sizes, strict=True):
            sy, sx = h / image.shape[-2], w / image.shape[-1]
            scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32, device=batch.device)
            scaled.append(
                {
                    "boxes": target["boxes"].to(batch.device).float() * scale,
                    "labels": target["labels"].to(batch.device).long(),
                }
            )
        pyramid = fpn(features)
        image_list = ImageList(batch, [(int(h), int(w)) for h, w in image_sizes])
        rpn.training = roi_heads.training = True
        try:
            proposals, rpn_losses = rpn(image_list, pyramid, scaled)
            _, head_losses = roi_heads(pyramid, proposals, image_list.image_sizes, scaled)
        finally:
            rpn.training = roi_heads.training = False
        return sum(rpn_losses.values()) + sum(head_losses.values())

    return loss


def teacher_segmentation_loss(finisher: Any) -> Any:
    """``loss(features, batch, image_sizes, images, targets)``: cross-entropy of the
    frozen segmentation head's logits on ``features`` (the finisher's classifier and
    input key), upsampled to the batch, against the targets' class maps resized
    (nearest) to the same size; 255 is ignored."""
    classifier, key = finisher.classifier, finisher.input_key

    def loss(features: Any, batch: Any, image_sizes: Any, images: Any, targets: Any) -> Any:
        size = tuple(batch.shape[-2:])
        masks = torch.stack([t["mask"] for t in targets]).to(batch.device)
        target = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].long()
        head_input = features if key is None else features[key]
        logits = F.interpolate(
            classifier(head_input), size=size, mode="bilinear", align_corners=False
        )
        return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)

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


def distill(
    config: DistillConfig, progress: bool = True, run: RunOptions | None = None
) -> tuple[Any, dict[str, Any]]:
    """Train a student of any torchvision detector or segmenter teacher; returns
    (student in eval mode, training record)."""
    return distill_student(
        config,
        ghnd=config.loss == "ghnd",
        label=config.loss,
        task=None,
        stride=config.stride,
        progress=progress,
        run=run,
    )


def distill_student(
    config: Any,
    *,
    ghnd: bool,
    label: str,
    task: str | None,
    stride: int | None,
    progress: bool = True,
    run: RunOptions | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Build the teacher (of ``task``; None: any) on the run's device, cut it at
    ``config.split_at``, distil, and (on rank 0, when the data has a validation split)
    score the student there (``record["validation"]``)."""
    run = run or RunOptions()
    runtime = student_run.start(run.device, run.amp)
    try:
        options = dict(config.teacher_options, device=str(runtime.device))
        teacher = build_teacher(config.teacher, options, task)
        try:
            rest = teacher_rest(teacher, config.split_at)
        except BottleneckConfigError as exc:
            raise DistillConfigError(f"--split-at: {exc}") from exc
        parts = teacher_parts(teacher)
        code_stride = _code_stride(teacher.task, stride, rest)
        if teacher.task == "segmentation":
            config.crop_size = config.crop_size or teacher.min_size
        config.num_classes = teacher.num_classes
        task_loss = None
        if config.task_weight > 0 and ghnd:
            task_loss = (
                teacher_detection_loss(teacher.torch_model)  # type: ignore[attr-defined]
                if teacher.task == "detection"
                else teacher_segmentation_loss(parts.finisher)
            )
        student, record = train_student(
            config,
            rest,
            parts.preprocess.eval(),
            stride=code_stride,
            ghnd=ghnd,
            label=label,
            progress=progress,
            task_loss=task_loss,
            task=teacher.task,
            runtime=runtime,
            run=run,
        )
    finally:
        student_run.finish(runtime)
    record["ghnd_features"] = rest.feature_paths if ghnd else rest.feature_paths[:1]
    if config.data and runtime.main:
        _, val = find_splits(Path(config.data), _path(config.val_data))
        if val is not None and config.val_images > 0:
            served = served_student(teacher, student, config)
            record["validation"] = evaluate_student(served, val, config.val_images)
            student.cpu()
    return student, record


def _code_stride(task: str, stride: int | None, rest: Any) -> int:
    if task == "segmentation":
        if stride not in (None, rest.split_stride):
            raise DistillConfigError(
                f"--stride {stride}: a segmentation student's code stride is its split "
                f"stage's ({rest.split_stage}: {rest.split_stride})"
            )
        return int(rest.split_stride)
    code_stride = int(stride or max(8, rest.split_stride))
    if code_stride < rest.split_stride:
        raise DistillConfigError(
            f"--stride {code_stride} is finer than split stage {rest.split_stage!r} "
            f"(stride {rest.split_stride})"
        )
    return code_stride


def served_student(teacher: Any, student: Any, config: Any) -> Any:
    """The student as the edge serves it (on the teacher, at the recipe's split stage,
    on the teacher's device: move the student back with ``.cpu()`` after use)."""
    from splitedge.models.bottleneck_seg import SegBottleneckSplitModel

    cls = SegBottleneckSplitModel if teacher.task == "segmentation" else BottleneckSplitModel
    return cls(teacher, student, split_at=config.split_at, weights_source="trained")


def recipe_line(config: DistillConfig, name: str) -> str:
    """The command line that reproduces ``config``."""
    stride = f"--stride {config.stride} " if config.stride else ""
    return config.recipe_line(config.loss, name, stride)


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
    p.add_argument(
        "--split-at",
        default=None,
        metavar="STAGE",
        help="teacher backbone stage the student stands in for (default: the family's, "
        "e.g. layer1 for ResNet-50, features.6 for MobileNetV3-Large FPN)",
    )
    if stride:
        p.add_argument(
            "--stride",
            type=int,
            default=None,
            choices=(4, 8, 16),
            help="code stride (default 8, or the split stage's when coarser)",
        )
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
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="COCO-format folder (train/ + val/, annotations/instances_*.json, or "
        "annotations.json + images/); default: generated frames",
    )
    p.add_argument("--val-data", default=None, metavar="DIR", help="validation folder")
    p.add_argument(
        "--val-images", type=int, default=d.val_images, help="validation frames scored (500)"
    )
    p.add_argument("--workers", type=int, default=2, help="data loader processes for --data")
    p.add_argument("--device", default="cpu", help="cuda, cpu or auto (cpu)")
    p.add_argument(
        "--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="write <out>/<name>-step<k>.train.pt every STEPS steps",
    )
    p.add_argument("--resume", default=None, metavar="FILE", help="continue from that file")
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
    if (args.tiny or args.size is not None) and not fixed_input_family(args.teacher):
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
        split_at=args.split_at,
        data=args.data,
        val_data=args.val_data,
        val_images=args.val_images,
    )


def fixed_input_family(teacher: str) -> bool:
    """Whether ``teacher`` resizes every frame to one fixed size (SSDlite: 320x320), so
    --tiny/--size must not set its min_size/max_size."""
    from splitedge.models.detection import SSDLITE_FAMILY

    return teacher == SSDLITE_FAMILY


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        device=args.device,
        amp=args.amp,
        workers=args.workers,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        out_dir=args.out,
        name=args.name,
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
    if record.pop("rank", 0) != 0:
        return 0  # torchrun: rank 0 writes the files
    out_dir = args.out if args.out is not None else zoo.ZOO_DIR
    path = save_student(
        student,
        Path(out_dir) / f"{args.name}.pt",
        config.teacher,
        {
            "teacher_options": dict(config.teacher_options),
            "recipe": recipe,
            "split_at": record["split_at"],
        },
    )
    validation = record.pop("validation", None)
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
            metrics={"checkpoint_bytes": size_bytes, **(validation or {})},
            training=record,
            description=description,
        )
        print(f"zoo record: {zoo.write_entry(entry, out_dir)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Train, save the checkpoint and (unless ``--no-zoo``) its zoo record."""
    from splitedge.models.bottleneck_seg import MODEL_NAME as SEG_MODEL_NAME

    config = config_from_args(args)
    student, record = distill(config, progress=not args.no_progress, run=run_options(args))
    segmentation = record["task"] == "segmentation"
    return save_and_record(
        args,
        config,
        student,
        record,
        builder=SEG_MODEL_NAME if segmentation else MODEL_NAME,
        recipe=recipe_line(config, args.name) + (" --tiny" if args.tiny else ""),
        description=(
            f"{config.loss.upper()} student of {config.teacher} at {record['split_at']}: "
            f"{config.channels}-channel slimmable bottleneck (widths {list(config.widths)}), "
            f"stride {record['bottleneck']['stride']}"
        ),
    )
