"""Class names given as a model option on the edge's --model flag travel in Describe and
ListModels through a real in-process edge server, and `splitedge-client models` shows them."""

from __future__ import annotations

import asyncio

import pytest

from splitedge.edge.config import load_config, parse_model_spec
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer
from splitedge.mobile_client.cli import main as client_main
from splitedge.mobile_client.transport import EdgeTransport

pytestmark = pytest.mark.integration

NAMES = ["__background__", "cat", "dog"]
SPEC = 'fasterrcnn_mobilenet_v3_large_320_fpn:class_names=["__background__","cat","dog"]'


async def test_class_names_travel_in_describe_and_the_client_prints_them(capsys):
    config = load_config(None, port=0, host="127.0.0.1", models=[parse_model_spec(SPEC)])
    registry = ModelRegistry.from_config(config.models, config.limits.codec_limits(), device="cpu")
    async with EdgeServer(config, registry) as edge:
        address = f"127.0.0.1:{edge.port}"
        async with EdgeTransport(address) as transport:
            info = await transport.describe("fasterrcnn_mobilenet_v3_large_320_fpn", timeout_s=10)
            listed = await transport.list_models(timeout_s=10)
        assert info.class_names == tuple(NAMES) and info.num_classes == 3
        assert [m.class_names for m in listed] == [tuple(NAMES)]
        code = await asyncio.to_thread(client_main, ["models", "--server", address])
    assert code == 0
    assert "classes (3): __background__, cat, dog" in capsys.readouterr().out
