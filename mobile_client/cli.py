"""``splitedge-client``: run frames through an edge server, or ask it what it serves.

``run --server HOST:PORT`` names the server; ``run --discover mqtt://BROKER:PORT``
finds the least-loaded one serving ``--model`` on the MQTT plane, follows failovers,
takes live SLA changes from the control topics and publishes telemetry
(docs/mqtt.md). ``--broker mqtt://BROKER:PORT`` adds control and telemetry to a named
server. Broker addresses are parsed by :mod:`splitedge.control_plane.address`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import math
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splitedge.control_plane.address import BrokerAddress, parse_broker_address
from splitedge.mobile_client.client import Client, ClientError
from splitedge.mobile_client.compression import COMPRESSION_MODES
from splitedge.mobile_client.config import ClientConfigError, load_client_config
from splitedge.mobile_client.depth import add_depth_parser, run_depth
from splitedge.mobile_client.flags import (
    add_tls_flags,
    add_token_flags,
    check_file,
    tls_from_flags,
    token_from_args,
)
from splitedge.mobile_client.heads import HeadBackend, LocalUnavailable, make_backend, why_not
from splitedge.mobile_client.outcome import FrameOutcome
from splitedge.mobile_client.sinks import JsonLinesSink
from splitedge.mobile_client.sources import SourceError, open_source
from splitedge.mobile_client.transport import (
    EdgeRefused,
    EdgeTransport,
    EdgeUnavailable,
)
from splitedge.proto.address import parse_host_port
from splitedge.proto.codec import check_zstd_level
from splitedge.proto.options import parse_options, size_arg

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from splitedge.mobile_client.fleet import FleetSession
    from splitedge.mobile_client.profile import Profile
    from splitedge.mobile_client.scheduler import Scheduler

log = logging.getLogger("splitedge.client")


_EXAMPLE_SERVER = "edge.lan:50051"


def _check_run_args(args: argparse.Namespace) -> None:
    """Everything about ``run``'s flags checkable before connecting (ValueError)."""
    if args.server is None and args.discover is None:
        raise ValueError(
            "give --server HOST:PORT or --discover mqtt://HOST:PORT (or server in --config)"
        )
    for flag, value, key in (
        ("--model", args.model, "[model] name"),
        ("--branch", args.branch, "branch"),
    ):
        if not value:
            raise ValueError(f"{flag} is required (or {key} in --config)")
    if args.server is not None:
        parse_host_port(args.server, "--server", example=_EXAMPLE_SERVER)
    for flag, value in (("--fps", args.fps), ("--deadline-ms", args.deadline_ms)):
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"{flag} must be a finite number >= 0, got {value}")
    if args.frames is not None and args.frames < 0:
        raise ValueError(f"--frames must be >= 0, got {args.frames}")
    if args.in_flight < 1:
        raise ValueError(f"--in-flight must be at least 1, got {args.in_flight}")
    check_zstd_level(args.zstd_level)
    tls_from_flags(args.tls_ca, args.tls_cert, args.tls_key)
    args.edge_token = token_from_args(args)
    if args.out != "-" and Path(args.out).is_dir():
        raise ValueError(f"--out: {args.out!r} is a directory; name a file")


def _add_mqtt_flags(run: argparse.ArgumentParser) -> None:
    m = run.add_argument_group("MQTT control plane (docs/mqtt.md)")
    m.add_argument(
        "--broker",
        metavar="mqtt://HOST:PORT",
        help="with --server: take control and publish telemetry via this broker "
        "(mqtts:// = TLS; a bare HOST:PORT is deprecated)",
    )
    m.add_argument(
        "--discover-timeout-s",
        type=float,
        default=10.0,
        help="with --discover: wait this long for a server (default 10)",
    )
    m.add_argument(
        "--client-id", help="id on splitedge/v1/client/<id>/... (default <hostname>-<pid>)"
    )
    m.add_argument(
        "--telemetry-every",
        type=int,
        default=30,
        metavar="N",
        help="publish a telemetry summary every N frames; 0 = off (default 30)",
    )
    m.add_argument("--mqtt-username", help="broker username")
    m.add_argument("--mqtt-password", help="broker password")
    m.add_argument("--mqtt-tls-ca", help="PEM CA of the broker: connect over TLS")
    m.add_argument(
        "--mqtt-key-file",
        metavar="PATH",
        help="shared fleet key: accept only status and control messages signed with it "
        "(docs/mqtt.md; without one the plane is unauthenticated)",
    )


