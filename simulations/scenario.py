"""Scenario files: one typed, validated description of an experiment.

A scenario (TOML or YAML) names the model and its candidate branches, the
uplink/downlink traces, the one-way delay, the SLA, the camera rate, the number
of clients, the synthetic video, the edge server's batching and the policies to
compare. :func:`load_scenario` reads it once at the edge of the program; every
key is checked for name, type and range, and anything else is refused with a
one-line :class:`ScenarioError` naming the key (``uplink.rate_mbps: expected a
number > 0, got -1``). ``configs/scenarios/*.toml`` are worked examples.

Keys the examples do not show:

``device_slowdown`` (top level, number >= 1, default 1)
    Make the device (this machine) behave like one ``device_slowdown`` x slower:
    after every head and local run the client sleeps (slowdown - 1) x the time the
    run took (:class:`~splitedge.simulations.demo.SlowedBackend`, as in the demo).
    Schedulers are not told; they see it in the head times they observe.
``device_local_ms`` (top level, number >= 0, default 0 = off)
    Pin the emulated device's own detector at this many ms in real runs: the
    slowdown follows this machine's speed (target / its usual local-model time,
    re-read as it runs), so a machine that speeds up or slows down during a long run
    keeps the same device. ``device_slowdown`` then only names the device (and is
    what the DES scales by).
``[uplink]`` / ``[downlink]`` with ``kind = "file"``
    ``path`` (relative to the scenario file) and an optional ``format``, one of
    ``mahimahi, csv, cooked, hsdpa, belgium-4g``
    (:mod:`splitedge.simulations.trace_formats`). Without ``format`` the suffix
    decides (``.csv``; Mahimahi's ``.up``/``.down``), else the file's first lines
    (one integer per line is Mahimahi). So a recorded Mahimahi pair reads as::

        [uplink]
        kind = "file"
        path = "../../../shared/traces/cellular/TMobile-UMTS-driving.up"
        duration_s = 100   # its first 100 s, looped (default 0: the whole recording)

``[video] clip_frames`` (integer >= 0, default 0)
    Cut the ``frames`` of each client's video into scenes of ``clip_frames`` frames,
    each its own backdrop and camera (0: one scene). With ``seed = S``,
    ``frames = N``, ``clip_frames = C`` client 0 plays exactly the frames that
    ``splitedge-client profile --accuracy-seed S --accuracy-frames N
    --accuracy-clip-frames C`` scores, so a profile's accuracies can be checked on
    the frames a run plays; one short scene is too few to compare with a profile
    averaged over many.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitedge.mobile_client.policy import Candidate
from splitedge.mobile_client.profile import Profile, ProfileError, load_profile
from splitedge.proto.options import FormatError, load_toml
from splitedge.proto.schema import Section
from splitedge.simulations.trace_formats import FORMATS, guess_format, read_trace
from splitedge.simulations.traces import BandwidthTrace, TraceError, constant, preset, square_wave

__all__ = [
    "POLICY_KINDS",
    "TRACE_KINDS",
    "EdgeSettings",
    "PolicyConfig",
    "Scenario",
    "ScenarioError",
    "ScenarioFileError",
    "ScenarioKeyError",
    "ScenarioValueError",
    "TraceConfig",
    "VideoSettings",
    "adaptive_branches",
    "load_scenario",
    "parse_candidate",
    "scenario_from_dict",
]

TRACE_KINDS = ("constant", "steps", "square", "preset", "file")
# "fixed-all" expands into one Fixed policy per candidate branch.
# "adaptive" is the device's scheduler over a scheduler profile (mobile_client.profile).
POLICY_KINDS = (
    "local",
    "offload",
    "fixed",
    "fixed-all",
    "neurosurgeon",
    "oracle",
    "rate-rule",
    "adaptive",
)


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message is one line naming the file and key."""


class ScenarioFileError(ScenarioError):
    """The file is missing, unreadable, of an unknown type or does not parse."""


class ScenarioKeyError(ScenarioError):
    """A key is unknown (a typo) or a required key is missing."""


class ScenarioValueError(ScenarioError):
    """A key has the wrong type or a value out of range."""


