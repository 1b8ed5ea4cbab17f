"""``splitedge-client run --config client.toml``: the example parses, flags override the
file, and a bad key or value is one line naming the file and the key (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitedge.mobile_client.cli import main, parse_args
from splitedge.mobile_client.config import ClientConfigError, load_client_config

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "client.example.toml"


def test_the_example_config_parses_to_the_flags_it_documents():
    settings = load_client_config(EXAMPLE)
    assert settings["server"] == "127.0.0.1:50051"
    assert settings["branch"] == "split@features.9"
    assert settings["model"] == "fasterrcnn_mobilenet_v3_large_fpn"
    assert settings["config_model_options"] == {
        "split_points": ["features.9"],
        "min_size": 160,
        "max_size": 160,
    }
    assert settings["size"] == (320, 240) and settings["no_local_fallback"] is False
    assert settings["compression"] == "auto" and settings["telemetry_every"] == 30
    # every key the example sets is one `run` has: parsing with it changes nothing else
    args = parse_args(["run", "--config", str(EXAMPLE)])
    for dest, value in settings.items():
        assert getattr(args, dest) == value, dest


def test_flags_override_the_file(tmp_path: Path):
    config = tmp_path / "client.toml"
    config.write_text(
        'server = "edge.lan:50051"\nbranch = "offload-png"\nfps = 5\n'
        'local_fallback = false\n[model]\nname = "echo"\n'
        "options = { tail_delay_ms = 1, scale = 2 }\n"
        '[tls]\ntoken_file = "device.token"\n'
    )
    args = parse_args(["run", "--config", str(config)])
    assert (args.server, args.branch, args.fps, args.model) == (
        "edge.lan:50051",
        "offload-png",
        5.0,
        "echo",
    )
    assert args.no_local_fallback is True
    assert args.token_file == str(tmp_path / "device.token")  # relative to the file
    args = parse_args(
        [
            *("run", "--config", str(config), "--discover", "mqtt://b:1883", "--fps", "1"),
            *("--branch", "local", "--token", "t"),
        ]
    )
    assert args.server is None and args.discover == "mqtt://b:1883"
    assert (args.fps, args.branch, args.token, args.token_file) == (1.0, "local", "t", None)


def test_model_options_from_the_file_merge_under_the_flags(tmp_path: Path, capsys):
    # A bad option given by flag wins over the file's, and reaches the builder's check.
    config = tmp_path / "client.toml"
    config.write_text(
        'server = "127.0.0.1:1"\nbranch = "offload-jpeg90"\nbackend = "torch"\n'
        '[model]\nname = "echo"\noptions = { tail_delay_ms = 1 }\n'
    )
    assert main(["run", "--config", str(config), "--model-option", "tail_delay_ms=-1"]) == 2
    assert "tail_delay_ms must be a finite number >= 0, got -1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("srever = 'x'", "srever: unknown key"),
        ("server = 5", "server: expected a non-empty string, got 5"),
        ("server = 'a:1'\ndiscover = 'mqtt://b'", "discover: give server or discover, not both"),
        ("fps = 'fast'", "fps: expected a number >= 0, got 'fast'"),
        ("frames = -1", "frames: expected an integer in [0, 1000000000], got -1"),
        ("in_flight = 0", "in_flight: expected an integer in [1, 1000000000], got 0"),
        ("bits = 3", "bits: expected one of 0, 2, 4, 6, 8, got 3"),
        ("backend = 'gpu'", "backend: expected one of auto, torch, onnx, none, got 'gpu'"),
        ("size = '320by240'", "size: expected WIDTHxHEIGHT such as 320x240, got '320by240'"),
        ("local_fallback = 'no'", "local_fallback: expected a boolean, got 'no'"),
        ("model = 'echo'", "model: expected a table, got str"),
        ("[model]\nname = 'echo'\noptions = 3", "model.options: expected a table, got 3"),
        ("[model]\nnmae = 'echo'", "model.nmae: unknown key"),
        ("[tls]\nca = 7", "tls.ca: expected a non-empty string, got 7"),
        ("[tls]\ntoken = 'x'", "tls.token: unknown key"),
        ("[mqtt]\ntelemetry_every = 'often'", "mqtt.telemetry_every: expected an integer, got"),
        ("[mqtt]\nhost = 'b'", "mqtt.host: unknown key"),
        ("server = ", "is not valid TOML"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_the_file_and_key(tmp_path, capsys, text, message):
    config = tmp_path / "client.toml"
    config.write_text(text + "\n")
    with pytest.raises(ClientConfigError, match=r"client\.toml"):
        load_client_config(config)
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splitedge-client: error: ") and err.count("\n") == 1, err
    assert str(config) in err and message in err, err


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.toml' does not exist" in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "echo", "--branch", "local"], "give --server HOST:PORT or --discover"),
        (["--server", "127.0.0.1:1", "--branch", "local"], "--model is required"),
        (["--server", "127.0.0.1:1", "--model", "echo"], "--branch is required"),
    ],
)
def test_without_a_config_server_model_and_branch_are_still_required(capsys, argv, message):
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"splitedge-client: error: {message}") and err.count("\n") == 1, err
