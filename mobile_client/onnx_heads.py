"""``--backend onnx``: split heads the edge exported, run with ONNX Runtime, no torch.

The device asks the edge for each split branch's head (``GetHead``: ONNX graph + its
:class:`~splitedge.proto.head_spec.HeadSpec` + SHA-256), keeps it in a disk cache by
hash (:class:`HeadCache`, default ``~/.cache/splitedge/heads``), and runs it with
onnxruntime after a numpy pre-processing that reproduces torchvision's
``GeneralizedRCNNTransform`` (:func:`preprocess`). The bytes are checked against the
hash on download and on every load; a mismatch is refused with one line and fetched
again once. onnxruntime is imported only when the backend is built, so the client
runs without it (other backends).

There is no whole model on such a device: the ``local`` branch is not available
(:attr:`OnnxHeadBackend.no_local_reason` says so in the frame's record).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.models.types import BranchSpec, HeadOutput, Prediction
from splitedge.proto.head_spec import HeadSpec, HeadSpecError, sha256_hex_ok, write_atomic

__all__ = [
    "HeadCache",
    "HeadIntegrityError",
    "OnnxHeadBackend",
    "default_head_cache_dir",
    "preprocess",
]

log = logging.getLogger(__name__)

NO_LOCAL_REASON = "no local model on this device (backend onnx has heads only)"
GET_HEAD_TIMEOUT_S = 60.0  # the edge may export the head on this first request


class HeadIntegrityError(ValueError):
    """Head bytes whose SHA-256 is not the one stated (download or cache); one line."""


def default_head_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/splitedge/heads`` (``~/.cache/splitedge/heads``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "splitedge" / "heads"


# ---------------------------------------------------------------- pre-processing


def _bilinear_axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """torch's ``upsample_bilinear2d`` (align_corners=False, scale = in/out) on one axis:
    (first index, second index, weight of the second), float32 as torch computes it."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, lam1


def _resize_planes(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """CxHxW -> C x height x width float32, as torch's bilinear interpolate.

    Separable, rows first: a row gather copies contiguous rows (cheap), and on a frame
    that shrinks the column pass then works on ``height`` rows, not H. The weights are
    torch's; only the order of the two passes differs (float rounding, ~1e-6).
    """
    h0, h1, hl1 = _bilinear_axis(planes.shape[1], height)
    w0, w1, wl1 = _bilinear_axis(planes.shape[2], width)
    hl0, wl0 = np.float32(1.0) - hl1, np.float32(1.0) - wl1
    rows = planes[:, h0, :].astype(np.float32)
    rows *= hl0[None, :, None]
    rows += planes[:, h1, :] * hl1[None, :, None]
    out = rows[:, :, w0]
    out *= wl0
    out += rows[:, :, w1] * wl1
    return out


def _aa_axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's antialiased bilinear weights on one axis (``_upsample_bilinear2d_aa``,
    align_corners=False): (indices [out, K], weights [out, K]) over a window of K input
    pixels per output pixel; the triangle filter widens with the scale when shrinking."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    centers = scale * (np.arange(out_size) + 0.5)
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    k = int((xmax - xmin).max())
    offsets = np.arange(k)
    idx = xmin[:, None] + offsets[None, :]
    valid = idx < xmax[:, None]
    weights = np.clip(1.0 - np.abs((idx - centers[:, None] + 0.5) * invscale), 0.0, None)
    weights = np.where(valid, weights, 0.0)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 0.0)
    return np.minimum(idx, in_size - 1), weights.astype(np.float32)


