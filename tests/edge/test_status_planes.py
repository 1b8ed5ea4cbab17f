"""One server-load type: the Status RPC and the MQTT status give the device the same
:class:`~splitedge.proto.status.ServerStatus` (for the facts both carry)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from splitedge.control_plane.discovery import Discovery
from splitedge.edge.config import BatchingConfig
from splitedge.edge.presence import status_figures
from splitedge.edge.registry import FrameRequest, ModelRegistry
from splitedge.edge.service import EdgeService
from splitedge.models.echo import EchoModel
from splitedge.proto import codec, wire
from splitedge.proto import splitedge_pb2 as pb
from splitedge.proto.codec import DEFAULT_LIMITS
from splitedge.proto.control import SCHEMA_VERSION, edge_status_topic, encode_object
from splitedge.proto.status import ServerStatus


def _frame(i: int) -> FrameRequest:
    tensor = codec.encode_tensor(np.arange(12, dtype=np.float32), "x", compression="raw")
    return FrameRequest(i, "echo", "split@x", [tensor], None, (3, 4), (3, 4))


def _mqtt_facts(status: ServerStatus) -> ServerStatus:
    """``status`` without what the MQTT message does not carry (replicas: only beside a
    measured tail)."""
    return dataclasses.replace(
        status,
        in_flight=0,
        frames_per_second=0.0,
        uptime_s=0.0,
        branches=tuple(
            dataclasses.replace(
                b,
                queue_depth=0,
                frames=0,
                by_batch_size=(),
                replicas=b.replicas if b.measured else 0,
            )
            for b in status.branches
        ),
    )


async def test_the_status_rpc_and_mqtt_give_the_same_server_status() -> None:
    registry = ModelRegistry([EchoModel(), EchoModel("other")], DEFAULT_LIMITS)
    async with EdgeService(registry, BatchingConfig(), server_id="edge-a") as service:
        for i in range(3):
            assert (await service.process(_frame(i))).error is None
        snapshot = service.status()
        service.status = lambda: snapshot  # type: ignore[method-assign]  # one instant
        # The Status RPC's path: the servicer's reply, serialized, read by the device.
        reply = pb.StatusResponse.FromString(wire.status_to_pb(snapshot).SerializeToString())
        by_rpc = wire.status_from_pb(reply)
        # MQTT's path: the publisher's figures, the JSON on the topic, discovery's state.
        message = {
            "v": SCHEMA_VERSION,
            "server_id": "edge-a",
            "online": True,
            "timestamp": time.time(),
            **status_figures(service, "127.0.0.1:50051"),
        }
        discovery = Discovery()
        discovery.ingest(edge_status_topic("edge-a"), encode_object(message))
        state = discovery.state("edge-a")
        assert state is not None
        by_mqtt = state.load

    assert by_rpc == snapshot  # the RPC carries every figure
    assert by_mqtt == _mqtt_facts(by_rpc)
    measured = {(b.model, b.branch): b.measured for b in by_rpc.branches}
    # One measured branch, and unmeasured ones that claim no tail latency on either plane.
    assert measured == {
        ("echo", "split@x"): True,
        ("echo", "offload-jpeg90"): False,
        ("other", "split@x"): False,
        ("other", "offload-jpeg90"): False,
    }
    split = by_mqtt.branches_of("echo")[0]
    assert split.tail_latency_ms_p95 is not None and split.tail_latency_ms_p95 > 0
    assert by_mqtt.branches_of("other")[0].tail_latency_ms_p95 is None
    # The in-process engine runs each tail once; both planes say so for the measured one.
    assert split.replicas == by_rpc.branches_of("echo")[0].replicas == 1
    assert by_mqtt.branches_of("other")[0].replicas == 0  # unmeasured: not on MQTT