def build_parser() -> argparse.ArgumentParser:
    return _build_parsers()[0]


def _build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The ``splitedge-client`` parser and its ``run`` subparser (``--config`` sets the
    latter's defaults)."""
    parser = argparse.ArgumentParser(
        prog="splitedge-client",
        description="The splitedge device runtime: run a model's head on this device, "
        "ship the bottleneck (or the frame) to an edge server, get results back.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="stream frames through the edge and write one JSON line per frame",
        description="Stream frames through the edge server and write one JSON line per frame "
        "(result, where it ran, timing breakdown in ms, payload bytes). A frame the edge cannot "
        "answer in time runs locally when this device holds the model, else it is recorded as "
        "dropped with the reason.",
    )
    run.add_argument(
        "--config",
        metavar="TOML",
        default=None,
        help="client config file (every key in configs/client.example.toml: server, "
        "branch, [model] name and options as on the edge, [tls], [mqtt], ...); flags "
        "given here override it",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--server", help="edge server address HOST:PORT (or server in --config)")
    where.add_argument(
        "--discover",
        metavar="mqtt://HOST:PORT",
        help="find the least-loaded edge server for --model via this MQTT broker and "
        "follow failovers (mqtts:// = TLS); also takes control and publishes telemetry",
    )
    run.add_argument(
        "--model", help="model name as the server lists it (or [model] name in --config)"
    )
    run.add_argument(
        "--branch",
        help="branch to run: local, split@<layer>, offload-jpeg<q>, ... "
        "(`splitedge-client models --server ...` lists them), or auto: the adaptive "
        "scheduler picks one per frame from --profile; or branch in --config",
    )
    run.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="branch profile JSON (`splitedge-client profile`) for --branch auto",
    )
    run.add_argument(
        "--latency-weight",
        type=float,
        default=0.0,
        help="with --branch auto: > 0 trades accuracy for latency (default 0: most accurate "
        "branch that meets the SLA)",
    )
    run.add_argument(
        "--source",
        default="synthetic",
        help="a folder of images, a video file, camera[:N], or synthetic (default)",
    )
    run.add_argument("--frames", type=int, default=None, help="stop after N frames")
    run.add_argument(
        "--size", type=size_arg(), default=(320, 240), help="synthetic frame size WIDTHxHEIGHT"
    )
    run.add_argument("--fps", type=float, default=0.0, help="pace frames like a camera (0 = fast)")
    run.add_argument(
        "--deadline-ms",
        "--sla-ms",
        dest="deadline_ms",
        type=float,
        default=1000.0,
        help="per-frame budget (the SLA) from capture to result; 0 = none (default 1000); "
        "control messages change it live",
    )
    run.add_argument(
        "--bits",
        type=int,
        choices=(0, 2, 4, 6, 8),
        default=None,
        help="quantize split tensors to this many bits (default: the branch's; 0 = float)",
    )
    run.add_argument("--zstd-level", type=int, default=3, help="zstd level for tensors (default 3)")
    run.add_argument(
        "--compression",
        choices=COMPRESSION_MODES,
        default="auto",
        help="zstd for split tensors: auto (only while the measured link makes it pay, "
        "the default), zstd (always) or raw (never)",
    )
    run.add_argument("--in-flight", type=int, default=4, help="frames pipelined at once")
    run.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx", "none"),
        default="auto",
        help="head backend: torch (the registry model, local branch and fallback too), onnx "
        "(the split heads the edge exports, fetched with GetHead, cached by SHA-256 in "
        "--head-cache and run with onnxruntime: no torch, no local branch), none (offload "
        "branches only), auto (torch if installed, else onnx if onnxruntime is, else none)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of the head backend (torch.set_num_threads, onnxruntime intra-op "
        "threads; default: the runtime's own)",
    )
    run.add_argument(
        "--head-cache",
        metavar="DIR",
        default=None,
        help="--backend onnx: where downloaded heads are kept by SHA-256 "
        "(default ~/.cache/splitedge/heads)",
    )
    run.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for the local model builder (e.g. weights=ckpt.pt, num_classes=7, "
        "split_points=features.9; a list is a;b or a,b); must match the server's; "
        "overrides that key of --config's [model] options",
    )
    run.add_argument(
        "--no-local-fallback",
        action="store_true",
        help="never run the model locally; frames the edge misses are recorded as dropped",
    )
    run.add_argument(
        "--prefilter",
        metavar="CHECKPOINT",
        default=None,
        help="drop frames this prefilter says hold nothing of interest, before any head or "
        "uplink (a checkpoint path or zoo:<entry>, e.g. zoo:prefilter-frame; needs torch); "
        "they are recorded as dropped with reason prefiltered",
    )
    add_tls_flags(run)
    add_token_flags(run)
    run.add_argument("--out", default="-", help="JSON lines output file (default stdout)")
    _add_mqtt_flags(run)
    run.set_defaults(config_model_options={})

    models = sub.add_parser("models", help="list the models and branches a server offers")
    models.add_argument("--server", required=True, help="edge server address HOST:PORT")
    add_tls_flags(models)
    add_token_flags(models)
    add_depth_parser(sub)
    add_profile_parser(sub)
    return parser, run


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
    """Register ``splitedge-client profile``.

    Only the flags live here; the measuring is offline work in
    :mod:`splitedge.training.profiling`, imported when the command runs.
    """
    p = subparsers.add_parser(
        "profile",
        help="measure a branch profile on this device (head latency under contention, bytes/frame)",
        description="Run each branch's head and codec on this device at several levels of CPU "
        "contention and write the profile JSON the scheduler loads at start. With "
        "--accuracy-frames N each entry's accuracy (COCO mAP@.5, overall and per content bin) "
        "is measured on N frames of fixed-seed synthetic validation video, run through the "
        "branch's real path (codec included) with the entry's detection interval; without it "
        "accuracy stays empty. --accuracy-seed and --accuracy-clip-frames pick the video, e.g. "
        "the one a scenario run plays, so that both score the same frames. Without torch, "
        "offload branches are measured (JPEG encode time and bytes; --server lists the "
        "branches) and head branches are left out with a note.",
    )
    p.add_argument("--model", required=True, help="registry model name")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--output", required=True, type=Path, help="profile JSON to write")
    p.add_argument("--source", default="synthetic", help="frames: synthetic, a folder or a video")
    p.add_argument("--frames", type=int, default=8, help="frames per branch and level (default 8)")
    p.add_argument(
        "--size", type=size_arg(), default=(320, 240), help="synthetic frame size WIDTHxHEIGHT"
    )
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
    add_token_flags(p)
    p.add_argument(
        "--backend",
        choices=("auto", "torch", "none"),
        default="auto",
        help="head backend (as for run): branches it cannot run are left out with a note; "
        "without torch, offload branches are measured and --server lists the branches",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    """The ``profile`` command: measure on this device and write the profile JSON.

    The profiler (heads under CPU contention, synthetic validation video, COCO
    evaluation) is not part of the streaming runtime, so it is imported here, on the
    one path that needs it.
    """
    from splitedge.training.profiling import run_profile as measure_and_write

    return measure_and_write(args)


def _check_mqtt_flags(args: argparse.Namespace) -> BrokerAddress | None:
    """The broker to use (None: no MQTT); raises ValueError on a bad address or combination."""
    url = args.discover or args.broker
    if args.discover and args.broker:
        raise ValueError("--broker is for --server; --discover already names the broker")
    if url is None:
        given = [
            flag
            for flag, value in (
                ("--client-id", args.client_id),
                ("--mqtt-username", args.mqtt_username),
                ("--mqtt-password", args.mqtt_password),
                ("--mqtt-tls-ca", args.mqtt_tls_ca),
                ("--mqtt-key-file", args.mqtt_key_file),
            )
            if value is not None
        ]
        if given:
            raise ValueError(f"{given[0]} needs --discover or --broker")
        return None
    if args.telemetry_every < 0:
        raise ValueError(f"--telemetry-every must be >= 0, got {args.telemetry_every}")
    if not (args.discover_timeout_s > 0 and math.isfinite(args.discover_timeout_s)):
        raise ValueError(f"--discover-timeout-s must be > 0, got {args.discover_timeout_s}")
    if args.mqtt_password is not None and args.mqtt_username is None:
        raise ValueError("--mqtt-password needs --mqtt-username")
    return parse_broker_address(url, "--discover" if args.discover else "--broker")


async def _run(args: argparse.Namespace) -> int:
    try:
        _check_run_args(args)
        options = {
            **args.config_model_options,
            **parse_options(args.model_option, "--model-option"),
        }
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        backend = make_backend(
            args.backend,
            args.model,
            options,
            threads=args.threads,
            head_cache=args.head_cache,
            branches=None if args.branch == "auto" else [args.branch],
        )
        args.prefilter_fn = _load_prefilter(args.prefilter) if args.prefilter else None
        args.scheduler = _make_scheduler(args) if args.branch == "auto" else None
        broker = _check_mqtt_flags(args)
        fleet = _fleet_session(args, broker) if broker is not None else None
    except (argparse.ArgumentTypeError, ValueError, KeyError, OSError) as exc:
        print(f"splitedge-client: error: {exc}", file=sys.stderr)
        return 2
    if fleet is None:
        return await _stream(args, args.server, backend, None)
    async with fleet:
        server = args.server
        if args.discover:
            server = (await fleet.wait_for_server(args.discover_timeout_s)).address
            print(f"splitedge-client: edge server {server} (via {args.discover})", file=sys.stderr)
        return await _stream(args, server, backend, fleet)


def _make_scheduler(args: argparse.Namespace, branches: Any = None) -> Scheduler:
    """``--branch auto``: a scheduler over ``--profile`` at the ``--sla-ms`` SLA.

    Called once before connecting (to refuse a bad profile at once) and again with
    the branches the server and this device offer, which filter the profile. Without
    OpenCV there is no tracker, so the tracked entries (detection interval > 1) go.
    """
    from splitedge.mobile_client.profile import ProfileError, load_profile
    from splitedge.mobile_client.scheduler import Scheduler, SchedulerError

    if args.profile is None:
        raise ValueError("--branch auto needs --profile PROFILE.json (splitedge-client profile)")
    if args.deadline_ms <= 0:
        raise ValueError("--branch auto needs an SLA: --sla-ms > 0")
    if not args.latency_weight >= 0:
        raise ValueError(f"--latency-weight must be >= 0, got {args.latency_weight}")
    try:
        profile = load_profile(args.profile)
        if branches is None and profile.model not in (args.model, f"zoo:{args.model}"):
            log.warning(
                "profile %s was measured for %s, not %s", args.profile, profile.model, args.model
            )
        return Scheduler(
            profile,
            args.deadline_ms,
            latency_weight=args.latency_weight,
            branches=branches,
            tracking=tracker_available(),
        )
    except (ProfileError, SchedulerError) as exc:
        raise ValueError(f"--profile: {exc}") from None


def _load_prefilter(spec: str) -> Callable[[np.ndarray], bool]:
    """``--prefilter``: a checkpoint path or ``zoo:<entry>`` -> its ``keep(image)``."""
    try:
        from splitedge.models.prefilter import load_prefilter
        from splitedge.models.zoo import ZooError, get_entry
    except ModuleNotFoundError as exc:
        raise ValueError(f"--prefilter needs torch on this device ({exc})") from None
    path = spec
    if spec.startswith("zoo:"):
        try:
            entry = get_entry(spec.removeprefix("zoo:"))
        except ZooError as exc:
            raise ValueError(f"--prefilter: {exc}") from None
        if entry.kind != "prefilter":
            raise ValueError(
                f"--prefilter: zoo entry {entry.name!r} is a {entry.kind}, not a prefilter"
            )
        path = str(entry.checkpoint_path())
    try:
        return load_prefilter(path).keep
    except ValueError as exc:
        raise ValueError(f"--prefilter: {exc}") from None


def _fleet_session(args: argparse.Namespace, address: BrokerAddress) -> FleetSession:
    # Imported here: a run without MQTT needs no aiomqtt.
    from splitedge.control_plane.link import BrokerConfig
    from splitedge.control_plane.signing import load_key_file
    from splitedge.mobile_client.fleet import FleetSession, default_client_id
    from splitedge.proto.control import MessageError

    check_file(args.mqtt_tls_ca, "--mqtt-tls-ca")
    key = load_key_file(args.mqtt_key_file) if args.mqtt_key_file is not None else None
    broker = BrokerConfig(
        host=address.host,
        port=address.port,
        username=args.mqtt_username,
        password=args.mqtt_password,
        tls=address.tls,
        tls_ca=args.mqtt_tls_ca,
    )
    try:
        return FleetSession(
            broker,
            args.model,
            args.client_id or default_client_id(),
            discover=bool(args.discover),
            telemetry_every=args.telemetry_every,
            sla_ms=args.deadline_ms if args.deadline_ms > 0 else None,
            key=key,
            tls=tls_from_flags(args.tls_ca, args.tls_cert, args.tls_key),
            token=getattr(args, "edge_token", None),
        )
    except MessageError as exc:
        raise ValueError(f"--client-id: {exc}") from exc


async def _stream(
    args: argparse.Namespace, server: str, backend: HeadBackend, fleet: FleetSession | None
) -> int:
    frames = open_source(args.source, max_frames=args.frames, size=args.size)
    counts: Counter[str] = Counter()
    async with Client(
        server,
        args.model,
        backend=backend,
        deadline_ms=args.deadline_ms,
        local_fallback=not args.no_local_fallback,
        bits=args.bits,
        zstd_level=args.zstd_level,
        compression=args.compression,
        tls_ca=args.tls_ca,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        token=getattr(args, "edge_token", None),
        prefilter=getattr(args, "prefilter_fn", None),
    ) as client:
        if fleet is not None:
            fleet.attach(client)
        if getattr(args, "scheduler", None) is not None:
            return await _stream_adaptive(args, client, frames, fleet)
        with JsonLinesSink(args.out) as sink:
            outcome: FrameOutcome
            async for outcome in client.run(
                frames, args.branch, max_in_flight=args.in_flight, fps=args.fps
            ):
                sink.write(outcome)
                if fleet is not None:
                    fleet.record(outcome)
                key = f"{outcome.source}:{outcome.reason}" if outcome.reason else outcome.source
                counts[key] += 1
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"splitedge-client: {sum(counts.values())} frames ({summary})", file=sys.stderr)
    return 0


