"""Typed edge-server configuration, loaded once from TOML plus CLI overrides.

Every section is a frozen dataclass; :func:`load_config` checks each key's name and
type and each value's range, and refuses anything else with a one-line
:class:`ConfigError` naming the key (``server.port: expected an integer, got 'x'``).
Inner code takes these objects (or plain arguments) and never reads files or env vars.
``configs/edge.example.toml`` documents every key.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitedge.control_plane.signing import load_key_file
from splitedge.models.registry import ZOO_PREFIX
from splitedge.proto import address
from splitedge.proto.codec import CodecLimits
from splitedge.proto.control import MessageError, check_id
from splitedge.proto.options import FormatError, check_pem, load_toml, parse_option, split_items
from splitedge.proto.schema import Section

__all__ = [
    "AuthConfig",
    "BatchingConfig",
    "ConfigError",
    "DepthConfig",
    "EdgeConfig",
    "EngineConfig",
    "HeadsConfig",
    "LimitsConfig",
    "ModelConfig",
    "MqttConfig",
    "ServerConfig",
    "TokenHash",
    "dump_config",
    "load_config",
    "parse_host_port",
    "parse_model_spec",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_MAX_MESSAGE_BYTES = 2**31 - 1
METRICS_OFF = -1


class ConfigError(ValueError):
    """A bad config file, key, value or flag; the message is one line naming the key."""


@dataclass(frozen=True)
class ServerConfig:
    # Loopback by default: serving the network is a choice (warned about without TLS/auth).
    host: str = "127.0.0.1"
    port: int = 50051  # 0 = let the OS pick a free port (printed once listening)
    max_message_bytes: int = 64 * 2**20
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set -> clients must present a cert it signed
    grace_s: float = 10.0


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 8
    max_queue_delay_ms: float = 5.0
    queue_capacity: int = 64  # frames waiting for a tail, across all branches
    tail_workers: int = 1  # threads running tails; batches in flight at once
    tail_inline_below_ms: float = 0.1  # tails measured faster run on the event loop (0 = never)


ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineConfig:
    """Where tails run: ``local`` (the in-process batcher) or ``ray`` (Ray Serve
    deployments, one per model, batched inside each replica; docs/ray.md)."""

    kind: str = "local"  # local | ray
    ray_address: str = ""  # "" = start a local Ray instance; "auto"; "ray://HOST:PORT"; HOST:PORT
    local_num_cpus: int = 0  # CPUs of the local Ray instance ray_address "" starts; 0 = all
    local_num_gpus: int = -1  # GPUs of that instance; -1 = those Ray finds
    namespace: str = "splitedge"  # Ray namespace of the apps and the load board
    app_prefix: str = "splitedge-"  # Serve application name = prefix + served model name
    deploy: bool = True  # False: attach to apps already deployed (KubeRay RayService)
    num_cpus: float = 1.0  # per replica
    num_gpus: float = 0.0  # per replica (fractions share a GPU)
    min_replicas: int = 1
    max_replicas: int = 1  # > min_replicas: Serve autoscales on ongoing requests
    initial_replicas: int = 0  # 0 = min_replicas
    target_ongoing_requests: float = 2.0  # per replica, what autoscaling aims for
    max_ongoing_requests: int = 16  # per replica; more wait in the front end's handle
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 30.0
    retries: int = 2  # a frame whose replica died is sent again (within its deadline)


@dataclass(frozen=True)
class LimitsConfig:
    max_tensor_bytes: int = CodecLimits.max_tensor_bytes
    max_payload_bytes: int = CodecLimits.max_payload_bytes
    max_ndim: int = CodecLimits.max_ndim
    max_image_pixels: int = CodecLimits.max_image_pixels

    def codec_limits(self) -> CodecLimits:
        return CodecLimits(**dataclasses.asdict(self))


# A served model's input-size bounds (each [[models]] entry may set its own): a frame whose
# original or preprocessed size is over them is refused before any decoding or tail work.
DEFAULT_MAX_INPUT_SIDE = 4096  # height or width, pixels
DEFAULT_MAX_INPUT_PIXELS = 4096 * 2048  # height * width (8 Mpx: 3840x2160 fits)
_MODEL_LIMIT_KEYS = ("max_input_side", "max_input_pixels")


@dataclass(frozen=True)
class ModelConfig:
    name: str  # the registry name (splitedge-edge list-models)
    options: Mapping[str, Any] = field(default_factory=dict)  # passed to create_model
    serve_as: str | None = None  # the name clients use; default: the model's own name
    max_input_side: int = DEFAULT_MAX_INPUT_SIDE  # orig/input height or width, pixels
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS  # orig/input height * width


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT control plane (presence and load on the status topic); off while host is ""."""

    host: str = ""  # broker address; "" = do not publish status
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # TLS with the system CAs (tls_ca implies TLS)
    tls_ca: Path | None = None
    tls_cert: Path | None = None  # client certificate, for brokers that want one
    tls_key: Path | None = None
    server_id: str = ""  # "" = <hostname>-<grpc port>
    advertise_address: str = ""  # what clients dial; "" = host:bound port (see edge.presence)
    interval_s: float = 1.0  # status refresh period
    keepalive_s: int = 30  # a hung server is marked offline after 1.5 keepalives
    key_file: Path | None = None  # fleet key: sign status (docs/mqtt.md); None = unsigned

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True)
class DepthConfig:
    """The DepthFromFocus endpoint (HybridDepth); off unless enabled (it loads torch)."""

    enabled: bool = False
    prior: Path | None = None  # prior network checkpoint; None = the committed tiny prior
    focus_measure: str = "tenengrad"  # tenengrad | sml | lapvar
    confidence_threshold: float = 0.5  # DFF pixels trusted by the scale/shift fit


