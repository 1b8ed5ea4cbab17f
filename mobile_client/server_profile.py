"""The server's measured tail latency per branch and batch size, as a profile takes it.

The edge server keeps a rolling window of tail run times per (branch, batch size) and
lists them in ``Describe`` (``EdgeBranchStats.by_batch_size``). :func:`tail_by_batch_size`
turns a ``ModelInfo`` into the ``branch -> batch size -> p95 ms`` mapping that
:func:`splitedge.training.profiling.measure_profile` takes as ``tail_latency_ms``;
:func:`fetch_tail_profile` asks a server for it.
"""

from __future__ import annotations

from splitedge.mobile_client.transport import (
    EdgeRefused,
    EdgeTransport,
    EdgeUnavailable,
    ModelInfo,
    TlsConfig,
)
from splitedge.models.registry import UnknownModelError
from splitedge.proto.status import StatusCode

__all__ = [
    "ModelNotServedError",
    "ServerProfileError",
    "ServerUnreachableError",
    "UnknownModelError",
    "fetch_model_info",
    "fetch_tail_profile",
    "tail_by_batch_size",
]


class ServerProfileError(ValueError):
    """The server's tail profile could not be read."""


class ServerUnreachableError(ServerProfileError):
    """The edge server did not answer ``Describe``."""


class ModelNotServedError(ServerProfileError, UnknownModelError):
    """The edge server does not serve the model asked for.

    One ``UnknownModelError`` for the whole package (the registry's, for a name no
    builder has); this one says it was the server that did not know the name, and
    is still a :class:`ServerProfileError` for callers catching those.
    """


def tail_by_batch_size(info: ModelInfo) -> dict[str, dict[int, float]]:
    """``branch -> batch size -> p95 tail ms`` for every measured batch size.

    Batch sizes without samples and branches with no measured size are left out.
    """
    out: dict[str, dict[int, float]] = {}
    for branch in info.branches:
        sizes = {
            int(b.batch_size): float(b.tail_latency_ms_p95)
            for b in branch.profile.by_batch_size
            if b.samples > 0
        }
        if sizes:
            out[branch.name] = dict(sorted(sizes.items()))
    return out


async def fetch_tail_profile(
    server: str,
    model: str,
    timeout_s: float = 5.0,
    *,
    tls: TlsConfig | None = None,
    token: str | None = None,
) -> dict[str, dict[int, float]]:
    """Call ``Describe(model)`` on ``server`` (``host:port``; over TLS with ``tls``, with
    the device ``token`` when given) and return :func:`tail_by_batch_size` of the answer.

    Raises :class:`ModelNotServedError` (an ``UnknownModelError``) if the server does
    not serve ``model`` and :class:`ServerUnreachableError` if it does not answer
    within ``timeout_s``.
    """
    info = await fetch_model_info(server, model, timeout_s, tls=tls, token=token)
    return tail_by_batch_size(info)


async def fetch_model_info(
    server: str,
    model: str,
    timeout_s: float = 5.0,
    *,
    tls: TlsConfig | None = None,
    token: str | None = None,
) -> ModelInfo:
    """``Describe(model)`` on ``server``: its branches, tensor specs and tail profile.

    The errors are :func:`fetch_tail_profile`'s.
    """
    if not server.strip():
        raise ServerProfileError("server address is empty; expected host:port")
    if not model:
        raise ServerProfileError("model name is empty")
    if not timeout_s > 0:
        raise ServerProfileError(f"timeout_s must be > 0, got {timeout_s}")
    try:
        async with EdgeTransport(server, tls=tls, token=token) as edge:
            return await edge.describe(model, timeout_s=timeout_s)
    except (EdgeRefused, EdgeUnavailable) as exc:
        if exc.code is StatusCode.NOT_FOUND:
            raise ModelNotServedError(
                f"server {server} does not serve model {model!r}: {exc.details}"
            ) from exc
        raise ServerUnreachableError(
            f"server {server} did not answer Describe within {timeout_s:g} s: "
            f"{exc.code.name if exc.code is not None else 'UNAVAILABLE'}: {exc.details}"
        ) from exc