def tracker_available() -> bool:
    """The on-device tracker (:mod:`~splitedge.mobile_client.tracker`) needs OpenCV."""
    return importlib.util.find_spec("cv2") is not None


def _skipped_entries(profile: Profile, client: Client, usable: list[str]) -> list[str]:
    """One line per reason that ``--profile`` entries will not be scheduled here."""
    notes = []
    by_reason: dict[str, list[str]] = {}
    for entry in profile.entries:
        name = entry.config.branch
        spec = client.branches.get(name)
        if entry.kind == "local" and not client.backend.has_local:
            reason = f"no local model: {getattr(client.backend, 'reason', client.backend.name)}"
        elif spec is None:
            reason = f"the edge does not serve them for {client.model!r}"
        elif name not in usable:
            reason = why_not(client.backend, spec).split(", but ")[-1]
        else:
            continue
        names = by_reason.setdefault(reason, [])
        if name not in names:
            names.append(name)
    for reason, names in by_reason.items():
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        notes.append(f"profile entries for {listed} skipped: {reason}")
    tracked = [
        e for e in profile.entries if e.config.detection_interval > 1 and e.config.branch in usable
    ]
    if tracked and not tracker_available():
        notes.append(
            f"{len(tracked)} tracked profile entries (detection interval > 1) skipped: the "
            "tracker needs OpenCV, which is not installed (pip install 'splitedge[video]')"
        )
    return notes


