"""The flags every command that reaches an edge server shares: TLS and the device token.

``add_tls_flags`` / ``tls_from_flags`` (``--tls-ca``, ``--tls-cert``, ``--tls-key``) and
``add_token_flags`` / ``token_from_args`` (``--token``, ``--token-file``,
``SPLITEDGE_TOKEN``): argparse on one side; on the other the
:class:`~splitedge.mobile_client.transport.TlsConfig` and the token that
:class:`~splitedge.mobile_client.transport.EdgeTransport` takes. Each bad value is a
ValueError naming its flag.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from splitedge.mobile_client.transport import TlsConfig
from splitedge.proto.auth import check_token
from splitedge.proto.options import check_pem

__all__ = [
    "TOKEN_ENV",
    "add_tls_flags",
    "add_token_flags",
    "check_file",
    "tls_from_flags",
    "token_from_args",
    "token_from_flags",
]


def check_file(path: str | Path | None, flag: str) -> None:
    """A ValueError naming ``flag`` unless ``path`` (when given) is a readable file's."""
    if path is not None and not Path(path).is_file():
        what = "is a directory, not a file" if Path(path).is_dir() else "does not exist"
        raise ValueError(f"{flag}: {str(path)!r} {what}")


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    """``--tls-ca``, ``--tls-cert``, ``--tls-key``: the same on every command that
    reaches an edge server (read them with :func:`tls_from_flags`)."""
    parser.add_argument(
        "--tls-ca", default=None, metavar="PEM", help="PEM root certificate to reach a TLS server"
    )
    parser.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="PEM certificate of this device, for a server that requires client "
        "certificates (mutual TLS: splitedge-edge serve --tls-client-ca); needs --tls-key",
    )
    parser.add_argument("--tls-key", default=None, metavar="PEM", help="PEM key of --tls-cert")


def tls_from_flags(
    ca: str | None, cert: str | None = None, key: str | None = None
) -> TlsConfig | None:
    """The TLS config the flags ask for (None: plaintext); a ValueError naming the flag
    for a file that is not there or not PEM, or a certificate without its key."""
    for path, flag in ((ca, "--tls-ca"), (cert, "--tls-cert"), (key, "--tls-key")):
        check_file(path, flag)
        if path is not None:
            check_pem(path, flag)
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key: give both or neither")
    return TlsConfig.from_paths(ca, cert, key)


TOKEN_ENV = "SPLITEDGE_TOKEN"


def add_token_flags(parser: argparse.ArgumentParser) -> None:
    """``--token``, ``--token-file``: the device token, the same on every command that
    reaches an edge server (read them with :func:`token_from_flags`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--token",
        default=None,
        help=f"device token for an edge with [auth] tokens (argv is public: prefer "
        f"--token-file or the {TOKEN_ENV} environment variable)",
    )
    group.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help="file holding the device token (splitedge-edge hash-token --generate writes one)",
    )


def token_from_flags(
    token: str | None, token_file: str | None = None, env_token: str | None = None
) -> str | None:
    """The device token: ``--token``, else ``--token-file``'s content, else ``env_token``
    (the caller passes ``os.environ.get("SPLITEDGE_TOKEN")``); None = send none. A
    ValueError names the flag for an unreadable file or a value no header can carry."""
    if token is not None:
        return check_token(token, "--token")
    if token_file is not None:
        check_file(token_file, "--token-file")
        try:
            text = Path(token_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--token-file: cannot read {str(token_file)!r}: {exc}") from None
        return check_token(text, f"--token-file {str(token_file)!r}")
    if env_token:
        return check_token(env_token, TOKEN_ENV)
    return None


def token_from_args(args: argparse.Namespace) -> str | None:
    """:func:`token_from_flags` for a command's parsed flags and this process's env."""
    return token_from_flags(args.token, args.token_file, os.environ.get(TOKEN_ENV))
