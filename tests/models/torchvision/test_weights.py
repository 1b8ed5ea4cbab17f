"""Loading weights: checkpoint round trip, precise errors, the random-init warning."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from splitedge.models.registry import create_model
from splitedge.models.split_errors import WeightsError
from splitedge.models.weights import RANDOM_INIT

NAME = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A random model's state_dict on disk, plain and wrapped as {"model": ...}."""
    torch.manual_seed(1)
    model = create_model(NAME, score_thresh=0.0)
    folder = tmp_path_factory.mktemp("ckpt")
    plain, wrapped = folder / "plain.pt", folder / "wrapped.pth"
    torch.save(model.torch_model.state_dict(), plain)
    torch.save({"model": model.torch_model.state_dict(), "epoch": 3}, wrapped)
    return model, plain, wrapped


@pytest.mark.parametrize("which", ["plain", "wrapped"])
def test_checkpoint_round_trip_gives_identical_outputs(
    saved, which, frame, same_prediction, caplog
):
    original, plain, wrapped = saved
    path = plain if which == "plain" else wrapped
    image = frame(5)
    torch.manual_seed(2)  # a different random init, replaced by the checkpoint
    with caplog.at_level(logging.WARNING):
        loaded = create_model(NAME, score_thresh=0.0, weights=str(path))
    assert "RANDOM" not in caplog.text
    assert loaded.weights_source == str(path)
    want = original.run_local(image)
    assert len(want.boxes) > 0
    same_prediction(loaded.run_local(image), want)
    head = loaded.run_head("split@features.6", image)
    from splitedge.models.types import TailInput

    got = loaded.run_tail(
        "split@features.6", [TailInput(head.orig_size, head.input_size, head.tensors)]
    )
    same_prediction(got[0], want)


def test_random_init_is_logged_and_recorded(caplog, frame, saved):
    original = saved[0]
    with caplog.at_level(logging.WARNING, logger="splitedge.models.weights"):
        model = create_model(NAME, score_thresh=0.0, init_seed=2)
    assert model.weights_source == RANDOM_INIT
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "RANDOM INITIALISATION" in warnings[0].getMessage()
    assert NAME in warnings[0].getMessage()
    # ... and it really is another network than the saved one.
    assert not np.array_equal(model.run_local(frame(5)).boxes, original.run_local(frame(5)).boxes)


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(WeightsError, match=r"checkpoint .*nope\.pt does not exist"):
        create_model(NAME, weights=str(path))


def test_garbage_checkpoint(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a zip archive nor a pickle" * 10)
    with pytest.raises(
        WeightsError, match=r"garbage\.pt is not a readable torch state_dict"
    ) as info:
        create_model(NAME, weights=str(path))
    assert "\n" not in str(info.value)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match=r"holds a list, not a state_dict"):
        create_model(NAME, weights=str(path))


def test_checkpoint_of_another_architecture(tmp_path):
    other = create_model("ssdlite320_mobilenet_v3_large")
    path = tmp_path / "ssd.pt"
    torch.save(other.torch_model.state_dict(), path)
    with pytest.raises(WeightsError) as info:
        create_model(NAME, weights=str(path))
    message = str(info.value)
    assert f"does not fit {NAME}" in message
    assert re.search(r": \d+ missing keys \('backbone\.body\.", message)
    assert re.search(r"; \d+ unexpected keys \('backbone\.extra\.", message)


def test_checkpoint_with_other_num_classes(tmp_path, saved):
    path = tmp_path / "five.pt"
    torch.save(create_model(NAME, num_classes=5).torch_model.state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"'roi_heads.box_predictor.*shape \[5.*num_classes right"
    ):
        create_model(NAME, weights=str(path))
    model = create_model(NAME, weights=str(path), num_classes=5)
    assert model.num_classes == 5 and len(model.class_names) == 5


def test_deeplab_checkpoint_with_aux_head_loads(tmp_path, frame):
    """torchvision's DeepLab checkpoints carry a training-only aux head; it is skipped."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(3)
    reference = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, aux_loss=True
    ).eval()
    path = tmp_path / "deeplab.pt"
    torch.save(reference.state_dict(), path)
    model = create_model("deeplabv3_mobilenet_v3_large", weights=str(path), min_size=96)
    for key, value in model.torch_model.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key], rtol=0, atol=0)


def test_unknown_torchvision_weights_name():
    with pytest.raises(
        WeightsError, match=r"unknown torchvision weights name 'Nope_Weights.DEFAULT'"
    ):
        create_model(NAME, weights="Nope_Weights.DEFAULT")


def test_torchvision_weights_of_another_architecture():
    with pytest.raises(
        WeightsError, match=r"ResNet50_Weights.DEFAULT' are for another architecture"
    ):
        create_model(NAME, weights="ResNet50_Weights.DEFAULT")


def test_torchvision_weights_num_classes_conflict():
    with pytest.raises(WeightsError, match=r"have 91 classes, num_classes=3 given"):
        create_model(
            NAME, weights="FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT", num_classes=3
        )


def test_torchvision_weights_download_failure_is_clear(tmp_path, monkeypatch):
    """Nothing cached and no route to the hub: one line naming the URL and the cache."""
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    # A proxy on a closed local port makes the download fail at once, offline or not.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    try:
        with pytest.raises(WeightsError) as info:
            create_model(NAME, weights="FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.DEFAULT")
    finally:
        torch.hub.set_dir(hub)
    message = str(info.value)
    assert (
        "could not load torchvision weights FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1"
        in message
    )
    assert "https://download.pytorch.org/" in message
    assert str(tmp_path / "hub" / "checkpoints") in message
    assert "\n" not in message


def test_random_init_is_reproducible_and_leaves_the_global_rng_alone():
    # A device and a server building the same random-init model must hold the same
    # weights, or a split head would feed a tail it was never paired with.
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model(NAME, score_thresh=0.0).torch_model.state_dict()
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    b = create_model(NAME, score_thresh=0.0).torch_model.state_dict()
    c = create_model(NAME, score_thresh=0.0, init_seed=1).torch_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
