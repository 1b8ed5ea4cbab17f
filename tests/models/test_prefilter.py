"""Prefilter: threshold for recall >= 0.99, tiny training, checkpoints, the model hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from splitedge.models.bottleneck import BottleneckConfig, Student, save_student
from splitedge.models.prefilter import (
    Prefilter,
    PrefilterCheckpointError,
    PrefilterConfigError,
    build_net,
    load_prefilter,
    recall_and_drop,
    save_prefilter,
    threshold_for_recall,
)
from splitedge.models.registry import create_model
from splitedge.training.prefilter_train import PrefilterRecipe, train_prefilter

torch.set_num_threads(1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=300).filter(
        lambda pairs: any(label for _, label in pairs)
    ),
    st.sampled_from([0.9, 0.95, 0.99, 1.0]),
)
def test_threshold_reaches_the_recall_and_is_the_largest_that_does(pairs, target):
    scores = np.array([s for s, _ in pairs])
    labels = np.array([y for _, y in pairs])
    threshold = threshold_for_recall(scores, labels, target)
    recall, _ = recall_and_drop(scores, labels, threshold)
    assert recall >= target
    higher = np.nextafter(threshold, 2.0)
    assert recall_and_drop(scores, labels, higher)[0] < target or higher > scores.max()


def test_threshold_needs_positives_and_a_sane_target():
    with pytest.raises(PrefilterConfigError, match="no positive frames"):
        threshold_for_recall(np.array([0.1]), np.array([False]))
    with pytest.raises(PrefilterConfigError, match="target_recall"):
        threshold_for_recall(np.array([0.1]), np.array([True]), 1.5)


@pytest.fixture(scope="module")
def tiny_prefilter():
    recipe = PrefilterRecipe(
        input_kind="frame", train_frames=64, val_frames=80, iterations=40, batch_size=16, videos=1
    )
    return train_prefilter(recipe, progress=False)


def test_tiny_prefilter_reaches_recall_099_on_its_validation_frames(tiny_prefilter):
    from splitedge.training.prefilter_train import _frames
    from splitedge.training.teacher_data import VAL_DATA_SEED

    images, labels = _frames(VAL_DATA_SEED, 80)
    recall, dropped = recall_and_drop(
        tiny_prefilter.scores(images), labels, tiny_prefilter.threshold
    )
    assert recall >= 0.99
    assert tiny_prefilter.metrics["val_recall"] == pytest.approx(recall, abs=1e-4)
    assert tiny_prefilter.metrics["val_dropped_share"] == pytest.approx(dropped, abs=1e-4)
    assert 0.0 <= tiny_prefilter.metrics["video_uplink_saved"] <= 1.0


def test_prefilter_checkpoint_round_trips(tiny_prefilter, tmp_path):
    path = save_prefilter(tiny_prefilter, tmp_path / "p.pt")
    loaded = load_prefilter(path)
    frames = [np.full((96, 128, 3), v, np.uint8) for v in (0, 90, 200)]
    np.testing.assert_allclose(loaded.scores(frames), tiny_prefilter.scores(frames), atol=1e-6)
    assert loaded.threshold == tiny_prefilter.threshold
    assert [loaded.keep(f) for f in frames] == [
        bool(s >= loaded.threshold) for s in loaded.scores(frames)
    ]


def test_bad_prefilter_checkpoints_and_settings_are_refused(tmp_path):
    with pytest.raises(PrefilterCheckpointError, match="does not exist"):
        load_prefilter(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(PrefilterCheckpointError, match="cannot read") as info:
        load_prefilter(tmp_path / "junk.pt")
    assert "\n" not in str(info.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(PrefilterCheckpointError, match=r"empty\.pt: \S"):  # a reason, not ""
        load_prefilter(tmp_path / "empty.pt")
    with pytest.raises(PrefilterCheckpointError, match="is a directory, not a file"):
        load_prefilter(tmp_path)
    with pytest.raises(PrefilterConfigError, match="needs --student"):
        build_net("head")
    with pytest.raises(PrefilterConfigError, match="input must be"):
        build_net("audio")


def test_head_prefilter_reuses_the_student_early_layers(tmp_path):
    torch.manual_seed(3)
    student = Student(BottleneckConfig())
    path = save_student(student, tmp_path / "s.pt", "t")
    net = build_net("head", path)
    for key, value in student.head.early.state_dict().items():
        torch.testing.assert_close(net.features.state_dict()[key], value)
    assert not any(p.requires_grad for p in net.features.parameters())


def test_split_model_asks_its_prefilter(tiny_prefilter, tmp_path):
    path = save_prefilter(tiny_prefilter, tmp_path / "p.pt")
    options = {"min_size": 96, "max_size": 128}
    teacher = "fasterrcnn_mobilenet_v3_small_fpn_lite"
    plain = create_model("bottleneck", teacher=teacher, teacher_options=options)
    frame = np.zeros((96, 128, 3), np.uint8)
    assert plain.prefilter(frame) is True  # nothing attached: every frame goes
    gated = create_model(
        "bottleneck", teacher=teacher, teacher_options=options, prefilter=str(path)
    )
    assert gated.prefilter(frame) == tiny_prefilter.keep(frame)
    always = Prefilter(tiny_prefilter.net, threshold=2.0, metrics={})  # scores are <= 1
    gated.prefilter_model = always
    assert gated.prefilter(frame) is False
