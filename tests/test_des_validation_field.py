"""benchmarks.des_validation --field: input checks and the skip without traces (no runs here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import des_validation


def test_field_check_skips_without_the_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert des_validation.main(["--field", "--quick", "--traces", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        f"no ATT-LTE-driving-2016.up/.down in {tmp_path}: skipping the field check "
        "(pass --traces DIR with the Mahimahi pair)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "0.5"], "--devices: expected numbers >= 1 separated by commas, got '0.5'"),
        (["--duration-s", "-3"], "--duration-s: expected a number > 0, got -3.0"),
    ],
)
def test_bad_field_options_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exc:
        des_validation.main(["--field", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_field_defaults_point_at_the_shared_traces():
    assert des_validation._trace_dir() == (
        Path(des_validation.__file__).resolve().parents[1].parent / "shared" / "traces" / "cellular"
    )
