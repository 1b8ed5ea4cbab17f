"""``[auth]``: token hashes in the config (never tokens), ``splitedge-edge hash-token``,
and the device's token flags; every bad value is one line naming its key or flag."""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path

import pytest

from splitedge.edge.cli import main as edge_main
from splitedge.edge.config import (
    AuthConfig,
    ConfigError,
    EdgeConfig,
    ModelConfig,
    TokenHash,
    dump_config,
    load_config,
)
from splitedge.mobile_client.cli import main as client_main
from splitedge.mobile_client.flags import token_from_flags

TOKEN = "dev-token-42"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
MODEL = '[[models]]\nname = "echo"\n'


def _load(tmp_path: Path, auth: str) -> EdgeConfig:
    path = tmp_path / "edge.toml"
    path.write_text(MODEL + "[auth]\n" + auth)
    return load_config(path)


def _error(tmp_path: Path, auth: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, auth)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_the_config_holds_token_hashes_and_auth_is_off_without_them(tmp_path):
    config = _load(tmp_path, f'tokens = [{{ client = "cam-1", sha256 = "{DIGEST.upper()}" }}]\n')
    assert config.auth == AuthConfig((TokenHash("cam-1", DIGEST),), health_open=False)
    assert config.auth.enabled
    assert not load_config(None, models=[ModelConfig("echo")]).auth.enabled
    opened = _load(tmp_path, "health_open = true\n")
    assert opened.auth == AuthConfig((), health_open=True)


def test_a_config_with_auth_dumps_and_loads_back_equal(tmp_path):
    config = EdgeConfig(
        models=(ModelConfig("echo"),),
        auth=AuthConfig((TokenHash("cam-1", DIGEST), TokenHash("cam-2", "a" * 64)), False),
        metrics_host="::1",
    )
    path = tmp_path / "dumped.toml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (
            f'tokens = [{{ client = "cam-1", sha256 = "{DIGEST[:-1]}" }}]\n',
            f"auth.tokens[0].sha256: expected 64 hex digits (`splitedge-edge hash-token` "
            f"prints them), got '{DIGEST[:56]}...",
        ),
        (
            f'tokens = [{{ client = "cam-1", token = "{TOKEN}" }}]\n',
            "auth.tokens[0].token: the config stores no plain token; write sha256 = the "
            "output of `splitedge-edge hash-token`",
        ),
        (f'tokens = [{{ sha256 = "{DIGEST}" }}]\n', "auth.tokens[0].client: missing"),
        (
            f'tokens = [{{ client = "a b", sha256 = "{DIGEST}" }}]\n',
            "auth.tokens[0].client: 'a b' is not a valid name: use 1-64 characters of "
            "[A-Za-z0-9_.-]",
        ),
        (
            f'tokens = [{{ client = "a", sha256 = "{DIGEST}" }}, '
            f'{{ client = "b", sha256 = "{DIGEST.upper()}" }}]\n',
            "auth.tokens[1].sha256: the same token as auth.tokens[0]",
        ),
        (
            f'tokens = [{{ client = "a", sha256 = "{DIGEST}" }}, '
            f'{{ client = "a", sha256 = "{"b" * 64}" }}]\n',
            "auth.tokens[1].client: 'a' already names auth.tokens[0]",
        ),
        (
            f'tokens = "{DIGEST}"\n',
            f"auth.tokens: expected an array of tables {{client = ..., sha256 = ...}}, "
            f"got '{DIGEST[:56]}...",
        ),
        ('health_open = "yes"\n', "auth.health_open: expected a boolean, got 'yes'"),
        ("open = true\n", "auth.open: unknown key; known keys: health_open, tokens"),
    ],
)
def test_a_bad_auth_entry_is_one_line_naming_the_key(tmp_path, auth, message):
    assert _error(tmp_path, auth) == message


def test_serve_refuses_a_bad_hash_with_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "edge.toml"
    path.write_text(MODEL + '[auth]\ntokens = [{ client = "cam-1", sha256 = "abc" }]\n')
    assert edge_main(["serve", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("splitedge-edge: error: auth.tokens[0].sha256: expected 64 hex")
    assert err.count("\n") == 1


def test_hash_token_prints_what_the_config_stores(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert edge_main(["hash-token"]) == 0
    assert capsys.readouterr().out == DIGEST + "\n"
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    assert edge_main(["hash-token", "--token-file", str(token_file), "--client", "cam-1"]) == 0
    entry = capsys.readouterr().out
    assert entry == f'{{ client = "cam-1", sha256 = "{DIGEST}" }}\n'
    config = _load(tmp_path, f"tokens = [{entry.strip()}]\n")
    assert config.auth.tokens == (TokenHash("cam-1", DIGEST),)

    new = tmp_path / "cam-2.token"
    assert edge_main(["hash-token", "--generate", "--token-file", str(new)]) == 0
    generated = new.read_text().strip()
    assert capsys.readouterr().out == hashlib.sha256(generated.encode()).hexdigest() + "\n"
    assert len(generated) >= 32 and stat.S_IMODE(new.stat().st_mode) == 0o600
    # Never overwrites a token file, and refuses what no header can carry.
    for argv, message in (
        (["--generate", "--token-file", str(new)], "--token-file: cannot create"),
        (["--generate"], "--generate: needs --token-file"),
        (["--client", "a/b"], "--client: 'a/b' is not a valid name"),
    ):
        assert edge_main(["hash-token", *argv]) == 2
        assert capsys.readouterr().err.startswith(f"splitedge-edge: error: {message}")
    assert new.read_text().strip() == generated
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert edge_main(["hash-token"]) == 2
    assert capsys.readouterr().err == "splitedge-edge: error: stdin: token: empty\n"


def test_the_device_token_flags(tmp_path, capsys):
    token_file = tmp_path / "tok"
    token_file.write_text(f"{TOKEN}\n")
    assert token_from_flags(None) is None
    assert token_from_flags(TOKEN, None, "env") == TOKEN
    assert token_from_flags(None, str(token_file), "env") == TOKEN
    assert token_from_flags(None, None, f" {TOKEN}\n") == TOKEN
    with pytest.raises(ValueError, match=r"^--token-file: '/no/tok' does not exist$"):
        token_from_flags(None, "/no/tok")
    with pytest.raises(ValueError, match=r"^--token: must be 1-4096 visible ASCII characters$"):
        token_from_flags("two words")
    # On every command that reaches an edge, refused before connecting.
    for command in (
        ["models", "--server", "127.0.0.1:1"],
        ["run", "--server", "127.0.0.1:1", "--model", "echo", "--branch", "offload-jpeg90"],
        ["depth", "--server", "127.0.0.1:1", "--stack", "/no/such"],
    ):
        assert client_main([*command, "--token-file", str(tmp_path / "none")]) == 2
        assert capsys.readouterr().err == (
            f"splitedge-client: error: --token-file: '{tmp_path / 'none'}' does not exist\n"
        )
    with pytest.raises(SystemExit) as exited:
        client_main(["models", "--server", "h:1", "--token", "a", "--token-file", "f"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
