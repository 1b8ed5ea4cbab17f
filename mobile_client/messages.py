"""Protobuf <-> device-side objects: requests out, branch specs and predictions in."""

from __future__ import annotations

import numpy as np

from splitedge.models.types import (
    BranchSpec,
    Detections,
    HeadOutput,
    Prediction,
    SegmentationMask,
    TensorSpec,
)
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb


def branch_from_pb(info: pb.BranchInfo) -> BranchSpec:
    """The server's description of a branch (a CodecError if it names unknown enums)."""
    return BranchSpec(
        name=info.name,
        kind=info.kind,  # type: ignore[arg-type]  # the server only sends the three kinds
        split_point=info.split_point,
        tensors=tuple(
            TensorSpec(t.name, wire.dtype_from_pb(t.dtype, t.name), tuple(t.shape))
            for t in info.tensors
        ),
        default_bits=info.default_bits,
        image_format=(
            wire.image_format_from_pb(info.image_format, info.name) if info.image_format else ""
        ),
        image_quality=info.image_quality,
    )


def split_request(
    head: HeadOutput, *, bits: int, zstd_level: int | None, float16: bool = False
) -> tuple[pb.FrameRequest, int]:
    """A request carrying the head's tensors, and its payload size in bytes.

    ``zstd_level`` None ships the payload raw (uncompressed)."""
    tensors = head_tensors(head, bits=bits, float16=float16)
    if zstd_level is not None:
        tensors = [codec.compress_tensor(t, zstd_level) for t in tensors]
    return tensors_request(head, tensors)


def head_tensors(
    head: HeadOutput, *, bits: int, float16: bool = False
) -> list[codec.EncodedTensor]:
    """The head's tensors encoded (quantized, packed) for the wire, not yet compressed."""
    return [
        codec.encode_tensor(
            np.ascontiguousarray(array),
            name,
            bits=bits,
            float16=float16 and bits == 0,
            compression="raw",
        )
        for name, array in head.tensors.items()
    ]


def tensors_request(
    head: HeadOutput, tensors: list[codec.EncodedTensor]
) -> tuple[pb.FrameRequest, int]:
    """A request carrying encoded ``tensors`` of ``head``, and their payload size in bytes."""
    request = pb.FrameRequest(
        orig_height=head.orig_size[0],
        orig_width=head.orig_size[1],
        input_height=head.input_size[0],
        input_width=head.input_size[1],
        tensors=[wire.tensor_to_pb(t) for t in tensors],
    )
    return request, sum(t.size_bytes for t in tensors)


def offload_request(image: np.ndarray, branch: BranchSpec) -> tuple[pb.FrameRequest, int]:
    """A request carrying the whole frame as the branch's image format."""
    encoded = codec.encode_image(
        image, format=branch.image_format or "jpeg", quality=branch.image_quality or 90
    )
    request = pb.FrameRequest(
        image=wire.image_to_pb(encoded),
        orig_height=image.shape[0],
        orig_width=image.shape[1],
    )
    return request, len(encoded.data)


def prediction_from_pb(result: pb.FrameResult) -> Prediction | None:
    kind = result.WhichOneof("output")
    if kind == "detections":
        det = result.detections
        return Detections(
            boxes=np.asarray(det.boxes, np.float32).reshape(-1, 4),
            scores=np.asarray(det.scores, np.float32),
            labels=np.asarray(det.labels, np.int64),
        )
    if kind == "segmentation":
        mask = codec.decode_image(wire.image_from_pb(result.segmentation.mask), channels=1)
        return SegmentationMask(mask=mask)
    return None
