"""``HOST:PORT`` addresses as both sides take them (gRPC servers, MQTT brokers)."""

from __future__ import annotations

import re

__all__ = ["parse_host_port"]

_ADDRESS = re.compile(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)|([^:\[\]]+)")


def parse_host_port(
    text: str, what: str, default_port: int | None = None, example: str = "127.0.0.1:1883"
) -> tuple[str, int]:
    """``"broker.lan:1883"`` / ``"[::1]:1883"`` -> (host, port); ``what`` names the flag/key.

    A bare host takes ``default_port`` when given; a ValueError (one line, naming
    ``what`` and showing ``example``) otherwise, and for a port outside 1-65535.
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None or (match.group(5) is not None and default_port is None):
        raise ValueError(f"{what} {text!r}: expected HOST:PORT, e.g. {example}")
    host = match.group(1) or match.group(3) or match.group(5)
    port_text = match.group(2) or match.group(4)
    port = int(port_text) if port_text is not None else int(default_port or 0)
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} {text!r}: port {port} is not 1-65535")
    return host, port
