"""A bottleneck branch end to end: student head on the device -> codec bytes -> a real
edge server process -> decoder + teacher tail -> detections, equal to the device's own
tail on the same bytes; Describe lists every bottleneck branch with its tensor spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.models.bottleneck import BottleneckConfig, Student, save_student
from splitedge.models.types import Detections, TailInput
from splitedge.proto import codec

pytestmark = pytest.mark.integration

TEACHER = "fasterrcnn_mobilenet_v3_small_fpn_lite"
TEACHER_OPTIONS = {"min_size": 96, "max_size": 128, "score_thresh": 0.0}


async def test_bottleneck_branch_through_a_real_edge_server(edge_factory, tmp_path):
    torch.manual_seed(0)
    checkpoint = save_student(
        Student(BottleneckConfig(channels=12)).eval(),
        tmp_path / "student.pt",
        TEACHER,
        {"teacher_options": TEACHER_OPTIONS},
    )
    # Both sides load the same student checkpoint (and the teacher it names).
    edge = edge_factory("--model", f"bottleneck:weights={checkpoint}")
    backend = TorchHeadBackend("bottleneck", {"weights": str(checkpoint)})
    frame = next(open_source("synthetic", max_frames=1, size=(200, 150), seed=3))
    branch = "bottleneck-12-w0.5-4bit"
    async with Client(edge.address, "bottleneck", backend=backend, deadline_ms=0) as client:
        info = client.model_info
        result = await client.submit(frame, branch, bits=4)
    described = {b.name: b for b in info.branches}
    for width, channels in ((0.25, 3), (0.5, 6), (0.75, 9), (1.0, 12)):
        for bits in (8, 4):
            spec = described[f"bottleneck-12-w{width:g}-{bits}bit"]
            assert spec.kind == "split" and spec.default_bits == bits
            assert [t.name for t in spec.tensors] == ["z"]
            assert list(spec.tensors[0].shape) == [1, channels, -1, -1]
    assert result.source == "edge", result.reason
    assert 0 < result.payload_bytes < 6 * 12 * 16  # 6 channels at 4 bits, zstd-packed
    head = backend.model.run_head(branch, frame.image)
    wire = {
        k: codec.decode_tensor(codec.encode_tensor(v, k, bits=4)) for k, v in head.tensors.items()
    }
    expected = backend.model.run_tail(branch, [TailInput(head.orig_size, head.input_size, wire)])[0]
    got = result.prediction
    assert isinstance(got, Detections) and len(expected.boxes) > 0
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
    np.testing.assert_array_equal(got.labels, expected.labels)
    h, w = frame.image.shape[:2]
    assert got.boxes[:, [0, 2]].max() <= w and got.boxes[:, [1, 3]].max() <= h


async def test_segmentation_student_through_a_real_edge_server(edge_factory):
    from splitedge.models.types import SegmentationMask

    model = "zoo:ghnd-lraspp-small-c12"
    edge = edge_factory("--model", model)
    backend = TorchHeadBackend(model)
    frame = next(open_source("synthetic", max_frames=1, size=(200, 150), seed=4))
    branch = "bottleneck-12-w0.5-4bit"
    async with Client(edge.address, model, backend=backend, deadline_ms=0) as client:
        info = client.model_info
        result = await client.submit(frame, branch)
    described = {b.name: b for b in info.branches}
    assert info.task == "segmentation"
    assert described[branch].profile.accuracy_metric == "mIoU"
    assert 0 < described[branch].profile.accuracy < 1
    assert result.source == "edge", result.reason
    assert 0 < result.payload_bytes < 6 * 19 * 25  # 6 channels, 4 bits, a 150x200 frame at /8
    got = result.prediction
    assert isinstance(got, SegmentationMask) and got.mask.shape == frame.image.shape[:2]
    # The device's own tail on the same wire bytes gives the same mask.
    head = backend.model.run_head(branch, frame.image)
    wire = {
        k: codec.decode_tensor(codec.encode_tensor(v, k, bits=4)) for k, v in head.tensors.items()
    }
    expected = backend.model.run_tail(branch, [TailInput(head.orig_size, head.input_size, wire)])[0]
    assert (got.mask == expected.mask).mean() > 0.999
