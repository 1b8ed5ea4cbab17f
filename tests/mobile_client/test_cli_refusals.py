"""splitedge-client refuses bad flags with one line and exit 2, before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitedge.mobile_client.cli import main

RUN = ["run", "--model", "echo", "--branch", "offload-jpeg90", "--backend", "none"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--server", "127.0.0.1:99999"], "--server '127.0.0.1:99999': port 99999 is not 1-65535"),
        (["--server", "127.0.0.1"], "--server '127.0.0.1': expected HOST:PORT, e.g. edge.lan:5"),
        (["--in-flight", "0"], "--in-flight must be at least 1, got 0"),
        (["--fps", "nan"], "--fps must be a finite number >= 0, got nan"),
        (["--fps", "-5"], "--fps must be a finite number >= 0, got -5.0"),
        (["--deadline-ms", "inf"], "--deadline-ms must be a finite number >= 0, got inf"),
        (["--frames", "-1"], "--frames must be >= 0, got -1"),
        (["--zstd-level", "99"], "zstd_level 99 outside [-131072, 22]"),
        (["--tls-ca", "/no/such/ca.pem"], "--tls-ca: '/no/such/ca.pem' does not exist"),
    ],
)
def test_bad_run_flags_exit_2_with_one_line(capsys, flags, expected):
    server = [] if "--server" in flags else ["--server", "127.0.0.1:1"]
    assert main([*RUN, *server, *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"splitedge-client: error: {expected}") and err.count("\n") == 1, err


def test_a_directory_is_not_a_file(capsys, tmp_path: Path):
    for flags, expected in (
        (["--out", str(tmp_path)], f"--out: {str(tmp_path)!r} is a directory; name a file"),
        (["--tls-ca", str(tmp_path)], f"--tls-ca: {str(tmp_path)!r} is a directory, not a file"),
    ):
        assert main([*RUN, "--server", "127.0.0.1:1", *flags]) == 2
        assert capsys.readouterr().err == f"splitedge-client: error: {expected}\n"


def test_models_checks_its_address_and_certificate(capsys):
    assert main(["models", "--server", "nohost"]) == 2
    assert "--server 'nohost': expected HOST:PORT" in capsys.readouterr().err
    assert main(["models", "--server", "127.0.0.1:1", "--tls-ca", "/no/ca.pem"]) == 2
    assert "--tls-ca: '/no/ca.pem' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--size", "100000x100000"], "each side must be 1-8192 pixels"),
        (
            ["profile", "--model", "echo", "--output", "p.json", "--size", "abc"],
            "--size: expected WIDTHxHEIGHT such as 320x240, got 'abc'",
        ),
        (
            ["profile", "--model", "echo", "--output", "p.json", "--size", "0x240"],
            "--size: each side must be 1-8192 pixels, got '0x240'",
        ),
        (["--log-level", "bogus", "models"], "invalid choice: 'BOGUS'"),
    ],
)
def test_argparse_refusals(capsys, argv, expected):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert expected in capsys.readouterr().err


PROFILE = ["profile", "--model", "echo", "--levels", "0", "--frames", "1", "--no-progress"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--input-sizes", "-5"], "--input-sizes: every value must be >= 0, got [-5]"),
        (["--intervals", "0"], "--intervals: every value must be >= 1, got [0]"),
        (["--frames", "0"], "--frames must be at least 1, got 0"),
    ],
)
def test_bad_profile_flags_are_refused_before_measuring(capsys, tmp_path, flags, expected):
    out = tmp_path / "p.json"
    assert main([*PROFILE, "--output", str(out), *flags]) == 2
    assert capsys.readouterr().err == f"splitedge-client profile: error: {expected}\n"
    assert list(tmp_path.iterdir()) == []


def test_profile_output_that_is_a_directory_leaves_nothing_behind(capsys, tmp_path):
    target = tmp_path / "dir"
    target.mkdir()
    assert main([*PROFILE, "--output", str(target)]) == 2
    assert "is a directory; name a file" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]


@pytest.mark.parametrize(
    "module",
    ["splitedge.training.train_cli", "splitedge.simulations.cli", "splitedge.edge.cli"],
)
def test_every_cli_refuses_an_unknown_log_level(capsys, module: str):
    import importlib

    argv = ["--log-level", "bogus", "--help"]
    if module == "splitedge.edge.cli":  # edge takes it on its serve command
        argv = ["serve", "--log-level", "bogus"]
    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main(argv)
    assert info.value.code == 2
    assert "invalid choice: 'BOGUS'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--deadline-ms", "nan"], "--deadline-ms must be a finite number >= 0, got nan"),
        (["--deadline-ms", "-5"], "--deadline-ms must be a finite number >= 0, got -5.0"),
        (["--jpeg-quality", "0"], "--jpeg-quality must be in 1..100, got 0"),
    ],
)
def test_bad_depth_flags_are_refused_before_reading_the_stack(capsys, flags, expected):
    argv = ["depth", "--server", "127.0.0.1:1", "--stack", "/no/such/stack", *flags]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"splitedge-client: error: {expected}\n"
