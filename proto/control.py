"""The MQTT control and telemetry plane: topic tree, message schemas, validation.

Pure (no I/O, no MQTT client): bytes in, validated dataclasses out, and back. Frames
never travel over MQTT; these messages only tell devices and edge servers about each
other (presence, load, telemetry, live SLA/policy changes). docs/mqtt.md documents
every topic and payload; keep the two in step.

Every payload is a UTF-8 JSON object with ``"v": 1``. Parsing refuses NaN/Infinity,
duplicate keys and payloads over :data:`MAX_PAYLOAD_BYTES` with a one-line reason.
Control messages are strict (unknown keys rejected: a typo must not be silently
ignored); status and telemetry tolerate unknown keys so newer publishers can add
fields without breaking older readers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from splitedge.proto.status import BranchLoad, ServerStatus

SCHEMA_VERSION = 1
TOPIC_ROOT = "splitedge/v1"
MAX_PAYLOAD_BYTES = 64 * 1024

EDGE_STATUS_FILTER = f"{TOPIC_ROOT}/edge/+/status"
CLIENT_TELEMETRY_FILTER = f"{TOPIC_ROOT}/client/+/telemetry"
FLEET_CONTROL_TOPIC = f"{TOPIC_ROOT}/fleet/control"

# Names the device scheduler understands; a client may pass its own set to the parser.
KNOWN_POLICIES: frozenset[str] = frozenset(
    {"adaptive", "latency_first", "accuracy_first", "local_only", "edge_only"}
)
SLA_MS_RANGE = (1.0, 60_000.0)
WEIGHT_RANGE = (0.0, 1.0)

ControlScope = Literal["fleet", "client"]
FrameSource = Literal["edge", "local", "dropped"]

_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class MessageError(ValueError):
    """A control-plane message or topic failed validation (one-line reason)."""


class PayloadTooLargeError(MessageError):
    """The payload exceeds :data:`MAX_PAYLOAD_BYTES`."""


class NotJsonError(MessageError):
    """The payload is not UTF-8 JSON (or uses NaN/Infinity or duplicate keys)."""


class NotAnObjectError(MessageError):
    """The payload is JSON but not an object."""


class UnknownKeyError(MessageError):
    """A strict message carries a key the schema does not define."""


class MissingKeyError(MessageError):
    """A required key is absent (or a control message sets nothing)."""


class WrongTypeError(MessageError):
    """A value has the wrong JSON type."""


class OutOfRangeError(MessageError):
    """A number lies outside its allowed range."""


class UnknownPolicyError(MessageError):
    """A control message names a policy the scheduler does not know."""


class BadTopicError(MessageError):
    """A topic or id does not fit the topic tree."""


# ---------------------------------------------------------------------------- topics


def check_id(kind: str, value: str) -> str:
    """Return ``value`` if it is a valid server/client id (no MQTT wildcards or slashes)."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise BadTopicError(
            f"{kind} {value!r} is not a valid id: use 1-64 characters of [A-Za-z0-9_.-]"
        )
    return value


def edge_status_topic(server_id: str) -> str:
    """``splitedge/v1/edge/<server_id>/status`` (retained)."""
    return f"{TOPIC_ROOT}/edge/{check_id('server_id', server_id)}/status"


def client_telemetry_topic(client_id: str) -> str:
    """``splitedge/v1/client/<client_id>/telemetry``."""
    return f"{TOPIC_ROOT}/client/{check_id('client_id', client_id)}/telemetry"


def client_control_topic(client_id: str) -> str:
    """``splitedge/v1/client/<client_id>/control``."""
    return f"{TOPIC_ROOT}/client/{check_id('client_id', client_id)}/control"


def _topic_id(topic: str, room: str, leaf: str) -> str:
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_ROOT or parts[2] != room:
        raise BadTopicError(f"topic {topic!r} is not {TOPIC_ROOT}/{room}/<id>/{leaf}")
    if parts[4] != leaf:
        raise BadTopicError(f"topic {topic!r} is not {TOPIC_ROOT}/{room}/<id>/{leaf}")
    return check_id(f"{room} id in topic", parts[3])


def server_id_from_topic(topic: str) -> str:
    """The ``<server_id>`` of an edge status topic."""
    return _topic_id(topic, "edge", "status")


