"""``splitedge-edge``: run the edge server, or list the models it can serve.

``splitedge-edge serve --model echo --port 0`` prints one machine-readable line,
``splitedge-edge listening on HOST:PORT``, once it accepts requests (and, with
``--metrics-port``, ``splitedge-edge metrics on http://HOST:PORT/metrics`` before it).
With ``--broker mqtt://HOST:PORT`` (older name ``--mqtt``; ``mqtts://`` = TLS) it also
publishes its retained status for discovery (docs/mqtt.md); a broker that is down
delays nothing.
SIGTERM/SIGINT drain in-flight frames and exit 0. A bad config or flag prints one
line on stderr and exits 2; a port it cannot listen on (another server has it) one
line and exits 1. It binds 127.0.0.1 unless told otherwise; ``[auth] tokens`` (hashes
printed by ``splitedge-edge hash-token``) make every call carry a device token
(``splitedge.edge.auth``). ``splitedge-edge export --model M [--out DIR]`` writes the
model's split heads as ONNX + pre-processing spec + SHA-256 (:mod:`splitedge.edge.export`)
for devices that run them without torch.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path

from splitedge.control_plane.address import (
    BrokerAddress,
    BrokerAddressError,
    parse_broker_address,
)
from splitedge.edge.auth import hash_token
from splitedge.edge.config import (
    LOG_LEVELS,
    ConfigError,
    EdgeConfig,
    ServerConfig,
    load_config,
    parse_model_spec,
)
from splitedge.edge.errors import RequestError
from splitedge.edge.memory import fix_mmap_threshold
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.server import EdgeServer, serve
from splitedge.models.depth.errors import DepthError
from splitedge.models.registry import list_models
from splitedge.proto.control import MessageError, check_id

__all__ = ["build_parser", "main"]

log = logging.getLogger("splitedge.edge")

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splitedge-edge",
        description="The splitedge gRPC edge server: runs split/offload tails for devices.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "serve",
        help="run the server until SIGTERM/SIGINT",
        description="Run the edge server. Flags override the config file; without "
        "--config, every setting has its default (see configs/edge.example.toml).",
    )
    defaults = ServerConfig()
    s.add_argument(
        "--config", type=Path, help="TOML config file (keys in configs/edge.example.toml)"
    )
    s.add_argument(
        "--host",
        help=f"address to bind (config default {defaults.host}, this machine only); another "
        "address without TLS and [auth] tokens logs a warning",
    )
    s.add_argument(
        "--port", type=int, help=f"gRPC port, 0 = any free port (config default {defaults.port})"
    )
    s.add_argument(
        "--model",
        action="append",
        metavar="NAME[:key=value,...]",
        help="serve this registry model with these builder options, e.g. "
        "echo:tail_delay_ms=20 (serve_as=NAME sets the name clients use; "
        "max_input_side=PX and max_input_pixels=N bound the frame sizes it accepts, "
        "default 4096 and 8388608); a list option takes a;b or one value "
        "(fasterrcnn_mobilenet_v3_large_fpn:split_points=features.9;features.12); "
        "repeatable; replaces the config's [[models]]",
    )
    s.add_argument(
        "--metrics-port",
        type=int,
        help="Prometheus /metrics port: -1 = off, 0 = any free port (config default -1)",
    )
    s.add_argument(
        "--metrics-host",
        help="address /metrics binds (config default 127.0.0.1; it is plaintext and "
        "unauthenticated, so another address logs a warning)",
    )
    s.add_argument("--device", help="auto | cpu | cuda | cuda:N (config default auto)")
    s.add_argument("--tls-cert", type=Path, help="PEM server certificate (needs --tls-key)")
    s.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    s.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA: require client certificates it signed (mutual TLS; needs --tls-cert)",
    )
    s.add_argument("--port-file", type=Path, help="also write the bound gRPC port to this file")
    m = s.add_argument_group("MQTT control plane (presence and load for discovery; docs/mqtt.md)")
    broker = m.add_mutually_exclusive_group()
    broker.add_argument(
        "--broker",
        metavar="mqtt://HOST:PORT",
        help="publish retained status to this broker, mqtts:// = TLS (config [mqtt] "
        "host/port; default off)",
    )
    broker.add_argument(
        "--mqtt",
        metavar="mqtt://HOST:PORT",
        help="older name of --broker (a bare HOST:PORT is deprecated)",
    )
    m.add_argument("--mqtt-username", help="broker username")
    m.add_argument(
        "--mqtt-password", help="broker password (prefer the config file: argv is public)"
    )
    m.add_argument("--mqtt-tls-ca", type=Path, help="PEM CA of the broker: connect over TLS")
    m.add_argument(
        "--mqtt-key-file",
        type=Path,
        metavar="PATH",
        help="shared fleet key: sign the status (devices need the same key; config [mqtt] "
        "key_file; without one the plane is unauthenticated)",
    )
    m.add_argument(
        "--server-id",
        help="id on splitedge/v1/edge/<id>/status and in Status (default <hostname>-<port>; "
        "without MQTT, Status reports a random edge-<hex> per start)",
    )
    m.add_argument(
        "--advertise",
        metavar="HOST:PORT",
        help="gRPC address clients should dial (default: bind host:port, 0.0.0.0 -> the "
        "address on the route to the broker)",
    )
    r = s.add_argument_group("engine (where tails run; docs/ray.md)")
    r.add_argument(
        "--engine",
        metavar="local|ray",
        help="local = in-process batching (config default); ray = every model's tails as "
        "a Ray Serve deployment, batched in each replica and autoscaled per [engine]",
    )
    r.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="Ray cluster to use with --engine ray: auto, ray://HOST:PORT or HOST:PORT "
        "(default: start a local Ray instance)",
    )
    d = s.add_argument_group("HybridDepth (DepthFromFocus RPC)")
    d.add_argument(
        "--depth",
        action="store_true",
        default=None,
        help="serve DepthFromFocus: focal stack in, metric depth out (loads torch)",
    )
    d.add_argument(
        "--depth-prior",
        type=Path,
        help="single-image prior checkpoint (default: the committed tiny prior)",
    )
    s.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging level (config default INFO)",
    )
    e = sub.add_parser(
        "export",
        help="export a model's split heads to ONNX for devices without torch",
        description="Write, for every split branch of the model, its head as ONNX (one graph "
        "per head: branches that differ only in quantization bits share one, so a bottleneck "
        "student has one per slimmable width), its pre-processing spec as JSON (resize rule "
        "min_size/max_size, mean/std, size_divisible, output tensor names, orig_size and "
        "input_size semantics) and SHA256SUMS. Without --out they go to the head cache the "
        "server hands out with GetHead ([heads] cache_dir of --config, default "
        "~/.cache/splitedge/edge-heads); the server also exports a missing head when a "
        "device first asks (unless [heads] export = false). Devices fetch them with "
        "splitedge-client run --backend onnx.",
    )
    e.add_argument(
        "--model",
        required=True,
        metavar="NAME[:key=value,...]",
        help="the registry model and builder options, as serve takes it (serve_as=NAME sets "
        "the name devices ask for), e.g. zoo:ghnd-frcnn-small-c12",
    )
    e.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write <graph>.onnx, <graph>.json and SHA256SUMS into DIR",
    )
    e.add_argument("--config", type=Path, help="TOML config file (its [heads] cache_dir)")
    sub.add_parser("list-models", help="print the model names the registry can build")
    h = sub.add_parser(
        "hash-token",
        help="print the SHA-256 of a device token, for [auth] tokens",
        description="Read a device token (from --token-file, else the first line of stdin) "
        "and print the SHA-256 that the config's [auth] tokens stores; the server never "
        "holds the token itself. With --client, print a whole tokens entry. With "
        "--generate, make a new random token and write it to --token-file (created "
        "with mode 600; give that file to the device: splitedge-client --token-file).",
    )
    h.add_argument("--token-file", type=Path, help="file holding the token (default: stdin)")
    h.add_argument("--client", help="print {client = NAME, sha256 = ...} for [auth] tokens")
    h.add_argument(
        "--generate", action="store_true", help="write a new random token to --token-file"
    )
    return parser


def _hash_token(args: argparse.Namespace) -> int:
    """``hash-token``: the config entry for a token; ConfigError on bad input."""
    if args.client is not None:
        try:
            check_id("client", args.client)
        except MessageError:
            raise ConfigError(
                f"--client: {args.client!r} is not a valid name: use 1-64 characters of "
                "[A-Za-z0-9_.-]"
            ) from None
    if args.generate:
        if args.token_file is None:
            raise ConfigError("--generate: needs --token-file, the file to write the token to")
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(args.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"--token-file: cannot create {str(args.token_file)!r}: {exc.strerror}"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    elif args.token_file is not None:
        try:
            token = args.token_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"--token-file: cannot read {str(args.token_file)!r}: {exc}"
            ) from None
    elif sys.stdin.isatty():
        token = getpass.getpass("token: ")
    else:
        token = sys.stdin.readline()
    try:
        digest = hash_token(token)
    except ValueError as exc:
        source = "--token-file" if args.token_file is not None else "stdin"
        raise ConfigError(f"{source}: {exc}") from None
    if args.client is None:
        print(digest)
    else:
        print(f'{{ client = "{args.client}", sha256 = "{digest}" }}')
    return 0


def _export(args: argparse.Namespace) -> int:
    """``export``: every head graph of one model, to --out or the server's head cache."""
    from splitedge.edge.export import HeadStore

    spec = parse_model_spec(args.model)
    config = load_config(args.config, models=[spec])
    registry = ModelRegistry.from_config(config.models, config.limits.codec_limits(), device="cpu")
    (name,) = registry.names
    with tempfile.TemporaryDirectory() as scratch:
        # --out gets the files alone; the server's cache is left as it is.
        store = HeadStore(Path(scratch) if args.out is not None else config.heads.cache_dir)
        exported = store.export_all(name, registry.model(name))
    sums = []
    for artifact, path in exported:
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"{artifact.spec.graph}.onnx"
            path.write_bytes(artifact.onnx)
            spec_bytes = artifact.spec_json.encode()
            path.with_suffix(".json").write_bytes(spec_bytes)
            sums.append(f"{artifact.sha256}  {path.name}")
            sums.append(
                f"{hashlib.sha256(spec_bytes).hexdigest()}  {path.with_suffix('.json').name}"
            )
        print(
            f"{artifact.spec.graph}: {', '.join(artifact.spec.branches)} -> {path} "
            f"({len(artifact.onnx)} bytes, sha256 {artifact.sha256})"
        )
    if args.out is not None:
        (args.out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return 0


def _broker_overrides(broker: BrokerAddress | None) -> dict[str, object]:
    """The config overrides a broker address makes: all of it, its scheme included (an
    ``mqtt://`` address turns off a ``tls = true`` from the config file)."""
    if broker is None:
        return {}
    return {"mqtt_host": broker.host, "mqtt_port": broker.port, "mqtt_tls": broker.tls}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on a bad flag
    if args.command == "list-models":
        for name in list_models():
            print(name)
        return 0
    if args.command == "hash-token":
        try:
            return _hash_token(args)
        except ConfigError as exc:
            print(f"splitedge-edge: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.command == "export":
        try:
            return _export(args)
        except (ConfigError, RequestError, OSError) as exc:
            print(f"splitedge-edge: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    # Logging first, in the format every command uses, so that what flags and config
    # log (a deprecated broker spelling) reads as it does on the client; the level the
    # config file names is set once it is read.
    # Before any model or frame allocates: large transient buffers (a big frame's
    # decode) go back to the OS once freed, instead of ratcheting RSS up.
    fix_mmap_threshold()
    logging.basicConfig(
        level=args.log_level or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        broker = _broker_address(args)
        config = load_config(
            args.config,
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            device=args.device,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_client_ca=args.tls_client_ca,
            log_level=args.log_level,
            models=[parse_model_spec(m) for m in args.model] if args.model else None,
            **_broker_overrides(broker),
            mqtt_username=args.mqtt_username,
            mqtt_password=args.mqtt_password,
            mqtt_tls_ca=args.mqtt_tls_ca,
            mqtt_key_file=args.mqtt_key_file,
            server_id=args.server_id,
            advertise_address=args.advertise,
            depth=args.depth,
            depth_prior=args.depth_prior,
            engine=args.engine,
            ray_address=args.ray_address,
        )
        logging.getLogger().setLevel(config.log_level.upper())
        # With the ray engine the tails run in replicas: the front end keeps the models
        # (for checks, Describe and head export) on its CPU.
        registry = ModelRegistry.from_config(
            config.models,
            config.limits.codec_limits(),
            device=config.device if config.engine.kind == "local" else "cpu",
        )
    except ConfigError as exc:
        print(f"splitedge-edge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(config, registry, args.port_file))
    except DepthError as exc:  # the depth prior's checkpoint loads as the server starts
        print(f"splitedge-edge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:  # ListenError: the gRPC or metrics port is taken
        print(f"splitedge-edge: error: {exc}", file=sys.stderr)
        return 1


def _broker_address(args: argparse.Namespace) -> BrokerAddress | None:
    """``--broker`` / ``--mqtt`` as an address (None: MQTT off); ConfigError when malformed."""
    flag, text = ("--broker", args.broker) if args.broker is not None else ("--mqtt", args.mqtt)
    if text is None:
        return None
    try:
        return parse_broker_address(text, flag)
    except BrokerAddressError as exc:
        raise ConfigError(str(exc)) from None


async def _serve(config: EdgeConfig, registry: ModelRegistry, port_file: Path | None) -> int:
    def ready(server: EdgeServer) -> None:
        host = config.server.host
        if port_file is not None:
            port_file.write_text(f"{server.port}\n")
        if server.metrics is not None:
            mhost = config.metrics_host
            mhost = f"[{mhost}]" if ":" in mhost and not mhost.startswith("[") else mhost
            print(f"splitedge-edge metrics on http://{mhost}:{server.metrics_port}/metrics")
        print(f"splitedge-edge listening on {host}:{server.port}", flush=True)

    await serve(config, registry, on_ready=ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
