"""`splitedge-train ghnd-seg`: distilling the segmenter's bottleneck student (distill_seg)."""

from __future__ import annotations

import numpy as np
import torch

from splitedge.models import zoo
from splitedge.models.bottleneck_seg import build_seg_teacher
from splitedge.training import train_cli
from splitedge.training.distill_seg import SegDistillConfig, distill_seg

torch.set_num_threads(1)
TEACHER = "lraspp_mobilenet_v3_small"
SMALL = {"min_size": 96, "max_size": 128}


# A student small enough for a test: 6 channels, two widths, 96x128 frames.
TINY_STUDENT = dict(
    teacher=TEACHER,
    teacher_options=SMALL,
    channels=6,
    widths=(0.5, 1.0),
    batch_size=2,
    size_hw=(96, 128),
)


def test_a_tiny_ghnd_seg_run_lowers_its_loss():
    config = SegDistillConfig(iterations=30, **TINY_STUDENT)
    student, record = distill_seg(config, progress=False)
    assert record["loss_last"] < 0.8 * record["loss_first"], record
    assert not student.training and record["ghnd_features"] == ["backbone.2", "backbone.12"]


def test_cli_tiny_recipe_writes_a_loadable_zoo_entry(tmp_path, capsys):
    argv = ["ghnd-seg", "--tiny", "--iterations", "2", "--teacher", TEACHER, "--name", "seg-tiny"]
    assert train_cli.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "seg-tiny.pt").stat().st_size < 10 * 2**20
    entry = zoo.get_entry("seg-tiny", tmp_path)
    assert entry.kind == "student" and entry.builder == "bottleneck-seg"
    assert "--tiny" in entry.recipe and entry.training["iterations"] == 2
    loaded = zoo.load("seg-tiny", tmp_path)
    assert loaded.task == "segmentation" and "bottleneck-12-w0.25-4bit" in loaded.branches
    assert train_cli.main(["ghnd-seg", "--iterations", "0", "--out", str(tmp_path)]) == 2
    assert "--iterations and --batch-size must be >= 1" in capsys.readouterr().err


def test_segmentation_task_loss_reaches_the_split_feature():
    from splitedge.models.bottleneck_seg import seg_teacher_rest
    from splitedge.models.segmentation import SegmentationPreprocess
    from splitedge.training.distill_seg import teacher_segmentation_loss
    from splitedge.training.student_data import synthetic_to_batch
    from splitedge.training.teacher_data import scene_of, training_batch

    teacher = build_seg_teacher(TEACHER, SMALL)
    rest = seg_teacher_rest(teacher)
    frames = training_batch(scene_of((96, 128)), 0, 0, 2, np.random.default_rng(0))
    images, targets = synthetic_to_batch(frames)
    batch, sizes = SegmentationPreprocess(96, 128)(images)
    low = rest.teacher_split_feature(batch).detach().requires_grad_(True)
    finisher = teacher._parts.finisher
    loss = teacher_segmentation_loss(finisher)(rest(low), batch, sizes, images, targets)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert low.grad is not None and low.grad.abs().sum() > 0


def test_seg_fine_tuning_starts_from_the_init_student(tmp_path):
    from splitedge.models.bottleneck import save_student
    from splitedge.training.distill_seg import recipe_line

    base, _ = distill_seg(SegDistillConfig(iterations=2, **TINY_STUDENT), progress=False)
    path = save_student(base, tmp_path / "base.pt", TEACHER, {"recipe": "seg base"})
    config = SegDistillConfig(
        iterations=3, init=str(path), task_weight=0.5, lr=1e-2, **TINY_STUDENT
    )
    tuned, record = distill_seg(config, progress=False)
    assert tuned.config == base.config
    assert record["init_recipe"] == "seg base" and record["task_weight"] == 0.5
    before, after = base.state_dict(), tuned.state_dict()
    assert any(
        not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point()
    )
    assert f"--init {path} --task-weight 0.5 " in recipe_line(config, "ft")
