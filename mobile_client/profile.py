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

This module is the schema and its JSON I/O, all the scheduler needs to load a
profile. :class:`AccuracyRecord` / :data:`Validator` are the contract between the
profiler and the accuracy measurement. The measuring itself (heads and codec under
CPU contention, accuracy on validation video) is offline work and lives in
:mod:`splitedge.training.profiling`; ``splitedge-client profile`` runs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from splitedge.proto.schema import Section

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
    """The identity of one profile entry: how a frame is processed.

    ``bits`` is what the entry was measured with: 0 = not quantized (float tensors
    for a split branch; local and offload entries always have 0, bits mean nothing
    to them). A :class:`~splitedge.mobile_client.policy.Candidate` and
    ``Client.submit`` spell it the other way: ``None`` = the branch's default bit
    depth, 0 = float. :func:`request_bits` is the one conversion.
    """

    branch: str  # the model's branch name: "local", "split@layer3", "offload-jpeg90"
    bits: int = 0  # 0 = not quantized; never None (see request_bits)
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


def needs_device_model(kind: str) -> bool:
    """A frame of this branch kind runs the device's model (its own or a split head): it
    waits for a background detection to end, so the session tracks it meanwhile (and
    the scheduler sends no probe of that kind)."""
    return kind in ("local", "split")


def request_bits(kind: str, bits: int) -> int | None:
    """An entry's bit depth (:attr:`BranchConfig.bits`, 0 = not quantized) as a
    :class:`~splitedge.mobile_client.policy.Candidate` and ``Client.submit`` take it
    (``None`` = the branch's default).

    A split entry keeps its depth, 0 included (float tensors: the branch's default
    would quantize what was measured unquantized); local and offload entries send no
    tensors, so ``None``.
    """
    return bits if kind == "split" else None


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
    r = _reader(doc, "")
    levels = tuple(r.int_list("contention_levels", minimum=0))
    if not levels or len(set(levels)) != len(levels):
        raise ProfileConsistencyError(
            f"contention_levels must be distinct and non-empty, got {list(levels)}"
        )
    entries_raw = r.get("entries", list)
    if not entries_raw:
        raise ProfileConsistencyError("entries: the profile lists no branch")
    entries = [
        _entry_from_json(_reader(e, f"entries[{i}]"), levels) for i, e in enumerate(entries_raw)
    ]
    seen: set[str] = set()
    for e in entries:
        if e.key in seen:
            raise ProfileConsistencyError(f"entries: {e.key!r} appears twice")
        seen.add(e.key)
    switch = r.get("switch_cost_ms", dict, {})
    switch_ms: dict[str, dict[str, float]] = {}
    for src, row in switch.items():
        row_r = _reader(row, f"switch_cost_ms[{src!r}]")
        switch_ms[src] = {dst: row_r.number(dst, minimum=0.0) for dst in row}
    edges_raw = r.get("bin_edges", dict, {k: list(v) for k, v in DEFAULT_BIN_EDGES.items()})
    edges_r = _reader(edges_raw, "bin_edges")
    edges = {k: tuple(edges_r.number_list(k)) for k in edges_raw}
    for name, values in edges.items():
        if list(values) != sorted(values):
            raise ProfileFieldError(
                f"bin_edges[{name!r}]: edges must be ascending, got {list(values)}"
            )
    tracker_r = _reader(r.get("tracker_latency_ms", dict, {}), "tracker_latency_ms")
    frame_size = r.int_list("frame_size", [0, 0], minimum=0)
    if len(frame_size) != 2:
        raise ProfileFieldError(f"frame_size: expected [height, width], got {frame_size}")
    video_raw = r.get("accuracy_video", (dict, type(None)), None)
    return Profile(
        model=r.get("model", str),
        device=r.get("device", str, ""),
        contention_levels=levels,
        entries=entries,
        tracker_latency_ms=tracker_r.int_keyed(minimum=0.0),
        switch_cost_ms=switch_ms,
        default_switch_cost_ms=r.number("default_switch_cost_ms", 0.0, minimum=0.0),
        bin_edges=edges,
        frame_size=(frame_size[0], frame_size[1]),
        created_unix_s=r.number("created_unix_s", 0.0, minimum=0.0),
        accuracy_video=None if video_raw is None else _accuracy_video(video_raw),
    )


def _accuracy_video(doc: dict[str, Any]) -> AccuracyVideo:
    r = _reader(doc, "accuracy_video")
    return AccuracyVideo(
        seed=r.integer("seed"),
        frames=r.integer("frames", minimum=1),
        clip_frames=r.integer("clip_frames", minimum=1),
        width=r.integer("width", minimum=1),
        height=r.integer("height", minimum=1),
        metric=r.get("metric", str, "mAP50"),
    )


def _entry_from_json(r: Section, levels: tuple[int, ...]) -> BranchProfile:
    kind = r.choice("kind", KINDS)
    bits = int(r.choice("bits", BITS, 0))
    config = BranchConfig(
        branch=r.get("branch", str),
        bits=bits,
        width=r.number("width", 1.0, minimum=1e-3, maximum=1.0),
        input_size=int(r.number("input_size", 0, minimum=0)),
        detection_interval=int(r.number("detection_interval", 1, minimum=1)),
    )
    head_r = r.section("head_latency_ms", required=True)
    head_r.check_int_keys()
    head = {int(k): _quantiles(head_r.section(k)) for k in head_r.data}
    missing = [lv for lv in levels if lv not in head]
    if missing:
        raise ProfileConsistencyError(
            f"{r.key('head_latency_ms')}: no latency for contention level(s) {missing}"
        )
    accuracy = r.get("accuracy", (int, float, type(None)), None)
    if accuracy is not None:
        accuracy = r.number("accuracy", minimum=0.0, maximum=1.0)
    acc_r = r.section("accuracy_by_bin")
    return BranchProfile(
        config=config,
        kind=kind,
        load_group=r.get("load_group", str, config.branch),
        head_latency_ms=head,
        bytes_per_frame=_quantiles(r.section("bytes_per_frame", required=True)),
        tail_latency_ms=r.section("tail_latency_ms").int_keyed(minimum=0.0),
        accuracy=accuracy,
        accuracy_by_bin={k: acc_r.number(k, minimum=0.0, maximum=1.0) for k in acc_r.data},
    )


def _quantiles(r: Section) -> Quantiles:
    q = Quantiles(
        r.number("mean", minimum=0.0), r.number("p50", minimum=0.0), r.number("p95", minimum=0.0)
    )
    if q.p95 < q.p50:
        raise ProfileFieldError(f"{r.key('p95')}: p95 {q.p95:g} is below p50 {q.p50:g}")
    return q


def _reader(doc: Any, path: str) -> Section:
    """Typed access to one JSON object; every error is a ProfileFieldError naming the field."""
    return Section(doc, path, error=ProfileFieldError, table="an object")


def content_bins(
    features: Mapping[str, float], edges: Mapping[str, tuple[float, ...]]
) -> tuple[str, ...]:
    """The bin names (``feature:index``) that ``features`` fall into, one per known feature."""
    out = []
    for name, cuts in edges.items():
        if name in features:
            out.append(f"{name}:{sum(1 for c in cuts if features[name] >= c)}")
    return tuple(out)


# ---------------------------------------------------------------- accuracy records


@dataclass(frozen=True)
class AccuracyRecord:
    """What a validation callable returns for one :class:`BranchConfig`."""

    overall: float
    by_bin: dict[str, float] = field(default_factory=dict)


Validator = Callable[[BranchConfig], AccuracyRecord]
