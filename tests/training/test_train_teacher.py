"""Teacher recipes (--tiny), the eval CLI, and the committed teachers' real detections."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from splitedge.models import zoo
from splitedge.models.data import SceneConfig, generate_image
from splitedge.models.registry import create_model
from splitedge.models.types import Detections, SegmentationMask
from splitedge.training.eval_zoo import evaluate_entry
from splitedge.training.teacher_data import (
    VAL_DATA_SEED,
    target_of,
    validation_set,
)
from splitedge.training.train_cli import build_parser as train_parser
from splitedge.training.train_cli import main as train_main
from splitedge.training.train_teacher import (
    DETECTOR_ENTRY,
    DETECTOR_RECIPE,
    SEGMENTER_ENTRY,
    TINY,
    config_from_args,
    lr_factor,
    recipe_command,
    train_teacher,
)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def test_lr_schedule_warms_up_then_decays() -> None:
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert 0.4 < lr_factor(55, 100, 10) < 0.6
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_tiny_detector_recipe_learns_and_writes_a_loadable_entry(tmp_path: Path) -> None:
    config = replace(DETECTOR_RECIPE, name="tiny-det", **TINY)
    result = train_teacher(config, tmp_path, progress=False)
    assert len(result.losses) == TINY["iterations"]
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:5])
    record = json.loads(result.record.read_text())
    assert record["kind"] == "teacher-detector"
    assert record["training"]["complete"] is True
    assert record["training"]["iterations_done"] == TINY["iterations"]
    assert "splitedge-train teacher-detector" in record["recipe"]
    assert "mAP" in record["metrics"] and record["metrics"]["params"] > 0
    model = zoo.load("tiny-det", tmp_path, score_thresh=0.0)
    saved = torch.load(result.checkpoint, weights_only=True)
    for key, value in model.torch_model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    frame = generate_image(SceneConfig(width=128, height=96), 1, 0).image
    assert isinstance(model.run_local(frame), Detections)
    # --weights <checkpoint> continues from it: the first loss starts where training ended.
    again = replace(config, name="tiny-det-2", weights=str(result.checkpoint), iterations=3)
    resumed = train_teacher(replace(again, val_every=3), tmp_path, progress=False)
    assert resumed.losses[0] < result.losses[0]


def test_tiny_segmenter_via_cli(tmp_path: Path, capsys) -> None:
    code = train_main(["teacher-segmenter", "--tiny", "--zoo-dir", str(tmp_path), "--no-progress"])
    assert code == 0
    assert "iterations" in capsys.readouterr().out
    entry = zoo.get_entry(SEGMENTER_ENTRY, tmp_path)
    assert entry.kind == "teacher-segmenter"
    assert entry.training["loss_last20"] < entry.training["loss_first20"]
    assert 0.0 <= entry.metrics["mIoU"] <= 1.0
    frame = generate_image(SceneConfig(width=128, height=96), 1, 0).image
    mask = zoo.load(SEGMENTER_ENTRY, tmp_path).run_local(frame)
    assert isinstance(mask, SegmentationMask) and mask.mask.shape == (96, 128)


def test_bad_cli_size_is_rejected(capsys) -> None:
    with pytest.raises(SystemExit):
        train_main(["teacher-detector", "--size", "big"])
    assert "argument --size: expected WIDTHxHEIGHT such as 320x240, got 'big'" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        train_main(["teacher-detector", "--size", "320x16"])
    assert "argument --size: each side must be 32-8192 pixels, got '320x16'" in (
        capsys.readouterr().err
    )


def test_cli_size_is_width_by_height_and_the_recipe_replays_it() -> None:
    args = train_parser().parse_args(["teacher-detector", "--size", "160x96"])
    config = config_from_args(args)
    assert config.size_hw == (96, 160)
    assert "--size 160x96" in recipe_command(config)


def test_eval_rejects_unknown_branch_and_prefilters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no split branch 'split@nowhere'"):
        evaluate_entry(DETECTOR_ENTRY, branch="split@nowhere", val_images=1, repeats=1)
    zoo.write_entry(
        zoo.ZooEntry(name="pf", kind="prefilter", builder="x", checkpoint="pf.pt"), tmp_path
    )
    with pytest.raises(ValueError, match="is a prefilter"):
        evaluate_entry("pf", tmp_path)


def test_committed_detector_scores_and_finds_real_objects() -> None:
    metrics = evaluate_entry(DETECTOR_ENTRY, val_images=12, repeats=1)
    assert metrics["mAP"] > 0.0 and metrics["mAP50"] > metrics["mAP"]
    assert metrics["head_latency_ms"] > 0 and metrics["params"] > 0
    model = create_model(f"zoo:{DETECTOR_ENTRY}")
    scene = SceneConfig(empty_fraction=0.0)
    hits = 0
    for index in range(3):
        sample = generate_image(scene, VAL_DATA_SEED + 1, index)
        det = model.run_local(sample.image)
        truth = target_of(sample)
        if len(det.boxes) and len(truth.boxes_xyxy):
            iou = _iou(det.boxes, truth.boxes_xyxy)
            same_class = det.labels[:, None] == truth.labels[None, :]
            hits += int(((iou >= 0.5) & same_class).any(axis=0).sum())
    assert hits > 0  # some ground-truth object is found with the right class


def test_committed_segmenter_beats_all_background() -> None:
    metrics = evaluate_entry(SEGMENTER_ENTRY, val_images=6, repeats=1)
    # The bar is what predicting "background" everywhere scores on the same frames
    # (background covers most pixels, so that alone gets a fair mIoU).
    from splitedge.models.data import mean_iou

    val = validation_set(6)
    gts = [sample.semantic for sample in val.samples]
    background = mean_iou([np.zeros_like(g) for g in gts], gts, 7)
    assert metrics["mIoU"] > background + 0.02


def test_an_unknown_zoo_entry_is_one_line_exit_2(capsys) -> None:
    assert train_main(["eval", "no-such-entry"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splitedge-train: error:") and "no-such-entry" in err
    assert err.count("\n") == 1
