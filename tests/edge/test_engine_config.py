"""The ``[engine]`` section and ``--engine`` / ``--ray-address``: defaults, overrides,
and one refusal per bad key, each a one-line error naming the key (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitedge.edge import config as config_module
from splitedge.edge.batcher import Batcher
from splitedge.edge.cli import main
from splitedge.edge.config import (
    BatchingConfig,
    ConfigError,
    EngineConfig,
    dump_config,
    load_config,
)
from splitedge.edge.engine import make_engine

MODEL = '[[models]]\nname = "echo"\n'


def _load(tmp_path: Path, table: str, **overrides):
    path = tmp_path / "edge.toml"
    path.write_text(f"[engine]\n{table}\n{MODEL}")
    return load_config(path, **overrides)


def _error(tmp_path: Path, table: str, **overrides) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, table, **overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_local_is_the_default_and_builds_the_in_process_batcher():
    engine = EngineConfig()
    assert engine.kind == "local"
    built = make_engine(engine, BatchingConfig(), lambda m, b, items: [])
    assert isinstance(built, Batcher) and built.replicas("m", "b") == 1


@pytest.fixture
def ray_present(monkeypatch):
    """Parse Ray settings as on a box with Ray installed (this one may have none)."""
    monkeypatch.setattr(config_module, "ray_installed", lambda: True)


def test_file_and_flags(tmp_path, ray_present):
    config = _load(
        tmp_path,
        'kind = "ray"\nmin_replicas = 1\nmax_replicas = 4\nnum_gpus = 0.5\n'
        "target_ongoing_requests = 3.0",
    )
    assert config.engine.kind == "ray" and config.engine.max_replicas == 4
    assert config.engine.num_gpus == 0.5
    # Flags override the file; the Ray keys may stay while --engine local runs it.
    config = _load(tmp_path, 'kind = "ray"\nmax_replicas = 4', engine="local")
    assert config.engine.kind == "local"
    config = _load(tmp_path, 'kind = "ray"', ray_address="ray://head.lan:10001")
    assert config.engine.ray_address == "ray://head.lan:10001"
    assert load_config(tmp_path / "edge.toml").engine.ray_address == ""
    # dump_config writes the section back equal.
    again = tmp_path / "again.toml"
    again.write_text(dump_config(config))
    assert load_config(again).engine == config.engine


@pytest.mark.parametrize(
    ("table", "overrides", "expected"),
    [
        ('kind = "kubernetes"', {}, "engine.kind: 'kubernetes' is not one of local, ray"),
        ("", {"engine": "dask"}, "engine.kind: 'dask' is not one of local, ray"),
        (
            'kind = "ray"\nmin_replicas = 3\nmax_replicas = 2',
            {},
            "engine.max_replicas: 2 is under engine.min_replicas (3)",
        ),
        ('kind = "ray"\nmin_replicas = 0', {}, "engine.min_replicas: must be at least 1"),
        (
            'kind = "ray"\nray_address = "http://head:8265"',
            {},
            "engine.ray_address: 'http://head:8265' is not auto, ray://HOST:PORT or HOST:PORT",
        ),
        (
            'kind = "ray"',
            {"ray_address": "ray://head"},
            "engine.ray_address: 'ray://head' is not auto",
        ),
        ('kind = "ray"\nray_address = "head:99999"', {}, "engine.ray_address: 'head:99999'"),
        ('kind = "ray"\nnum_gpus = -1.0', {}, "engine.num_gpus: -1.0 is not a finite number"),
        ('kind = "ray"\nretries = -1', {}, "engine.retries: must be >= 0"),
        ('kind = "ray"\nreplicas = 2', {}, "engine.replicas: unknown key"),
        ('kind = "ray"\nmax_replicas = "2"', {}, "engine.max_replicas: expected an integer"),
        (
            'kind = "ray"\nray_address = "auto"\nlocal_num_cpus = 2',
            {},
            "engine.local_num_cpus/local_num_gpus: size the local Ray instance only",
        ),
        (
            'kind = "ray"\nmin_replicas = 2\nmax_replicas = 4\ninitial_replicas = 5',
            {},
            "engine.initial_replicas: 5 is not 0 or within min_replicas..max_replicas",
        ),
    ],
)
def test_bad_engine_settings_are_refused_naming_the_key(tmp_path, table, overrides, expected):
    assert expected in _error(tmp_path, table, **overrides)


def test_ray_settings_without_ray_installed_are_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(config_module, "ray_installed", lambda: False)
    message = _error(tmp_path, 'kind = "ray"\nmax_replicas = 4')
    assert message == (
        "engine.kind: ray needs Ray Serve, which is not installed: "
        "pip install 'splitedge[edge-ray]'"
    )
    # The same file with --engine local loads: the Ray keys wait for a box that has Ray.
    assert _load(tmp_path, 'kind = "ray"\nmax_replicas = 4', engine="local").engine.kind == "local"


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_unknown_engine_exits_2_in_one_line(capsys):
    err = _cli_error(capsys, ["serve", "--port", "0", "--model", "echo", "--engine", "spark"])
    assert err == "splitedge-edge: error: engine.kind: 'spark' is not one of local, ray"


def test_cli_bad_ray_address_exits_2_in_one_line(capsys):
    argv = ["serve", "--port", "0", "--model", "echo", "--engine", "ray", "--ray-address", "x"]
    err = _cli_error(capsys, argv)
    assert err.startswith("splitedge-edge: error: engine.ray_address: 'x' is not auto")


def test_cli_min_over_max_replicas_exits_2_in_one_line(capsys, tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text('[engine]\nkind = "ray"\nmin_replicas = 4\nmax_replicas = 1\n')
    err = _cli_error(capsys, ["serve", "--config", str(path), "--model", "echo"])
    assert "engine.max_replicas: 1 is under engine.min_replicas (4)" in err
