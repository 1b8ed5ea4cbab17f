"""8-bit quantized head tensors (through the wire codec) keep predictions close.

Each test also scrambles the head tensors (same values, shuffled positions) and
checks the same criterion then fails, so the tolerance cannot pass by accident.
"""

from __future__ import annotations

import numpy as np
import pytest

from splitedge.models.types import Detections, SegmentationMask, TailInput
from splitedge.proto.codec import decode_tensor, encode_tensor

# One mid-backbone cut per family: on a random network the earliest cuts amplify
# quantization noise far more than a trained one does.
CASES = (
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "split@features.6"),
    ("ssdlite320_mobilenet_v3_large", "split@features.6"),
    ("lraspp_mobilenet_v3_large", "split@features.4"),
    ("deeplabv3_mobilenet_v3_large", "split@features.6"),
)
TOP_K = 10  # reference boxes that must be found again
SEARCH_K = 50  # ... among this many of the quantized run's best boxes
MIN_IOU = 0.7
MIN_BOX_RECALL = 0.8
MIN_PIXEL_AGREEMENT = 0.95
MIN_MEAN_IOU = 0.75


def _quantized(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: decode_tensor(encode_tensor(v, k, bits=8)) for k, v in tensors.items()}


def _scrambled(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.permutation(v.ravel()).reshape(v.shape) for k, v in tensors.items()}


def _close_enough(got, want, iou) -> bool:
    if isinstance(want, SegmentationMask):
        agreement = float((got.mask == want.mask).mean())
        classes = np.union1d(np.unique(got.mask), np.unique(want.mask))
        ious = [
            ((got.mask == c) & (want.mask == c)).sum() / ((got.mask == c) | (want.mask == c)).sum()
            for c in classes
        ]
        return agreement >= MIN_PIXEL_AGREEMENT and float(np.mean(ious)) >= MIN_MEAN_IOU
    assert isinstance(want, Detections) and len(want.boxes) >= TOP_K
    overlaps = iou(want.boxes[:TOP_K], got.boxes[:SEARCH_K])
    same_label = want.labels[:TOP_K, None] == got.labels[None, :SEARCH_K]
    recall = float(((overlaps >= MIN_IOU) & same_label).any(axis=1).mean())
    return recall >= MIN_BOX_RECALL


@pytest.mark.parametrize(("name", "branch"), CASES)
def test_8bit_head_tensors_keep_predictions(name, branch, calibrated, frame, iou):
    model = calibrated(name)
    image = frame(1)
    want = model.run_local(image)
    head = model.run_head(branch, image)
    quantized = _quantized(head.tensors)
    assert any(not np.array_equal(quantized[k], head.tensors[k]) for k in quantized)

    def tail(tensors):
        return model.run_tail(branch, [TailInput(head.orig_size, head.input_size, tensors)])[0]

    assert _close_enough(tail(quantized), want, iou)
    assert not _close_enough(tail(_scrambled(head.tensors)), want, iou)
