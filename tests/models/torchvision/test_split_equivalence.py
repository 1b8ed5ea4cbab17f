"""Split branches reproduce the unsplit torchvision model, in original frame coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitedge.models.types import Detections, SegmentationMask, TailInput

FAST_FAMILIES = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "deeplabv3_mobilenet_v3_large",
)


def _split_branches(model) -> list[str]:
    return [name for name, spec in model.branches.items() if spec.kind == "split"]


def _through_split(model, branch: str, image: np.ndarray):
    head = model.run_head(branch, image)
    return model.run_tail(branch, [TailInput(head.orig_size, head.input_size, head.tensors)])[0]


def _assert_meaningful(prediction) -> None:
    """Equality of empty or constant outputs proves nothing: insist on content."""
    if isinstance(prediction, Detections):
        assert len(prediction.boxes) > 0
    else:
        assert len(np.unique(prediction.mask)) >= 2


@pytest.mark.parametrize("name", FAST_FAMILIES)
def test_every_branch_equals_the_unsplit_model_exactly(name, calibrated, frame, same_prediction):
    model = calibrated(name)
    image = frame(1)
    want = model.run_local(image)
    _assert_meaningful(want)
    assert len(_split_branches(model)) >= 2
    for branch in _split_branches(model):
        same_prediction(_through_split(model, branch, image), want)
    for branch in ("offload-png", "offload-jpeg90"):
        got = model.run_tail(branch, [TailInput(image.shape[:2], image=image)])[0]
        same_prediction(got, want)


@pytest.mark.parametrize("name", FAST_FAMILIES)
def test_head_output_matches_the_branch_spec(name, calibrated, frame):
    model = calibrated(name)
    image = frame(2, 150, 230)
    for branch in _split_branches(model):
        spec = model.branches[branch]
        head = model.run_head(branch, image)
        assert head.orig_size == (150, 230)
        assert spec.default_bits == 8
        assert list(head.tensors) == [t.name for t in spec.tensors]
        for want in spec.tensors:
            array = head.tensors[want.name]
            assert array.dtype == np.float32
            assert len(array.shape) == len(want.shape)
            assert all(e in (-1, d) for d, e in zip(array.shape, want.shape, strict=True))
        if model.task == "segmentation":
            assert min(head.input_size) == model.min_size
        elif name.startswith("ssdlite"):
            assert head.input_size == (320, 320)
        else:
            assert min(head.input_size) == model.min_size


@pytest.mark.parametrize("name", FAST_FAMILIES)
def test_predictions_are_in_original_frame_coordinates(name, calibrated, frame, same_prediction):
    model = calibrated(name)
    height, width = 120, 260  # another aspect ratio than the calibration frames
    image = frame(3, height, width)
    branch = _split_branches(model)[1]
    got = _through_split(model, branch, image)
    same_prediction(got, model.run_local(image))
    head = model.run_head(branch, image)
    assert head.input_size != (height, width)  # the model did resize, so mapping matters
    if isinstance(got, SegmentationMask):
        assert got.mask.shape == (height, width)
    else:
        assert len(got.boxes) > 0
        assert got.boxes.min() >= 0
        assert got.boxes[:, 2].max() <= width and got.boxes[:, 3].max() <= height
        # Boxes span the frame, not just a corner of it (which unscaled boxes would).
        assert got.boxes[:, 2].max() > width / 2 and got.boxes[:, 3].max() > height / 2


@pytest.mark.parametrize("name", FAST_FAMILIES)
def test_tail_batch_equals_single_runs(name, calibrated, frame, close_detections):
    model = calibrated(name)
    # Two frames of one size batch together; the third differs and runs on its own.
    images = [frame(10), frame(11), frame(12, 140, 180)]
    branch = _split_branches(model)[1]
    heads = [model.run_head(branch, im) for im in images]
    inputs = [TailInput(h.orig_size, h.input_size, h.tensors) for h in heads]
    offload_inputs = [TailInput(im.shape[:2], image=im) for im in images]
    for branch_name, batch in ((branch, inputs), ("offload-png", offload_inputs)):
        together = model.run_tail(branch_name, batch)
        assert len(together) == 3
        for got, item in zip(together, batch, strict=True):
            alone = model.run_tail(branch_name, [item])[0]
            if isinstance(alone, SegmentationMask):
                np.testing.assert_array_equal(got.mask, alone.mask)
            else:
                assert len(alone.boxes) > 0
                close_detections(got, alone)
    # The three frames are different, so equal results above are not a coincidence.
    first, second = model.run_tail(branch, inputs[:2])
    if isinstance(first, SegmentationMask):
        assert not np.array_equal(first.mask, second.mask)
    else:
        assert not np.array_equal(first.boxes, second.boxes)


def test_head_module_is_standalone(calibrated, frame, tmp_path):
    """The device can hold (and load) a head without the tail's weights."""
    model = calibrated("fasterrcnn_mobilenet_v3_large_320_fpn")
    branch = "split@features.6"
    head, tail = model.head_module(branch), model.tail_module(branch)
    head_params = {id(p) for p in head.parameters()}
    assert head_params and head_params.isdisjoint(id(p) for p in tail.parameters())
    assert not any(k.startswith(("rpn", "roi_heads")) for k in head.state_dict())
    path = tmp_path / "head.pt"
    torch.save(head.state_dict(), path)

    from splitedge.models.registry import create_model

    fresh = create_model("fasterrcnn_mobilenet_v3_large_320_fpn", score_thresh=0.0)
    fresh_head = fresh.head_module(branch)
    image = frame(4)
    before = fresh.run_head(branch, image).tensors["x"]
    fresh_head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    after = fresh.run_head(branch, image).tensors["x"]
    want = model.run_head(branch, image).tensors["x"]
    assert not np.array_equal(before, want)
    np.testing.assert_array_equal(after, want)
