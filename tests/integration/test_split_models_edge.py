"""Each model family end to end: head on the device -> codec bytes -> a real edge
server process over a real socket -> tail -> result, equal to the same tail run on
the device from the same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from splitedge.mobile_client import Client, open_source
from splitedge.mobile_client.heads import TorchHeadBackend
from splitedge.models.calibration import recalibrate_batchnorm
from splitedge.models.registry import create_model
from splitedge.models.types import Detections, SegmentationMask, TailInput
from splitedge.proto import codec

pytestmark = pytest.mark.integration

FAMILIES = [
    ("fasterrcnn_mobilenet_v3_large_320_fpn", {"score_thresh": 0.0}),
    ("ssdlite320_mobilenet_v3_large", {"score_thresh": 0.0}),
    ("lraspp_mobilenet_v3_large", {"min_size": 160, "max_size": 256}),
]


def _spec(name: str, options: dict) -> str:
    return name + ":" + ",".join(f"{k}={v}" for k, v in options.items())


def _reference(backend: TorchHeadBackend, branch: str, image: np.ndarray, bits: int):
    """The tail on the device, fed exactly the bytes the client ships."""
    head = backend.model.run_head(branch, image)
    decoded = {
        name: codec.decode_tensor(codec.encode_tensor(array, name, bits=bits))
        for name, array in head.tensors.items()
    }
    tail_input = TailInput(head.orig_size, head.input_size, tensors=decoded)
    return backend.model.run_tail(branch, [tail_input])[0]


def _calibrated_checkpoint(name: str, options: dict, path: Path) -> Path:
    """Random weights with BatchNorm statistics from a few frames, so outputs depend
    on the input (a raw random-init model gives constant masks and tied scores)."""
    model = create_model(name, **options)
    frames = [f.image for f in open_source("synthetic", max_frames=3, size=(200, 150), seed=9)]
    recalibrate_batchnorm(model, frames)
    torch.save(model.torch_model.state_dict(), path)
    return path


@pytest.mark.parametrize(("name", "options"), FAMILIES, ids=[f[0] for f in FAMILIES])
async def test_split_branch_through_a_real_server_matches_the_device_tail(
    edge_factory, tmp_path, name, options
):
    options = {**options, "weights": str(_calibrated_checkpoint(name, options, tmp_path / "w.pt"))}
    edge = edge_factory("--model", _spec(name, options))
    backend = TorchHeadBackend(name, options)
    frame = next(open_source("synthetic", max_frames=1, size=(200, 150), seed=3))
    branch = next(b for b, s in backend.model.branches.items() if s.kind == "split")
    async with Client(edge.address, name, backend=backend, deadline_ms=0) as client:
        split = await client.submit(frame, branch, bits=8)
        offload = await client.submit(frame, "offload-png")
    assert split.source == "edge" and offload.source == "edge", (split.reason, offload.reason)
    assert split.payload_bytes > 0 and split.timing.server.tail_ms > 0
    expected = _reference(backend, branch, frame.image, bits=8)
    local = backend.model.run_local(frame.image)
    got = split.prediction
    if isinstance(expected, Detections):
        assert isinstance(got, Detections) and len(expected.boxes) > 0
        np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-2)
        np.testing.assert_array_equal(got.labels, expected.labels)
        # Lossless PNG offload runs the whole model on the server: as local.
        np.testing.assert_allclose(offload.prediction.boxes, local.boxes, atol=1e-2)
        assert len(np.unique(np.round(expected.scores, 4))) > 10  # not tied: input-driven
    else:
        assert isinstance(got, SegmentationMask)
        assert len(np.unique(expected.mask)) >= 2  # not a constant mask
        assert got.mask.shape == frame.image.shape[:2]
        assert np.mean(got.mask == expected.mask) > 0.999
        assert np.mean(offload.prediction.mask == local.mask) > 0.999
