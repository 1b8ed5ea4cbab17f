"""Measuring a branch profile on this device: the work behind ``splitedge-client profile``.

:func:`measure_profile` fills a :class:`~splitedge.mobile_client.profile.Profile` by
really running each branch's head and the codec under CPU contention it makes itself
(:func:`cpu_contention`: busy-looping worker processes); accuracy comes from a
validation callable the caller passes
(:func:`splitedge.training.branch_accuracy.make_video_validator` scores detectors on
synthetic validation video). :func:`run_profile` is the command's handler; its flags
are registered on the device side (:func:`splitedge.mobile_client.cli.add_profile_parser`),
which imports this module only when the command runs, so the device runtime never
loads the profiler, the synthetic data or COCO evaluation to stream frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from splitedge.mobile_client.flags import tls_from_flags, token_from_args
from splitedge.mobile_client.heads import HeadBackend, TorchHeadBackend, make_backend
from splitedge.mobile_client.messages import encode_head, encode_offload
from splitedge.mobile_client.profile import (
    BranchConfig,
    BranchProfile,
    Profile,
    ProfileError,
    Quantiles,
    Validator,
    save_profile,
)
from splitedge.mobile_client.server_profile import fetch_model_info, tail_by_batch_size
from splitedge.mobile_client.sources import SourceError, open_source, resize_short_side
from splitedge.models.registry import create_model
from splitedge.models.types import BranchSpec
from splitedge.proto.options import parse_options

__all__ = ["cpu_contention", "measure_profile", "run_profile"]


# Pure-Python spinning holds one core, as another app's work would on a phone. A fresh
# interpreter (not multiprocessing) so the caller's __main__ is never re-imported.
_SPIN = "while True:\n    pass\n"


@contextlib.contextmanager
def cpu_contention(workers: int) -> Iterator[list[int]]:
    """Hold ``workers`` CPU cores busy with spinning processes for the ``with`` block.

    Yields the spinners' process ids; they are stopped (terminate, then kill) on exit.
    """
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(max(0, workers)):
            procs.append(subprocess.Popen([sys.executable, "-c", _SPIN]))
        if procs:
            time.sleep(0.2)  # let the spinners start before timing does
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=2.0)


def _quantiles_of(values: list[float]) -> Quantiles:
    arr = np.asarray(values, dtype=np.float64)
    return Quantiles(float(arr.mean()), float(np.quantile(arr, 0.5)), float(np.quantile(arr, 0.95)))


def measure_profile(
    model_name: str,
    branches: Sequence[BranchConfig],
    frames: Sequence[np.ndarray],
    *,
    contention_levels: Sequence[int] = (0, 1),
    progress: bool = True,
    validate: Validator | None = None,
    model_options: Mapping[str, Any] | None = None,
    zstd_level: int = 3,
    tail_latency_ms: Mapping[str, Mapping[int, float]] | None = None,
    backend: HeadBackend | None = None,
    specs: Mapping[str, BranchSpec] | None = None,
) -> Profile:
    """Measure a profile of ``branches`` of ``model_name`` on this device.

    Every config's head (or the whole model, for ``local``) and codec run on each
    frame at each contention level (``level`` spinning processes), so head latency
    and bytes/frame are what this device really produces. ``validate`` supplies
    accuracy (left empty without it; its ``accuracy_video`` attribute, when it has
    one, is recorded as the profile's); ``tail_latency_ms`` (branch -> batch size ->
    ms, as the server reports) is copied in. The time to build the model is the
    switch cost into its load group from any other.

    ``backend`` (default: the model under torch, built here) runs the heads:
    ``backend.head(spec, image)`` for split branches, ``backend.local(image)`` for
    ``local``; offload branches need only the JPEG encoder. ``specs`` are the
    branches' specs (default: the backend's model's); a device without the model
    takes them from the edge (``Describe``). Every config must be one the backend
    can run (:func:`runnable`).
    """
    try:  # the tracker needs OpenCV; a device without it profiles detection only
        from splitedge.mobile_client.tracker import measure_tracker_ms
    except ImportError:
        measure_tracker_ms = None

    if not frames:
        raise ProfileError("measure_profile needs at least one frame")
    if not branches:
        raise ProfileError("measure_profile needs at least one branch config")
    levels = tuple(int(lv) for lv in contention_levels)
    if not levels or min(levels) < 0 or len(set(levels)) != len(levels):
        raise ProfileError(f"contention levels must be distinct integers >= 0, got {list(levels)}")
    t0 = time.perf_counter()
    if backend is None:
        backend = TorchHeadBackend(model_name, dict(model_options or {}))
    load_ms = (time.perf_counter() - t0) * 1000.0
    model = getattr(backend, "model", None)  # None: no whole model on this device
    if specs is None:
        if model is None:
            raise ProfileError("measure_profile needs the branch specs (specs=) for this backend")
        specs = model.branches
    for cfg in branches:
        if cfg.branch not in specs:
            raise ProfileError(
                f"model {model_name!r} has no branch {cfg.branch!r}; "
                f"known: {', '.join(sorted(specs))}"
            )
        if not runnable(backend, specs[cfg.branch]):
            raise ProfileError(f"{cfg.key}: the {backend.name} backend cannot run this branch")
        if cfg.width != 1.0 and model is not None and not hasattr(model, "set_width"):
            raise ProfileError(
                f"{cfg.key}: model {model_name!r} is not slimmable (width must be 1.0)"
            )

    def run_once(cfg: BranchConfig, image: np.ndarray) -> tuple[float, int]:
        spec = specs[cfg.branch]
        image = resize_short_side(image, cfg.input_size)
        if hasattr(model, "set_width"):
            model.set_width(cfg.width)
        start = time.perf_counter()
        if spec.kind == "local":
            backend.local(image)
            size = 0
        elif spec.kind == "offload":
            size = encode_offload(image, spec).payload_bytes
        else:
            head = backend.head(spec, image)
            size = encode_head(head, bits=cfg.bits, zstd_level=zstd_level).payload_bytes
        return (time.perf_counter() - start) * 1000.0, size

    # Detection interval changes accuracy, not the head: time each distinct head once.
    heads = {replace(c, detection_interval=1) for c in branches}
    head_ms: dict[BranchConfig, dict[int, Quantiles]] = {h: {} for h in heads}
    size_q: dict[BranchConfig, Quantiles] = {}
    tracker_ms: dict[int, float] = {}
    track_frames = [np.asarray(f) for f in frames[: max(2, min(len(frames), 8))]]
    if len(track_frames) < 2:
        track_frames = track_frames * 2
    h, w = track_frames[0].shape[:2]
    probe_boxes = np.array(
        [[w * 0.1, h * 0.1, w * 0.4, h * 0.5], [w * 0.5, h * 0.4, w * 0.9, h * 0.9]]
    )
    total = len(heads) * len(levels) * (len(frames) + 1) + len(levels)
    ordered = sorted(heads, key=lambda c: c.key)
    with tqdm(total=total, desc=f"profile {model_name}", unit="run", disable=not progress) as bar:
        for level in levels:
            with cpu_contention(level):
                for cfg in ordered:
                    run_once(cfg, frames[0])  # warm-up: lazy initialisation is not the head
                    bar.update(1)
                    times, sizes = [], []
                    for image in frames:
                        ms, size = run_once(cfg, image)
                        times.append(ms)
                        sizes.append(float(size))
                        bar.update(1)
                    head_ms[cfg][level] = _quantiles_of(times)
                    size_q.setdefault(cfg, _quantiles_of(sizes))
                if measure_tracker_ms is not None:
                    tracker_ms[level] = measure_tracker_ms(track_frames, probe_boxes)
                bar.update(1)
    entries = []
    for cfg in branches:
        base = replace(cfg, detection_interval=1)
        record = validate(cfg) if validate is not None else None
        if record is not None and not all(
            0.0 <= a <= 1.0 for a in (record.overall, *record.by_bin.values())
        ):
            raise ProfileError(f"{cfg.key}: validation returned accuracy outside [0, 1]: {record}")
        entries.append(
            BranchProfile(
                config=cfg,
                kind=specs[cfg.branch].kind,
                load_group=model_name,  # one model's branches share its weights
                head_latency_ms=head_ms[base],
                bytes_per_frame=size_q[base],
                tail_latency_ms=dict((tail_latency_ms or {}).get(cfg.branch, {})),
                accuracy=None if record is None else record.overall,
                accuracy_by_bin={} if record is None else dict(record.by_bin),
            )
        )
    return Profile(
        model=model_name,
        device=f"{platform.machine()} {platform.system()} x{os.cpu_count()} cpus",
        contention_levels=levels,
        entries=entries,
        tracker_latency_ms=tracker_ms,
        default_switch_cost_ms=load_ms,
        frame_size=(h, w),
        created_unix_s=time.time(),
        accuracy_video=getattr(validate, "accuracy_video", None),
    )


def runnable(backend: HeadBackend, spec: BranchSpec) -> bool:
    """Whether this device can measure ``spec``: offload needs only the JPEG encoder,
    ``local`` the whole model, a split branch its head (``backend.can_run``)."""
    if spec.kind == "offload":
        return True
    if spec.kind == "local":
        return bool(backend.has_local)
    return backend.can_run(spec)


# ---------------------------------------------------------------- command line


def run_profile(args: argparse.Namespace) -> int:
    """The ``profile`` command: 0 on success, 2 on bad input."""
    try:
        size = _check_profile_args(args)
        options = parse_options(args.model_option, "--model-option")
        frames = [f.image for f in open_source(args.source, max_frames=args.frames, size=size)]
        backend = make_backend(getattr(args, "backend", "auto"), args.model, options)
        # Branch kinds come from the model itself, or from the edge where it is not here.
        model: Any = getattr(backend, "model", None)
        if args.accuracy_frames and (model is None or not backend.has_local):
            raise ValueError(
                "--accuracy-frames runs the whole model on this device and needs torch; "
                f"here {_backend_reason(backend)}"
            )
        tails = None
        specs = None
        if getattr(args, "server", None):
            tls = tls_from_flags(args.tls_ca, args.tls_cert, args.tls_key)
            token = token_from_args(args)
            info = asyncio.run(fetch_model_info(args.server, args.model, tls=tls, token=token))
            tails = tail_by_batch_size(info)
            specs = {b.name: b.spec for b in info.branches}
        if model is not None:  # the model on this device knows its own branches
            specs = model.branches
        elif specs is None:
            specs = _model_without_torch(args.model, options).branches
        configs = _configs(args, model if model is not None else _Branches(specs))
        kept = [c for c in configs if runnable(backend, specs[c.branch])]
        skipped = sorted({c.branch for c in configs} - {c.branch for c in kept})
        if skipped:
            print(
                f"splitedge-client profile: note: {', '.join(skipped)} not measured: head "
                f"branches need torch or the onnx backend; here {_backend_reason(backend)}",
                file=sys.stderr,
            )
        if not kept:
            raise ProfileError("no branch of the selection can be measured on this device")
        validate = None
        if args.accuracy_frames:
            # Synthetic video and COCO evaluation (pycocotools, OpenCV): only when asked.
            from splitedge.training.branch_accuracy import make_video_validator

            validate = make_video_validator(
                model,
                frames=args.accuracy_frames,
                size=size,
                **_accuracy_video_options(args),
            )
        profile = measure_profile(
            args.model,
            kept,
            frames,
            contention_levels=args.levels,
            progress=not args.no_progress,
            validate=validate,
            model_options=options,
            tail_latency_ms=tails,
            # torch: measure_profile builds the model itself, timing the load (switch cost)
            backend=None if isinstance(backend, TorchHeadBackend) else backend,
            specs=None if model is not None else specs,
        )
        save_profile(profile, args.output)
    except (ProfileError, SourceError, ValueError, KeyError, OSError) as exc:
        print(f"splitedge-client profile: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.output}: {len(profile.entries)} entries, "
        f"contention levels {list(profile.contention_levels)}"
    )
    return 0


class _Branches:
    """A model's branches without the model: what ``_configs`` reads (specs from the edge)."""

    def __init__(self, specs: Mapping[str, BranchSpec]) -> None:
        self.branches = dict(specs)


