"""One shape per server fact, shared by the edge, the device and both planes.

- :class:`ServerTiming`: where one frame's time went on the server. The edge fills it,
  ``FrameResult.timing`` carries it, the device nests it in its own frame timing.
- :class:`ServerStatus` / :class:`BranchLoad` / :class:`BatchLatency`: a server's load.
  The edge builds it (``EdgeService.status``); the device gets it back from the
  ``Status`` RPC (:func:`splitedge.proto.wire.status_from_pb`) or from the MQTT status
  topic (:meth:`splitedge.proto.control.EdgeStatus.server_status`), so a scheduler
  reads one type whichever plane told it.
- :class:`StatusCode`: the one status vocabulary. An edge refusal carries one, the
  wire carries its number (``FrameResult.status_code``, gRPC's own numbering), the
  device reads it back, and a frame's outcome reason (``"deadline"``,
  ``"edge-error:NAME"``) is derived from it (:attr:`StatusCode.reason`).

Nothing here knows gRPC or MQTT beyond :meth:`StatusCode.grpc`; the wire formats are
unchanged.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc

__all__ = [
    "EDGE_ERROR_PREFIX",
    "BatchLatency",
    "BranchLoad",
    "ServerStatus",
    "ServerTiming",
    "StatusCode",
]

EDGE_ERROR_PREFIX = "edge-error:"


class StatusCode(enum.IntEnum):
    """A frame's status, numbered as gRPC numbers its status codes (the wire's numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def from_wire(cls, number: int) -> StatusCode:
        """The code a ``status_code`` number means; UNKNOWN for one a newer peer invented."""
        try:
            return cls(number)
        except ValueError:
            return cls.UNKNOWN

    @classmethod
    def from_grpc(cls, code: grpc.StatusCode) -> StatusCode:
        """The code grpc's enum names (a failed call's ``AioRpcError.code()``)."""
        return cls[code.name]

    @property
    def edge_error(self) -> bool:
        """Whether a frame answered with this code failed at the edge (its reason reads
        ``"edge-error:NAME"``): neither answered (OK) nor late (DEADLINE_EXCEEDED)."""
        return self not in (StatusCode.OK, StatusCode.DEADLINE_EXCEEDED)

    @property
    def reason(self) -> str:
        """The device's ``FrameOutcome.reason`` for a frame answered with this code:
        ``""`` (answered), ``"deadline"``, or ``"edge-error:NAME"``."""
        return _REASONS[self]

    @classmethod
    def from_reason(cls, reason: str) -> StatusCode | None:
        """The code behind an outcome reason (:attr:`reason`'s inverse); None for reasons
        the edge did not give (``"edge-unavailable"``, ``"prefiltered"`` ...)."""
        return _BY_REASON.get(reason)

    @property
    def grpc(self) -> grpc.StatusCode:
        """The same code as grpc's enum (to abort a unary call with it)."""
        return grpc.StatusCode[self.name]


def _reason(code: StatusCode) -> str:
    if code is StatusCode.OK:
        return ""
    if code is StatusCode.DEADLINE_EXCEEDED:
        return "deadline"
    return EDGE_ERROR_PREFIX + code.name  # the one place this output spelling is made


_REASONS = {code: _reason(code) for code in StatusCode}
_BY_REASON = {reason: code for code, reason in _REASONS.items()}


@dataclass(frozen=True, slots=True)
class ServerTiming:
    """Where one frame's time went on the server, ms (``batch_size``: its tail's batch)."""

    decode_ms: float = 0.0
    queue_ms: float = 0.0
    tail_ms: float = 0.0
    encode_ms: float = 0.0
    batch_size: int = 0
    server_total_ms: float = 0.0


NO_SERVER_TIMING = ServerTiming()
"""A frame the server never timed (local, dropped before sending)."""


@dataclass(frozen=True)
class BatchLatency:
    """Tail latency of one batch size on a server (rolling window of tail runs)."""

    batch_size: int
    tail_latency_ms_p50: float
    tail_latency_ms_p95: float
    samples: int  # tail runs of this batch size in the window


@dataclass(frozen=True)
class BranchLoad:
    """One served branch's queue and tail latency.

    ``tail_latency_ms_p50`` / ``_p95`` are None while the server has not measured the
    tail (a fresh server does not claim 0 ms). ``queue_depth``, ``frames`` and
    ``by_batch_size`` are 0 / empty when the source does not carry them (MQTT).
    ``replicas`` comes from both planes, but MQTT carries it only beside a measured
    tail latency: 0 (not reported) for an unmeasured branch there, and from older
    publishers. With the ray engine every figure covers all the tail's replicas.
    """

    model: str
    branch: str
    queue_depth: int = 0
    tail_latency_ms_p50: float | None = None
    tail_latency_ms_p95: float | None = None
    frames: int = 0  # frames answered since the server started
    by_batch_size: tuple[BatchLatency, ...] = ()
    replicas: int = 0  # replicas running this tail (1 in-process; 0 = not reported)

    @property
    def measured(self) -> bool:
        """Whether the tail latencies are measured figures."""
        return self.tail_latency_ms_p95 is not None


@dataclass(frozen=True)
class ServerStatus:
    """A server's load right now, from the ``Status`` RPC or its MQTT status.

    ``load`` is the tail executor's busy fraction (0..1). ``queue_wait_ms`` is the
    server's own estimate of a new frame's wait (MQTT only, optional). Figures the
    source does not carry are 0 (``in_flight``, ``frames_per_second``, ``uptime_s``
    over MQTT).
    """

    server_id: str
    device: str
    queue_depth: int
    queue_capacity: int
    in_flight: int = 0
    load: float = 0.0
    frames_per_second: float = 0.0
    uptime_s: float = 0.0
    branches: tuple[BranchLoad, ...] = ()
    queue_wait_ms: float | None = None

    def branches_of(self, model: str) -> tuple[BranchLoad, ...]:
        """The served branches of ``model``."""
        return tuple(b for b in self.branches if b.model == model)
