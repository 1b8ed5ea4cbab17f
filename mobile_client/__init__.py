"""The device runtime: frame sources, head backends, transport to the edge, sinks, CLI.

Importing this package needs no torch: offload branches run with numpy + Pillow;
split and local branches use the torch head backend when torch is installed.
"""

from splitedge.mobile_client.client import Client, ClientError, EdgeUnavailable
from splitedge.mobile_client.heads import HeadBackend, NoHeadBackend, make_backend
from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.sources import CameraFrame, SourceError, open_source
from splitedge.mobile_client.transport import EdgeRefused, TlsConfig

# Deprecated: the camera frame's old name, kept for one release (not in ``__all__``).
Frame = CameraFrame

__all__ = [
    "CameraFrame",
    "Client",
    "ClientError",
    "EdgeRefused",
    "EdgeUnavailable",
    "FrameOutcome",
    "FrameTiming",
    "HeadBackend",
    "NoHeadBackend",
    "SourceError",
    "TlsConfig",
    "make_backend",
    "open_source",
]
