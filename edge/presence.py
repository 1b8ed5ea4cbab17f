"""The edge server's presence on the MQTT plane: who it is, where to dial it, its load.

Glue between :class:`~splitedge.edge.service.EdgeService` and
:class:`~splitedge.control_plane.publisher.StatusPublisher`: :func:`status_figures` turns the
service's status and the registry's models into the status payload,
:func:`default_server_id` and :func:`advertise_address` fill in what the ``[mqtt]``
section leaves out, and :func:`make_publisher` builds the publisher from the config.

Importing this module needs aiomqtt (the ``mqtt`` extra); the server imports it only
when ``[mqtt] host`` is set.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from typing import Any

from splitedge.control_plane.link import BrokerConfig
from splitedge.control_plane.publisher import StatusPublisher
from splitedge.control_plane.signing import Signer, load_key_file
from splitedge.edge.config import MqttConfig
from splitedge.edge.service import EdgeService
from splitedge.proto.control import BranchLatency

__all__ = [
    "advertise_address",
    "broker_config",
    "default_server_id",
    "make_publisher",
    "status_figures",
]

log = logging.getLogger(__name__)

_NOT_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def default_server_id(port: int, hostname: str | None = None) -> str:
    """``<hostname>-<port>``, squeezed into the topic tree's id alphabet (1-64 chars)."""
    name = _NOT_ID_CHARS.sub("-", hostname or socket.gethostname()).strip("-") or "edge"
    suffix = f"-{port}"
    return name[: 64 - len(suffix)] + suffix


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host == ""


def _route_address(toward: str) -> str | None:
    """The local address the kernel would use to reach ``toward`` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in toward else socket.AF_INET
        infos = socket.getaddrinfo(toward, 9, family, socket.SOCK_DGRAM)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(infos[0][4])
            return str(sock.getsockname()[0])
    except OSError:
        return None


def advertise_address(
    bind_host: str, port: int, configured: str = "", broker_host: str = ""
) -> str:
    """What clients should dial: ``configured`` if set, else ``bind_host:port``.

    A wildcard bind (0.0.0.0, ::) is not dialable: it is replaced by the local address
    on the route to the broker (devices share the broker's network, so that is the
    address they most likely reach us on), else 127.0.0.1.
    """
    if configured:
        return configured
    host = bind_host
    if _is_wildcard(bind_host):
        host = (_route_address(broker_host) if broker_host else None) or "127.0.0.1"
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def status_figures(service: EdgeService, address: str) -> dict[str, Any]:
    """The status payload (without id, time and ``online``) from the service's own figures.

    ``models`` lists the branches the server runs (``local`` branches are the device's
    business); ``tail_ms`` only has branches with measured tails, so a fresh server
    does not claim 0 ms it never measured. Each entry carries the replicas running the
    tail, as the ``Status`` RPC reports them (left out while none runs).
    """
    status = service.status()
    models = {
        model.name: [spec.name for spec in model.branches.values() if spec.kind != "local"]
        for model in service.registry.models
    }
    tail_ms: dict[str, dict[str, dict[str, float | int]]] = {}
    for b in status.branches:
        if b.tail_latency_ms_p50 is not None and b.tail_latency_ms_p95 is not None:
            tail_ms.setdefault(b.model, {})[b.branch] = BranchLatency(
                b.tail_latency_ms_p50, b.tail_latency_ms_p95, b.replicas
            ).to_dict()
    return {
        "address": address,
        "models": models,
        "queue_depth": status.queue_depth,
        "queue_capacity": status.queue_capacity,
        "tail_ms": tail_ms,
        "device": status.device,
        "load": status.load,
    }


def broker_config(mqtt: MqttConfig, server_id: str) -> BrokerConfig:
    """The publisher's connection settings from the ``[mqtt]`` section."""
    return BrokerConfig(
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        tls=mqtt.tls,
        tls_ca=str(mqtt.tls_ca) if mqtt.tls_ca is not None else None,
        tls_cert=str(mqtt.tls_cert) if mqtt.tls_cert is not None else None,
        tls_key=str(mqtt.tls_key) if mqtt.tls_key is not None else None,
        client_id=f"splitedge-edge-{server_id}",
        keepalive_s=mqtt.keepalive_s,
    )


def make_publisher(
    mqtt: MqttConfig, service: EdgeService, bind_host: str, port: int
) -> StatusPublisher:
    """A (not yet started) status publisher for a server bound to ``bind_host:port``;
    it signs with the fleet key of ``[mqtt] key_file`` when one is set."""
    server_id = mqtt.server_id or default_server_id(port)
    address = advertise_address(bind_host, port, mqtt.advertise_address, mqtt.host)
    signer = None
    if mqtt.key_file is not None:
        signer = Signer(load_key_file(mqtt.key_file, "mqtt.key_file"))
    else:
        log.warning(
            "MQTT status is unsigned (no [mqtt] key_file / --mqtt-key-file): anyone who "
            "may publish on the broker can announce edge servers (docs/mqtt.md)"
        )
    return StatusPublisher(
        broker_config(mqtt, server_id),
        server_id,
        lambda: status_figures(service, address),
        interval_s=mqtt.interval_s,
        signer=signer,
    )
