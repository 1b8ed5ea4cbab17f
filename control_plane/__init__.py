"""splitedge.control_plane: the MQTT plane that fleets of devices and edge servers share.

Frames never travel here (they go over gRPC); this room carries presence, discovery,
load, live control and telemetry (docs/mqtt.md). The message schemas, topic names and
their validation stay with the wire, in :mod:`splitedge.proto.control` (pure, no
I/O); this room is the runtime that sends and receives them. It imports neither
``splitedge.edge`` nor ``splitedge.mobile_client``: both sides import it, and their
glue stays with them (``edge/presence.py`` fills a status from the edge service,
``mobile_client/fleet.py`` joins a device's ``Client`` to the plane).

Public API, by module:

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
- :mod:`~splitedge.control_plane.signing` -- :class:`FleetKey`, :class:`Signer`,
  :class:`Verifier`: HMAC-SHA256 envelopes for status and control under a shared
  fleet key (freshness, replay, last-will rule); ``python -m
  splitedge.control_plane.signing`` signs an operator's message. Pure (no aiomqtt).
- :mod:`~splitedge.control_plane.broker` -- :class:`EmbeddedBroker` (amqtt), the
  zero-setup broker; ``python -m splitedge.control_plane.broker --listen URL``.

Nothing is imported here (as in models, simulations and training), so
``import splitedge.control_plane`` and the pure :mod:`~splitedge.control_plane.address`
need no aiomqtt; every other module needs the ``mqtt`` extra. Import names from their
modules.
"""