async def _stream_adaptive(
    args: argparse.Namespace, client: Client, frames: Any, fleet: FleetSession | None
) -> int:
    from splitedge.mobile_client.adaptive import AdaptiveSession, decision_json

    try:  # only branches the server serves and this device can run
        usable = [b for b, spec in client.branches.items() if client.backend.can_run(spec)]
        for note in _skipped_entries(args.scheduler.profile, client, usable):
            print(f"splitedge-client: note: {note}", file=sys.stderr)
        args.scheduler = _make_scheduler(args, usable)
    except ValueError as exc:
        print(f"splitedge-client: error: {exc}", file=sys.stderr)
        return 2
    session = AdaptiveSession(client, args.scheduler)
    if fleet is not None:
        fleet.on_control(session.apply_control)
    counts: Counter[str] = Counter()
    with JsonLinesSink(args.out) as sink:
        async for decision, outcome in session.run(frames, fps=args.fps):
            sink.write(outcome, decision=decision_json(decision))
            if fleet is not None:
                fleet.record(outcome)
            counts[decision.key if not decision.track else "tracked"] += 1
    sched = args.scheduler
    summary = ", ".join(f"{k}={v}" for k, v in counts.most_common())
    print(
        f"splitedge-client: {sum(counts.values())} frames, {sched.switches} switches, "
        f"{sched.violations} over the SLA, {sched.probes} sent only to measure the link "
        f"({summary})",
        file=sys.stderr,
    )
    return 0


