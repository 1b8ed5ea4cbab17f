"""Depth for AR from the edge: send a focal stack, get metric depth and confidence back.

The device captures N slices focused at known distances and ships them (PNG,
JPEG, or zstd-packed raw pixels) in one ``DepthFromFocus`` call; the edge server
runs HybridDepth (depth from focus + a single-image prior, fused) and answers
with float16 depth and confidence. ``splitedge-client depth --stack DIR`` does it
for a folder written by :func:`splitedge.models.depth.save_focal_stack` (or by a
phone app in that layout) and saves:

* ``depth_mm.png``: 16-bit PNG, depth in **millimetres** (uint16; 0 = no depth,
  values clipped to 65.535 m), the usual RGB-D convention (TUM, NYU tooling);
* ``depth_preview.png``: inverse depth through the turbo colour map, near = red;
* ``depth.json``: timing breakdown (ms), payload bytes, fitted scale/shift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from splitedge.mobile_client.flags import (
    add_tls_flags,
    add_token_flags,
    tls_from_flags,
    token_from_args,
)
from splitedge.mobile_client.transport import (
    ClientError,
    EdgeRefused,
    EdgeTransport,
    EdgeUnavailable,
    FocalStackMessage,
    TlsConfig,
    edge_session,
    focal_stack_request,
)
from splitedge.models.depth.errors import DepthError
from splitedge.models.depth.io import load_focal_stack
from splitedge.models.depth.types import FocalStack
from splitedge.proto import codec
from splitedge.proto.status import StatusCode

if TYPE_CHECKING:
    import grpc

__all__ = [
    "DepthClientError",
    "DepthResponse",
    "DepthRpcError",
    "add_depth_parser",
    "build_request",
    "depth_to_colour",
    "main",
    "request_depth",
    "run_depth",
    "save_depth_png16",
    "save_depth_preview",
]

ImageFormat = Literal["png", "jpeg", "zstd"]
FocusUnit = Literal["m", "diopter"]
IMAGE_FORMATS: tuple[str, ...] = ("png", "jpeg", "zstd")
DEFAULT_DEADLINE_MS = 30_000.0


class DepthClientError(Exception):
    """The depth request could not be made or answered; one line a person can act on."""


class DepthRpcError(DepthClientError):
    """The server refused or failed the call; ``code`` is its :class:`StatusCode`."""

    def __init__(self, code: StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


@dataclass
class DepthResponse:
    """Metric depth (H, W) float32 metres, confidence (H, W) float32 in [0, 1].

    ``timing`` holds the server's stages (``decode_ms`` ... ``server_total_ms``) and
    the device's (``client_encode_ms``, ``round_trip_ms``, ``client_decode_ms``).
    ``payload_bytes`` is the serialized request size (what crossed the uplink).
    """

    depth_m: np.ndarray
    confidence: np.ndarray
    timing: dict[str, float]
    payload_bytes: int
    response_bytes: int = 0
    scale: float = 0.0
    shift: float = 0.0
    confident_pixels: int = 0
    alignment_residual_px: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def build_request(
    stack: FocalStack,
    *,
    image_format: ImageFormat = "png",
    jpeg_quality: int = 95,
    align: bool = False,
    refine: bool = True,
    deadline_ms: float = DEFAULT_DEADLINE_MS,
    unit: FocusUnit = "m",
    request_id: int | None = None,
) -> FocalStackMessage:
    """The wire request for a stack (slices as images or as zstd uint8 tensors), as
    :meth:`EdgeTransport.depth_from_focus` sends it; for feeding a ``DepthService``."""
    _check_options(image_format, unit)
    return focal_stack_request(
        stack,
        image_format=image_format,
        jpeg_quality=jpeg_quality,
        align=align,
        refine=refine,
        deadline_ms=deadline_ms,
        unit=unit,
        request_id=request_id,
    )


def _check_options(image_format: str, unit: str) -> None:
    if image_format not in IMAGE_FORMATS:
        raise DepthClientError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if unit not in ("m", "diopter"):
        raise DepthClientError(f"unit must be 'm' or 'diopter', got {unit!r}")


def _decode(
    depth_t: codec.EncodedTensor, confidence_t: codec.EncodedTensor
) -> tuple[np.ndarray, np.ndarray]:
    try:
        depth = codec.decode_tensor(depth_t).astype(np.float32)
        confidence = codec.decode_tensor(confidence_t).astype(np.float32)
    except codec.CodecError as exc:
        raise DepthClientError(f"server sent an undecodable depth result ({exc})") from exc
    if depth.ndim != 2 or depth.shape != confidence.shape:
        raise DepthClientError(
            f"server sent depth {depth.shape} and confidence {confidence.shape}; expected (H, W)"
        )
    return depth, confidence


async def request_depth(
    edge: EdgeTransport | grpc.aio.Channel | str,
    stack: FocalStack,
    *,
    image_format: ImageFormat = "png",
    jpeg_quality: int = 95,
    align: bool = False,
    refine: bool = True,
    deadline_ms: float = DEFAULT_DEADLINE_MS,
    unit: FocusUnit = "m",
    tls: TlsConfig | None = None,
    token: str | None = None,
) -> DepthResponse:
    """Send ``stack`` to an edge server's ``DepthFromFocus`` RPC; metric depth back.

    The depth-from-focus algorithm itself, run on the edge, is
    :func:`splitedge.models.depth.depth_from_focus`.

    ``edge`` is an :class:`EdgeTransport`, an open ``grpc.aio`` channel, or
    ``"host:port"`` (a channel, over TLS with ``tls``, is opened and closed here);
    ``token`` is the device token for an edge with ``[auth] tokens``.
    ``deadline_ms`` bounds the whole call and is sent along, so the server drops work
    nobody waits for. Raises :class:`DepthRpcError` (with the status name) when the
    server refuses the stack or cannot be reached.
    """
    _check_options(image_format, unit)
    try:
        async with edge_session(edge, tls=tls, token=token) as session:
            reply = await session.depth_from_focus(
                stack,
                image_format=image_format,
                jpeg_quality=jpeg_quality,
                align=align,
                refine=refine,
                deadline_ms=deadline_ms,
                unit=unit,
            )
    except (EdgeRefused, EdgeUnavailable) as exc:
        code = StatusCode.UNAVAILABLE if exc.code is None else exc.code
        raise DepthRpcError(code, exc.details) from exc
    except ClientError as exc:
        raise DepthClientError(str(exc)) from exc
    t0 = time.perf_counter()
    depth, confidence = _decode(reply.depth, reply.confidence)
    timing = dict(reply.timing)
    timing.update(
        client_encode_ms=reply.encode_ms,
        round_trip_ms=reply.round_trip_ms,
        client_decode_ms=(time.perf_counter() - t0) * 1e3,
    )
    return DepthResponse(
        depth_m=depth,
        confidence=confidence,
        timing=timing,
        payload_bytes=reply.request_bytes,
        response_bytes=reply.response_bytes,
        scale=reply.scale,
        shift=reply.shift,
        confident_pixels=reply.confident_pixels,
        alignment_residual_px=reply.alignment_residual_px,
    )


# Deprecated: the old name of :func:`request_depth`, kept for one release; it read as the
# algorithm of the same name in :mod:`splitedge.models.depth`.
depth_from_focus = request_depth


# ---------------------------------------------------------------- saving


def save_depth_png16(path: str | Path, depth_m: np.ndarray) -> Path:
    """16-bit PNG of depth in millimetres (uint16; 0 = invalid; clipped to 65535 mm).

    Millimetre uint16 is what RGB-D tools read (TUM/NYU style, divide by 1000 for m):
    1 mm steps up to 65.5 m, and lossless PNG keeps them exact.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise DepthClientError(f"depth must be (H, W), got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.where(valid, np.clip(np.rint(depth * 1e3), 1, 65535), 0).astype(np.uint16)
    path = Path(path)
    Image.fromarray(mm).save(path, format="PNG")
    return path


# Turbo as the polynomial fit published with it (Mikhailov, Google, 2019): no matplotlib needed.
_TURBO_R = (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943)
_TURBO_G = (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604)
_TURBO_B = (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973)
_TURBO_LUT = np.stack(
    [
        np.polynomial.polynomial.polyval(np.linspace(0.0, 1.0, 256), coeffs)
        for coeffs in (_TURBO_R, _TURBO_G, _TURBO_B)
    ],
    axis=1,
)
_TURBO_LUT_U8 = np.clip(_TURBO_LUT * 255.0 + 0.5, 0, 255).astype(np.uint8)


def depth_to_colour(
    depth_m: np.ndarray, *, min_depth_m: float | None = None, max_depth_m: float | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 turbo colours of inverse depth: near = red, far = blue, invalid = black.

    The range defaults to the 2nd-98th percentile of the valid depths, so a few wild
    pixels do not wash the preview out.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise DepthClientError(f"depth must be (H, W), got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    out = np.zeros((*depth.shape, 3), np.uint8)
    if not valid.any():
        return out
    lo = min_depth_m if min_depth_m is not None else float(np.percentile(depth[valid], 2))
    hi = max_depth_m if max_depth_m is not None else float(np.percentile(depth[valid], 98))
    inv = 1.0 / np.where(valid, depth, 1.0)
    inv_near, inv_far = 1.0 / max(lo, 1e-6), 1.0 / max(hi, lo + 1e-6)
    t = np.clip((inv - inv_far) / max(inv_near - inv_far, 1e-12), 0.0, 1.0)
    out[valid] = _TURBO_LUT_U8[np.rint(t[valid] * 255).astype(np.int64)]
    return out


def save_depth_preview(path: str | Path, depth_m: np.ndarray) -> Path:
    """A colour PNG of the depth map for people (see :func:`depth_to_colour`)."""
    path = Path(path)
    Image.fromarray(depth_to_colour(depth_m)).save(path, format="PNG")
    return path


# ---------------------------------------------------------------- CLI


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="edge server address HOST:PORT")
    parser.add_argument(
        "--stack", required=True, type=Path, help="focal stack folder (images + focus.json)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("."),
        help="where depth_mm.png, depth_preview.png and depth.json go (default: .)",
    )
    parser.add_argument("--align", action="store_true", help="register hand-held slices first")
    parser.add_argument(
        "--no-refine",
        dest="refine",
        action="store_false",
        help="skip the local refinement after the global scale/shift fit (on by default: "
        "without it the fused depth is worse than DFF alone, see docs/benchmarks.md)",
    )
    parser.add_argument(
        "--format",
        choices=IMAGE_FORMATS,
        default="png",
        help="slice encoding on the wire: png (lossless), jpeg, zstd (raw pixels; default png)",
    )
    parser.add_argument(
        "--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (default 95)"
    )
    parser.add_argument(
        "--unit",
        choices=("m", "diopter"),
        default="m",
        help="unit the focus distances travel in (default m)",
    )
    parser.add_argument(
        "--deadline-ms",
        type=float,
        default=DEFAULT_DEADLINE_MS,
        help=f"budget for the whole call in ms, 0 = none (default {DEFAULT_DEADLINE_MS:.0f})",
    )
    add_tls_flags(parser)
    add_token_flags(parser)


def add_depth_parser(subparsers: Any) -> None:
    """Register ``splitedge-client depth`` (its handler is :func:`run_depth`)."""
    parser = subparsers.add_parser(
        "depth",
        help="metric depth from a focal stack folder, computed on the edge",
        description="Send a focal stack (a folder of slices + focus.json) to the edge "
        "server's DepthFromFocus and save depth as a 16-bit PNG in millimetres plus a "
        "colour preview.",
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_depth)


def _fail(message: str) -> None:
    print(f"splitedge-client: error: {message}", file=sys.stderr)


def run_depth(args: argparse.Namespace) -> int:
    """The ``depth`` command: 0 on success, 2 on bad input (local or refused), 1 otherwise."""
    if not 1 <= args.jpeg_quality <= 100:
        _fail(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
        return 2
    if not (args.deadline_ms >= 0 and math.isfinite(args.deadline_ms)):
        _fail(f"--deadline-ms must be a finite number >= 0, got {args.deadline_ms}")
        return 2
    try:
        tls = tls_from_flags(args.tls_ca, args.tls_cert, args.tls_key)
        token = token_from_args(args)
    except ValueError as exc:
        _fail(str(exc))
        return 2
    try:
        stack = load_focal_stack(args.stack)
    except DepthError as exc:
        _fail(str(exc))
        return 2
    try:
        response = asyncio.run(
            request_depth(
                args.server,
                stack,
                image_format=args.format,
                jpeg_quality=args.jpeg_quality,
                align=args.align,
                refine=args.refine,
                deadline_ms=args.deadline_ms,
                unit=args.unit,
                tls=tls,
                token=token,
            )
        )
    except DepthRpcError as exc:
        _fail(f"{args.server}: {exc}")
        return 2 if exc.code is StatusCode.INVALID_ARGUMENT else 1
    except DepthClientError as exc:
        _fail(str(exc))
        return 1
    try:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        png = save_depth_png16(args.out_dir / "depth_mm.png", response.depth_m)
        preview = save_depth_preview(args.out_dir / "depth_preview.png", response.depth_m)
        record = {
            "stack": str(args.stack),
            "size_hw": list(response.depth_m.shape),
            "slices": len(stack),
            "payload_bytes": response.payload_bytes,
            "response_bytes": response.response_bytes,
            "timing_ms": {k: round(v, 3) for k, v in response.timing.items()},
            "scale": response.scale,
            "shift": response.shift,
            "confident_pixels": response.confident_pixels,
            "alignment_residual_px": response.alignment_residual_px,
        }
        (args.out_dir / "depth.json").write_text(json.dumps(record, indent=2) + "\n")
    except OSError as exc:
        _fail(f"cannot write results to {args.out_dir}: {exc}")
        return 1
    h, w = response.depth_m.shape
    print(
        f"depth {h}x{w} from {len(stack)} slices: payload {response.payload_bytes} B, "
        f"server {response.timing['server_total_ms']:.1f} ms, "
        f"round trip {response.timing['round_trip_ms']:.1f} ms -> {png}, {preview}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m splitedge.mobile_client.depth ARGS``: the ``depth`` command on its own."""
    parser = argparse.ArgumentParser(
        prog="splitedge-client depth",
        description="Metric depth from a focal stack folder, computed on the edge.",
    )
    _add_arguments(parser)
    return run_depth(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