@dataclass(frozen=True)
class HeadsConfig:
    """Heads as artifacts: split heads exported to ONNX for torch-free devices (GetHead)."""

    cache_dir: Path | None = None  # None = ~/.cache/splitedge/edge-heads ($XDG_CACHE_HOME)
    export: bool = True  # export a head on demand when a device asks and none is cached


@dataclass(frozen=True)
class TokenHash:
    """One device's token, as the config stores it: its SHA-256, never the token."""

    client: str  # a name for logs, 1-64 of [A-Za-z0-9_.-]
    sha256: str  # 64 lowercase hex digits (splitedge-edge hash-token)


@dataclass(frozen=True)
class AuthConfig:
    """Bearer-token authentication of gRPC calls; off while ``tokens`` is empty."""

    tokens: tuple[TokenHash, ...] = ()
    health_open: bool = False  # True: the grpc.health.v1 service answers without a token

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)


@dataclass(frozen=True)
class EdgeConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    device: str = "auto"  # "auto" -> cuda if available, else cpu
    metrics_port: int = METRICS_OFF  # -1 = off, 0 = a free port (printed), else that port
    metrics_host: str = "127.0.0.1"  # /metrics is plaintext and open: loopback unless asked
    log_level: str = "INFO"
    models: tuple[ModelConfig, ...] = ()


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "batching": BatchingConfig,
    "engine": EngineConfig,
    "limits": LimitsConfig,
    "mqtt": MqttConfig,
    "depth": DepthConfig,
    "heads": HeadsConfig,
}
_TOP_KEYS = ("device", "metrics_port", "metrics_host", "log_level")
_TOP_LEVEL = {*_TOP_KEYS, "models", "auth", *_SECTIONS}


