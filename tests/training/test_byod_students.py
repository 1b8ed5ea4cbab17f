"""Bring your own detector: students of any torchvision family (``--split-at``), trained
from a COCO-format folder (``--data``), on the device the user names, resumable, with
torchrun processes, scored on the folder's val split and served by a real edge.

Every teacher is random-init (weights=None: no hub downloads here); the frames are the
project's generated shapes written as a COCO folder by ``models.data.export``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch

from splitedge.edge.config import ModelConfig, load_config
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer
from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.models import zoo
from splitedge.models.bottleneck import load_student
from splitedge.models.data import SceneConfig, build_dataset
from splitedge.models.types import Detections, SegmentationMask, TailInput
from splitedge.proto import codec
from splitedge.training import train_cli
from splitedge.training.distill import DistillConfig, RunOptions, distill
from splitedge.training.student_data import StudentDataset, find_splits

torch.set_num_threads(1)
SMALL = "fasterrcnn_mobilenet_v3_small_fpn_lite"


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory) -> Path:
    """``train/`` (6 frames) and ``val/`` (2 frames), 128x96, generated shapes."""
    root = tmp_path_factory.mktemp("coco")
    scene = SceneConfig(width=128, height=96)
    build_dataset(root / "train", 6, seed=1, scene=scene)
    build_dataset(root / "val", 2, seed=2, scene=scene)
    return root


def _train(*argv: str) -> int:
    return train_cli.main([*argv, "--no-progress"])


@contextlib.asynccontextmanager
async def _edge(builder: str, options: dict) -> AsyncIterator[str]:
    models = [ModelConfig(builder, options)]
    config = load_config(None, port=0, host="127.0.0.1", models=models)
    registry = ModelRegistry.from_config(config.models, config.limits.codec_limits(), device="cpu")
    async with EdgeServer(config, registry) as edge:
        yield f"127.0.0.1:{edge.port}"


async def _split_frame_through_edge(builder: str, checkpoint: Path) -> tuple[object, object]:
    """A split frame through an in-process edge serving the student; returns (the edge's
    answer, the device's own tail on the same wire bytes)."""
    options = {"weights": str(checkpoint)}
    backend = TorchHeadBackend(builder, options)
    branch = next(b for b, s in backend.model.branches.items() if s.kind == "split")
    frame = next(open_source("synthetic", max_frames=1, size=(160, 120), seed=5))
    async with (
        _edge(builder, options) as address,
        Client(address, builder, backend=backend, deadline_ms=0) as client,
    ):
        result = await client.submit(frame, branch, bits=8)
    assert result.source == "edge", result.reason
    head = backend.model.run_head(branch, frame.image)
    wire = {
        k: codec.decode_tensor(codec.encode_tensor(v, k, bits=8)) for k, v in head.tensors.items()
    }
    expected = backend.model.run_tail(branch, [TailInput(head.orig_size, head.input_size, wire)])
    return result.prediction, expected[0]


async def test_resnet50_fpn_student_from_a_coco_folder_is_scored_served_and_split(
    coco_folder, tmp_path
):
    argv = ["ghnd", "--teacher", "fasterrcnn_resnet50_fpn", "--teacher-option", "score_thresh=0"]
    argv += ["--tiny", "--iterations", "2", "--channels", "4", "--widths", "0.5,1"]
    argv += ["--bits", "8", "--data", str(coco_folder), "--workers", "1", "--val-images", "2"]
    assert _train(*argv, "--name", "r50", "--out", str(tmp_path)) == 0
    entry = zoo.get_entry("r50", tmp_path)
    assert entry.builder == "bottleneck" and "--data " in entry.recipe
    assert entry.training["split_at"] == "layer1" and entry.training["data"] == str(coco_folder)
    # GHND on the split feature and every FPN input the tail reads after it.
    assert entry.training["ghnd_features"] == [f"backbone.body.layer{i}" for i in range(1, 5)]
    assert entry.metrics["val"]["images"] == 2 and "mAP" in entry.metrics["val"]["teacher"]
    branches = entry.metrics["branches"]
    assert set(branches) == {f"bottleneck-4-w{w}-{b}bit" for w in ("1", "0.5") for b in (8, 4)}
    assert all(0 <= b["mAP"] <= 1 and b["bytes_per_frame_mean"] > 0 for b in branches.values())
    student, meta = load_student(tmp_path / "r50.pt")
    assert meta["extra"]["split_at"] == "layer1"
    assert (student.config.split_channels, student.config.split_stride) == (256, 4)
    got, expected = await _split_frame_through_edge("bottleneck", tmp_path / "r50.pt")
    assert isinstance(got, Detections) and isinstance(expected, Detections)
    assert len(expected.boxes) > 0
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
    np.testing.assert_array_equal(got.labels, expected.labels)


async def test_segmenter_student_from_a_coco_folder_is_scored_served_and_split(
    coco_folder, tmp_path
):
    argv = ["ghnd", "--teacher", "lraspp_mobilenet_v3_large", "--split-at", "features.3"]
    argv += ["--tiny", "--iterations", "2", "--channels", "4", "--widths", "0.5,1"]
    argv += ["--bits", "8", "--data", str(coco_folder), "--workers", "0"]
    assert _train(*argv, "--name", "seg", "--out", str(tmp_path)) == 0
    entry = zoo.get_entry("seg", tmp_path)
    assert entry.builder == "bottleneck-seg" and entry.training["task"] == "segmentation"
    # Cut before the head's low feature: both head inputs and the split feature count.
    assert entry.training["ghnd_features"] == ["backbone.3", "backbone.4", "backbone.16"]
    assert entry.training["bottleneck"]["stride"] == 4  # a stride-4 split stage
    assert 0 <= entry.metrics["branches"]["bottleneck-4-w1-8bit"]["mIoU"] <= 1
    got, expected = await _split_frame_through_edge("bottleneck-seg", tmp_path / "seg.pt")
    assert isinstance(got, SegmentationMask) and got.mask.shape == (120, 160)
    np.testing.assert_array_equal(got.mask, expected.mask)


def test_an_unknown_split_stage_is_one_line_listing_the_valid_ones(capsys):
    argv = ["ghnd", "--teacher", "fasterrcnn_mobilenet_v3_large_320_fpn", "--split-at", "layer9"]
    assert _train(*argv, "--tiny", "--no-zoo") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'layer9'" in err
    assert "features.2, features.3, features.4" in err and "(default features.6)" in err


def test_ssdlite_trains_at_its_fixed_320_input_under_tiny(tmp_path):
    argv = ["ghnd", "--teacher", "ssdlite320_mobilenet_v3_large", "--tiny", "--iterations", "1"]
    assert _train(*argv, "--channels", "4", "--name", "ssd", "--out", str(tmp_path)) == 0
    entry = zoo.get_entry("ssd", tmp_path)
    assert entry.training["teacher_options"] == {} and entry.training["split_at"] == "features.6"


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda root: root / "missing", "no such folder"),
        (lambda root: root, "no COCO annotation file"),
    ],
)
def test_a_bad_data_folder_is_one_line(tmp_path, capsys, make, fragment):
    argv = ["ghnd", "--teacher", SMALL, "--tiny", "--data", str(make(tmp_path)), "--no-zoo"]
    assert _train(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and fragment in err


def test_a_broken_annotation_file_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "train" / "images").mkdir(parents=True)
    bad = tmp_path / "train" / "annotations.json"
    bad.write_text('{"images": [', encoding="utf-8")
    assert _train("ghnd", "--teacher", SMALL, "--tiny", "--data", str(tmp_path), "--no-zoo") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(bad) in err and "not valid JSON" in err


