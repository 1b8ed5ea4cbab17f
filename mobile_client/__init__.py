"""The device runtime: frame sources, head backends, transport to the edge, sinks, CLI.

Importing this package needs no torch: offload branches run with numpy + Pillow;
split and local branches use the torch head backend when torch is installed.
"""

from splitedge.mobile_client.client import Client, ClientError, EdgeUnavailable
from splitedge.mobile_client.heads import HeadBackend, NoHeadBackend, make_backend
from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.sources import Frame, SourceError, open_source
from splitedge.mobile_client.transport import EdgeRefused, TlsConfig

__all__ = [
    "Client",
    "ClientError",
    "EdgeRefused",
    "EdgeUnavailable",
    "Frame",
    "FrameOutcome",
    "FrameTiming",
    "HeadBackend",
    "NoHeadBackend",
    "SourceError",
    "TlsConfig",
    "make_backend",
    "open_source",
]
