"""What one frame sends to the edge, encoded on the device: split tensors or the frame.

Pure and wire-free: an :class:`EncodedFrame` holds codec objects only;
:mod:`splitedge.mobile_client.transport` turns it into the protobuf request, once,
when the frame is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from splitedge.models.types import BranchSpec, HeadOutput
from splitedge.proto import codec

__all__ = [
    "EncodedFrame",
    "encode_head",
    "encode_offload",
    "encode_split",
    "head_tensors",
]


@dataclass(frozen=True)
class EncodedFrame:
    """One frame's uplink payload: a split branch's ``tensors`` or an offload ``image``.

    ``orig_size`` is the captured frame's (height, width); ``input_size`` the size after
    the head's resize (split branches only).
    """

    orig_size: tuple[int, int]
    input_size: tuple[int, int] = (0, 0)
    tensors: tuple[codec.EncodedTensor, ...] = ()
    image: codec.EncodedImage | None = None

    @property
    def payload_bytes(self) -> int:
        """The bytes that cross the uplink for this frame (tensor data or image data)."""
        if self.image is not None:
            return len(self.image.data)
        return sum(t.size_bytes for t in self.tensors)


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


def encode_split(head: HeadOutput, tensors: list[codec.EncodedTensor]) -> EncodedFrame:
    """The payload carrying encoded ``tensors`` of ``head``."""
    return EncodedFrame(
        orig_size=head.orig_size, input_size=head.input_size, tensors=tuple(tensors)
    )


def encode_head(
    head: HeadOutput, *, bits: int, zstd_level: int | None, float16: bool = False
) -> EncodedFrame:
    """The payload carrying the head's tensors; ``zstd_level`` None ships them raw."""
    tensors = head_tensors(head, bits=bits, float16=float16)
    if zstd_level is not None:
        tensors = [codec.compress_tensor(t, zstd_level) for t in tensors]
    return encode_split(head, tensors)


def encode_offload(image: np.ndarray, branch: BranchSpec) -> EncodedFrame:
    """The payload carrying the whole frame as the branch's image format."""
    encoded = codec.encode_image(
        image, format=branch.image_format or "jpeg", quality=branch.image_quality or 90
    )
    return EncodedFrame(orig_size=(image.shape[0], image.shape[1]), image=encoded)