def test_training_frames_are_flipped_with_their_boxes(coco_folder):
    train, val = find_splits(coco_folder)
    assert val is not None and val.root == coco_folder / "val"
    plain = StudentDataset(train, "detection", seed=0, train=False)
    augmented = StudentDataset(train, "detection", seed=0)
    flipped = 0
    for i in range(len(plain)):
        image, target = plain[i]
        aug_image, aug_target = augmented[i]
        if torch.equal(aug_image, image):
            torch.testing.assert_close(aug_target["boxes"], target["boxes"])
            continue
        flipped += 1
        torch.testing.assert_close(aug_image, image.flip(-1))
        width = image.shape[-1]
        mirrored = torch.stack([width - target["boxes"][:, 2], width - target["boxes"][:, 0]], 1)
        torch.testing.assert_close(aug_target["boxes"][:, [0, 2]], mirrored)
    assert 0 < flipped < len(plain)


def _tiny(**kwargs) -> DistillConfig:
    base = dict(
        teacher=SMALL,
        teacher_options={"min_size": 96, "max_size": 128},
        channels=4,
        widths=(0.5, 1.0),
        iterations=6,
        batch_size=2,
        size_hw=(96, 128),
    )
    return DistillConfig(**(base | kwargs))


@pytest.mark.parametrize("data", [False, True], ids=["generated", "coco-folder"])
def test_resume_continues_at_its_step_and_ends_with_the_uninterrupted_weights(
    tmp_path, coco_folder, data
):
    config = _tiny(data=str(coco_folder) if data else None, val_images=0)
    run = RunOptions(checkpoint_every=3, out_dir=tmp_path, name="s", workers=0)
    whole, whole_record = distill(config, progress=False, run=run)
    saved = tmp_path / "s-step3.train.pt"
    assert saved.is_file() and not (tmp_path / "s-step6.train.pt").exists()
    resumed_run = RunOptions(resume=str(saved), out_dir=tmp_path / "again", name="s", workers=0)
    resumed, record = distill(config, progress=False, run=resumed_run)
    assert record["resumed_at"] == 3
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert record["loss_last"] == whole_record["loss_last"]
    with pytest.raises(ValueError, match="another recipe: iterations 6"):
        distill(_tiny(iterations=8), progress=False, run=resumed_run)


def test_amp_on_the_cpu_is_bfloat16_and_a_missing_gpu_is_one_line(capsys):
    _, record = distill(_tiny(iterations=2), progress=False, run=RunOptions(amp=True))
    assert record["amp"] == "bfloat16" and np.isfinite(record["loss_last"])
    if not torch.cuda.is_available():
        assert _train("ghnd", "--teacher", SMALL, "--tiny", "--device", "cuda", "--no-zoo") == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--device cuda: torch sees no CUDA device" in err


def test_torchrun_trains_one_student_over_two_gloo_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    argv = ["ghnd", "--teacher", SMALL, "--tiny", "--iterations", "3", "--channels", "4"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "splitedge.training.train_cli", *argv]
    cmd += ["--name", "ddp", "--out", str(tmp_path), "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "ddp.json").read_text())
    assert record["training"]["world_size"] == 2 and record["training"]["device"] == "cpu"
    assert "rank" not in record["training"]
    assert zoo.load("ddp", tmp_path).branches
