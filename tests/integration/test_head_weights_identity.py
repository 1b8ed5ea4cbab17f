"""Head weights identity: the edge states, per split branch, the SHA-256 of the head
weights its tail expects (``Describe``); a device running heads with torch refuses an
edge whose fingerprint differs from its own head's (its codes would decode into boxes
in the wrong places, silently), and accepts an older edge that states none with one
warning. The exported ONNX head's spec carries the same hash.

Real in-process grpc.aio edge servers; the device's heads are real torch models.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
import torch

import splitedge.edge.server as edge_server
from splitedge.edge.config import ModelConfig, load_config
from splitedge.edge.export import plan_heads
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer
from splitedge.mobile_client import Client, ClientError, open_source
from splitedge.mobile_client.heads import TorchHeadBackend

pytestmark = pytest.mark.integration

GHND = "zoo:ghnd-frcnn-small-c12"
BRANCH = "bottleneck-12-w0.5-4bit"
TV = "fasterrcnn_mobilenet_v3_small_fpn_lite"
TV_OPTIONS = {"min_size": 96, "max_size": 128}


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    # The torchvision model is served with random weights from another seed than the
    # device's default (0): same architecture, other weights.
    models = [ModelConfig(GHND), ModelConfig(TV, {**TV_OPTIONS, "init_seed": 1})]
    config = load_config(None, port=0, models=models)
    return ModelRegistry.from_config(config.models, config.limits.codec_limits(), device="cpu")


@contextlib.asynccontextmanager
async def _serving(registry: ModelRegistry) -> AsyncIterator[str]:
    config = load_config(None, port=0, host="127.0.0.1", models=[ModelConfig(GHND)])
    async with EdgeServer(config, registry) as edge:
        yield f"127.0.0.1:{edge.port}"


def _frame():
    return next(open_source("synthetic", max_frames=1, size=(200, 150), seed=3))


async def test_same_head_weights_run_and_every_statement_agrees(registry):
    backend = TorchHeadBackend(GHND)
    async with _serving(registry) as address, Client(address, GHND, backend=backend) as client:
        described = {b.name: b.head_weights_sha256 for b in client.model_info.branches}
        result = await client.submit(_frame(), BRANCH, bits=4)
    assert result.source == "edge", result.reason
    ours = backend.head_fingerprints()
    assert len(ours[BRANCH]) == 64 and described[BRANCH] == ours[BRANCH]
    assert {n for n, h in described.items() if h} == set(ours)  # split branches only
    # The exported ONNX head's spec states the same hash (the onnx backend checks it).
    plans = plan_heads(registry.model(GHND), GHND)
    exported = {b: p.weights_sha256 for p in plans.values() for b in p.branches}
    assert exported == {n: h for n, h in described.items() if h}


async def test_other_head_weights_are_refused_with_one_line(registry):
    backend = TorchHeadBackend(GHND)
    with torch.no_grad():  # one head parameter nudged: codes the tail would misread
        next(backend.model.student.head.parameters()).add_(0.01)
    edge_hash = plan_heads(registry.model(GHND), GHND)["w0.5"].weights_sha256
    async with _serving(registry) as address:
        with pytest.raises(ClientError) as refused:
            async with Client(address, GHND, backend=backend):
                pytest.fail("a client with other head weights was let in")
    message = str(refused.value)
    assert "\n" not in message and "bottleneck-12-" in message and GHND in message
    assert backend.head_fingerprints()[BRANCH][:12] in message and edge_hash[:12] in message
    assert "--model-option weights=" in message and "--backend onnx" in message


async def test_random_init_from_another_seed_is_refused(registry):
    backend = TorchHeadBackend(TV, TV_OPTIONS)  # init_seed 0; the edge's is 1
    config = load_config(None, port=0, host="127.0.0.1", models=[ModelConfig(TV)])
    async with EdgeServer(config, registry) as edge:
        with pytest.raises(ClientError, match=r"branch 'split@features\.\d+'.*--backend onnx"):
            async with Client(f"127.0.0.1:{edge.port}", TV, backend=backend):
                pass


async def test_an_edge_stating_no_fingerprint_is_accepted_with_one_warning(
    registry, monkeypatch, caplog
):
    # An edge from before fingerprints: its Describe leaves the field empty.
    monkeypatch.setattr(edge_server, "model_fingerprints", lambda model: {})
    backend = TorchHeadBackend(GHND)
    with caplog.at_level(logging.WARNING, logger="splitedge.mobile_client.client"):
        async with _serving(registry) as address, Client(address, GHND, backend=backend) as c:
            await c.refresh_model_info()  # asked again: still one warning
            result = await c.submit(_frame(), BRANCH, bits=4)
    assert result.source == "edge", result.reason
    warnings = [r.getMessage() for r in caplog.records if "fingerprint" in r.getMessage()]
    assert len(warnings) == 1 and "older server" in warnings[0], warnings
