"""The device token on the wire: ``authorization: Bearer <token>`` call metadata.

Both sides read the format here: the device sends it (:mod:`splitedge.mobile_client.transport`),
the edge checks it (:mod:`splitedge.edge.auth`) against the SHA-256 its config holds.
"""

from __future__ import annotations

import hashlib

__all__ = ["METADATA_KEY", "SCHEME", "bearer_metadata", "check_token", "token_sha256"]

METADATA_KEY = "authorization"
SCHEME = "Bearer"
_MAX_TOKEN_CHARS = 4096


def check_token(token: str, what: str = "token") -> str:
    """``token`` without surrounding whitespace (a trailing newline from a file); a
    ValueError naming ``what`` unless it is 1-4096 visible ASCII characters, which is
    what a gRPC metadata value can carry."""
    token = token.strip()
    if not token:
        raise ValueError(f"{what}: empty")
    if len(token) > _MAX_TOKEN_CHARS or not all("!" <= c <= "~" for c in token):
        raise ValueError(f"{what}: must be 1-{_MAX_TOKEN_CHARS} visible ASCII characters")
    return token


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a (checked) token: what the edge's ``[auth] tokens`` stores."""
    return hashlib.sha256(check_token(token).encode("ascii")).hexdigest()


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token``."""
    return ((METADATA_KEY, f"{SCHEME} {check_token(token)}"),)
