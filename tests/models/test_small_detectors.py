"""The small teacher families: registered, split exactly, and small enough to commit."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from splitedge.models.calibration import recalibrate_batchnorm
from splitedge.models.data import SceneConfig, generate_image
from splitedge.models.registry import create_model, list_models
from splitedge.models.small_detectors import (
    SMALL_DETECTOR,
    SMALL_SEGMENTER,
    SYNTHETIC_CLASS_NAMES,
    build_small_detector,
    build_small_segmenter,
    feature_names,
)
from splitedge.models.types import Detections, SegmentationMask, TailInput

MAX_CHECKPOINT_BYTES = 10 * 1024 * 1024
SCENE = SceneConfig(width=160, height=120, empty_fraction=0.0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frame(index: int) -> np.ndarray:
    return generate_image(SCENE, 7, index).image


@pytest.fixture(scope="module")
def calibrated() -> dict[str, object]:
    """Random-init models whose BatchNorm statistics come from synthetic frames."""
    models = {}
    for name, options in ((SMALL_DETECTOR, {"score_thresh": 0.0}), (SMALL_SEGMENTER, {})):
        model = create_model(name, min_size=120, **options)
        recalibrate_batchnorm(model, [_frame(i) for i in range(3)])
        models[name] = model
    return models


def test_families_are_registered_with_synthetic_classes() -> None:
    names = list_models()
    assert SMALL_DETECTOR in names and SMALL_SEGMENTER in names
    model = create_model(SMALL_SEGMENTER, min_size=64)
    assert model.num_classes == 7
    assert model.class_names == SYNTHETIC_CLASS_NAMES
    assert model.task == "segmentation"


@pytest.mark.parametrize("builder", [build_small_detector, build_small_segmenter])
def test_fresh_checkpoint_is_under_10_mb(builder, tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save(builder().state_dict(), path)
    assert 0 < path.stat().st_size <= MAX_CHECKPOINT_BYTES


@pytest.mark.parametrize("name", [SMALL_DETECTOR, SMALL_SEGMENTER])
def test_every_split_branch_equals_the_unsplit_model(name, calibrated) -> None:
    model = calibrated[name]
    image = _frame(10)
    want = model.run_local(image)
    if isinstance(want, Detections):
        assert len(want.boxes) > 0  # equality of empty outputs would prove nothing
    else:
        assert isinstance(want, SegmentationMask)
        assert len(np.unique(want.mask)) >= 2
    branches = [b for b, s in model.branches.items() if s.kind == "split"]
    assert len(branches) == 3
    for branch in branches:
        head = model.run_head(branch, image)
        got = model.run_tail(branch, [TailInput(head.orig_size, head.input_size, head.tensors)])[0]
        assert type(got) is type(want)
        if isinstance(want, Detections):
            np.testing.assert_array_equal(got.boxes, want.boxes)
            np.testing.assert_array_equal(got.scores, want.scores)
            np.testing.assert_array_equal(got.labels, want.labels)
        else:
            np.testing.assert_array_equal(got.mask, want.mask)


def test_detector_fpn_inputs_are_the_named_features(calibrated) -> None:
    model = calibrated[SMALL_DETECTOR]
    net = model.torch_model
    x = torch.zeros(1, 3, 128, 160)
    with torch.inference_mode():
        levels = net.backbone.body(x)
    paths = feature_names(SMALL_DETECTOR)["fpn_inputs"]
    assert list(levels) == ["0", "1", "2"]
    strides = [128 // v.shape[-2] for v in levels.values()]
    assert strides == [8, 16, 32]
    modules = dict(net.named_modules())
    for path, level in zip(paths, levels.values(), strict=True):
        assert modules[path].out_channels == level.shape[1]
    assert len(feature_names(SMALL_DETECTOR)["stages"]) == len(model._parts.stages)


def test_feature_names_rejects_an_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown small family 'resnet'"):
        feature_names("resnet")