def _backend_reason(backend: HeadBackend) -> str:
    return str(getattr(backend, "reason", f"backend {backend.name}"))


def _model_without_torch(name: str, options: Mapping[str, Any]) -> Any:
    """The model's branches where no head backend holds the model: a torch-free model
    (echo) builds; any other needs the edge to describe it."""
    try:
        return create_model(name, **options)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"model {name!r} needs {exc.name!r} to be built here; pass --server HOST:PORT "
            "so that the edge lists its branches (offload branches are measured, head "
            "branches need torch or the onnx backend)"
        ) from None


def _check_profile_args(args: argparse.Namespace) -> tuple[int, int]:
    """Refuse bad flags before anything is measured; returns ``--size`` as (w, h)."""
    if args.accuracy_frames < 0:
        raise ValueError(f"--accuracy-frames must be >= 0, got {args.accuracy_frames}")
    seed = getattr(args, "accuracy_seed", None)
    if seed is not None and seed < 0:
        raise ValueError(f"--accuracy-seed must be >= 0, got {seed}")
    clip = getattr(args, "accuracy_clip_frames", None)
    if clip is not None and clip < 1:
        raise ValueError(f"--accuracy-clip-frames must be >= 1, got {clip}")
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    size = tuple(args.size)
    for flag, values, low in (
        ("--input-sizes", args.input_sizes, 0),
        ("--intervals", args.intervals, 1),
        ("--levels", args.levels, 0),
    ):
        bad = [v for v in values if v < low]
        if bad or not values:
            raise ValueError(f"{flag}: every value must be >= {low}, got {values}")
    if Path(args.output).is_dir():
        raise ValueError(f"--output: {str(args.output)!r} is a directory; name a file")
    return size


def _accuracy_video_options(args: argparse.Namespace) -> dict[str, int]:
    """``make_video_validator`` keywords for the flags given (the defaults are its own)."""
    out = {}
    if getattr(args, "accuracy_seed", None) is not None:
        out["seed"] = int(args.accuracy_seed)
    if getattr(args, "accuracy_clip_frames", None) is not None:
        out["clip_frames"] = int(args.accuracy_clip_frames)
    return out


def _configs(args: argparse.Namespace, model: Any) -> list[BranchConfig]:
    specs = model.branches
    # A slimmable model's split branches run at their own width (bottleneck-12-w0.5-..).
    branch_width = getattr(model, "branch_width", None)
    names = [b for b in args.branches.split(",") if b] or list(specs)
    out = []
    for name in names:
        if name not in specs:
            raise ProfileError(
                f"model {args.model!r} has no branch {name!r}; known: {', '.join(specs)}"
            )
        split = specs[name].kind == "split"
        bits = (args.bits or [specs[name].default_bits]) if split else [0]
        width = float(branch_width(name)) if split and branch_width is not None else 1.0
        for b in bits:
            for size in args.input_sizes:
                for k in args.intervals:
                    out.append(BranchConfig(name, b, width, size, k))
    return out
