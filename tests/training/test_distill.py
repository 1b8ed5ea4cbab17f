"""HND / GHND recipes: tiny runs lower their loss and write a loadable zoo entry."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from splitedge.models import zoo
from splitedge.models.bottleneck import load_student
from splitedge.training.distill import (
    DistillConfig,
    DistillConfigError,
    add_parser,
    distill,
    recipe_line,
    sandwich_widths,
)

torch.set_num_threads(1)
TEACHER = "fasterrcnn_mobilenet_v3_small_fpn_lite"
SMALL = {"min_size": 96, "max_size": 128}


def _tiny_config(**kwargs) -> DistillConfig:
    base = dict(
        teacher=TEACHER,
        teacher_options=SMALL,
        channels=6,
        widths=(0.5, 1.0),
        iterations=3,
        batch_size=2,
        size_hw=(96, 128),
        lr=3e-3,
    )
    return DistillConfig(**(base | kwargs))


@pytest.mark.parametrize("loss", ["hnd", "ghnd"])
def test_a_tiny_run_lowers_its_loss(loss):
    config = _tiny_config(loss=loss, iterations=30)
    student, record = distill(config, progress=False)
    assert record["loss_last"] < 0.8 * record["loss_first"], record
    assert not student.training
    expected = 3 if loss == "ghnd" else 1
    assert len(record["ghnd_features"]) == expected


def test_sandwich_rule_trains_widest_narrowest_and_one_between():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        widths = sandwich_widths((0.25, 0.5, 0.75, 1.0), rng)
        assert widths[0] == 1.0 and widths[1] == 0.25 and len(widths) == 3
        seen.add(widths[2])
    assert seen == {0.5, 0.75}
    assert sandwich_widths((0.5, 1.0), rng) == [1.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"loss": "kd"}, "loss must be"),
        ({"iterations": 0}, "iterations"),
        ({"lr": 0.0}, "lr"),
        ({"size_hw": (8, 320)}, "--size must be at least 16x16"),
    ],
)
def test_bad_distill_settings_are_refused(kwargs, fragment):
    with pytest.raises(DistillConfigError, match=fragment):
        DistillConfig(**kwargs)


def test_cli_tiny_recipe_writes_a_small_checkpoint_and_a_loadable_zoo_entry(tmp_path):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "ghnd",
            "--tiny",
            "--iterations",
            "3",
            "--teacher",
            TEACHER,
            "--name",
            "s-tiny",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    ckpt = tmp_path / "s-tiny.pt"
    assert ckpt.stat().st_size < 10 * 2**20
    entry = zoo.get_entry("s-tiny", tmp_path)
    assert entry.kind == "student" and entry.builder == "bottleneck"
    assert "--tiny" in entry.recipe and entry.training["iterations"] == 3
    _, meta = load_student(ckpt)
    assert meta["extra"]["teacher_options"] == {"min_size": 96, "max_size": 128}
    model = zoo.load("s-tiny", tmp_path)
    assert model.name == "zoo:s-tiny"
    assert "bottleneck-12-w0.25-4bit" in model.branches


def test_teacher_detection_loss_reaches_the_features_and_leaves_the_teacher_in_eval():
    from splitedge.models.bottleneck_split import build_teacher, teacher_rest
    from splitedge.models.detection import DetectionPreprocess
    from splitedge.training.distill import teacher_detection_loss
    from splitedge.training.student_data import synthetic_to_batch
    from splitedge.training.teacher_data import scene_of, training_batch

    teacher = build_teacher(TEACHER, SMALL)
    net = teacher.torch_model
    rest = teacher_rest(teacher)
    frames = training_batch(scene_of((96, 128)), 0, 0, 2, np.random.default_rng(0))
    assert sum(len(f[2].labels) for f in frames) > 0
    images, targets = synthetic_to_batch(frames)
    batch, sizes = DetectionPreprocess(net.transform).eval()(images)
    split = rest.teacher_split_feature(batch).detach().requires_grad_(True)
    loss = teacher_detection_loss(net)(rest(split), batch, sizes, images, targets)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert split.grad is not None and split.grad.abs().sum() > 0
    assert not net.rpn.training and not net.roi_heads.training
    assert not any(m.training for m in net.modules())


def test_fine_tuning_starts_from_the_init_student_and_records_it(tmp_path):
    from splitedge.models.bottleneck import save_student

    base, _ = distill(_tiny_config(), progress=False)
    path = save_student(base, tmp_path / "base.pt", TEACHER, {"recipe": "base recipe"})
    config = _tiny_config(init=str(path), task_weight=1.0, iterations=4, lr=1e-2)
    tuned, record = distill(config, progress=False)
    assert tuned.config == base.config
    assert record["init"] == str(path) and record["init_recipe"] == "base recipe"
    assert record["task_weight"] == 1.0
    before, after = base.state_dict(), tuned.state_dict()
    assert any(
        not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point()
    )
    line = recipe_line(config, "ft")
    assert f"--init {path} --task-weight 1 " in line


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"channels": 8}, "channels 6 \\(checkpoint\\) != 8 \\(recipe\\)"),
        ({"widths": (1.0,)}, "widths"),
        ({"teacher": "zoo:teacher-frcnn-small"}, "was distilled from"),
    ],
)
def test_an_init_student_that_does_not_fit_is_refused(tmp_path, kwargs, fragment):
    from splitedge.models.bottleneck import save_student

    base, _ = distill(_tiny_config(iterations=1), progress=False)
    path = save_student(base, tmp_path / "base.pt", TEACHER)
    with pytest.raises(DistillConfigError, match=fragment):
        distill(_tiny_config(init=str(path), **kwargs), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"task_weight": -1.0}, "--task-weight must be >= 0"),
        ({"task_weight": float("nan")}, "--task-weight must be >= 0"),
    ],
)
def test_bad_fine_tune_settings_are_refused(kwargs, fragment):
    with pytest.raises(DistillConfigError, match=fragment):
        _tiny_config(**kwargs)


def test_bad_init_and_task_weight_with_hnd_are_refused(tmp_path):
    with pytest.raises(DistillConfigError, match="--init zoo:no-such-student"):
        distill(_tiny_config(init="zoo:no-such-student"), progress=False)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DistillConfigError, match="cannot read student checkpoint"):
        distill(_tiny_config(init=str(tmp_path / "junk.pt")), progress=False)
    with pytest.raises(DistillConfigError, match="--task-weight needs --loss ghnd"):
        distill(_tiny_config(loss="hnd", task_weight=1.0), progress=False)


def test_cli_size_is_width_by_height_and_teacher_options_are_typed():
    from splitedge.training.distill import config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    options = ["--teacher-option", "score_thresh=0.3", "--teacher-option", "trainable=false"]
    args = parser.parse_args(["ghnd", "--size", "160x96", *options])
    config = config_from_args(args)
    assert config.size_hw == (96, 160)
    assert config.teacher_options == {
        "score_thresh": 0.3,
        "trainable": False,
        "min_size": 96,
        "max_size": 160,
    }
    assert "--size 160x96 " in recipe_line(config, "ghnd")
