"""Per-branch accuracy on synthetic validation video (branch_accuracy.py) and its CLI flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from splitedge.mobile_client.cli import add_profile_parser
from splitedge.mobile_client.profile import (
    DEFAULT_BIN_EDGES,
    AccuracyVideo,
    BranchConfig,
    load_profile,
)
from splitedge.models.data import VideoConfig
from splitedge.models.registry import create_model
from splitedge.training.branch_accuracy import BranchAccuracyError, make_video_validator

# A tiny, clearly moving video: one 12-frame clip at 160x120.
FRAMES = 12
SIZE = (160, 120)
MOVING = VideoConfig(min_speed_px=2.0, max_speed_px=6.0)
TEACHER = "zoo:teacher-frcnn-small"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def teacher():
    return create_model(TEACHER, jpeg_qualities=(90, 5))


@pytest.fixture(scope="module")
def validator(teacher):
    return make_video_validator(teacher, frames=FRAMES, size=SIZE, clip_frames=FRAMES, video=MOVING)


def test_local_beats_jpeg_q5_and_an_untrained_2bit_bottleneck(validator) -> None:
    local = validator(BranchConfig("local"))
    jpeg5 = validator(BranchConfig("offload-jpeg5"))
    assert 0.0 <= jpeg5.overall < local.overall <= 1.0
    # The trained teacher finds objects on clean frames (mAP@.5 0.087 on this small-object
    # clip when written; JPEG q5 0.005).
    assert local.overall > 0.05
    # A random-init student in front of the same teacher: the 2-bit code carries nothing.
    untrained = create_model("bottleneck", teacher=TEACHER, branch_bits=(2,))
    split = make_video_validator(
        untrained, frames=FRAMES, size=SIZE, clip_frames=FRAMES, video=MOVING
    )(BranchConfig("bottleneck-12-w1-2bit", 2))
    assert split.overall < local.overall


def test_tracking_between_detections_costs_accuracy_on_moving_video(validator) -> None:
    k1 = validator(BranchConfig("local"))
    k4 = validator(BranchConfig("local", detection_interval=4))
    assert k4.overall <= k1.overall + 0.02
    # Detection frames are the detector's output; the frames between carry its boxes on.
    preds = validator.predictions(BranchConfig("local", detection_interval=4))
    first = validator.detect(BranchConfig("local"), 0)
    np.testing.assert_array_equal(preds[4].boxes, validator.detect(BranchConfig("local"), 4).boxes)
    np.testing.assert_array_equal(preds[1].labels, first.labels)
    assert len(first.boxes) > 0
    assert not np.allclose(preds[3].boxes, first.boxes)  # the tracker moved them


def test_score_is_the_metric_over_the_frames_given(validator) -> None:
    # Every frame's detections: the branch's record; a subset: the metric over it alone;
    # a frame the video lacks: a precise error.
    local = BranchConfig("local")
    preds = validator.predictions(local)
    every = dict(enumerate(preds))
    assert validator.score(every) == pytest.approx(validator(local).overall, abs=1e-4)
    half = {i: p for i, p in every.items() if i % 2 == 0}
    assert validator.score(half) == pytest.approx(validator._metric(sorted(half), preds))
    with pytest.raises(BranchAccuracyError, match=f"frame {FRAMES} is not in the {FRAMES}-frame"):
        validator.score({FRAMES: preds[0]})


def test_bins_are_valid_names_with_enough_frames_and_results_repeat(validator, teacher) -> None:
    record = validator(BranchConfig("offload-jpeg90"))
    assert record.by_bin
    for name, value in record.by_bin.items():
        feature, _, index = name.partition(":")
        assert feature in DEFAULT_BIN_EDGES
        assert 0 <= int(index) <= len(DEFAULT_BIN_EDGES[feature])
        assert 0.0 <= value <= 1.0
        assert sum(name in bins for bins in validator.video.bins) >= 5
    again = make_video_validator(
        teacher, frames=FRAMES, size=SIZE, clip_frames=FRAMES, video=MOVING
    )(BranchConfig("offload-jpeg90"))
    assert again == record


def test_refuses_what_it_cannot_score(teacher) -> None:
    with pytest.raises(BranchAccuracyError, match="scores detection models only"):
        make_video_validator(create_model("echo"), frames=4, size=SIZE)
    with pytest.raises(BranchAccuracyError, match="metric must be one of"):
        make_video_validator(teacher, frames=4, size=SIZE, metric="recall")
    with pytest.raises(BranchAccuracyError, match="frames must be >= 1"):
        make_video_validator(teacher, frames=0, size=SIZE)
    untrained = create_model("bottleneck", teacher=TEACHER, branch_bits=(8,))
    check = make_video_validator(untrained, frames=4, size=SIZE)
    with pytest.raises(BranchAccuracyError, match=r"runs at width 0\.5, the config says 1"):
        check(BranchConfig("bottleneck-12-w0.5-8bit", 8, 1.0))
    with pytest.raises(BranchAccuracyError, match="no branch 'split@nowhere'"):
        check(BranchConfig("split@nowhere", 8))


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_profile_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["profile", *argv])


def test_profile_command_fills_accuracy(tmp_path: Path) -> None:
    out = tmp_path / "teacher.json"
    args = _parse(
        *("--model", TEACHER, "--model-option", "jpeg_qualities=[90,5]", "--output", str(out)),
        *("--branches", "local,offload-jpeg5", "--frames", "2", "--size", "160x120"),
        *("--levels", "0", "--intervals", "1,4", "--accuracy-frames", "8", "--no-progress"),
    )
    assert args.func(args) == 0
    entries = {e.key: e for e in load_profile(out).entries}
    assert set(entries) == {
        "local/0b/w1/native/k1",
        "local/0b/w1/native/k4",
        "offload-jpeg5/0b/w1/native/k1",
        "offload-jpeg5/0b/w1/native/k4",
    }
    assert all(e.accuracy is not None and 0.0 <= e.accuracy <= 1.0 for e in entries.values())
    assert (
        entries["offload-jpeg5/0b/w1/native/k1"].accuracy
        < entries["local/0b/w1/native/k1"].accuracy
    )
    # The profile says which frames its accuracies are of: the validation seed's video.
    assert load_profile(out).accuracy_video == AccuracyVideo(424242, 8, 16, 160, 120, "mAP50")


def test_profile_command_scores_the_video_it_is_told(tmp_path: Path) -> None:
    """--accuracy-seed/--accuracy-clip-frames pick the frames (e.g. a scenario run's video):
    the entry's accuracy is the validator's on exactly those frames, and the file says so."""
    out = tmp_path / "teacher.json"
    args = _parse(
        *("--model", TEACHER, "--model-option", "jpeg_qualities=[90,5]", "--output", str(out)),
        *("--branches", "local", "--frames", "1", "--size", "160x120", "--levels", "0"),
        *("--accuracy-frames", "6", "--accuracy-seed", "3", "--accuracy-clip-frames", "3"),
        "--no-progress",
    )
    assert args.func(args) == 0
    profile = load_profile(out)
    assert profile.accuracy_video == AccuracyVideo(3, 6, 3, 160, 120, "mAP50")
    teacher = create_model(TEACHER, jpeg_qualities=(90, 5))
    expected = make_video_validator(teacher, frames=6, size=SIZE, seed=3, clip_frames=3)
    assert profile.entries[0].accuracy == expected(BranchConfig("local")).overall


def test_profile_command_takes_branch_bits_and_widths(tmp_path: Path) -> None:
    out = tmp_path / "student.json"
    args = _parse(
        *("--model", "bottleneck", "--model-option", f"teacher={TEACHER}", "--output", str(out)),
        *("--branches", "bottleneck-12-w0.5-4bit", "--bits", "branch", "--frames", "1"),
        *("--size", "160x120", "--levels", "0", "--no-progress"),
    )
    assert args.func(args) == 0
    (entry,) = load_profile(out).entries
    assert (entry.config.bits, entry.config.width, entry.accuracy) == (4, 0.5, None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--model", "echo", "--accuracy-frames", "-3"), "--accuracy-frames must be >= 0, got -3"),
        (("--model", "echo", "--accuracy-seed", "-1"), "--accuracy-seed must be >= 0, got -1"),
        (
            ("--model", "echo", "--accuracy-clip-frames", "0"),
            "--accuracy-clip-frames must be >= 1, got 0",
        ),
        (("--model", "echo", "--accuracy-frames", "4"), "scores detection models only"),
        (("--model", "echo", "--model-option", "jpeg_qualities=[90,"), "not valid JSON"),
    ],
)
def test_profile_command_rejects_bad_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    args = _parse(*argv, "--output", str(tmp_path / "x.json"), "--frames", "1", "--no-progress")
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "x.json").exists()