def _resize_planes_aa(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """CxHxW -> C x height x width float32, as torch's bilinear interpolate with
    ``antialias=True`` (segmentation heads): a weighted sum over each output pixel's
    window, rows first, then columns."""
    rows_idx, rows_w = _aa_axis(planes.shape[1], height)
    cols_idx, cols_w = _aa_axis(planes.shape[2], width)
    x = planes.astype(np.float32)
    rows = np.zeros((x.shape[0], height, x.shape[2]), dtype=np.float32)
    for j in range(rows_idx.shape[1]):
        rows += x[:, rows_idx[:, j], :] * rows_w[None, :, j, None]
    out = np.zeros((x.shape[0], height, width), dtype=np.float32)
    for j in range(cols_idx.shape[1]):
        out += rows[:, :, cols_idx[:, j]] * cols_w[None, None, :, j]
    return out


def preprocess(spec: HeadSpec, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """HxWx3 uint8 RGB -> ([1, 3, H', W'] float32 batch, (height, width) before padding).

    What the head's torch pre-processing does (see :mod:`splitedge.proto.head_spec`):
    ``rcnn`` /255, normalize, bilinear resize, zero pad; ``seg`` /255, antialiased
    bilinear resize, normalize (no padding: ``size_divisible`` 1).
    """
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or 0 in image.shape
    ):
        shape = list(getattr(image, "shape", []))
        raise ValueError(f"image: expected HxWx3 uint8 RGB, got shape {shape}")
    # (x / 255 - mean) / std as one multiply-add per channel.
    std = np.asarray(spec.std, dtype=np.float32)
    gain = np.float32(1.0) / (np.float32(255.0) * std)
    offset = -np.asarray(spec.mean, dtype=np.float32) / std
    height, width = spec.resized_size(image.shape[0], image.shape[1])
    padded_h, padded_w = spec.padded_size(height, width)
    batch = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
    view = batch[0, :, :height, :width]
    planes = image.transpose(2, 0, 1)  # a view; uint8 until the first pass needs floats
    # torch normalizes, then resizes; bilinear weights sum to 1, so resizing first gives
    # the same values (to float rounding) for less work on a frame that shrinks.
    if (height, width) != image.shape[:2]:
        resize = _resize_planes_aa if spec.preprocess == "seg" else _resize_planes
        view[...] = resize(np.ascontiguousarray(planes), height, width)
    else:
        view[...] = planes
    view *= gain[:, None, None]
    view += offset[:, None, None]
    return batch, (height, width)


# ---------------------------------------------------------------- the disk cache


class HeadCache:
    """Heads on the device's disk: ``<sha256>.onnx`` + ``<sha256>.json`` (the spec), and
    ``index.json`` (model/branch -> the sha256 last fetched, to ask the edge whether it
    is still current). Files are written atomically; a graph is trusted only when its
    bytes hash to its name."""

    def __init__(self, directory: Path | str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_head_cache_dir()

    def paths(self, sha256: str) -> tuple[Path, Path]:
        return self.directory / f"{sha256}.onnx", self.directory / f"{sha256}.json"

    def _index(self) -> dict[str, str]:
        try:
            raw = json.loads((self.directory / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}

    def known(self, model: str, branch: str) -> str:
        """The sha256 last stored for ``model``/``branch`` if its files are here, else ""."""
        sha = self._index().get(f"{model}/{branch}", "")
        return sha if sha256_hex_ok(sha) and all(p.is_file() for p in self.paths(sha)) else ""

    def load(self, sha256: str) -> tuple[HeadSpec, bytes]:
        """The cached head with this hash; HeadIntegrityError if its bytes do not match,
        HeadSpecError if its spec is unreadable, OSError if absent."""
        onnx_path, spec_path = self.paths(sha256)
        data = onnx_path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise HeadIntegrityError(
                f"cached head {onnx_path} has sha256 {digest[:16]}..., expected {sha256[:16]}..."
            )
        spec = HeadSpec.from_json(spec_path.read_text(encoding="utf-8"))
        if spec.onnx_sha256 != sha256:
            raise HeadIntegrityError(f"cached spec {spec_path} names another graph")
        return spec, data

    def store(self, model: str, branch: str, spec_json: str, onnx: bytes, sha256: str) -> HeadSpec:
        """Check a downloaded head against ``sha256`` and keep it; HeadIntegrityError or
        HeadSpecError (nothing written) when it does not check out."""
        digest = hashlib.sha256(onnx).hexdigest()
        if digest != sha256:
            raise HeadIntegrityError(
                f"downloaded head of {branch!r} has sha256 {digest[:16]}..., the edge "
                f"stated {sha256[:16]}..."
            )
        spec = HeadSpec.from_json(spec_json)
        if spec.onnx_sha256 != sha256 or branch not in spec.branches:
            raise HeadIntegrityError(
                f"downloaded spec of {branch!r} does not describe that graph and branch"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        onnx_path, spec_path = self.paths(sha256)
        write_atomic(onnx_path, onnx)
        write_atomic(spec_path, spec_json.encode("utf-8"))
        self.remember(model, branch, sha256)
        return spec

    def remember(self, model: str, branch: str, sha256: str) -> None:
        index = self._index()
        index[f"{model}/{branch}"] = sha256
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self.directory / "index.json", json.dumps(index, indent=1, sort_keys=True).encode()
        )

    def forget(self, sha256: str) -> None:
        for path in self.paths(sha256):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- the backend


class OnnxHeadBackend:
    """Split heads from the edge, run with onnxruntime on ``threads`` intra-op threads.

    :meth:`prepare` (the client calls it once it knows the edge's branches) fetches the
    heads of ``branches`` (None = every split branch) through the cache; a branch
    whose head cannot be had is left out (:meth:`can_run` False) with one log line.
    """

    name = "onnx"
    has_local = False
    no_local_reason = NO_LOCAL_REASON

    def __init__(
        self,
        *,
        threads: int | None = None,
        cache_dir: Path | str | None = None,
        branches: Iterable[str] | None = None,
    ) -> None:
        try:  # fail now, not on a frame
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ValueError(
                f"--backend onnx needs onnxruntime (pip install onnxruntime): {exc}"
            ) from None

        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self.cache = HeadCache(cache_dir)
        self.wanted = set(branches) if branches is not None else None
        self.downloads = 0  # graphs downloaded (not answered from the cache)
        self._heads: dict[str, tuple[HeadSpec, Any]] = {}  # branch -> (spec, session)
        self._sessions: dict[str, Any] = {}  # sha256 -> session (branches share graphs)
        self._missing: dict[str, str] = {}  # branch -> why it has no head
        self._checked: set[tuple[str, str, str]] = set()  # (server, model, branch)

    # -- what the client asks -------------------------------------------------------

    def can_run(self, branch: BranchSpec) -> bool:
        return branch.kind == "offload" or branch.name in self._heads

    def why_not(self, branch: BranchSpec) -> str:
        """Why this device cannot run ``branch`` ("" when it can)."""
        if self.can_run(branch):
            return ""
        if branch.kind == "local":
            return self.no_local_reason
        return self._missing.get(branch.name, "the edge has not handed out its head")

    def head(self, branch: BranchSpec, image: np.ndarray) -> HeadOutput:
        from splitedge.mobile_client.heads import LocalUnavailable

        try:
            spec, session = self._heads[branch.name]
        except KeyError:
            raise LocalUnavailable(f"branch {branch.name!r}: {self.why_not(branch)}") from None
        batch, input_size = preprocess(spec, image)
        outputs = session.run(list(spec.outputs), {spec.input_name: batch})
        return HeadOutput(
            tensors={
                n: np.asarray(o, dtype=np.float32)
                for n, o in zip(spec.outputs, outputs, strict=True)
            },
            orig_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=input_size,
        )

    def local(self, image: np.ndarray) -> Prediction:
        from splitedge.mobile_client.heads import LocalUnavailable

        raise LocalUnavailable(self.no_local_reason)

    # -- fetching -------------------------------------------------------------------

    async def prepare(
        self, transport: Any, model: str, branches: Iterable[BranchSpec], *, server: str = ""
    ) -> None:
        """Fetch (or find in the cache) the head of every wanted split branch not yet
        checked with this server; never raises (a branch it cannot get is left out)."""
        for spec in branches:
            if spec.kind != "split" or (self.wanted is not None and spec.name not in self.wanted):
                continue
            key = (server, model, spec.name)
            if key in self._checked:
                continue
            try:
                head_spec, data = await self._fetch(transport, model, spec.name)
                self._heads[spec.name] = (head_spec, self._session(head_spec, data))
                self._missing.pop(spec.name, None)
            except Exception as exc:  # one branch lost, never the client
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self._missing[spec.name] = f"no ONNX head: {why}"
                log.warning("branch %s: no ONNX head (%s)", spec.name, why)
                continue
            self._checked.add(key)

    async def _fetch(self, transport: Any, model: str, branch: str) -> tuple[HeadSpec, bytes]:
        known = self.cache.known(model, branch)
        for attempt in (1, 2):
            download = await transport.get_head(
                model, branch, known_sha256=known, timeout_s=GET_HEAD_TIMEOUT_S
            )
            try:
                if download.not_modified:
                    spec, data = self.cache.load(download.sha256)
                    self.cache.remember(model, branch, download.sha256)
                    return spec, data
                self.downloads += 1
                spec = self.cache.store(
                    model, branch, download.spec_json, download.onnx, download.sha256
                )
                return spec, download.onnx
            except (HeadIntegrityError, HeadSpecError, OSError) as exc:
                if attempt == 2:
                    raise
                log.warning("%s; fetching it again", exc)
                if sha256_hex_ok(download.sha256):
                    self.cache.forget(download.sha256)
                known = ""
        raise AssertionError("unreachable")  # pragma: no cover

    def _session(self, spec: HeadSpec, data: bytes) -> Any:
        session = self._sessions.get(spec.onnx_sha256)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if self.threads is not None:
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            self._sessions[spec.onnx_sha256] = session
        return session
