"""Shared fixtures: real edge server processes on port 0, always torn down."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from splitedge.simulations.processes import EdgeProcess


@pytest.fixture
def edge_factory() -> Iterator[Callable[..., EdgeProcess]]:
    """Start real ``splitedge-edge serve`` processes; each is stopped after the test."""
    started: list[EdgeProcess] = []

    def start(*args: str) -> EdgeProcess:
        edge = EdgeProcess(list(args)).start()
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop(grace_s=5)