def client_id_from_telemetry_topic(topic: str) -> str:
    """The ``<client_id>`` of a client telemetry topic."""
    return _topic_id(topic, "client", "telemetry")


# --------------------------------------------------------------------- JSON helpers


def _reject_constant(name: str) -> Any:
    raise NotJsonError(f"payload uses {name}, which is not valid JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise NotJsonError(f"payload repeats key {key!r}")
        out[key] = value
    return out


def decode_object(payload: bytes | str, what: str) -> dict[str, Any]:
    """Decode ``payload`` into a JSON object or raise a precise :class:`MessageError`."""
    size_bytes = len(payload.encode() if isinstance(payload, str) else payload)
    if size_bytes > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"{what} payload is {size_bytes} bytes, over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except NotJsonError as exc:  # raised by the hooks, which do not know `what`
        raise NotJsonError(f"{what} {exc}") from exc
    except UnicodeDecodeError as exc:
        raise NotJsonError(f"{what} payload is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise NotJsonError(f"{what} payload is not JSON: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(obj, dict):
        raise NotAnObjectError(f"{what} payload is a JSON {_json_type(obj)}, expected an object")
    return obj


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, the wire form of every message."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, sort_keys=True).encode()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _number(
    obj: Mapping[str, Any],
    key: str,
    lo: float,
    hi: float,
    *,
    integer: bool = False,
    where: str,
) -> float:
    value = obj[key]
    # bool is an int in Python, but `true` is not a number on the wire.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WrongTypeError(f"{where}: {key!r} must be a number, got {_json_type(value)}")
    if integer and not float(value).is_integer():
        raise WrongTypeError(f"{where}: {key!r} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise OutOfRangeError(f"{where}: {key!r} = {value!r} is outside [{lo:g}, {hi:g}]")
    return int(value) if integer else float(value)


def _string(obj: Mapping[str, Any], key: str, *, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise WrongTypeError(f"{where}: {key!r} must be a string, got {_json_type(value)}")
    return value


def _bool(obj: Mapping[str, Any], key: str, *, where: str) -> bool:
    value = obj[key]
    if not isinstance(value, bool):
        raise WrongTypeError(f"{where}: {key!r} must be a boolean, got {_json_type(value)}")
    return value


def _mapping(value: Any, key: str, *, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WrongTypeError(f"{where}: {key!r} must be an object, got {_json_type(value)}")
    return value


def _require(obj: Mapping[str, Any], keys: Iterable[str], *, where: str) -> None:
    for key in keys:
        if key not in obj:
            raise MissingKeyError(f"{where}: missing required key {key!r}")


def _check_version(obj: Mapping[str, Any], *, where: str, required: bool) -> None:
    if "v" not in obj:
        if required:
            raise MissingKeyError(f"{where}: missing required key 'v'")
        return
    version = _number(obj, "v", 0, 1e9, integer=True, where=where)
    if version != SCHEMA_VERSION:
        raise OutOfRangeError(
            f"{where}: schema version {version} is not supported (expected {SCHEMA_VERSION})"
        )


# ----------------------------------------------------------------------- control


_CONTROL_SETTINGS = ("sla_ms", "accuracy_weight", "latency_weight", "policy")
_CONTROL_KEYS = frozenset({"v", *_CONTROL_SETTINGS})


@dataclass(frozen=True)
class ControlUpdate:
    """A validated control message: the settings it sets (``None`` = not set).

    ``scope`` says where it came from: ``fleet`` (every client) or ``client`` (this one).
    """

    scope: ControlScope
    sla_ms: float | None = None
    accuracy_weight: float | None = None
    latency_weight: float | None = None
    policy: str | None = None

    def settings(self) -> dict[str, float | str]:
        """Only the settings this update sets."""
        values = {name: getattr(self, name) for name in _CONTROL_SETTINGS}
        return {name: value for name, value in values.items() if value is not None}


def parse_control(
    payload: bytes | str,
    scope: ControlScope,
    *,
    policies: Iterable[str] = KNOWN_POLICIES,
) -> ControlUpdate:
    """Validate a control message strictly (all-or-nothing) into a :class:`ControlUpdate`."""
    where = f"{scope} control message"
    obj = decode_object(payload, where)
    unknown = sorted(set(obj) - _CONTROL_KEYS)
    if unknown:
        raise UnknownKeyError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_CONTROL_KEYS))}"
        )
    _check_version(obj, where=where, required=False)
    if not any(key in obj for key in _CONTROL_SETTINGS):
        raise MissingKeyError(
            f"{where} sets nothing; expected at least one of {', '.join(_CONTROL_SETTINGS)}"
        )
    values: dict[str, Any] = {}
    if "sla_ms" in obj:
        values["sla_ms"] = _number(obj, "sla_ms", *SLA_MS_RANGE, where=where)
    for key in ("accuracy_weight", "latency_weight"):
        if key in obj:
            values[key] = _number(obj, key, *WEIGHT_RANGE, where=where)
    if values.get("accuracy_weight") == 0.0 and values.get("latency_weight") == 0.0:
        raise OutOfRangeError(f"{where}: accuracy_weight and latency_weight cannot both be 0")
    if "policy" in obj:
        policy = _string(obj, "policy", where=where)
        known = frozenset(policies)
        if policy not in known:
            raise UnknownPolicyError(
                f"{where}: unknown policy {policy!r}; known policies: {', '.join(sorted(known))}"
            )
        values["policy"] = policy
    return ControlUpdate(scope=scope, **values)


