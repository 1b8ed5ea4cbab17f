"""Config loading: defaults, overrides, and one test per kind of bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from splitedge.edge.cli import main
from splitedge.edge.config import (
    BatchingConfig,
    ConfigError,
    DepthConfig,
    EdgeConfig,
    ModelConfig,
    MqttConfig,
    ServerConfig,
    dump_config,
    load_config,
    parse_model_spec,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "edge.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str, **overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


MODEL = '[[models]]\nname = "echo"\n'


def test_example_config_loads_and_matches_the_defaults_it_documents():
    config = load_config(EXAMPLE)
    assert config.server.port == 50051
    assert config.batching.max_batch_size == 8
    assert [m.name for m in config.models] == ["echo"]
    assert config.models[0].options == {"tail_delay_ms": 0.0}


def test_file_values_and_cli_overrides(tmp_path):
    path = _write(
        tmp_path,
        MODEL + "[server]\nport = 6000\ngrace_s = 2\n[batching]\nmax_queue_delay_ms = 3\n",
    )
    config = load_config(path, port=0, device="cpu", models=[ModelConfig("echo", {"x": 1})])
    assert config.server.port == 0
    assert config.server.grace_s == 2.0 and isinstance(config.server.grace_s, float)
    assert config.batching.max_queue_delay_ms == 3.0
    assert config.device == "cpu"
    assert config.models == (ModelConfig("echo", {"x": 1}),)


def test_unknown_top_level_key(tmp_path):
    assert _error(tmp_path, "colour = 3\n" + MODEL).startswith("colour: unknown key")


def test_unknown_section_key(tmp_path):
    message = _error(tmp_path, MODEL + "[batching]\nmax_batch = 3\n")
    assert message.startswith("batching.max_batch: unknown key; known keys: max_batch_size")


def test_unknown_model_key(tmp_path):
    message = _error(tmp_path, '[[models]]\nname = "echo"\nweights = "w.pt"\n')
    assert message.startswith("models[0].weights: unknown key")


def test_wrong_type(tmp_path):
    assert _error(tmp_path, MODEL + '[server]\nport = "x"\n') == (
        "server.port: expected an integer, got 'x'"
    )


def test_boolean_is_not_an_integer(tmp_path):
    message = _error(tmp_path, MODEL + "[batching]\nqueue_capacity = true\n")
    assert message == "batching.queue_capacity: expected an integer, got True"


def test_section_that_is_not_a_table(tmp_path):
    assert _error(tmp_path, "limits = 3\n" + MODEL) == "limits: expected a table, got 3"


def test_out_of_range_value(tmp_path):
    assert _error(tmp_path, MODEL + "[server]\nport = 70000\n").startswith("server.port: 70000")


def test_negative_delay(tmp_path):
    message = _error(tmp_path, MODEL + "[batching]\nmax_queue_delay_ms = -1\n")
    assert message.startswith("batching.max_queue_delay_ms:")


def test_negative_inline_tail_threshold(tmp_path):
    message = _error(tmp_path, MODEL + "[batching]\ntail_inline_below_ms = -0.5\n")
    assert message == "batching.tail_inline_below_ms: must not be negative"


def test_bad_device(tmp_path):
    assert _error(tmp_path, 'device = "tpu"\n' + MODEL).startswith("device: 'tpu'")


def test_missing_model_name(tmp_path):
    assert _error(tmp_path, "[[models]]\noptions = {}\n") == "models[0].name: missing"


def test_no_models(tmp_path):
    assert _error(tmp_path, "").startswith("models: no model configured")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml(tmp_path):
    assert "is not valid TOML" in _error(tmp_path, "[server\n")


def test_missing_tls_file_is_resolved_from_the_config_dir(tmp_path):
    message = _error(tmp_path, MODEL + '[server]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n')
    assert message == f"server.tls_cert: file {str(tmp_path / 'c.pem')!r} does not exist"


def test_a_tls_file_that_is_not_pem_is_refused_before_binding(tmp_path):
    (tmp_path / "c.pem").write_text("junk")
    (tmp_path / "k.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    message = _error(tmp_path, MODEL + '[server]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n')
    cert = str(tmp_path / "c.pem")
    assert message == f"server.tls_cert: {cert!r} is not a PEM file (no -----BEGIN line)"


def test_a_config_that_is_not_text_is_not_toml(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[server]\nmax_message_bytes = 9999999999999\n",
            "server.max_message_bytes: 9999999999999 is not 1024-2147483647",
        ),
        ("[server]\ngrace_s = nan\n", "server.grace_s: nan is not a finite number >= 0"),
        ("[server]\ngrace_s = inf\n", "server.grace_s: inf is not a finite number >= 0"),
        (
            "[batching]\nmax_queue_delay_ms = inf\n",
            "batching.max_queue_delay_ms: must be a finite number >= 0",
        ),
    ],
)
def test_server_values_grpc_or_shutdown_cannot_take(tmp_path, text, expected):
    assert _error(tmp_path, MODEL + text).startswith(expected)


def test_tls_cert_without_key(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    message = _error(tmp_path, MODEL + '[server]\ntls_cert = "c.pem"\n')
    assert message == "server.tls_cert/tls_key: give both or neither"


def test_model_spec_parsing():
    spec = parse_model_spec("echo:tail_delay_ms=20,serve_as=e2,scale=0.5,fast=true")
    assert spec == ModelConfig("echo", {"tail_delay_ms": 20, "scale": 0.5, "fast": True}, "e2")
    assert parse_model_spec("echo") == ModelConfig("echo", {})
    # Zoo entries keep their prefix; options follow the entry name.
    assert parse_model_spec("zoo:teacher-frcnn-small") == ModelConfig("zoo:teacher-frcnn-small", {})
    assert parse_model_spec("zoo:t:score_thresh=0.3") == ModelConfig("zoo:t", {"score_thresh": 0.3})


def test_model_spec_values_are_typed_as_every_key_value_option():
    spec = parse_model_spec('echo:q=[90,50],o={"a":1,"b":[2]},name=x,off=FALSE')
    assert spec.options == {"q": [90, 50], "o": {"a": 1, "b": [2]}, "name": "x", "off": False}
    with pytest.raises(ConfigError, match=r"^--model 'echo:q=\[90': option q: not valid JSON \("):
        parse_model_spec("echo:q=[90")


def test_a_list_option_in_a_model_spec_is_written_with_semicolons():
    # Commas separate a spec's options, so a list is a;b (or JSON); a single value is
    # left as it is, for the builder to make a one-item list (models.registry.typed_options).
    spec = parse_model_spec(
        "fasterrcnn_mobilenet_v3_large_fpn:split_points=features.9;features.12,min_size=160"
    )
    assert spec.options == {"split_points": ["features.9", "features.12"], "min_size": 160}
    assert parse_model_spec("x:split_points=features.9").options == {"split_points": "features.9"}


def test_model_input_limits_from_the_file_and_the_model_spec(tmp_path):
    path = _write(
        tmp_path, '[[models]]\nname = "echo"\nmax_input_side = 640\nmax_input_pixels = 300000\n'
    )
    (model,) = load_config(path).models
    assert (model.max_input_side, model.max_input_pixels) == (640, 300000)
    spec = parse_model_spec("echo:max_input_side=320,tail_delay_ms=1")
    assert spec == ModelConfig("echo", {"tail_delay_ms": 1}, max_input_side=320)
    assert ModelConfig("echo").max_input_side == 4096  # the documented default
    with pytest.raises(ConfigError, match=r"^models\[0\]\.max_input_side: expected an integer"):
        load_config(_write(tmp_path, '[[models]]\nname = "echo"\nmax_input_side = 0\n'))
    with pytest.raises(ConfigError, match="option 'max_input_pixels': expected an integer >= 1"):
        parse_model_spec("echo:max_input_pixels=big")


def test_model_spec_without_equals():
    expected = "--model 'echo:fast': option: expected KEY=VALUE, got 'fast'"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        parse_model_spec("echo:fast")


# ---------------------------------------------------------------- CLI exits


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_missing_config_exits_2(capsys, tmp_path):
    err = _cli_error(capsys, ["serve", "--config", str(tmp_path / "nope.toml")])
    assert err.startswith("splitedge-edge: error: config file") and "does not exist" in err


def test_cli_unknown_model_exits_2(capsys):
    err = _cli_error(capsys, ["serve", "--port", "0", "--model", "no-such-model"])
    assert "models[0].name: unknown model 'no-such-model'" in err


def test_cli_bad_model_option_exits_2(capsys):
    err = _cli_error(capsys, ["serve", "--port", "0", "--model", "echo:tail_delay=3"])
    assert "models[0] (echo): bad options" in err


def test_cli_bad_flag_value_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "abc"])
    assert info.value.code == 2


def test_cli_echo_tail_delay_must_be_finite(capsys):
    err = _cli_error(capsys, ["serve", "--port", "0", "--model", "echo:tail_delay_ms=nan"])
    assert "tail_delay_ms must be a finite number >= 0, got nan" in err


def test_cli_unreadable_depth_prior_exits_2(capsys, tmp_path):
    prior = tmp_path / "empty.pt"
    prior.write_bytes(b"")
    argv = ["serve", "--port", "0", "--host", "127.0.0.1", "--depth", "--depth-prior", str(prior)]
    err = _cli_error(capsys, argv)
    assert err.startswith("splitedge-edge: error:") and "empty.pt" in err


def test_cli_list_models(capsys):
    assert main(["list-models"]) == 0
    assert "echo" in capsys.readouterr().out.split()


# ---------------------------------------------------------------- writing


def _configs(tmp_path: Path) -> list[EdgeConfig]:
    pem = tmp_path / "c.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    return [
        EdgeConfig(models=(ModelConfig("echo"),)),
        EdgeConfig(
            server=ServerConfig(host="::", port=0, grace_s=2.5, tls_cert=pem, tls_key=pem),
            batching=BatchingConfig(max_batch_size=4, max_queue_delay_ms=0.0, tail_workers=2),
            mqtt=MqttConfig(host="broker.lan", username="u", password='p"w\\', server_id="e-1"),
            depth=DepthConfig(enabled=True, focus_measure="sml", confidence_threshold=0.25),
            device="cpu",
            metrics_port=0,
            log_level="DEBUG",
            models=(
                ModelConfig("echo", {"tail_delay_ms": 2.5, "q": [90, 50], "o": {"a b": True}}),
                ModelConfig("zoo:teacher-frcnn-small", {}, serve_as="teacher", max_input_side=1024),
            ),
        ),
    ]


def test_a_dumped_config_loads_back_equal(tmp_path):
    for config in _configs(tmp_path):
        path = _write(tmp_path, dump_config(config))
        assert load_config(path) == config


def test_a_value_toml_cannot_hold_is_refused_by_its_key():
    config = EdgeConfig(models=(ModelConfig("echo", {"q": [90, None]}),))
    with pytest.raises(
        ConfigError, match=r"^models\[0\]\.options\.q\[1\]: cannot write None to TOML$"
    ):
        dump_config(config)


def test_the_dumped_file_reads_the_same_from_another_folder(tmp_path):
    config = _configs(tmp_path)[1]
    other = tmp_path / "elsewhere"
    other.mkdir()
    path = other / "edge.toml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_the_simulation_runner_writes_its_edge_config_with_the_writer(tmp_path):
    from types import SimpleNamespace

    from splitedge.simulations.runner import edge_config_text
    from splitedge.simulations.scenario import EdgeSettings

    scenario = SimpleNamespace(edge=EdgeSettings(max_batch_size=3, tail_workers=2))
    text = edge_config_text(scenario)
    config = load_config(_write(tmp_path, text), models=[ModelConfig("e")])
    assert config.batching == BatchingConfig(
        max_batch_size=3, max_queue_delay_ms=2.0, queue_capacity=64, tail_workers=2
    )
    assert config.server == ServerConfig() and config.mqtt == MqttConfig()