@dataclass(frozen=True)
class TraceConfig:
    """How to build one direction's bandwidth trace."""

    kind: str = "constant"
    rate_mbps: float = 50.0  # constant
    steps: tuple[tuple[float, float], ...] = ()  # steps: ((t_s, mbps), ...)
    low_mbps: float = 1.0  # square
    high_mbps: float = 20.0
    period_s: float = 10.0
    name: str = "lte"  # preset
    seed: int = 0
    path: Path | None = None  # file
    format: str | None = None
    duration_s: float = 0.0  # 0 = the scenario's duration (file: the whole recording)
    scale: float = 1.0

    def build(self, default_duration_s: float) -> BandwidthTrace:
        """The trace this describes (``TraceError`` if its values cannot make one)."""
        duration_s = self.duration_s or default_duration_s
        if self.kind == "constant":
            trace = constant(self.rate_mbps, duration_s)
        elif self.kind == "steps":
            trace = BandwidthTrace.from_steps(list(self.steps), duration_s, name="steps")
        elif self.kind == "square":
            trace = square_wave(self.low_mbps, self.high_mbps, self.period_s, duration_s)
        elif self.kind == "preset":
            trace = preset(self.name, duration_s, seed=self.seed)
        else:
            assert self.path is not None
            trace = read_trace(self.path, self.format)
            if self.duration_s:  # the first duration_s of the recording (0: all of it)
                trace = trace.slice(0.0, self.duration_s)
        return trace if self.scale == 1.0 else trace.scale(self.scale)


@dataclass(frozen=True)
class VideoSettings:
    """Synthetic video (models.data.generate_video): each client gets its own sequence."""

    width: int = 160
    height: int = 120
    frames: int = 16  # rendered once, then looped
    seed: int = 0
    # Frames per scene (backdrop, camera, objects); 0 = one scene of ``frames``. One
    # scene is one camera: a run over one scene scores that camera, not the profile's mix.
    clip_frames: int = 0


@dataclass(frozen=True)
class EdgeSettings:
    """The edge server's [batching] section for this scenario."""

    max_batch_size: int = 8
    max_queue_delay_ms: float = 2.0
    queue_capacity: int = 64
    tail_workers: int = 1


@dataclass(frozen=True)
class PolicyConfig:
    kind: str
    name: str  # unique label in the results
    branch: str = ""  # fixed: the candidate, "branch" or "branch/bits"; offload: the branch
    # adaptive: the scheduler profile JSON (resolved), its loaded content, the
    # scheduler's latency weight (None: the scheduler's default) and the profile's
    # branches it may use (empty: all that the model serves).
    profile: Path | None = None
    latency_weight: float | None = None
    branches: tuple[str, ...] = ()
    scheduler_profile: Profile | None = field(default=None, compare=False, repr=False)
    # oracle: the quantile of the profile's device and tail samples it plans with
    # (None: the median); it knows the future link, not the future draws.
    quantile: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    branches: tuple[Candidate, ...]  # candidates, most accurate first
    uplink: BandwidthTrace
    downlink: BandwidthTrace
    policies: tuple[PolicyConfig, ...]
    model_options: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 20.0
    clients: int = 1
    fps: float = 5.0
    sla_ms: float = 300.0
    deadline_ms: float = 600.0  # the client's per-frame budget before local fallback
    delay_ms: float = 10.0  # one-way
    client_offset_s: float = 0.0  # client i sees the traces from i * offset
    # Cameras are not synchronised: "staggered" starts client i's ticks i/N of a
    # period late; "aligned" ticks every camera at once (worst case for batching windows).
    camera_phase: str = "staggered"
    warmup_frames: int = 2
    video: VideoSettings = field(default_factory=VideoSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    profile: Path | None = None  # a saved profile for neurosurgeon/oracle (else measured)
    device_slowdown: float = 1.0  # >1: the device's head and local runs take this x as long
    device_local_ms: float = 0.0  # >0: real runs pin the device's own detector at this time
    source: str = "<scenario>"

    def phase_s(self, client: int) -> float:
        """When client ``client``'s camera ticks first (then every 1/fps)."""
        if self.camera_phase == "aligned":
            return 0.0
        return client / (self.clients * self.fps)

    def client_traces(self, client: int) -> tuple[BandwidthTrace, BandwidthTrace]:
        """(uplink, downlink) as client ``client`` sees them: shifted by its offset."""
        offset_s = client * self.client_offset_s
        if offset_s <= 0:
            return self.uplink, self.downlink
        return (
            self.uplink.slice(offset_s, offset_s + self.uplink.duration_s),
            self.downlink.slice(offset_s, offset_s + self.downlink.duration_s),
        )


def parse_candidate(text: str) -> Candidate:
    """``local``, ``offload-jpeg90``, ``split@x`` or ``split@x/4`` (``/4bit`` also) -> Candidate."""
    branch, _, bits_text = text.strip().partition("/")
    if not branch:
        raise ValueError(f"empty branch name in {text!r}")
    if branch == "local":
        if bits_text:
            raise ValueError(f"the local branch takes no bit depth, got {text!r}")
        return Candidate("local", remote=False)
    if not bits_text:
        return Candidate(branch)
    digits = bits_text.removesuffix("bit")
    if digits not in ("2", "4", "6", "8"):
        raise ValueError(f"bit depth must be 2, 4, 6 or 8, got {bits_text!r} in {text!r}")
    return Candidate(branch, int(digits))


# ---------------------------------------------------------------------- reading


def _section(data: Any, where: str, source: str) -> Section:
    """A scenario table: wrong values raise ScenarioValueError, missing and unknown keys
    ScenarioKeyError, each naming the file and the dotted key."""
    return Section(data, where, source=source, error=ScenarioValueError, key_error=ScenarioKeyError)


def _trace_config(sec: Section, base_dir: Path) -> TraceConfig:
    kind = sec.choice("kind", TRACE_KINDS, "constant")
    cfg: dict[str, Any] = {"kind": kind}
    cfg["duration_s"] = sec.number("duration_s", 0.0, minimum=0.0)
    cfg["scale"] = sec.number("scale", 1.0, minimum=0.0, exclusive=True)
    if kind == "constant":
        cfg["rate_mbps"] = sec.number("rate_mbps", 50.0, minimum=0.0, exclusive=True)
    elif kind == "steps":
        steps = sec.raw("steps", required=True)
        if not isinstance(steps, list) or not steps:
            raise sec.fail("steps", f"expected a list of [t_s, mbps] pairs, got {steps!r}")
        parsed = []
        for i, item in enumerate(steps):
            ok = isinstance(item, list) and len(item) == 2
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)
            if not ok or item[0] < 0 or item[1] <= 0:
                raise sec.fail(f"steps[{i}]", f"expected [t_s >= 0, mbps > 0], got {item!r}")
            parsed.append((float(item[0]), float(item[1])))
        if parsed[0][0] != 0.0:
            raise sec.fail("steps[0]", f"the first step must start at t_s = 0, got {parsed[0][0]}")
        cfg["steps"] = tuple(parsed)
    elif kind == "square":
        cfg["low_mbps"] = sec.number("low_mbps", 1.0, minimum=0.0, exclusive=True)
        cfg["high_mbps"] = sec.number("high_mbps", 20.0, minimum=0.0, exclusive=True)
        cfg["period_s"] = sec.number("period_s", 10.0, minimum=0.0, exclusive=True)
    elif kind == "preset":
        cfg["name"] = sec.string("name", required=True)
        cfg["seed"] = sec.integer("seed", 0)
    else:
        cfg["path"], cfg["format"] = _trace_file(sec, base_dir)
    sec.finish()
    return TraceConfig(**cfg)


