"""``splitedge-client run --config client.toml``: the device's settings in one file.

The file mirrors the edge's (``configs/edge.example.toml``): the ``[model]`` table takes
the same ``name`` and ``options`` as an edge ``[[models]]`` entry, so a model built with
options on the edge (``split_points = ["features.9"]``) is built with the same ones
here. :func:`load_client_config` reads it once and returns ``run``'s settings keyed by
their argparse ``dest``; the CLI installs them as defaults, so every flag given on the
command line overrides the file. Every key is checked for name and type; a bad one is a
one-line :class:`ClientConfigError` naming the file and the dotted key
(``client.toml: mqtt.telemetry_every: expected an integer, got 'often'``).
``configs/client.example.toml`` documents every key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from splitedge.mobile_client.compression import COMPRESSION_MODES
from splitedge.proto.options import FormatError, load_toml, parse_size
from splitedge.proto.schema import Section

__all__ = ["BACKENDS", "ClientConfigError", "load_client_config"]

BACKENDS = ("auto", "torch", "onnx", "none")
BITS = (0, 2, 4, 6, 8)


class ClientConfigError(ValueError):
    """A bad client config file or key; one line naming the file and the dotted key."""


def load_client_config(path: str | Path) -> dict[str, Any]:
    """Read ``path`` -> ``{argparse dest: value}`` for ``splitedge-client run``.

    Relative paths in the file resolve from the file's folder (as on the edge). Keys
    left out are absent from the result, so the flags' own defaults hold.
    """
    try:
        data = load_toml(path, "--config")
    except FormatError as exc:
        raise ClientConfigError(str(exc)) from None
    base = Path(path).parent
    top = Section(data, source=str(path), error=ClientConfigError)
    out: dict[str, Any] = {}

    def put(dest: str, section: Section, key: str, read: Any) -> None:
        if section.has(key):
            out[dest] = read(key)
        else:
            section.raw(key)  # known, absent: the flag's default holds

    def path_of(section: Section) -> Any:
        return lambda key: str(base / Path(section.string(key, required=True)).expanduser())

    def number(section: Section, minimum: float = 0.0) -> Any:
        return lambda key: section.number(key, minimum=minimum)

    # where: the edge server, or the broker to discover one through
    put("server", top, "server", lambda k: top.string(k, required=True))
    put("discover", top, "discover", lambda k: top.string(k, required=True))
    if "server" in out and "discover" in out:
        raise top.fail("discover", "give server or discover, not both")
    put("branch", top, "branch", lambda k: top.string(k, required=True))

    model = top.section("model")
    put("model", model, "name", lambda k: model.string(k, required=True))
    put("config_model_options", model, "options", lambda k: dict(model.get(k, dict)))
    model.finish()

    put("source", top, "source", lambda k: top.string(k, required=True))
    put("frames", top, "frames", lambda k: top.integer(k))
    put("size", top, "size", lambda k: _size(top, k))
    put("fps", top, "fps", number(top))
    put("deadline_ms", top, "deadline_ms", number(top))
    put("bits", top, "bits", lambda k: top.choice(k, BITS))
    put("zstd_level", top, "zstd_level", lambda k: top.integer(k, minimum=-(2**17), maximum=22))
    put("compression", top, "compression", lambda k: top.choice(k, COMPRESSION_MODES))
    put("in_flight", top, "in_flight", lambda k: top.integer(k, minimum=1))
    put("backend", top, "backend", lambda k: top.choice(k, BACKENDS))
    put("threads", top, "threads", lambda k: top.integer(k, minimum=1))
    put("head_cache", top, "head_cache", path_of(top))
    put("no_local_fallback", top, "local_fallback", lambda k: not top.get(k, bool))
    put("prefilter", top, "prefilter", lambda k: _prefilter(top, k, base))
    put("profile", top, "profile", lambda k: Path(path_of(top)(k)))
    put("latency_weight", top, "latency_weight", number(top))
    put("out", top, "out", lambda k: _out(top, k, base))

    tls = top.section("tls")
    for key in ("ca", "cert", "key"):
        put(f"tls_{key}", tls, key, path_of(tls))
    put("token_file", tls, "token_file", path_of(tls))
    tls.finish()

    mqtt = top.section("mqtt")
    put("broker", mqtt, "broker", lambda k: mqtt.string(k, required=True))
    put("client_id", mqtt, "client_id", lambda k: mqtt.string(k, required=True))
    put("telemetry_every", mqtt, "telemetry_every", lambda k: mqtt.integer(k))
    put("discover_timeout_s", mqtt, "discover_timeout_s", number(mqtt, 1e-3))
    put("mqtt_username", mqtt, "username", lambda k: mqtt.string(k, required=True))
    put("mqtt_password", mqtt, "password", lambda k: mqtt.string(k))
    put("mqtt_tls_ca", mqtt, "tls_ca", path_of(mqtt))
    put("mqtt_key_file", mqtt, "key_file", path_of(mqtt))
    mqtt.finish()
    top.finish()
    return out


def _size(section: Section, key: str) -> tuple[int, int]:
    text = section.string(key, required=True)
    try:
        return parse_size(text, section.key(key))
    except FormatError as exc:
        raise section.fail(key, exc.detail) from None


def _prefilter(section: Section, key: str, base: Path) -> str:
    """A checkpoint path (relative to the file) or ``zoo:<entry>``, kept as it is."""
    spec = section.string(key, required=True)
    return spec if spec.startswith("zoo:") else str(base / Path(spec).expanduser())


def _out(section: Section, key: str, base: Path) -> str:
    """The JSON-lines file (relative to the config file), or ``-`` for stdout."""
    spec = section.string(key, required=True)
    return spec if spec == "-" else str(base / Path(spec).expanduser())
