"""One broker-address spelling for every CLI: ``mqtt://HOST:PORT`` (``mqtts://`` = TLS)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from splitedge.control_plane.address import (
    BrokerAddress,
    BrokerAddressError,
    parse_broker_address,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt://broker", BrokerAddress("broker", 1883, tls=False)),
        ("mqtt://10.0.0.2:1884", BrokerAddress("10.0.0.2", 1884, tls=False)),
        ("mqtts://broker.lan", BrokerAddress("broker.lan", 8883, tls=True)),
        ("MQTTS://broker.lan:9000", BrokerAddress("broker.lan", 9000, tls=True)),
        ("mqtt://[::1]:1883/", BrokerAddress("::1", 1883, tls=False)),
        ("  mqtt://b:1  ", BrokerAddress("b", 1, tls=False)),
    ],
)
def test_broker_urls(text, expected, caplog):
    assert parse_broker_address(text, "--broker") == expected
    assert not caplog.records  # the new spelling says nothing


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (BrokerAddress("b", 1883), "mqtt://b:1883"),
        (BrokerAddress("b", 8883, tls=True), "mqtts://b:8883"),
        (BrokerAddress("::1", 1), "mqtt://[::1]:1"),
    ],
)
def test_the_canonical_spelling_parses_back(address, url):
    assert address.url == str(address) == url
    assert parse_broker_address(url) == address


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("broker:1884", "broker", 1884), ("broker", "broker", 1883), ("[::1]:80", "::1", 80)],
)
def test_the_old_bare_spelling_is_taken_with_one_deprecation_line(text, host, port, caplog):
    with caplog.at_level(logging.WARNING, logger="splitedge.control_plane.address"):
        address = parse_broker_address(text, "--mqtt")
    assert address == BrokerAddress(host, port, tls=False)
    assert [r.getMessage() for r in caplog.records] == [
        f"--mqtt {text!r}: a bare HOST:PORT is deprecated; write {address.url}"
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://b", "--broker 'http://b': scheme http:// is not mqtt:// or mqtts://"),
        ("mqtt://b:0", "--broker 'mqtt://b:0': port 0 is not 1-65535"),
        ("mqtt://b:70000", "--broker 'mqtt://b:70000': port 70000 is not 1-65535"),
        ("b:0", "--broker 'b:0': port 0 is not 1-65535"),
        ("mqtt://b:x", "--broker 'mqtt://b:x': expected mqtt://HOST:PORT (mqtts:// for TLS)"),
        ("mqtt://", "--broker 'mqtt://': expected mqtt://HOST:PORT"),
        ("mqtt://u@b:1", "--broker 'mqtt://u@b:1': expected mqtt://HOST:PORT"),
        ("a:b:c", "--broker 'a:b:c': expected mqtt://HOST:PORT"),
        ("", "--broker '': expected mqtt://HOST:PORT"),
    ],
)
def test_bad_addresses_are_refused_with_one_precise_line(text, message):
    with pytest.raises(BrokerAddressError) as info:
        parse_broker_address(text, "--broker")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_listener_may_ask_for_any_free_port():
    assert parse_broker_address("mqtt://0.0.0.0:0", any_port=True) == BrokerAddress("0.0.0.0", 0)


def test_importing_the_room_and_its_parser_needs_no_aiomqtt():
    code = (
        "import sys; sys.modules['aiomqtt'] = None\n"
        "import splitedge.control_plane\n"
        "from splitedge.control_plane.address import parse_broker_address\n"
        "assert parse_broker_address('mqtt://b').port == 1883\n"
        "try:\n    import splitedge.control_plane.link\nexcept ImportError:\n"
        "    print('link needs aiomqtt')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "link needs aiomqtt"


def test_broker_tool_refuses_a_bad_listen_address_in_one_line():
    for text, message in [
        (
            "mqtts://127.0.0.1:0",
            "--listen 'mqtts://127.0.0.1:0': the embedded broker speaks no TLS",
        ),
        ("tcp://127.0.0.1:0", "--listen 'tcp://127.0.0.1:0': scheme tcp:// is not mqtt://"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "splitedge.control_plane.broker", "--listen", text],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stderr.startswith(f"splitedge-broker: error: {message}"), done.stderr
        assert done.stderr.count("\n") == 1


def test_broker_tool_listens_where_told_and_says_so_in_the_same_spelling():
    pytest.importorskip("amqtt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "splitedge.control_plane.broker", "--listen", "mqtt://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "splitedge-broker listening on "
        assert line.startswith(prefix), line
        address = parse_broker_address(line.removeprefix(prefix))
        assert address.host == "127.0.0.1" and address.port > 0 and not address.tls
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