def load_config(path: Path | str | None = None, **overrides: Any) -> EdgeConfig:
    """Read ``path`` (TOML; None = defaults), apply ``overrides``, validate, return.

    ``overrides`` use dotted-free names: ``host``, ``port``, ``grace_s``, ``tls_cert``,
    ``tls_key`` (server), ``device``, ``metrics_port``, ``metrics_host``, ``log_level``,
    ``models`` (a list of :class:`ModelConfig`, replacing the file's), and ``mqtt_host``,
    ``mqtt_port``, ``mqtt_tls``, ``mqtt_username``, ``mqtt_password``, ``mqtt_tls_ca``,
    ``mqtt_key_file``, ``server_id``, ``advertise_address`` ([mqtt]). ``None`` values are ignored.
    """
    table: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            table = load_toml(path, "config file")
        except FormatError as exc:
            raise ConfigError(str(exc)) from exc
        base_dir = path.resolve().parent
    unknown = sorted(set(table) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; known keys: {', '.join(sorted(_TOP_LEVEL))}")

    sections = {}
    for key, cls in _SECTIONS.items():
        raw = table.get(key, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{key}: expected a table, got {_show(raw)}")
        sections[key] = _build(cls, raw, key, base_dir)
    top = {k: table[k] for k in _TOP_KEYS if k in table}
    config = EdgeConfig(
        **sections,
        **_check_fields(EdgeConfig, top, "", base_dir),
        models=_models(table.get("models", []), base_dir),
        auth=_auth(table.get("auth", {})),
    )
    config = _apply_overrides(config, overrides)
    _validate(config)
    return config


def parse_model_spec(text: str) -> ModelConfig:
    """``"echo:tail_delay_ms=20,serve_as=e2"`` -> ModelConfig.

    Each option is read as every KEY=VALUE option is (:func:`splitedge.proto.options.parse_option`);
    commas separate the options here, so a list value is written ``a;b``
    (``split_points=features.9;features.12``) or in JSON brackets (``jpeg_qualities=[90,50]``);
    a single value for a list option is a one-item list (``split_points=features.9``).
    ``serve_as`` is not a builder option: it names the served model. Trained zoo entries
    keep their prefix: ``zoo:teacher-frcnn-small:score_thresh=0.3``.
    """
    prefix = ZOO_PREFIX if text.startswith(ZOO_PREFIX) else ""
    name, _, rest = text[len(prefix) :].partition(":")
    name = prefix + name.strip() if name.strip() else ""
    if not name:
        raise ConfigError(f"--model {text!r}: expected NAME[:key=value,...]")
    try:
        options = dict(
            parse_option(item, f"--model {text!r}: option") for item in split_items(rest)
        )
    except FormatError as exc:
        raise ConfigError(str(exc)) from None
    serve_as = options.pop("serve_as", None)
    bounds = {key: options.pop(key) for key in _MODEL_LIMIT_KEYS if key in options}
    for key, value in bounds.items():
        _check_bound(value, f"--model {text!r}: option {key!r}")
    return ModelConfig(
        name=name, options=options, serve_as=None if serve_as is None else str(serve_as), **bounds
    )


def _check_bound(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected an integer >= 1, got {_show(value)}")


def parse_host_port(text: str, what: str, default_port: int | None = None) -> tuple[str, int]:
    """``"broker.lan:1883"`` / ``"[::1]:1883"`` -> (host, port); ``what`` names the flag/key."""
    try:
        return address.parse_host_port(text, what, default_port)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _auth(raw: Any) -> AuthConfig:
    """The ``[auth]`` table: ``tokens`` (an array of ``{client, sha256}``), ``health_open``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"auth: expected a table, got {_show(raw)}")
    unknown = sorted(set(raw) - {"tokens", "health_open"})
    if unknown:
        raise ConfigError(f"auth.{unknown[0]}: unknown key; known keys: health_open, tokens")
    health_open = raw.get("health_open", False)
    if not isinstance(health_open, bool):
        raise ConfigError(f"auth.health_open: expected a boolean, got {_show(health_open)}")
    entries = raw.get("tokens", [])
    if not isinstance(entries, list):
        raise ConfigError(
            f"auth.tokens: expected an array of tables {{client = ..., sha256 = ...}}, "
            f"got {_show(entries)}"
        )
    tokens: list[TokenHash] = []
    for i, entry in enumerate(entries):
        key = f"auth.tokens[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a table {{client = ..., sha256 = ...}}")
        for name in sorted(set(entry) - {"client", "sha256"}):
            if name == "token":
                raise ConfigError(
                    f"{key}.token: the config stores no plain token; write "
                    "sha256 = the output of `splitedge-edge hash-token`"
                )
            raise ConfigError(f"{key}.{name}: unknown key; known keys: client, sha256")
        for name in ("client", "sha256"):
            if name not in entry:
                raise ConfigError(f"{key}.{name}: missing")
        client, digest = entry["client"], entry["sha256"]
        try:
            check_id("client", client)
        except MessageError:
            raise ConfigError(
                f"{key}.client: {_show(client)} is not a valid name: "
                "use 1-64 characters of [A-Za-z0-9_.-]"
            ) from None
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ConfigError(
                f"{key}.sha256: expected 64 hex digits (`splitedge-edge hash-token` "
                f"prints them), got {_show(digest)}"
            )
        for j, seen in enumerate(tokens):
            if seen.client == client:
                raise ConfigError(f"{key}.client: {client!r} already names auth.tokens[{j}]")
            if seen.sha256 == digest.lower():
                raise ConfigError(f"{key}.sha256: the same token as auth.tokens[{j}]")
        tokens.append(TokenHash(client, digest.lower()))
    return AuthConfig(tokens=tuple(tokens), health_open=health_open)


def _models(raw: Any, base_dir: Path) -> tuple[ModelConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"models: expected an array of tables ([[models]]), got {_show(raw)}")
    models = []
    for i, entry in enumerate(raw):
        key = f"models[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a table, got {_show(entry)}")
        known = ("name", "options", "serve_as", *_MODEL_LIMIT_KEYS)
        unknown = sorted(set(entry) - set(known))
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}: unknown key; known keys: {', '.join(sorted(known))}"
            )
        if "name" not in entry:
            raise ConfigError(f"{key}.name: missing")
        if not isinstance(entry["name"], str) or not entry["name"]:
            raise ConfigError(
                f"{key}.name: expected a non-empty string, got {_show(entry['name'])}"
            )
        options = entry.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{key}.options: expected a table, got {_show(options)}")
        serve_as = entry.get("serve_as")
        if serve_as is not None and (not isinstance(serve_as, str) or not serve_as):
            raise ConfigError(f"{key}.serve_as: expected a non-empty string, got {_show(serve_as)}")
        bounds = {k: entry[k] for k in _MODEL_LIMIT_KEYS if k in entry}
        for name, value in bounds.items():
            _check_bound(value, f"{key}.{name}")
        models.append(
            ModelConfig(name=entry["name"], options=dict(options), serve_as=serve_as, **bounds)
        )
    return tuple(models)


def _build(cls: type, raw: Mapping[str, Any], section: str, base_dir: Path) -> Any:
    return cls(**_check_fields(cls, raw, section, base_dir))


def _check_fields(cls: type, raw: Mapping[str, Any], section: str, base_dir: Path) -> dict:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"models", "auth"}
    if cls is EdgeConfig:
        names -= set(_SECTIONS)
    prefix = f"{section}." if section else ""
    reader = Section(raw, section, error=ConfigError)
    out = {}
    for key in raw:
        if key not in names:
            raise ConfigError(f"{prefix}{key}: unknown key; known keys: {', '.join(sorted(names))}")
        out[key] = _read(reader, key, hints[key], base_dir)
    return out


# a field's type -> what TOML must hold for it (a bool is never an int or a float)
_TOML_TYPES: dict[Any, type | tuple[type, ...]] = {
    bool: bool,
    int: int,
    float: (int, float),
    str: str,
    Path: str,
}


def _read(reader: Section, key: str, hint: Any, base_dir: Path) -> Any:
    """Read ``key`` as its field's type; relative paths resolve from ``base_dir``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (hint,) = (a for a in args if a is not type(None))
    if hint not in _TOML_TYPES:  # pragma: no cover - a field type this loader was not taught
        raise TypeError(f"{reader.key(key)}: unsupported field type {hint!r}")
    value = reader.get(key, _TOML_TYPES[hint])
    if hint is float:
        return float(value)
    if hint is Path:
        return base_dir / Path(value).expanduser()
    return value


def dump_config(config: EdgeConfig) -> str:
    """``config`` as TOML that :func:`load_config` reads back equal (every key written).

    ``None`` values are left out (the loader's default); paths are written absolute, so
    the file reads the same from any folder.
    """
    top = {k: getattr(config, k) for k in _TOP_KEYS}
    lines = [f"{key} = {_toml_value(value, key)}" for key, value in top.items()]
    for section in _SECTIONS:
        lines += ["", f"[{section}]"]
        for key, value in dataclasses.asdict(getattr(config, section)).items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value, f'{section}.{key}')}")
    auth = config.auth
    lines += ["", "[auth]", f"health_open = {_toml_value(auth.health_open, 'auth.health_open')}"]
    tokens = [{"client": t.client, "sha256": t.sha256} for t in auth.tokens]
    lines.append(f"tokens = {_toml_value(tokens, 'auth.tokens')}")
    for i, model in enumerate(config.models):
        where = f"models[{i}]"
        lines += ["", "[[models]]", f"name = {_toml_value(model.name, f'{where}.name')}"]
        if model.serve_as is not None:
            lines.append(f"serve_as = {_toml_value(model.serve_as, f'{where}.serve_as')}")
        for key in _MODEL_LIMIT_KEYS:
            lines.append(f"{key} = {_toml_value(getattr(model, key), f'{where}.{key}')}")
        lines.append(f"options = {_toml_value(dict(model.options), f'{where}.options')}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any, key: str) -> str:
    """One TOML value; a :class:`ConfigError` names the dotted ``key`` it cannot write."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # TOML spells inf and nan as Python does
    if isinstance(value, Path):
        return json.dumps(str(value.absolute()))
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, f"{key}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))} = {_toml_value(v, f'{key}.{k}')}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise ConfigError(f"{key}: cannot write {_show(value)} to TOML")


_SERVER_OVERRIDES = {"host", "port", "grace_s", "tls_cert", "tls_key", "tls_client_ca"}
_TOP_OVERRIDES = set(_TOP_KEYS)
# override name -> [mqtt] key
_MQTT_OVERRIDES = {
    "mqtt_host": "host",
    "mqtt_port": "port",
    "mqtt_tls": "tls",
    "mqtt_username": "username",
    "mqtt_password": "password",
    "mqtt_tls_ca": "tls_ca",
    "mqtt_key_file": "key_file",
    "server_id": "server_id",
    "advertise_address": "advertise_address",
}
# override name -> [depth] key
_DEPTH_OVERRIDES = {"depth": "enabled", "depth_prior": "prior"}
# override name -> [engine] key
_ENGINE_OVERRIDES = {"engine": "kind", "ray_address": "ray_address"}


def _apply_overrides(config: EdgeConfig, overrides: Mapping[str, Any]) -> EdgeConfig:
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(
        set(given)
        - _SERVER_OVERRIDES
        - _TOP_OVERRIDES
        - set(_MQTT_OVERRIDES)
        - set(_DEPTH_OVERRIDES)
        - set(_ENGINE_OVERRIDES)
        - {"models"}
    )
    if unknown:
        raise ConfigError(f"{unknown[0]}: not an overridable setting")
    server = {k: v for k, v in given.items() if k in _SERVER_OVERRIDES}
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        if key in server:
            server[key] = Path(server[key])
    mqtt = {key: given[name] for name, key in _MQTT_OVERRIDES.items() if name in given}
    for key in ("tls_ca", "key_file"):
        if key in mqtt:
            mqtt[key] = Path(mqtt[key])
    depth = {key: given[name] for name, key in _DEPTH_OVERRIDES.items() if name in given}
    if "prior" in depth:
        depth["prior"] = Path(depth["prior"])
    engine = {key: given[name] for name, key in _ENGINE_OVERRIDES.items() if name in given}
    top = {k: v for k, v in given.items() if k in _TOP_OVERRIDES}
    if "models" in given:
        top["models"] = tuple(given["models"])
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, **server),
        mqtt=dataclasses.replace(config.mqtt, **mqtt),
        depth=dataclasses.replace(config.depth, **depth),
        engine=dataclasses.replace(config.engine, **engine),
        **top,
    )


def _validate(config: EdgeConfig) -> None:
    s, b, lim = config.server, config.batching, config.limits
    checks = [
        (0 <= s.port <= 65535, "server.port", f"{s.port} is not a port (0-65535)"),
        (
            1024 <= s.max_message_bytes <= _MAX_MESSAGE_BYTES,
            "server.max_message_bytes",
            f"{s.max_message_bytes} is not 1024-{_MAX_MESSAGE_BYTES} (gRPC takes a 32-bit int)",
        ),
        (
            s.grace_s >= 0 and math.isfinite(s.grace_s),
            "server.grace_s",
            f"{s.grace_s} is not a finite number >= 0",
        ),
        (b.max_batch_size >= 1, "batching.max_batch_size", "must be at least 1"),
        (
            b.max_queue_delay_ms >= 0 and math.isfinite(b.max_queue_delay_ms),
            "batching.max_queue_delay_ms",
            "must be a finite number >= 0",
        ),
        (b.tail_inline_below_ms >= 0, "batching.tail_inline_below_ms", "must not be negative"),
        (b.queue_capacity >= 1, "batching.queue_capacity", "must be at least 1"),
        (b.tail_workers >= 1, "batching.tail_workers", "must be at least 1"),
        (
            METRICS_OFF <= config.metrics_port <= 65535,
            "metrics_port",
            f"{config.metrics_port} is not -1 (off), 0 (any free port) or a port",
        ),
        (bool(config.metrics_host.strip()), "metrics_host", "must not be empty"),
        (
            config.log_level.upper() in LOG_LEVELS,
            "log_level",
            f"{config.log_level!r} is not one of {', '.join(LOG_LEVELS)}",
        ),
        (
            config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:"),
            "device",
            f"{config.device!r} is not auto, cpu, cuda or cuda:N",
        ),
        (
            bool(config.models) or config.depth.enabled,
            "models",
            "no model configured (add [[models]] or --model NAME, or serve depth with --depth)",
        ),
    ]
    for name, value in dataclasses.asdict(lim).items():
        checks.append((value >= 1, f"limits.{name}", "must be at least 1"))
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key}: {message}")
    if (s.tls_cert is None) != (s.tls_key is None):
        raise ConfigError("server.tls_cert/tls_key: give both or neither")
    if s.tls_client_ca is not None and s.tls_cert is None:
        raise ConfigError("server.tls_client_ca: needs server.tls_cert and server.tls_key")
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        p = getattr(s, key)
        if p is not None and not p.is_file():
            raise ConfigError(f"server.{key}: file {str(p)!r} does not exist")
        if p is not None:
            _pem(p, f"server.{key}")
    _validate_mqtt(config.mqtt)
    _validate_depth(config.depth)
    _validate_engine(config.engine)


# ray:// HOST:PORT, or a bare HOST:PORT (the head's GCS address), or "auto"
_RAY_ADDRESS = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def ray_installed() -> bool:
    """True when Ray can be imported here (``kind = "ray"`` is refused at load otherwise)."""
    return importlib.util.find_spec("ray") is not None


def _validate_engine(e: EngineConfig) -> None:
    if e.kind not in ENGINES:
        raise ConfigError(f"engine.kind: {e.kind!r} is not one of {', '.join(ENGINES)}")
    # The Ray keys are checked under the local engine too: a file keeps them while
    # `--engine local` runs it on one box, and they must be right when Ray is on.
    address = e.ray_address
    match = _RAY_ADDRESS.fullmatch(address) if address else None
    if address and address != "auto" and (match is None or not 1 <= int(match.group(3)) <= 65535):
        raise ConfigError(
            f"engine.ray_address: {address!r} is not auto, ray://HOST:PORT or HOST:PORT "
            '("" starts a local Ray instance)'
        )
    checks = [
        (e.local_num_cpus >= 0, "engine.local_num_cpus", "must be >= 0 (0 = all)"),
        (e.local_num_gpus >= -1, "engine.local_num_gpus", "must be >= -1 (-1 = those found)"),
        (
            not address or (e.local_num_cpus == 0 and e.local_num_gpus == -1),
            "engine.local_num_cpus/local_num_gpus",
            "size the local Ray instance only; a cluster (engine.ray_address) has its own",
        ),
        (bool(e.namespace.strip()), "engine.namespace", "must not be empty"),
        (
            e.num_cpus >= 0 and math.isfinite(e.num_cpus),
            "engine.num_cpus",
            f"{e.num_cpus} is not a finite number >= 0",
        ),
        (
            e.num_gpus >= 0 and math.isfinite(e.num_gpus),
            "engine.num_gpus",
            f"{e.num_gpus} is not a finite number >= 0",
        ),
        (e.min_replicas >= 1, "engine.min_replicas", "must be at least 1"),
        (
            e.max_replicas >= e.min_replicas,
            "engine.max_replicas",
            f"{e.max_replicas} is under engine.min_replicas ({e.min_replicas})",
        ),
        (
            e.initial_replicas == 0 or e.min_replicas <= e.initial_replicas <= e.max_replicas,
            "engine.initial_replicas",
            f"{e.initial_replicas} is not 0 or within min_replicas..max_replicas",
        ),
        (
            e.target_ongoing_requests > 0 and math.isfinite(e.target_ongoing_requests),
            "engine.target_ongoing_requests",
            "must be a finite number > 0",
        ),
        (e.max_ongoing_requests >= 1, "engine.max_ongoing_requests", "must be at least 1"),
        (
            e.upscale_delay_s >= 0 and e.downscale_delay_s >= 0,
            "engine.upscale_delay_s/downscale_delay_s",
            "must be >= 0",
        ),
        (e.retries >= 0, "engine.retries", "must be >= 0"),
    ]
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key}: {message}")
    if e.kind == "ray" and not ray_installed():
        raise ConfigError(
            "engine.kind: ray needs Ray Serve, which is not installed: "
            "pip install 'splitedge[edge-ray]'"
        )


def _validate_depth(d: DepthConfig) -> None:
    measures = ("tenengrad", "sml", "lapvar")
    if d.focus_measure not in measures:
        raise ConfigError(
            f"depth.focus_measure: must be one of {', '.join(measures)}, got {d.focus_measure!r}"
        )
    if not 0.0 <= d.confidence_threshold < 1.0:
        raise ConfigError(
            f"depth.confidence_threshold: must be in [0, 1), got {d.confidence_threshold}"
        )
    if d.prior is not None and not d.prior.is_file():
        raise ConfigError(f"depth.prior: no checkpoint file at {d.prior}")


def _validate_mqtt(m: MqttConfig) -> None:
    if not m.enabled:
        # Catches "--server-id x" without "--broker": settings that would silently do nothing.
        keys = (
            "username",
            "password",
            "tls",
            "tls_ca",
            "tls_cert",
            "tls_key",
            "server_id",
            "key_file",
        )
        for key in (*keys, "advertise_address"):
            if getattr(m, key):
                raise ConfigError(f"mqtt.{key}: set, but mqtt.host is empty (MQTT is off)")
        return
    checks = [
        (1 <= m.port <= 65535, "mqtt.port", f"{m.port} is not a port (1-65535)"),
        (
            m.interval_s > 0 and math.isfinite(m.interval_s),
            "mqtt.interval_s",
            f"{m.interval_s} must be a finite number > 0",
        ),
        (m.keepalive_s >= 1, "mqtt.keepalive_s", "must be at least 1"),
        (
            m.password is None or m.username is not None,
            "mqtt.password",
            "given without mqtt.username",
        ),
        (
            (m.tls_cert is None) == (m.tls_key is None),
            "mqtt.tls_cert/tls_key",
            "give both or neither",
        ),
    ]
    for ok, key, message in checks:
        if not ok:
            raise ConfigError(f"{key}: {message}")
    if m.server_id:
        try:
            check_id("server_id", m.server_id)
        except MessageError as exc:
            raise ConfigError(
                f"mqtt.server_id: {m.server_id!r} is not a valid id: "
                "use 1-64 characters of [A-Za-z0-9_.-]"
            ) from exc
    if m.advertise_address:
        parse_host_port(m.advertise_address, "mqtt.advertise_address")
    for key in ("tls_ca", "tls_cert", "tls_key"):
        p = getattr(m, key)
        if p is not None and not p.is_file():
            raise ConfigError(f"mqtt.{key}: file {str(p)!r} does not exist")
        if p is not None:
            _pem(p, f"mqtt.{key}")
    if m.key_file is not None:
        try:
            load_key_file(m.key_file, "mqtt.key_file")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def _pem(path: Path, key: str) -> None:
    try:
        check_pem(path, key)
    except FormatError as exc:
        raise ConfigError(str(exc)) from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
