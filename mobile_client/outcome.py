"""What the device records for every frame: the result or the reason it has none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from splitedge.models.types import Detections, Prediction, SegmentationMask
from splitedge.proto.status import NO_SERVER_TIMING, ServerTiming, StatusCode

# Where a frame's result came from; "dropped" frames carry a reason instead.
Source = Literal["edge", "local", "dropped"]

# The reason of a frame whose edge could not be reached (no status came back). Reasons
# the edge gave are its StatusCode's (:attr:`StatusCode.reason`: "deadline",
# "edge-error:NAME"); the device's own are "prefiltered", "tracked", "busy".
EDGE_UNAVAILABLE = "edge-unavailable"


@dataclass
class FrameTiming:
    """Milliseconds per stage on the device; ``server`` is the edge's own
    :class:`~splitedge.proto.status.ServerTiming` as it answered (no copy);
    network_ms = round trip minus the server's own time. The server's figures are
    read from ``timing.server`` only (:meth:`to_json` flattens them for output lines).
    """

    prefilter_ms: float = 0.0  # the on-device prefilter's verdict (0 when none runs)
    head_ms: float = 0.0
    encode_ms: float = 0.0
    roundtrip_ms: float = 0.0
    network_ms: float = 0.0  # uplink + downlink (+ gRPC framing), as measured
    server: ServerTiming = NO_SERVER_TIMING
    local_ms: float = 0.0
    total_ms: float = 0.0

    def to_json(self) -> dict[str, float]:
        """Flat, in milliseconds (the client's output lines keep their keys)."""
        s = self.server
        values = (
            ("prefilter_ms", self.prefilter_ms),
            ("head_ms", self.head_ms),
            ("encode_ms", self.encode_ms),
            ("roundtrip_ms", self.roundtrip_ms),
            ("network_ms", self.network_ms),
            ("server_decode_ms", s.decode_ms),
            ("queue_ms", s.queue_ms),
            ("tail_ms", s.tail_ms),
            ("server_encode_ms", s.encode_ms),
            ("server_total_ms", s.server_total_ms),
            ("batch_size", s.batch_size),
            ("local_ms", self.local_ms),
            ("total_ms", self.total_ms),
        )
        return {k: round(v, 3) for k, v in values}


@dataclass
class FrameOutcome:
    frame_id: int
    branch: str
    source: Source
    reason: str = ""  # why the edge result is missing: deadline, edge-unavailable, prefiltered..
    prediction: Prediction | None = None
    timing: FrameTiming = field(default_factory=FrameTiming)
    payload_bytes: int = 0
    # Frames between this frame and the one whose detection gave its boxes: 0 its own
    # detection, k a tracker carrying a detection k frames older; -1 not recorded (only
    # the adaptive session records it) or no boxes.
    track_age: int = -1

    @property
    def status(self) -> StatusCode | None:
        """The status :attr:`reason` spells (DEADLINE_EXCEEDED for a late frame, whichever
        side ran out of time); None for the device's own reasons and edge-unavailable."""
        return StatusCode.from_reason(self.reason)

    @property
    def edge_failed(self) -> bool:
        """Whether the edge failed this frame: unreachable, or it answered an error (a
        late frame, ``"deadline"``, is not a failure of the edge)."""
        status = self.status
        return self.reason == EDGE_UNAVAILABLE or (status is not None and status.edge_error)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of the client's output)."""
        out: dict[str, Any] = {
            "frame_id": self.frame_id,
            "branch": self.branch,
            "source": self.source,
            "reason": self.reason,
            "payload_bytes": self.payload_bytes,
            "timing_ms": self.timing.to_json(),
        }
        pred = self.prediction
        if isinstance(pred, Detections):
            out["detections"] = {
                "boxes": [[round(float(v), 1) for v in box] for box in pred.boxes],
                "scores": [round(float(s), 4) for s in pred.scores],
                "labels": [int(c) for c in pred.labels],
            }
        elif isinstance(pred, SegmentationMask):
            classes, counts = _class_histogram(pred)
            out["segmentation"] = {
                "shape": list(pred.mask.shape),
                "class_pixels": dict(zip(classes, counts, strict=True)),
            }
        return out


def _class_histogram(pred: SegmentationMask) -> tuple[list[str], list[int]]:
    import numpy as np

    classes, counts = np.unique(pred.mask, return_counts=True)
    return [str(int(c)) for c in classes], [int(n) for n in counts]
