"""benchmarks.overload runs end to end: a real edge process, the load from another."""

from __future__ import annotations

import re

import pytest

from benchmarks import overload

pytestmark = pytest.mark.integration


def test_a_tiny_run_prints_both_phases_and_the_ratio(capsys):
    argv = ["--model", "echo", "--size", "32x24", "--seconds", "1", "--capacity-streams", "2"]
    argv += ["--streams", "4", "--in-flight", "2", "--queue-capacity", "2"]
    assert overload.main(argv) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if re.match(r"\s*(capacity|overload) ", line)
    }
    assert set(rows) == {"capacity", "overload"}
    assert rows["capacity"][1:3] == ["2", "1"] and rows["overload"][1:3] == ["4", "2"]
    assert float(rows["capacity"][3]) > 0
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"overload_goodput_ratio=\d+\.\d+ capacity_fps=\d+\.\d overload_goodput_fps=\d+\.\d", last
    )


def test_a_branch_the_model_lacks_is_one_line(capsys):
    with pytest.raises(SystemExit, match="--branch: echo has no edge branch 'nope'"):
        overload.main(["--model", "echo", "--branch", "nope"])
