from pathlib import Path

import pytest

from splitedge.edge.config import ConfigError, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text('[[models]]\nname = "echo"\n\n' + text)
    return path


def test_depth_is_off_by_default_and_enabled_by_flag(tmp_path: Path):
    assert load_config(_write(tmp_path, "")).depth.enabled is False
    assert load_config(_write(tmp_path, ""), depth=True).depth.enabled is True


def test_a_depth_only_server_needs_no_model():
    assert load_config(depth=True).models == ()
    with pytest.raises(ConfigError, match="no model configured"):
        load_config()


def test_depth_section_from_toml(tmp_path: Path):
    prior = tmp_path / "prior.pt"
    prior.write_bytes(b"x")
    cfg = load_config(_write(tmp_path, '[depth]\nenabled = true\nprior = "prior.pt"\n'))
    assert cfg.depth.enabled and cfg.depth.prior == prior


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[depth]\nfocus_measure = "sobel"\n', "depth.focus_measure: must be one of"),
        (
            "[depth]\nconfidence_threshold = 1.5\n",
            r"depth.confidence_threshold: must be in \[0, 1\)",
        ),
        ('[depth]\nprior = "missing.pt"\n', "depth.prior: no checkpoint file at"),
        ('[depth]\nenabled = "yes"\n', "depth.enabled: expected a boolean"),
        ("[depth]\nrefine = true\n", "depth.refine"),
    ],
)
def test_bad_depth_settings(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))