def _trace_file(sec: Section, base_dir: Path) -> tuple[Path, str]:
    """A ``kind = "file"`` trace's resolved ``path`` and its ``format`` (given or guessed)."""
    text = sec.string("path", required=True)
    path = Path(text) if Path(text).is_absolute() else base_dir / text
    fmt = sec.raw("format")
    if fmt is not None and fmt not in FORMATS:
        raise sec.fail("format", f"unknown trace format {fmt!r}; one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ScenarioFileError(f"{sec.source}: {sec.key('path')}: no such trace file: {path}")
    if fmt is None:
        try:
            fmt = guess_format(path)
        except TraceError as exc:
            raise sec.fail("path", str(exc)) from exc
        if fmt is None:
            raise sec.fail(
                "format",
                f"cannot tell the format of {path.name} from its name or its first lines; "
                f"set format = one of {', '.join(FORMATS)}",
            )
    return path, fmt


def _scheduler_profile(sec: Section, base_dir: Path) -> tuple[Path, Profile]:
    """An adaptive policy's ``profile``: resolved, read, and every entry with an accuracy."""
    if not sec.has("profile"):
        raise ScenarioKeyError(
            f"{sec.source}: {sec.key('profile')}: required for kind adaptive "
            "(a scheduler profile JSON, splitedge-client profile)"
        )
    text = sec.string("profile", required=True)
    path = Path(text) if Path(text).is_absolute() else base_dir / text
    if not path.is_file():
        raise ScenarioFileError(
            f"{sec.source}: {sec.key('profile')}: no such scheduler profile file: {path}"
        )
    try:
        profile = load_profile(path)
    except ProfileError as exc:
        raise sec.fail("profile", str(exc)) from exc
    unmeasured = [e.key for e in profile.entries if e.accuracy is None]
    if unmeasured:
        raise sec.fail(
            "profile",
            f"{path} has no accuracy for {len(unmeasured)} of {len(profile.entries)} entries "
            f"({', '.join(unmeasured[:3])}{' ...' if len(unmeasured) > 3 else ''}); "
            "measure it with a validation set",
        )
    return path, profile


def _adaptive_branch_list(sec: Section, profile: Profile) -> tuple[str, ...]:
    """An adaptive policy's optional ``branches``: a subset of its profile's branches."""
    raw = sec.raw("branches")
    if not isinstance(raw, list) or not raw or not all(isinstance(b, str) and b for b in raw):
        raise sec.fail("branches", f"expected a non-empty list of branch names, got {raw!r}")
    profiled = {e.config.branch for e in profile.entries}
    for i, name in enumerate(raw):
        if name not in profiled:
            raise sec.fail(
                f"branches[{i}]",
                f"{name!r} is not in the profile; it has: {', '.join(sorted(profiled))}",
            )
    return tuple(dict.fromkeys(raw))


def adaptive_branches(
    config: PolicyConfig, served: Collection[str], *, source: str, model: str
) -> set[str]:
    """The branches of ``config``'s scheduler profile that ``model`` serves (``served``).

    :class:`ScenarioValueError` when there is none: the scheduler would have nothing to pick.
    """
    assert config.scheduler_profile is not None, "not an adaptive policy"
    profiled = {e.config.branch for e in config.scheduler_profile.entries}
    if config.branches:
        profiled &= set(config.branches)
    usable = profiled & set(served)
    if not usable:
        raise ScenarioValueError(
            f"{source}: policy {config.name!r}: profile {config.profile} has no branch model "
            f"{model!r} serves (profile: {', '.join(sorted(profiled))}; "
            f"model: {', '.join(sorted(served)) or 'none'})"
        )
    return usable


def _policies(
    raw: Any, source: str, candidates: tuple[Candidate, ...], base_dir: Path
) -> tuple[PolicyConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ScenarioValueError(
            f"{source}: policies: expected a non-empty list of tables ([[policies]]), got {raw!r}"
        )
    out: list[PolicyConfig] = []
    for i, item in enumerate(raw):
        sec = _section(item, f"policies[{i}]", source)
        kind = sec.choice("kind", POLICY_KINDS)
        branch = sec.string("branch", "")
        if kind == "fixed":
            if not branch:
                raise ScenarioKeyError(f"{source}: policies[{i}].branch: required for kind fixed")
            try:
                parse_candidate(branch)
            except ValueError as exc:
                raise sec.fail("branch", str(exc)) from exc
        if kind == "fixed-all":
            names = [c.label for c in candidates]
            default_names = names
        else:
            label = parse_candidate(branch).label if branch else ""
            default_names = [kind if not label else f"{kind}:{label}"]
        name = sec.string("name", "")
        adaptive: dict[str, Any] = {}
        if kind == "adaptive":
            if branch:
                raise sec.fail("branch", "not used by kind adaptive (its profile has the branches)")
            adaptive["profile"], adaptive["scheduler_profile"] = _scheduler_profile(sec, base_dir)
            if sec.has("latency_weight"):
                adaptive["latency_weight"] = sec.number("latency_weight", 0.0, minimum=0.0)
            if sec.has("branches"):
                adaptive["branches"] = _adaptive_branch_list(sec, adaptive["scheduler_profile"])
        if kind == "oracle" and sec.has("quantile"):
            adaptive["quantile"] = sec.number("quantile", minimum=0.0, maximum=1.0)
        sec.finish()
        if kind == "fixed-all":
            out += [PolicyConfig("fixed", f"fixed:{n}", n) for n in default_names]
        else:
            out.append(PolicyConfig(kind, name or default_names[0], branch, **adaptive))
    seen: set[str] = set()
    for p in out:
        if p.name in seen:
            raise ScenarioValueError(
                f"{source}: policies: two policies are named {p.name!r}; give one a name ="
            )
        seen.add(p.name)
    return tuple(out)


def scenario_from_dict(
    data: Mapping[str, Any], *, source: str = "<scenario>", base_dir: Path | None = None
) -> Scenario:
    """Validate a parsed scenario document; relative paths resolve from ``base_dir``."""
    base = base_dir or Path.cwd()
    top = _section(data, "", source)
    model = top.string("model", required=True)
    options = top.raw("model_options", {})
    if not isinstance(options, Mapping):
        raise top.fail("model_options", f"expected a table, got {options!r}")
    duration_s = top.number("duration_s", 20.0, minimum=0.0, exclusive=True)
    sla_ms = top.number("sla_ms", 300.0, minimum=0.0, exclusive=True)
    raw_branches = top.raw("branches", required=True)
    if not isinstance(raw_branches, list) or not raw_branches:
        raise top.fail(
            "branches", f"expected a non-empty list of branch names, got {raw_branches!r}"
        )
    candidates: list[Candidate] = []
    for i, text in enumerate(raw_branches):
        if not isinstance(text, str):
            raise top.fail(f"branches[{i}]", f"expected a string, got {text!r}")
        try:
            candidates.append(parse_candidate(text))
        except ValueError as exc:
            raise top.fail(f"branches[{i}]", str(exc)) from exc
    if len(set(candidates)) != len(candidates):
        raise top.fail("branches", "lists the same candidate twice")
    traces: dict[str, BandwidthTrace] = {}
    for direction in ("uplink", "downlink"):
        if direction == "downlink" and not top.has("downlink"):
            traces[direction] = traces["uplink"]
            top.raw("downlink")
            continue
        sec = top.section(direction)
        cfg = _trace_config(sec, base)
        try:
            traces[direction] = cfg.build(duration_s)
        except TraceError as exc:
            # A file's problems (a bad line, an unreadable file) are the path's.
            key = sec.key("path") if cfg.kind == "file" else direction
            raise ScenarioValueError(f"{source}: {key}: {exc}") from exc
    video_sec = top.section("video")
    video = VideoSettings(
        width=video_sec.integer("width", 160, minimum=32, maximum=4096),
        height=video_sec.integer("height", 120, minimum=32, maximum=4096),
        frames=video_sec.integer("frames", 16, minimum=1, maximum=10_000),
        seed=video_sec.integer("seed", 0),
        clip_frames=video_sec.integer("clip_frames", 0, minimum=0, maximum=10_000),
    )
    video_sec.finish()
    edge_sec = top.section("edge")
    edge = EdgeSettings(
        max_batch_size=edge_sec.integer("max_batch_size", 8, minimum=1, maximum=1024),
        max_queue_delay_ms=edge_sec.number("max_queue_delay_ms", 2.0, minimum=0.0),
        queue_capacity=edge_sec.integer("queue_capacity", 64, minimum=1),
        tail_workers=edge_sec.integer("tail_workers", 1, minimum=1, maximum=256),
    )
    edge_sec.finish()
    profile = top.raw("profile")
    if profile is not None and not isinstance(profile, str):
        raise top.fail("profile", f"expected a path string, got {profile!r}")
    scenario = Scenario(
        name=top.string("name", Path(source).stem if source != "<scenario>" else "scenario"),
        model=model,
        model_options=dict(options),
        branches=tuple(candidates),
        uplink=traces["uplink"],
        downlink=traces["downlink"],
        policies=_policies(top.raw("policies", required=True), source, tuple(candidates), base),
        duration_s=duration_s,
        clients=top.integer("clients", 1, minimum=1, maximum=64),
        fps=top.number("fps", 5.0, minimum=0.0, exclusive=True),
        sla_ms=sla_ms,
        deadline_ms=top.number("deadline_ms", 2 * sla_ms, minimum=0.0, exclusive=True),
        delay_ms=top.number("delay_ms", 10.0, minimum=0.0),
        client_offset_s=top.number("client_offset_s", 0.0, minimum=0.0),
        camera_phase=top.choice("camera_phase", ("staggered", "aligned"), "staggered"),
        warmup_frames=top.integer("warmup_frames", 2, maximum=100),
        video=video,
        edge=edge,
        profile=None if profile is None else base / profile,
        device_slowdown=top.number("device_slowdown", 1.0, minimum=1.0),
        device_local_ms=top.number("device_local_ms", 0.0, minimum=0.0),
        source=source,
    )
    top.finish()
    return scenario


def _load_yaml(path: Path) -> Any:
    """A YAML scenario file; errors read as :func:`~splitedge.proto.options.load_toml`'s."""
    import yaml

    name = f"scenario file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioFileError(f"{name} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFileError(f"{name} cannot be read ({exc})") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioFileError(f"{name} is not valid YAML ({' '.join(str(exc).split())})") from exc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a ``.toml`` or ``.yaml``/``.yml`` scenario file."""
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ScenarioFileError(f"{source}: unknown scenario file type; use .toml, .yaml or .yml")
    data: Any
    if suffix == ".toml":
        try:
            data = load_toml(path, "scenario file")
        except FormatError as exc:  # one line naming the file, as every config file's
            raise ScenarioFileError(str(exc)) from exc
    else:
        data = _load_yaml(path)
    if data is None:
        data = {}
    return scenario_from_dict(data, source=source, base_dir=path.parent)
