"""splitedge.control_plane: the MQTT plane that fleets of devices and edge servers share.

Frames never travel here (they go over gRPC); this room carries presence, discovery,
load, live control and telemetry (docs/mqtt.md). The message schemas, topic names and
their validation stay with the wire, in :mod:`splitedge.proto.control` (pure, no
I/O); this room is the runtime that sends and receives them. It imports neither
``splitedge.edge`` nor ``splitedge.mobile_client``: both sides import it, and their
glue stays with them (``edge/presence.py`` fills a status from the edge service,
``mobile_client/fleet.py`` joins a device's ``Client`` to the plane).

Public API (modules, and the names re-exported here):

- :mod:`~splitedge.control_plane.address` -- :func:`parse_broker_address`,
  :class:`BrokerAddress`, :class:`BrokerAddressError`: the one broker-address
  spelling, ``mqtt://HOST:PORT`` (``mqtts://`` = TLS), for every CLI. Pure.
- :mod:`~splitedge.control_plane.link` -- :class:`MqttLink` (a self-healing aiomqtt
  connection: backoff with jitter, re-subscribe, retained publishes held while
  down), :class:`BrokerConfig`, :class:`LastWill`, :class:`MqttMessage`,
  :class:`Subscription`, :func:`backoff_delay_s`.
- :mod:`~splitedge.control_plane.publisher` -- :class:`StatusPublisher`: an edge
  server's retained status (presence and load) with its last will.
- :mod:`~splitedge.control_plane.discovery` -- :class:`Discovery`,
  :class:`ServerState`: online servers, their load, sticky choice and failover.
- :mod:`~splitedge.control_plane.control` -- :class:`ControlSubscriber`,
  :class:`ControlSettings`: fleet and per-device SLA/policy changes, strict.
- :mod:`~splitedge.control_plane.telemetry` -- :class:`TelemetryPublisher`,
  :class:`TelemetryAggregator`, :class:`TelemetryRecorder`, :class:`FrameRecord`.
- :mod:`~splitedge.control_plane.broker` -- :class:`EmbeddedBroker` (amqtt), the
  zero-setup broker; ``python -m splitedge.control_plane.broker --listen URL``.

Names are loaded on first use, so ``import splitedge.control_plane`` (and the pure
:mod:`~splitedge.control_plane.address`) need no aiomqtt; everything else needs the
``mqtt`` extra.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BrokerAddress",
    "BrokerAddressError",
    "BrokerConfig",
    "BrokerStartError",
    "ControlSettings",
    "ControlSubscriber",
    "Discovery",
    "EmbeddedBroker",
    "FrameRecord",
    "LastWill",
    "MqttLink",
    "MqttMessage",
    "ServerState",
    "StatusPublisher",
    "Subscription",
    "TelemetryAggregator",
    "TelemetryPublisher",
    "TelemetryRecorder",
    "backoff_delay_s",
    "parse_broker_address",
]

_HOME = {
    "BrokerAddress": "address",
    "BrokerAddressError": "address",
    "parse_broker_address": "address",
    "BrokerConfig": "link",
    "LastWill": "link",
    "MqttLink": "link",
    "MqttMessage": "link",
    "Subscription": "link",
    "backoff_delay_s": "link",
    "StatusPublisher": "publisher",
    "Discovery": "discovery",
    "ServerState": "discovery",
    "ControlSettings": "control",
    "ControlSubscriber": "control",
    "FrameRecord": "telemetry",
    "TelemetryAggregator": "telemetry",
    "TelemetryPublisher": "telemetry",
    "TelemetryRecorder": "telemetry",
    "BrokerStartError": "broker",
    "EmbeddedBroker": "broker",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the runtime modules need aiomqtt, so they load only when asked for.
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
