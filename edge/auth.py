"""Bearer-token authentication of every gRPC call, and the edge's bind-safety warnings.

A device sends ``authorization: Bearer <token>`` metadata on each call
(``splitedge-client --token-file``); the edge config holds only each token's SHA-256
(``[auth] tokens = [{client = "cam-1", sha256 = "..."}]``, written by
``splitedge-edge hash-token``), so a leaked config file gives away no token.
:class:`TokenAuthInterceptor` checks every call, reflection included, before its
handler runs: a call with no token, a malformed header or a token whose hash is not
configured ends with ``UNAUTHENTICATED`` and never reaches a servicer. The standard
health service is left open only when configured (``health_open = true``), for load
balancer and orchestrator probes that carry no token; it reveals only
SERVING/NOT_SERVING.

Tokens are random secrets (``secrets.token_urlsafe(32)``), not passwords, so one
unsalted SHA-256 is enough; hashes are compared with :func:`hmac.compare_digest`
against every configured entry, so the time taken says nothing about which matched.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from splitedge.edge.config import AuthConfig, TokenHash
from splitedge.proto.auth import METADATA_KEY, SCHEME, token_sha256

__all__ = [
    "HEALTH_PREFIX",
    "TokenAuthInterceptor",
    "bind_warning",
    "hash_token",
    "is_loopback",
]

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def hash_token(token: str) -> str:
    """The hex SHA-256 that ``[auth] tokens`` stores for ``token`` (ValueError if it is
    not a token a device can send)."""
    return token_sha256(token)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses, with ``UNAUTHENTICATED``, every call without a configured bearer token.

    ``open_prefixes`` name method paths that need no token (the health service when
    ``health_open``). A refused call gets a handler of its own shape that aborts before
    reading a request stream, so no servicer sees it.
    """

    def __init__(self, tokens: Sequence[TokenHash], open_prefixes: Sequence[str] = ()) -> None:
        if not tokens:
            raise ValueError("TokenAuthInterceptor needs at least one token hash")
        self._hashes = tuple((t.client, bytes.fromhex(t.sha256)) for t in tokens)
        self._open = tuple(open_prefixes)

    @classmethod
    def from_config(cls, auth: AuthConfig) -> TokenAuthInterceptor:
        return cls(auth.tokens, (HEALTH_PREFIX,) if auth.health_open else ())

    def client_of(self, metadata: Sequence[tuple[str, Any]] | None) -> tuple[str | None, str]:
        """(the client whose token ``metadata`` carries, "") or (None, why not)."""
        values = [v for k, v in metadata or () if k == METADATA_KEY]
        if not values:
            return None, (
                "missing token: send metadata 'authorization: Bearer <token>' "
                "(splitedge-client --token-file FILE or SPLITEDGE_TOKEN)"
            )
        value = values[0].decode("latin-1") if isinstance(values[0], bytes) else str(values[0])
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != SCHEME.lower() or not token:
            return None, "malformed authorization metadata: expected 'Bearer <token>'"
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for client, expected in self._hashes:  # every entry, whatever matched: constant time
            if hmac.compare_digest(digest, expected) and found is None:
                found = client
        if found is None:
            return None, "unknown token"
        return found, ""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._open):
            return handler
        client, why = self.client_of(handler_call_details.invocation_metadata)
        if client is not None:
            return handler
        log.debug("refused %s: %s", method, why)
        return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, why)


def _refusal(
    handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler:
    """A handler shaped like ``handler`` (so the server reads the call the same way)
    that aborts with ``code``; requests stay undecoded."""

    async def deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def bind_warning(host: str, *, tls: bool, auth: bool) -> str | None:
    """The one-line warning for serving gRPC on ``host`` without TLS or tokens, or None."""
    if is_loopback(host):
        return None
    gaps = [
        (what, fix)
        for what, fix, on in (
            ("TLS", "[server] tls_cert/tls_key", tls),
            ("token auth", "[auth] tokens", auth),
        )
        if not on
    ]
    if not gaps:
        return None
    return (
        f"gRPC bound to {host} without {' and without '.join(w for w, _ in gaps)}: anyone "
        f"who can reach this address can call it (set {' and '.join(f for _, f in gaps)}, "
        "or bind 127.0.0.1)"
    )
