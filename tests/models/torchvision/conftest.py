"""Fixtures for the torchvision split wrappers: small frames and calibrated random models.

A randomly initialised torchvision model keeps unit BatchNorm statistics while its
activations shrink layer after layer, so every frame gets the same constant mask
and near-equal scores: equality tests on such outputs could not fail. Recomputing
the BatchNorm statistics on three frames keeps the weights random but makes the
outputs depend on the input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from splitedge.models.calibration import recalibrate_batchnorm
from splitedge.models.registry import create_model
from splitedge.models.split import TorchvisionSplitModel
from splitedge.models.types import Detections, Prediction, SegmentationMask

FAST_DETECTION = ("fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large")
FAST_SEGMENTATION = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
FAST_FAMILIES = FAST_DETECTION + FAST_SEGMENTATION
FRAME_HW = (160, 200)


def make_frame(seed: int, height: int = FRAME_HW[0], width: int = FRAME_HW[1]) -> np.ndarray:
    """A smooth random RGB frame (blobs rather than pixel noise, like a real scene)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR)).copy()


def build_options(name: str) -> dict[str, object]:
    if name in FAST_SEGMENTATION:
        return {"min_size": 160}
    # Random class scores sit near 1/num_classes, under the 0.05 default threshold.
    return {"score_thresh": 0.0}


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; small models do not need more
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def calibrated() -> Callable[[str], TorchvisionSplitModel]:
    """``calibrated(name)``: a random-init model with input-sensitive outputs (cached)."""
    cache: dict[str, TorchvisionSplitModel] = {}

    def get(name: str) -> TorchvisionSplitModel:
        if name not in cache:
            torch.manual_seed(0)
            model = create_model(name, **build_options(name))
            recalibrate_batchnorm(model, [make_frame(100 + i) for i in range(3)])
            cache[name] = model
        return cache[name]

    return get


def assert_same_prediction(got: Prediction, want: Prediction) -> None:
    """Bit-exact equality of two predictions of the same kind."""
    assert type(got) is type(want)
    if isinstance(want, SegmentationMask):
        assert isinstance(got, SegmentationMask)
        assert got.mask.dtype == np.uint8
        np.testing.assert_array_equal(got.mask, want.mask)
    else:
        assert isinstance(got, Detections) and isinstance(want, Detections)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.labels, want.labels)


def assert_close_detections(got: Detections, want: Detections) -> None:
    """Same detections up to float noise, in any order.

    A batched convolution may differ from a single one in the last bits; with a
    random network's near-equal scores that can swap neighbours in the ranking.
    """
    assert len(got.boxes) == len(want.boxes)
    rows_got = np.concatenate([got.boxes, got.scores[:, None] * 1000.0], axis=1)
    rows_want = np.concatenate([want.boxes, want.scores[:, None] * 1000.0], axis=1)
    for label in np.unique(want.labels):
        a, b = rows_got[got.labels == label], rows_want[want.labels == label]
        assert len(a) == len(b), f"label {label}: {len(a)} vs {len(b)} boxes"
        distance = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)
        assert distance.min(axis=1).max() < 1e-2, f"label {label}: unmatched boxes"
        assert distance.min(axis=0).max() < 1e-2, f"label {label}: unmatched boxes"


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, shape (len(a), len(b))."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


# Test modules cannot import this conftest under --import-mode=importlib; hand the
# helpers over as fixtures instead.
@pytest.fixture(scope="session")
def frame() -> Callable[..., np.ndarray]:
    return make_frame


@pytest.fixture(scope="session")
def same_prediction() -> Callable[[Prediction, Prediction], None]:
    return assert_same_prediction


@pytest.fixture(scope="session")
def close_detections() -> Callable[[Detections, Detections], None]:
    return assert_close_detections


@pytest.fixture(scope="session")
def iou() -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return box_iou
