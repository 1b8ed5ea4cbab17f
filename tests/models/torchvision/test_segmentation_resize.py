"""The segmentation input resize and the nearest-neighbour mask resize."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitedge.models.segmentation import masks_from_logits, resized_size


@pytest.mark.parametrize(
    ("hw", "min_size", "max_size", "want"),
    [
        ((160, 200), 160, 1024, (160, 200)),
        ((120, 260), 160, 1024, (160, 347)),  # shorter side to min_size
        ((100, 1000), 160, 800, (80, 800)),  # ... unless the longer side would pass max_size
        ((1080, 1920), 520, 1024, (520, 924)),
    ],
)
def test_resized_size(hw, min_size, max_size, want):
    assert resized_size(*hw, min_size, max_size) == want


def test_mask_is_argmax_resized_with_nearest_neighbour():
    classes = np.array([[0, 3, 3, 1], [2, 2, 0, 1], [4, 0, 0, 0]], dtype=np.int64)
    logits = torch.nn.functional.one_hot(torch.from_numpy(classes), 5).permute(2, 0, 1)[None]
    logits = logits.float() * 2.0 - 1.0
    (small,), (large,) = masks_from_logits(logits, [(3, 4)]), masks_from_logits(logits, [(6, 12)])
    assert small["mask"].dtype == torch.uint8
    np.testing.assert_array_equal(small["mask"].numpy(), classes)
    # Nearest neighbour only repeats labels: blending 3 and 1 must never give 2.
    want = np.kron(classes, np.ones((2, 3), np.int64))
    np.testing.assert_array_equal(large["mask"].numpy(), want)
