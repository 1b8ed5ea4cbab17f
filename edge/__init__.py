"""splitedge.edge: the gRPC edge server that runs split/offload tails for devices.

``splitedge-edge serve --model echo --port 0`` runs one; :class:`EdgeServer` embeds one.
"""

from splitedge.edge.batcher import Batcher, BatchResult
from splitedge.edge.config import (
    BatchingConfig,
    ConfigError,
    EdgeConfig,
    LimitsConfig,
    ModelConfig,
    ServerConfig,
    load_config,
    parse_model_spec,
)
from splitedge.edge.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidArgument,
    NotFound,
    RequestError,
    ResourceExhausted,
    Unavailable,
)
from splitedge.edge.metrics import Metrics
from splitedge.edge.registry import FrameRequest, ModelRegistry, resolve_device
from splitedge.edge.server import EdgeInferenceServicer, EdgeServer, serve
from splitedge.edge.service import EdgeService, Outcome, ServerStatus, ServerTiming
from splitedge.edge.stats import BranchSnapshot, ServerStats

__all__ = [
    "BatchResult",
    "Batcher",
    "BatchingConfig",
    "BranchSnapshot",
    "ConfigError",
    "DeadlineExceeded",
    "EdgeConfig",
    "EdgeInferenceServicer",
    "EdgeServer",
    "EdgeService",
    "FrameRequest",
    "InternalError",
    "InvalidArgument",
    "LimitsConfig",
    "Metrics",
    "ModelConfig",
    "ModelRegistry",
    "NotFound",
    "Outcome",
    "RequestError",
    "ResourceExhausted",
    "ServerConfig",
    "ServerStats",
    "ServerStatus",
    "ServerTiming",
    "Unavailable",
    "load_config",
    "parse_model_spec",
    "resolve_device",
    "serve",
]