async def _models(args: argparse.Namespace) -> int:
    try:
        parse_host_port(args.server, "--server", example=_EXAMPLE_SERVER)
        tls = tls_from_flags(args.tls_ca, args.tls_cert, args.tls_key)
        token = token_from_args(args)
    except ValueError as exc:
        print(f"splitedge-client: error: {exc}", file=sys.stderr)
        return 2
    try:
        async with EdgeTransport(args.server, tls=tls, token=token) as edge:
            models = await edge.list_models(timeout_s=5.0)
    except (EdgeRefused, EdgeUnavailable) as exc:
        code = exc.code.name if exc.code is not None else "UNAVAILABLE"
        print(f"splitedge-client: error: {args.server}: {code}: {exc.details}", file=sys.stderr)
        return 1
    for model in models:
        print(f"{model.name}  ({model.task}, weights: {model.weights})")
        if model.class_names:  # index i names class i; 0 is background
            print(f"    classes ({len(model.class_names)}): {', '.join(model.class_names)}")
        for branch in model.branches:
            shapes = "; ".join(f"{t.name}{list(t.shape)}" for t in branch.tensors)
            print(f"    {branch.name:<28} {branch.kind:<8} {shapes}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; for ``run --config FILE``, the file's settings become the flags'
    defaults and the command line is parsed again, so a flag given overrides the file.
    A ClientConfigError (one line) for a bad file."""
    args = build_parser().parse_args(argv)
    if args.command != "run" or args.config is None:
        return args
    settings = load_client_config(args.config)
    # the file's choice gives way to the flag's side of an either-or
    if args.server is not None or args.discover is not None:
        settings.pop("server", None)
        settings.pop("discover", None)
    if args.token is not None:
        settings.pop("token_file", None)
    parser, run = _build_parsers()
    run.set_defaults(**settings)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except ClientConfigError as exc:
        print(f"splitedge-client: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "depth":
            return run_depth(args)
        if args.command == "profile":
            return run_profile(args)
        return asyncio.run(_models(args))
    except (SourceError, ClientError, LocalUnavailable) as exc:
        print(f"splitedge-client: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
