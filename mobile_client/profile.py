"""Branch profiles: what the scheduler knows about each branch before the first frame.

A :class:`Profile` is a versioned JSON file the client loads at start. Per entry
(one way to process a frame: branch x bit depth x slimmable width x input size x
detection interval) it records the device time at several levels of CPU
contention, the bytes each frame puts on the uplink, the server's tail latency
per batch size and the accuracy on validation video, overall and per content
bin. Profile-wide it records the tracker's per-frame cost (detect-vs-track) and
the switch-cost table between *load groups* (the weights that must be resident:
switching bit depth, or width within a slimmable model, stays inside a group and
is free; loading another model is not).

Content bins are marginal, one feature at a time (``object_count:0`` ..), with
their edges stored in the file, because joint bins need far more validation
video than a device profile run has.

:func:`measure_profile` fills one by really running the head and the codec under
CPU contention it makes itself (busy-looping worker processes); accuracy comes
from a validation callable the caller passes
(:func:`splitedge.mobile_client.branch_accuracy.make_video_validator` scores detectors on
synthetic validation video). ``splitedge-client profile`` (:func:`add_profile_parser`,
:func:`run_profile`) is its command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from splitedge.mobile_client.transport import add_tls_flags, tls_from_flags

PROFILE_VERSION = 1
KINDS = ("local", "split", "offload")
BITS = (0, 2, 4, 6, 8)  # 0 = not quantized (float tensors, a JPEG, or nothing sent)
# Default content-bin edges: objects per frame; mean box area as a fraction of the
# frame; mean box-centre motion per frame as a fraction of the frame diagonal.
DEFAULT_BIN_EDGES: dict[str, tuple[float, ...]] = {
    "object_count": (2.0, 6.0),
    "object_size": (0.01, 0.08),
    "motion": (0.005, 0.02),
}


class ProfileError(ValueError):
    """A profile cannot be used; the message names the file and the field."""


class ProfileReadError(ProfileError):
    """The file cannot be read or is not JSON."""


class ProfileVersionError(ProfileError):
    """The file has no version, or one this client does not understand."""


class ProfileFieldError(ProfileError):
    """A field is missing, has the wrong type, or a value out of range."""


class ProfileConsistencyError(ProfileError):
    """Fields are valid one by one but contradict each other (duplicates, missing levels)."""


@dataclass(frozen=True)
class BranchConfig:
    """The identity of one profile entry: how a frame is processed."""

    branch: str  # the model's branch name: "local", "split@layer3", "offload-jpeg90"
    bits: int = 0
    width: float = 1.0  # slimmable width multiplier
    input_size: int = 0  # short side in pixels the frame is resized to; 0 = as captured
    detection_interval: int = 1  # detect every k-th frame, track in between

    @property
    def key(self) -> str:
        """A unique, readable name: ``split@layer3/8b/w0.5/320/k4``."""
        return (
            f"{self.branch}/{self.bits}b/w{self.width:g}/"
            f"{self.input_size or 'native'}/k{self.detection_interval}"
        )


@dataclass(frozen=True)
class AccuracyVideo:
    """Which frames the accuracies were measured on, so a run can play the same ones.

    ``frames`` frames of the data package's synthetic video at ``width`` x ``height``,
    in clips of ``clip_frames`` (each clip its own scene: video ``k`` of ``seed``),
    exactly :func:`splitedge.models.data.generate_clips` (scene and motion at their
    defaults). A detector's accuracy differs from scene to scene far more than the
    profile's average shows (a distilled code can lose most of its mAP on a strongly
    defocused scene where its teacher loses little), so an accuracy measured here
    predicts a real run only on these frames, or on a video of many such scenes.
    """

    seed: int
    frames: int
    clip_frames: int
    width: int
    height: int
    metric: str = "mAP50"


@dataclass(frozen=True)
class Quantiles:
    mean: float
    p50: float
    p95: float


@dataclass(frozen=True)
class BranchProfile:
    """One entry: a :class:`BranchConfig` and what it costs and achieves."""

    config: BranchConfig
    kind: str  # local | split | offload
    load_group: str  # entries of one group switch among themselves for free
    head_latency_ms: dict[int, Quantiles]  # contention level -> head + encode (local: whole run)
    bytes_per_frame: Quantiles  # uplink payload; zeros for local
    tail_latency_ms: dict[int, float] = field(default_factory=dict)  # batch size -> p95
    accuracy: float | None = None  # None: not measured (no validation set given)
    accuracy_by_bin: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def remote(self) -> bool:
        return self.kind != "local"


@dataclass
class Profile:
    model: str
    device: str
    contention_levels: tuple[int, ...]
    entries: list[BranchProfile]
    tracker_latency_ms: dict[int, float] = field(default_factory=dict)  # level -> per frame
    switch_cost_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # from -> to
    default_switch_cost_ms: float = 0.0  # between groups the table does not list
    bin_edges: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_BIN_EDGES))
    frame_size: tuple[int, int] = (0, 0)  # (height, width) of the validation frames
    created_unix_s: float = 0.0
    accuracy_video: AccuracyVideo | None = None  # None: unknown (older file) or no accuracy

    def entry(self, key: str) -> BranchProfile:
        for e in self.entries:
            if e.key == key:
                return e
        raise KeyError(f"no profile entry {key!r}; known: {', '.join(e.key for e in self.entries)}")

    def switch_ms(self, from_group: str, to_group: str) -> float:
        """What moving from one load group to another costs once (0 within a group)."""
        if from_group == to_group:
            return 0.0
        return self.switch_cost_ms.get(from_group, {}).get(to_group, self.default_switch_cost_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": PROFILE_VERSION,
            "model": self.model,
            "device": self.device,
            "created_unix_s": self.created_unix_s,
            "frame_size": list(self.frame_size),
            "contention_levels": list(self.contention_levels),
            "tracker_latency_ms": {str(k): v for k, v in self.tracker_latency_ms.items()},
            "switch_cost_ms": self.switch_cost_ms,
            "default_switch_cost_ms": self.default_switch_cost_ms,
            "bin_edges": {k: list(v) for k, v in self.bin_edges.items()},
            "accuracy_video": asdict(self.accuracy_video) if self.accuracy_video else None,
            "entries": [_entry_to_json(e) for e in self.entries],
        }


def _entry_to_json(e: BranchProfile) -> dict[str, Any]:
    return {
        **asdict(e.config),
        "kind": e.kind,
        "load_group": e.load_group,
        "head_latency_ms": {str(k): asdict(q) for k, q in e.head_latency_ms.items()},
        "bytes_per_frame": asdict(e.bytes_per_frame),
        "tail_latency_ms": {str(k): v for k, v in e.tail_latency_ms.items()},
        "accuracy": e.accuracy,
        "accuracy_by_bin": e.accuracy_by_bin,
    }


def save_profile(profile: Profile, path: str | os.PathLike[str]) -> None:
    """Write ``profile`` as JSON (atomically: a reader never sees half a file)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(profile.to_json(), indent=1) + "\n")
    try:
        tmp.replace(target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read and check a profile file; a :class:`ProfileError` subclass names what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileReadError(f"{path}: cannot read profile: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileReadError(f"{path}: not JSON (not UTF-8 text: {exc.reason})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileReadError(
            f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # absurd nesting or numbers
        raise ProfileReadError(f"{path}: not JSON ({exc})") from exc
    try:
        return profile_from_json(doc)
    except ProfileError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


def profile_from_json(doc: Any) -> Profile:
    """Build a :class:`Profile` from parsed JSON, checking every field."""
    if not isinstance(doc, dict):
        raise ProfileFieldError(f"top level: expected an object, got {type(doc).__name__}")
    version = doc.get("version")
    if version is None:
        raise ProfileVersionError("no 'version' field (not a splitedge profile?)")
    if version != PROFILE_VERSION:
        raise ProfileVersionError(
            f"version {version!r} is not supported; this client reads version {PROFILE_VERSION}"
        )
    r = _Reader(doc, "")
    levels = tuple(r.int_list("contention_levels", minimum=0))
    if not levels or len(set(levels)) != len(levels):
        raise ProfileConsistencyError(
            f"contention_levels must be distinct and non-empty, got {list(levels)}"
        )
    entries_raw = r.get("entries", list)
    if not entries_raw:
        raise ProfileConsistencyError("entries: the profile lists no branch")
    entries = [
        _entry_from_json(_Reader(e, f"entries[{i}]"), levels) for i, e in enumerate(entries_raw)
    ]
    seen: set[str] = set()
    for e in entries:
        if e.key in seen:
            raise ProfileConsistencyError(f"entries: {e.key!r} appears twice")
        seen.add(e.key)
    switch = r.get("switch_cost_ms", dict, default={})
    switch_ms: dict[str, dict[str, float]] = {}
    for src, row in switch.items():
        row_r = _Reader(row, f"switch_cost_ms[{src!r}]")
        switch_ms[src] = {dst: row_r.number(dst, minimum=0.0) for dst in row}
    edges_raw = r.get("bin_edges", dict, default={k: list(v) for k, v in DEFAULT_BIN_EDGES.items()})
    edges_r = _Reader(edges_raw, "bin_edges")
    edges = {k: tuple(edges_r.number_list(k)) for k in edges_raw}
    for name, values in edges.items():
        if list(values) != sorted(values):
            raise ProfileFieldError(
                f"bin_edges[{name!r}]: edges must be ascending, got {list(values)}"
            )
    tracker_r = _Reader(r.get("tracker_latency_ms", dict, default={}), "tracker_latency_ms")
    frame_size = r.int_list("frame_size", minimum=0, default=[0, 0])
    if len(frame_size) != 2:
        raise ProfileFieldError(f"frame_size: expected [height, width], got {frame_size}")
    video_raw = r.get("accuracy_video", (dict, type(None)), default=None)
    return Profile(
        model=r.get("model", str),
        device=r.get("device", str, default=""),
        contention_levels=levels,
        entries=entries,
        tracker_latency_ms=tracker_r.int_keyed(minimum=0.0),
        switch_cost_ms=switch_ms,
        default_switch_cost_ms=r.number("default_switch_cost_ms", minimum=0.0, default=0.0),
        bin_edges=edges,
        frame_size=(frame_size[0], frame_size[1]),
        created_unix_s=r.number("created_unix_s", minimum=0.0, default=0.0),
        accuracy_video=None if video_raw is None else _accuracy_video(video_raw),
    )


def _accuracy_video(doc: dict[str, Any]) -> AccuracyVideo:
    r = _Reader(doc, "accuracy_video")
    return AccuracyVideo(
        seed=r.integer("seed"),
        frames=r.integer("frames", minimum=1),
        clip_frames=r.integer("clip_frames", minimum=1),
        width=r.integer("width", minimum=1),
        height=r.integer("height", minimum=1),
        metric=r.get("metric", str, default="mAP50"),
    )


def _entry_from_json(r: _Reader, levels: tuple[int, ...]) -> BranchProfile:
    kind = r.get("kind", str)
    if kind not in KINDS:
        raise ProfileFieldError(f"{r.at('kind')}: expected one of {', '.join(KINDS)}, got {kind!r}")
    bits = int(r.number("bits", default=0))
    if bits not in BITS:
        raise ProfileFieldError(f"{r.at('bits')}: expected one of {list(BITS)}, got {bits}")
    config = BranchConfig(
        branch=r.get("branch", str),
        bits=bits,
        width=r.number("width", minimum=1e-3, maximum=1.0, default=1.0),
        input_size=int(r.number("input_size", minimum=0, default=0)),
        detection_interval=int(r.number("detection_interval", minimum=1, default=1)),
    )
    head_r = _Reader(r.get("head_latency_ms", dict), r.at("head_latency_ms"))
    head = {int(k): _quantiles(_Reader(v, head_r.at(k))) for k, v in head_r.items_int_keyed()}
    missing = [lv for lv in levels if lv not in head]
    if missing:
        raise ProfileConsistencyError(
            f"{r.at('head_latency_ms')}: no latency for contention level(s) {missing}"
        )
    accuracy = r.get("accuracy", (int, float, type(None)), default=None)
    if accuracy is not None:
        accuracy = r.number("accuracy", minimum=0.0, maximum=1.0)
    acc_r = _Reader(r.get("accuracy_by_bin", dict, default={}), r.at("accuracy_by_bin"))
    return BranchProfile(
        config=config,
        kind=kind,
        load_group=r.get("load_group", str, default=config.branch),
        head_latency_ms=head,
        bytes_per_frame=_quantiles(
            _Reader(r.get("bytes_per_frame", dict), r.at("bytes_per_frame"))
        ),
        tail_latency_ms=_Reader(
            r.get("tail_latency_ms", dict, default={}), r.at("tail_latency_ms")
        ).int_keyed(minimum=0.0),
        accuracy=accuracy,
        accuracy_by_bin={k: acc_r.number(k, minimum=0.0, maximum=1.0) for k in acc_r.doc},
    )


def _quantiles(r: _Reader) -> Quantiles:
    q = Quantiles(
        r.number("mean", minimum=0.0), r.number("p50", minimum=0.0), r.number("p95", minimum=0.0)
    )
    if q.p95 < q.p50:
        raise ProfileFieldError(f"{r.at('p95')}: p95 {q.p95:g} is below p50 {q.p50:g}")
    return q


class _Reader:
    """Typed access to one JSON object, with the path of each field for error messages."""

    def __init__(self, doc: Any, path: str) -> None:
        if not isinstance(doc, dict):
            raise ProfileFieldError(
                f"{path or 'top level'}: expected an object, got {type(doc).__name__}"
            )
        self.doc: dict[str, Any] = doc
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    _MISSING = object()

    def get(self, key: str, types: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if key not in self.doc:
            if default is self._MISSING:
                raise ProfileFieldError(f"{self.at(key)}: required field is missing")
            return default
        value = self.doc[key]
        # bool is an int in Python, never a valid number or count in a profile
        if isinstance(value, bool) or not isinstance(value, types):
            names = (
                types.__name__
                if isinstance(types, type)
                else " or ".join(t.__name__ for t in types)
            )
            raise ProfileFieldError(f"{self.at(key)}: expected {names}, got {json.dumps(value)}")
        return value

    def number(
        self,
        key: str,
        *,
        minimum: float = -math.inf,
        maximum: float = math.inf,
        default: Any = _MISSING,
    ) -> float:
        value = float(self.get(key, (int, float), default=default))
        if not (minimum <= value <= maximum) or math.isnan(value):
            raise ProfileFieldError(
                f"{self.at(key)}: {value:g} is outside [{minimum:g}, {maximum:g}]"
            )
        return value

    def integer(self, key: str, *, minimum: int = 0) -> int:
        value = self.number(key)
        if value != int(value) or value < minimum:
            raise ProfileFieldError(
                f"{self.at(key)}: expected an integer >= {minimum}, got {value:g}"
            )
        return int(value)

    def number_list(self, key: str, default: Any = _MISSING) -> list[float]:
        values = self.get(key, list, default=default)
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ProfileFieldError(
                    f"{self.at(key)}[{i}]: expected a number, got {json.dumps(v)}"
                )
        return [float(v) for v in values]

    def int_list(self, key: str, *, minimum: int = 0, default: Any = _MISSING) -> list[int]:
        values = self.number_list(key, default=default)
        for i, v in enumerate(values):
            if v != int(v) or v < minimum:
                raise ProfileFieldError(
                    f"{self.at(key)}[{i}]: expected an integer >= {minimum}, got {v:g}"
                )
        return [int(v) for v in values]

    def items_int_keyed(self) -> list[tuple[str, Any]]:
        for k in self.doc:
            if not k.isdigit():
                raise ProfileFieldError(
                    f"{self.at(k)}: keys must be non-negative integers, got {k!r}"
                )
        return list(self.doc.items())

    def int_keyed(self, *, minimum: float) -> dict[int, float]:
        return {int(k): self.number(k, minimum=minimum) for k, _ in self.items_int_keyed()}


def content_bins(
    features: Mapping[str, float], edges: Mapping[str, tuple[float, ...]]
) -> tuple[str, ...]:
    """The bin names (``feature:index``) that ``features`` fall into, one per known feature."""
    out = []
    for name, cuts in edges.items():
        if name in features:
            out.append(f"{name}:{sum(1 for c in cuts if features[name] >= c)}")
    return tuple(out)


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class AccuracyRecord:
    """What a validation callable returns for one :class:`BranchConfig`."""

    overall: float
    by_bin: dict[str, float] = field(default_factory=dict)


Validator = Callable[[BranchConfig], AccuracyRecord]


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
) -> Profile:
    """Measure a profile of ``branches`` of ``model_name`` on this device.

    Every config's head (or the whole model, for ``local``) and codec run on each
    frame at each contention level (``level`` spinning processes), so head latency
    and bytes/frame are what this device really produces. ``validate`` supplies
    accuracy (left empty without it; its ``accuracy_video`` attribute, when it has
    one, is recorded as the profile's); ``tail_latency_ms`` (branch -> batch size ->
    ms, as the server reports) is copied in. The time to build the model is the
    switch cost into its load group from any other.
    """
    from tqdm import tqdm

    from splitedge.mobile_client.heads import TorchHeadBackend
    from splitedge.mobile_client.messages import offload_request, split_request
    from splitedge.mobile_client.sources import resize_short_side

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
    backend = TorchHeadBackend(model_name, dict(model_options or {}))
    load_ms = (time.perf_counter() - t0) * 1000.0
    specs = backend.model.branches
    for cfg in branches:
        if cfg.branch not in specs:
            raise ProfileError(
                f"model {model_name!r} has no branch {cfg.branch!r}; "
                f"known: {', '.join(sorted(specs))}"
            )
        if cfg.width != 1.0 and not hasattr(backend.model, "set_width"):
            raise ProfileError(
                f"{cfg.key}: model {model_name!r} is not slimmable (width must be 1.0)"
            )

    def run_once(cfg: BranchConfig, image: np.ndarray) -> tuple[float, int]:
        spec = specs[cfg.branch]
        image = resize_short_side(image, cfg.input_size)
        if hasattr(backend.model, "set_width"):
            backend.model.set_width(cfg.width)
        start = time.perf_counter()
        if spec.kind == "local":
            backend.local(image)
            size = 0
        elif spec.kind == "offload":
            _, size = offload_request(image, spec)
        else:
            head = backend.head(spec, image)
            _, size = split_request(head, bits=cfg.bits, zstd_level=zstd_level)
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


# ---------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _bits_list(text: str) -> list[int]:
    """``--bits``: comma-separated bit depths, or ``branch`` (each split branch's own)."""
    return [] if text.strip() == "branch" else _int_list(text)


def add_profile_parser(subparsers: Any) -> None:
    """Register ``splitedge-client profile`` (its handler is :func:`run_profile`)."""
    p = subparsers.add_parser(
        "profile",
        help="measure a branch profile on this device (head latency under contention, bytes/frame)",
        description="Run each branch's head and codec on this device at several levels of CPU "
        "contention and write the profile JSON the scheduler loads at start. With "
        "--accuracy-frames N each entry's accuracy (COCO mAP@.5, overall and per content bin) "
        "is measured on N frames of fixed-seed synthetic validation video, run through the "
        "branch's real path (codec included) with the entry's detection interval; without it "
        "accuracy stays empty. --accuracy-seed and --accuracy-clip-frames pick the video, e.g. "
        "the one a scenario run plays, so that both score the same frames.",
    )
    p.add_argument("--model", required=True, help="registry model name")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", required=True, type=Path, help="profile JSON to write")
    p.add_argument("--source", default="synthetic", help="frames: synthetic, a folder or a video")
    p.add_argument("--frames", type=int, default=8, help="frames per branch and level (default 8)")
    p.add_argument("--size", default="320x240", help="synthetic frame size WIDTHxHEIGHT")
    p.add_argument("--branches", default="", help="comma-separated branch names (default: all)")
    p.add_argument(
        "--bits",
        type=_bits_list,
        default=[8, 4],
        help="bit depths of split branches (default 8,4), or 'branch': each split branch at "
        "its own default bits (e.g. bottleneck-12-w1-4bit at 4)",
    )
    p.add_argument("--input-sizes", type=_int_list, default=[0], help="short sides; 0 = native")
    p.add_argument("--intervals", type=_int_list, default=[1], help="detection intervals")
    p.add_argument(
        "--levels", type=_int_list, default=[0, 1], help="contention levels (busy cores)"
    )
    p.add_argument(
        "--accuracy-frames",
        type=int,
        default=0,
        metavar="N",
        help="measure each entry's accuracy (COCO mAP@.5 of the detector, overall and per "
        "content bin) on N frames of fixed-seed synthetic validation video at --size, each "
        "frame through the branch's codec path, detecting every k-th frame and tracking in "
        "between; 0 (default) leaves accuracy empty",
    )
    p.add_argument(
        "--accuracy-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="seed of the accuracy video (default: the validation seed, 424242); a scenario "
        "run's video is its [video] seed",
    )
    p.add_argument(
        "--accuracy-clip-frames",
        type=int,
        default=None,
        metavar="K",
        help="frames per scene of the accuracy video (default 16): every K frames a new "
        "scene (backdrop, camera, objects) starts and detection restarts",
    )
    p.add_argument(
        "--server",
        default=None,
        metavar="HOST:PORT",
        help="copy the tail latency per branch and batch size that this edge server has "
        "measured (Describe) into the profile; the server must serve --model",
    )
    add_tls_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    """The ``profile`` command: 0 on success, 2 on bad input."""
    from splitedge.mobile_client.sources import SourceError, open_source
    from splitedge.models.registry import create_model

    try:
        size = _check_profile_args(args)
        options = dict(_option(item) for item in args.model_option)
        frames = [f.image for f in open_source(args.source, max_frames=args.frames, size=size)]
        # Branch kinds come from the model itself (built once more here, before timing).
        model = create_model(args.model, **options)
        configs = _configs(args, model)
        tails = None
        if getattr(args, "server", None):
            import asyncio

            from splitedge.mobile_client.server_profile import fetch_tail_profile

            tls = tls_from_flags(args.tls_ca, args.tls_cert, args.tls_key)
            tails = asyncio.run(fetch_tail_profile(args.server, args.model, tls=tls))
        validate = None
        if args.accuracy_frames:
            from splitedge.mobile_client.branch_accuracy import make_video_validator

            validate = make_video_validator(
                model,
                frames=args.accuracy_frames,
                size=size,
                **_accuracy_video_options(args),
            )
        profile = measure_profile(
            args.model,
            configs,
            frames,
            contention_levels=args.levels,
            progress=not args.no_progress,
            validate=validate,
            model_options=options,
            tail_latency_ms=tails,
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
    w, sep, h = args.size.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and 1 <= int(w) <= 8192 and 1 <= int(h) <= 8192):
        raise ValueError(f"--size: expected WIDTHxHEIGHT, each 1-8192, got {args.size!r}")
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
    return int(w), int(h)


def _accuracy_video_options(args: argparse.Namespace) -> dict[str, int]:
    """``make_video_validator`` keywords for the flags given (the defaults are its own)."""
    out = {}
    if getattr(args, "accuracy_seed", None) is not None:
        out["seed"] = int(args.accuracy_seed)
    if getattr(args, "accuracy_clip_frames", None) is not None:
        out["clip_frames"] = int(args.accuracy_clip_frames)
    return out


def _option(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--model-option takes KEY=VALUE, got {item!r}")
    if value[:1] in ("[", "{"):
        try:  # a list or an object, e.g. teacher_options={"jpeg_qualities":[90,50]}
            return key, json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--model-option {key}: not valid JSON ({exc.msg})") from None
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            continue
    return key, value


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
