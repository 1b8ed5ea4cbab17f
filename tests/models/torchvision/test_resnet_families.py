"""ResNet-50 families (slow): split branches equal the unsplit model, batches equal singles."""

from __future__ import annotations

import pytest
import torch

from splitedge.models.registry import create_model
from splitedge.models.types import TailInput

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn"])
def test_resnet_split_equals_unsplit(name, frame, same_prediction, close_detections):
    torch.manual_seed(0)
    # Small inputs keep ResNet-50 affordable on a shared CPU.
    model = create_model(name, min_size=128, max_size=160, score_thresh=0.0)
    assert [b for b, s in model.branches.items() if s.kind == "split"] == [
        "split@layer1",
        "split@layer2",
    ]
    # RetinaNet's FPN starts at layer2, Faster R-CNN's at layer1.
    first_level = "feat_0" if name.startswith("faster") else "x"
    assert [t.name for t in model.branches["split@layer1"].tensors] == [first_level]
    assert model.branches["split@layer2"].tensors[0].shape == (
        1,
        256 if first_level == "feat_0" else 512,
        -1,
        -1,
    )
    images = [frame(20), frame(21), frame(22, 110, 150)]
    for image in images[:1]:
        want = model.run_local(image)
        assert len(want.boxes) > 0
        for branch in ("split@layer1", "split@layer2"):
            head = model.run_head(branch, image)
            got = model.run_tail(branch, [TailInput(head.orig_size, head.input_size, head.tensors)])
            same_prediction(got[0], want)
        same_prediction(
            model.run_tail("offload-png", [TailInput((160, 200), image=image)])[0], want
        )
    heads = [model.run_head("split@layer2", im) for im in images]
    inputs = [TailInput(h.orig_size, h.input_size, h.tensors) for h in heads]
    together = model.run_tail("split@layer2", inputs)
    for got, item in zip(together, inputs, strict=True):
        alone = model.run_tail("split@layer2", [item])[0]
        close_detections(got, alone)
        assert (
            got.boxes[:, 2].max() <= item.orig_size[1]
            and got.boxes[:, 3].max() <= item.orig_size[0]
        )
