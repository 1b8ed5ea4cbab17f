"""Broker addresses, spelled one way on every CLI: ``mqtt://HOST:PORT`` (``mqtts://`` = TLS).

``splitedge-edge serve --broker``, ``splitedge-client run --discover/--broker``,
``splitedge-sim record-telemetry --broker`` and the embedded broker's ``--listen``
all parse with :func:`parse_broker_address`. The older bare ``HOST:PORT`` (what the
edge's ``--mqtt`` and the recorder's ``--broker`` took) is still accepted, with one
deprecation line logged that shows the new spelling.

Pure: no I/O and no aiomqtt, so a CLI can check its flags before the MQTT extra loads.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from splitedge.proto.address import parse_host_port

__all__ = ["BrokerAddress", "BrokerAddressError", "parse_broker_address"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
EXAMPLE = "mqtt://127.0.0.1:1883"

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)")
_AUTHORITY = re.compile(r"(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]@]+))(?::(?P<port>\d+))?/?")


class BrokerAddressError(ValueError):
    """A broker address is not ``mqtt://HOST[:PORT]`` / ``mqtts://HOST[:PORT]`` (one line)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker listens; ``tls`` for ``mqtts://``."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False

    @property
    def url(self) -> str:
        """The canonical spelling, e.g. ``mqtt://127.0.0.1:1883`` or ``mqtts://[::1]:8883``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_broker_address(
    text: str, what: str = "broker address", *, any_port: bool = False
) -> BrokerAddress:
    """``"mqtt://broker.lan:1883"`` -> ``BrokerAddress("broker.lan", 1883, tls=False)``.

    ``mqtts://`` means TLS; a missing port is 1883 (8883 with TLS). ``what`` names the
    flag or key in messages. A bare ``HOST[:PORT]`` (the old spelling) is accepted
    with a deprecation line logged at WARNING. Anything else raises
    :class:`BrokerAddressError` with a one-line reason naming ``what``. ``any_port``
    also takes port 0 (a listener's "any free port").
    """
    text = text.strip()
    low_port = 0 if any_port else 1
    url = _URL.fullmatch(text)
    if url is None:
        try:
            host, port = parse_host_port(text, what, default_port=DEFAULT_PORT, example=EXAMPLE)
        except ValueError as exc:  # (the deprecated spelling takes no port 0)
            reason = str(exc) if "is not 1-65535" in str(exc) else _expected(what, text)
            raise BrokerAddressError(reason) from None
        address = BrokerAddress(host, port)
        log.warning("%s %r: a bare HOST:PORT is deprecated; write %s", what, text, address.url)
        return address
    scheme = url.group("scheme").lower()
    if scheme not in ("mqtt", "mqtts"):
        raise BrokerAddressError(
            f"{what} {text!r}: scheme {scheme}:// is not mqtt:// or mqtts://, e.g. {EXAMPLE}"
        )
    match = _AUTHORITY.fullmatch(url.group("rest"))
    if match is None:
        raise BrokerAddressError(_expected(what, text))
    tls = scheme == "mqtts"
    port_text = match.group("port")
    port = int(port_text) if port_text else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    if not low_port <= port <= 65535:
        raise BrokerAddressError(f"{what} {text!r}: port {port} is not {low_port}-65535")
    return BrokerAddress(match.group("v6") or match.group("host"), port, tls)


def _expected(what: str, text: str) -> str:
    return f"{what} {text!r}: expected mqtt://HOST:PORT (mqtts:// for TLS), e.g. {EXAMPLE}"
