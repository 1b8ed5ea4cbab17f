"""Request errors of the edge server, each carrying the gRPC status code it maps to.

The logic layer (registry, batcher, service) raises these and knows nothing else of
gRPC; the servicer turns them into an aborted call (``Infer``, via
:attr:`StatusCode.grpc`) or a per-frame ``FrameResult.status_code`` (``Stream``).
The codes are the one status vocabulary, :class:`splitedge.proto.status.StatusCode`,
that the device reads back. Messages are one line a person can act on.
"""

from __future__ import annotations

from splitedge.proto.status import StatusCode

__all__ = [
    "MAX_MESSAGE_CHARS",
    "DeadlineExceeded",
    "InternalError",
    "InvalidArgument",
    "NotFound",
    "RequestError",
    "ResourceExhausted",
    "Unavailable",
    "shorten",
]

# Status details travel as gRPC trailing metadata (16 KiB in all by default) and in logs:
# a message built from a hostile request (a 6,000-dimension shape) must stay short.
MAX_MESSAGE_CHARS = 1024


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (the cut is said)."""
    text = " ".join(str(text).splitlines())
    if len(text) <= limit:
        return text
    cut = f"... ({len(text) - limit} more characters)"
    return text[: max(0, limit - len(cut))] + cut


class RequestError(Exception):
    """Base: one request failed; the server goes on. ``code`` is its status."""

    code: StatusCode = StatusCode.UNKNOWN

    def __init__(self, message: str = "") -> None:
        super().__init__(shorten(message))

    @property
    def message(self) -> str:
        return str(self)


class NotFound(RequestError):
    """Unknown model or branch."""

    code = StatusCode.NOT_FOUND


class InvalidArgument(RequestError):
    """Wrong tensors, names, dtype, shape, payload kind, sizes, or a corrupt payload."""

    code = StatusCode.INVALID_ARGUMENT


class ResourceExhausted(RequestError):
    """A payload over the configured limits, or the admission queue is full."""

    code = StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(RequestError):
    """The frame's budget ran out before its tail could start."""

    code = StatusCode.DEADLINE_EXCEEDED


class Unavailable(RequestError):
    """The server is shutting down and takes no new frames."""

    code = StatusCode.UNAVAILABLE


class InternalError(RequestError):
    """The tail (or the output encoding) raised; only that batch fails."""

    code = StatusCode.INTERNAL
