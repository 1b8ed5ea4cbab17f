"""HND / GHND recipes: tiny runs lower their loss and write a loadable zoo entry."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from splitedge.models import zoo
from splitedge.models.bottleneck import load_student
from splitedge.models.distill import (
    DistillConfig,
    DistillConfigError,
    add_parser,
    distill,
    sandwich_widths,
)

torch.set_num_threads(1)
TEACHER = "fasterrcnn_mobilenet_v3_small_fpn_lite"
SMALL = {"min_size": 96, "max_size": 128}


@pytest.mark.parametrize("loss", ["hnd", "ghnd"])
def test_a_tiny_run_lowers_its_loss(loss):
    config = DistillConfig(
        loss=loss,
        teacher=TEACHER,
        teacher_options=SMALL,
        channels=6,
        widths=(0.5, 1.0),
        iterations=30,
        batch_size=2,
        size_hw=(96, 128),
        lr=3e-3,
    )
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
