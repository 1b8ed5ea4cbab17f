"""The [mqtt] config section, its CLI flags, and the presence helpers: one test per bad input."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from splitedge.edge.cli import _broker_address, _broker_overrides, build_parser, main
from splitedge.edge.config import (
    BatchingConfig,
    ConfigError,
    ModelConfig,
    MqttConfig,
    load_config,
    parse_host_port,
)
from splitedge.edge.presence import advertise_address, default_server_id, status_figures
from splitedge.edge.registry import ModelRegistry
from splitedge.edge.service import EdgeService
from splitedge.proto.codec import CodecLimits
from splitedge.proto.control import EdgeStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "edge.example.toml"
MODEL = '[[models]]\nname = "echo"\n'
ECHO = [ModelConfig("echo")]


def _error(tmp_path: Path, mqtt: str, **overrides) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "edge.toml"
    path.write_text(MODEL + "[mqtt]\n" + mqtt)
    with pytest.raises(ConfigError) as info:
        load_config(path, **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_mqtt_is_off_by_default_and_the_example_documents_every_key():
    config = load_config(EXAMPLE)
    assert config.mqtt == MqttConfig() and not config.mqtt.enabled
    text = EXAMPLE.read_text()
    section = text[text.index("[mqtt]") :]
    for f in dataclasses.fields(MqttConfig):
        assert re.search(rf"^#? ?{f.name} = ", section, re.MULTILINE), f.name


def test_file_values_resolve_paths_and_flags_override(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    path = tmp_path / "edge.toml"
    path.write_text(
        MODEL + '[mqtt]\nhost = "broker"\nport = 8883\ntls_ca = "ca.pem"\n'
        'username = "edge"\npassword = "pw"\ninterval_s = 2\n'
    )
    config = load_config(path, mqtt_port=1884, server_id="edge-7", advertise_address="10.0.0.5:1")
    m = config.mqtt
    assert m.enabled and (m.host, m.port) == ("broker", 1884)
    assert m.tls_ca == tmp_path / "ca.pem"
    assert m.interval_s == 2.0 and isinstance(m.interval_s, float)
    assert (m.server_id, m.advertise_address) == ("edge-7", "10.0.0.5:1")
    assert "pw" not in repr(m)  # the password stays out of logs


@pytest.mark.parametrize(
    ("mqtt", "overrides", "expected"),
    [
        ('host = "b"\nport = 0\n', {}, "mqtt.port: 0 is not a port"),
        ('host = "b"\ninterval_s = 0\n', {}, "mqtt.interval_s: 0.0 must be a finite number > 0"),
        ('host = "b"\ninterval_s = inf\n', {}, "mqtt.interval_s: inf must be a finite number"),
        ('host = "b"\nkeepalive_s = 0\n', {}, "mqtt.keepalive_s: must be at least 1"),
        ('host = "b"\npassword = "x"\n', {}, "mqtt.password: given without mqtt.username"),
        ('host = "b"\ntls_cert = "c.pem"\n', {}, "mqtt.tls_cert/tls_key: give both or neither"),
        ('host = "b"\ntls_ca = "nope.pem"\n', {}, "mqtt.tls_ca: file"),
        ('host = "b"\nserver_id = "a/b"\n', {}, "mqtt.server_id: 'a/b' is not a valid id"),
        ('host = "b"\nadvertise_address = "x"\n', {}, "mqtt.advertise_address 'x': expected"),
        ('host = "b"\nport = "1883"\n', {}, "mqtt.port: expected an integer"),
        ('host = "b"\nqos = 1\n', {}, "mqtt.qos: unknown key"),
        ('username = "u"\n', {}, "mqtt.username: set, but mqtt.host is empty"),
        ("", {"server_id": "a"}, "mqtt.server_id: set, but mqtt.host is empty"),
    ],
)
def test_bad_mqtt_settings_are_refused_with_the_key(tmp_path, mqtt, overrides, expected):
    assert _error(tmp_path, mqtt, **overrides).startswith(expected)


def test_a_broker_ca_that_is_not_pem_is_refused_like_the_servers(tmp_path):
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a")
    ca = str(tmp_path / "ca.der")
    assert _error(tmp_path, 'host = "b"\ntls_ca = "ca.der"\n') == (
        f"mqtt.tls_ca: {ca!r} is not a PEM file (no -----BEGIN line)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("broker:1883", ("broker", 1883)), ("[::1]:80", ("::1", 80)), ("broker", ("broker", 1883))],
)
def test_host_port_parsing(text, expected):
    assert parse_host_port(text, "--mqtt", default_port=1883) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("broker", "expected HOST:PORT"), ("b:0", "port 0 is not"), ("a:b:c", "expected HOST:PORT")],
)
def test_bad_host_port(text, reason):
    with pytest.raises(ConfigError, match=reason):
        parse_host_port(text, "--advertise")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--mqtt", "broker:99999"], "--mqtt 'broker:99999': port 99999 is not 1-65535"),
        (["--broker", "mqtt://b:0"], "--broker 'mqtt://b:0': port 0 is not 1-65535"),
        (["--broker", "http://b:1"], "--broker 'http://b:1': scheme http:// is not mqtt://"),
        (["--broker", "mqtt://b:x"], "--broker 'mqtt://b:x': expected mqtt://HOST:PORT"),
        (["--mqtt", "b:1", "--server-id", "a b"], "mqtt.server_id: 'a b' is not a valid id"),
        (["--mqtt-username", "u"], "mqtt.username: set, but mqtt.host is empty"),
        (["--mqtt", "b:1", "--advertise", "nohost"], "mqtt.advertise_address 'nohost'"),
        (["--mqtt", "b:1", "--mqtt-tls-ca", "/no/ca.pem"], "mqtt.tls_ca: file '/no/ca.pem'"),
        (["--mqtt-key-file", "/no/fleet.key"], "mqtt.key_file: set, but mqtt.host is empty"),
        (["--mqtt", "b:1", "--mqtt-key-file", "/no/k"], "mqtt.key_file: cannot read '/no/k'"),
    ],
)
def test_cli_flag_errors_exit_2_with_one_line(capsys, flags, expected):
    assert main(["serve", "--model", "echo", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"splitedge-edge: error: {expected}")
    assert err.count("\n") == 1


def test_a_short_fleet_key_is_refused_and_a_good_one_loads(tmp_path, capsys):
    short = tmp_path / "short.key"
    short.write_text("abc\n")
    assert main(["serve", "--model", "echo", "--mqtt", "b:1", "--mqtt-key-file", str(short)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.key_file: " in err and "3 bytes, need at least 16" in err
    assert err.count("\n") == 1
    good = tmp_path / "fleet.key"
    good.write_text("0123456789abcdef0123\n")
    config = load_config(models=ECHO, mqtt_host="b", mqtt_key_file=str(good))
    assert config.mqtt.key_file == good


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--broker", "mqtt://b:1884"], ("b", 1884, False)),
        (["--broker", "mqtts://b"], ("b", 8883, True)),
        (["--mqtt", "mqtt://[::1]:1"], ("::1", 1, False)),
        (["--mqtt", "b:1885"], ("b", 1885, False)),  # the old spelling (one deprecation line)
    ],
)
def test_both_broker_flags_take_the_one_spelling(flags, expected):
    args = build_parser().parse_args(["serve", "--model", "echo", *flags])
    address = _broker_address(args)
    assert address is not None and (address.host, address.port, address.tls) == expected
    mqtt = load_config(models=ECHO, **_broker_overrides(address)).mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == expected


@pytest.mark.parametrize(("url", "tls"), [("mqtt://b:1884", False), ("mqtts://b:1884", True)])
def test_the_broker_address_scheme_overrides_the_config_files_tls(tmp_path, url, tls):
    config = tmp_path / "edge.toml"
    config.write_text('[mqtt]\nhost = "old"\nport = 1\ntls = true\n')
    args = build_parser().parse_args(["serve", "--model", "echo", "--broker", url])
    mqtt = load_config(config, models=ECHO, **_broker_overrides(_broker_address(args))).mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("b", 1884, tls)
    assert load_config(config, models=ECHO).mqtt.tls  # without --broker, the file's


def test_broker_and_its_older_name_are_exclusive(capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", "echo", "--broker", "mqtt://b", "--mqtt", "mqtt://b"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ------------------------------------------------------------------ presence helpers


def test_default_server_id_fits_the_topic_alphabet():
    assert default_server_id(50051, "edge.lab") == "edge.lab-50051"
    squeezed = default_server_id(7, "my host/with+odd#chars" + "x" * 80)
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", squeezed) and squeezed.endswith("-7")


def test_advertise_address_rules():
    assert advertise_address("0.0.0.0", 5, "edge.lan:6000") == "edge.lan:6000"
    assert advertise_address("10.1.2.3", 5) == "10.1.2.3:5"
    # A wildcard bind becomes the local address on the route to the broker.
    assert advertise_address("0.0.0.0", 5, broker_host="127.0.0.1") == "127.0.0.1:5"
    assert advertise_address("::", 5) == "127.0.0.1:5"
    assert advertise_address("::1", 5) == "[::1]:5"


async def test_status_figures_validate_as_an_edge_status():
    registry = ModelRegistry.from_config(ECHO, CodecLimits(), device="cpu")
    service = EdgeService(registry, BatchingConfig(queue_capacity=16), device="cpu")
    figures = status_figures(service, "10.0.0.5:50051")
    status = EdgeStatus.from_dict(
        {**figures, "v": 1, "server_id": "e", "online": True, "timestamp": 1.0}
    )
    assert status.address == "10.0.0.5:50051"
    assert status.models == {"echo": ("split@x", "offload-jpeg90")}
    assert (status.queue_depth, status.queue_capacity) == (0, 16)
    assert status.tail_ms == {}  # nothing measured yet: no made-up 0 ms
    service.stats.record_batch("echo", "split@x", tail_ms=4.0, batch_size=2, start=0.0, end=0.1)
    measured = status_figures(service, "x:1")["tail_ms"]
    # The local engine runs the tail in-process: one replica, as the Status RPC says.
    assert measured == {"echo": {"split@x": {"p50": 4.0, "p95": 4.0, "replicas": 1}}}