def encode_control(update: ControlUpdate) -> bytes:
    """The wire form of a control message (what an operator tool publishes)."""
    return encode_object({"v": SCHEMA_VERSION, **update.settings()})


# ------------------------------------------------------------------------ status


@dataclass(frozen=True)
class BranchLatency:
    """Rolling tail latency of one (model, branch) on a server, in milliseconds.

    ``replicas`` is how many replicas run the tail (1 in-process, the running Ray Serve
    replicas with ``--engine ray``); 0 when the message does not say (older publishers,
    or no replica running), and then the wire form leaves the key out.
    """

    p50_ms: float
    p95_ms: float
    replicas: int = 0

    def to_dict(self) -> dict[str, float | int]:
        """The JSON-ready form: ``{"p50": ms, "p95": ms}`` and ``replicas`` when known."""
        out: dict[str, float | int] = {"p50": self.p50_ms, "p95": self.p95_ms}
        if self.replicas > 0:
            out["replicas"] = self.replicas
        return out


@dataclass(frozen=True)
class EdgeStatus:
    """One edge server's retained status (``online=False``: will or clean shutdown).

    ``models`` maps model name -> branch names it serves; ``tail_ms`` maps model ->
    branch -> :class:`BranchLatency` for the branches with a measured tail only, and
    so carries their replica counts (an unmeasured branch's is not published).
    ``load`` is the executor's busy fraction (0..1). ``queue_wait_ms`` is the server's
    own estimate of the wait before a new frame starts (optional; readers derive one
    from the queue depth when absent).
    ``timestamp`` is the publisher's wall clock (Unix seconds).
    """

    server_id: str
    online: bool
    timestamp: float
    address: str = ""
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)
    queue_depth: int = 0
    queue_capacity: int = 0
    tail_ms: dict[str, dict[str, BranchLatency]] = field(default_factory=dict)
    device: str = ""
    load: float = 0.0
    queue_wait_ms: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (offline messages carry only id, time and reason)."""
        out: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "server_id": self.server_id,
            "online": self.online,
            "timestamp": self.timestamp,
        }
        if not self.online:
            out["reason"] = self.reason
            return out
        out.update(
            address=self.address,
            models={name: list(branches) for name, branches in self.models.items()},
            queue_depth=self.queue_depth,
            queue_capacity=self.queue_capacity,
            tail_ms={
                model: {b: lat.to_dict() for b, lat in branches.items()}
                for model, branches in self.tail_ms.items()
            },
            device=self.device,
            load=self.load,
        )
        if self.queue_wait_ms is not None:
            out["queue_wait_ms"] = self.queue_wait_ms
        return out

    def encode(self) -> bytes:
        """UTF-8 JSON bytes for the status topic."""
        return encode_object(self.to_dict())

    def server_status(self) -> ServerStatus:
        """The load this message carries, as the ``Status`` RPC's reader gives it: every
        served branch, its tail latency and replica count when published (None and 0
        while not yet measured)."""
        branches = []
        for model, names in self.models.items():
            tails = self.tail_ms.get(model, {})
            for branch in names:
                lat = tails.get(branch)
                branches.append(
                    BranchLoad(
                        model=model,
                        branch=branch,
                        tail_latency_ms_p50=None if lat is None else lat.p50_ms,
                        tail_latency_ms_p95=None if lat is None else lat.p95_ms,
                        replicas=0 if lat is None else lat.replicas,
                    )
                )
        return ServerStatus(
            server_id=self.server_id,
            device=self.device,
            queue_depth=self.queue_depth,
            queue_capacity=self.queue_capacity,
            load=self.load,
            branches=tuple(branches),
            queue_wait_ms=self.queue_wait_ms,
        )

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], *, where: str = "edge status") -> EdgeStatus:
        """Validate a decoded status object (unknown keys are ignored)."""
        _require(obj, ("server_id", "online", "timestamp"), where=where)
        _check_version(obj, where=where, required=True)
        server_id = check_id("server_id", _string(obj, "server_id", where=where))
        online = _bool(obj, "online", where=where)
        timestamp = _number(obj, "timestamp", 0.0, 1e11, where=where)
        if not online:
            reason = _string(obj, "reason", where=where) if "reason" in obj else ""
            return cls(server_id=server_id, online=False, timestamp=timestamp, reason=reason)
        _require(obj, ("address", "models", "queue_depth", "queue_capacity"), where=where)
        optional: dict[str, Any] = {}
        if "device" in obj:
            optional["device"] = _string(obj, "device", where=where)
        if "load" in obj:
            optional["load"] = _number(obj, "load", 0.0, 1.0, where=where)
        if "queue_wait_ms" in obj:
            optional["queue_wait_ms"] = _number(obj, "queue_wait_ms", 0.0, 1e9, where=where)
        return cls(
            server_id=server_id,
            online=True,
            timestamp=timestamp,
            address=_string(obj, "address", where=where),
            models=_parse_models(obj["models"], where=where),
            queue_depth=int(_number(obj, "queue_depth", 0, 1e9, integer=True, where=where)),
            queue_capacity=int(_number(obj, "queue_capacity", 1, 1e9, integer=True, where=where)),
            tail_ms=_parse_tail(obj.get("tail_ms", {}), where=where),
            **optional,
        )


def _parse_models(value: Any, *, where: str) -> dict[str, tuple[str, ...]]:
    models: dict[str, tuple[str, ...]] = {}
    for name, branches in _mapping(value, "models", where=where).items():
        if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
            raise WrongTypeError(f"{where}: models[{name!r}] must be an array of branch names")
        models[name] = tuple(branches)
    return models


def _parse_tail(value: Any, *, where: str) -> dict[str, dict[str, BranchLatency]]:
    tail: dict[str, dict[str, BranchLatency]] = {}
    for model, branches in _mapping(value, "tail_ms", where=where).items():
        per_branch: dict[str, BranchLatency] = {}
        for branch, pair in _mapping(branches, f"tail_ms.{model}", where=where).items():
            key = f"tail_ms.{model}.{branch}"
            pair = _mapping(pair, key, where=where)
            _require(pair, ("p50", "p95"), where=f"{where}: {key}")
            p50_ms = _number(pair, "p50", 0.0, 1e9, where=f"{where}: {key}")
            p95_ms = _number(pair, "p95", p50_ms, 1e9, where=f"{where}: {key}")
            replicas = 0  # absent: the publisher does not say (older servers)
            if "replicas" in pair:
                replicas = int(
                    _number(pair, "replicas", 1, 1e9, integer=True, where=f"{where}: {key}")
                )
            per_branch[branch] = BranchLatency(p50_ms, p95_ms, replicas)
        tail[model] = per_branch
    return tail


def parse_status(payload: bytes | str, topic: str) -> EdgeStatus:
    """Validate a status message and check it matches the server id in its topic."""
    topic_server_id = server_id_from_topic(topic)
    status = EdgeStatus.from_dict(decode_object(payload, "edge status"))
    if status.server_id != topic_server_id:
        raise BadTopicError(
            f"edge status for server {status.server_id!r} was published on {topic!r}"
        )
    return status


def offline_status(server_id: str, timestamp: float, reason: str) -> EdgeStatus:
    """The retained offline message (last will or clean shutdown)."""
    return EdgeStatus(server_id=server_id, online=False, timestamp=timestamp, reason=reason)


# --------------------------------------------------------------------- telemetry


@dataclass(frozen=True)
class TelemetrySummary:
    """One client's summary over its last ``frames`` frames.

    ``branch_mix``/``source_mix`` count frames per branch and per source (edge, local,
    dropped); ``latency_ms`` holds p50/p95/p99 of completed frames (empty if none);
    ``bandwidth_mbps`` holds the mean and last uplink estimate (empty if none).
    """

    client_id: str
    timestamp: float
    frames: int
    window_s: float
    branch_mix: dict[str, int]
    source_mix: dict[str, int]
    latency_ms: dict[str, float]
    sla_misses: int
    bandwidth_mbps: dict[str, float]
    drop_reasons: dict[str, int]
    sla_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        out: dict[str, Any] = {"v": SCHEMA_VERSION}
        out.update(
            client_id=self.client_id,
            timestamp=self.timestamp,
            frames=self.frames,
            window_s=self.window_s,
            branch_mix=dict(self.branch_mix),
            source_mix=dict(self.source_mix),
            latency_ms=dict(self.latency_ms),
            sla_misses=self.sla_misses,
            bandwidth_mbps=dict(self.bandwidth_mbps),
            drop_reasons=dict(self.drop_reasons),
        )
        if self.sla_ms is not None:
            out["sla_ms"] = self.sla_ms
        return out

    def encode(self) -> bytes:
        """UTF-8 JSON bytes for the telemetry topic."""
        return encode_object(self.to_dict())


def _counts(value: Any, key: str, *, where: str) -> dict[str, int]:
    counts = _mapping(value, key, where=where)
    return {
        name: int(_number(counts, name, 0, 1e12, integer=True, where=f"{where}: {key}"))
        for name in counts
    }


def _floats(value: Any, key: str, *, where: str) -> dict[str, float]:
    numbers = _mapping(value, key, where=where)
    return {name: _number(numbers, name, 0.0, 1e12, where=f"{where}: {key}") for name in numbers}


_TELEMETRY_REQUIRED = (
    "client_id",
    "timestamp",
    "frames",
    "window_s",
    "branch_mix",
    "source_mix",
    "latency_ms",
    "sla_misses",
    "bandwidth_mbps",
    "drop_reasons",
)


def parse_telemetry(payload: bytes | str, topic: str) -> TelemetrySummary:
    """Validate a telemetry summary and check it matches the client id in its topic."""
    where = "telemetry summary"
    topic_client_id = client_id_from_telemetry_topic(topic)
    obj = decode_object(payload, where)
    _require(obj, _TELEMETRY_REQUIRED, where=where)
    _check_version(obj, where=where, required=True)
    client_id = check_id("client_id", _string(obj, "client_id", where=where))
    if client_id != topic_client_id:
        raise BadTopicError(f"telemetry of client {client_id!r} was published on {topic!r}")
    sla_ms = _number(obj, "sla_ms", *SLA_MS_RANGE, where=where) if "sla_ms" in obj else None
    return TelemetrySummary(
        client_id=client_id,
        timestamp=_number(obj, "timestamp", 0.0, 1e11, where=where),
        frames=int(_number(obj, "frames", 0, 1e12, integer=True, where=where)),
        window_s=_number(obj, "window_s", 0.0, 1e9, where=where),
        branch_mix=_counts(obj["branch_mix"], "branch_mix", where=where),
        source_mix=_counts(obj["source_mix"], "source_mix", where=where),
        latency_ms=_floats(obj["latency_ms"], "latency_ms", where=where),
        sla_misses=int(_number(obj, "sla_misses", 0, 1e12, integer=True, where=where)),
        bandwidth_mbps=_floats(obj["bandwidth_mbps"], "bandwidth_mbps", where=where),
        drop_reasons=_counts(obj["drop_reasons"], "drop_reasons", where=where),
        sla_ms=sla_ms,
    )
