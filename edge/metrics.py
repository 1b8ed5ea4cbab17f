"""Prometheus metrics of the edge server, on their own registry and HTTP port.

Names: ``splitedge_requests_total{model,branch,code}``,
``splitedge_tail_latency_seconds{model,branch}`` (histogram, per batch),
``splitedge_batch_size`` (histogram), ``splitedge_queue_depth`` (gauge, read live).
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics"]

log = logging.getLogger(__name__)

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The server's collectors; ``serve(host, port)`` exposes ``/metrics`` over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "splitedge_requests",
            "Frames answered, by model, branch and gRPC status code name.",
            ["model", "branch", "code"],
            registry=self.registry,
        )
        self.tail_latency = Histogram(
            "splitedge_tail_latency_seconds",
            "Tail time of one batch, by model and branch.",
            ["model", "branch"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "splitedge_batch_size",
            "Frames per tail batch.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "splitedge_queue_depth",
            "Frames admitted and waiting for a tail, all branches.",
            registry=self.registry,
        )
        self._http: WSGIServer | None = None

    def observe_request(self, model: str, branch: str, code: str) -> None:
        self.requests.labels(model, branch, code).inc()

    def observe_batch(self, model: str, branch: str, batch_size: int, tail_s: float) -> None:
        self.tail_latency.labels(model, branch).observe(tail_s)
        self.batch_size.observe(batch_size)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP exporter in a daemon thread; returns the bound port (0 = any)."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound = int(self._http.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
