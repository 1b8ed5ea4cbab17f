"""benchmarks.overhead runs end to end: real edge and raw gRPC processes, three paths."""

from __future__ import annotations

import re

import pytest

from benchmarks import overhead

pytestmark = pytest.mark.integration


def test_a_short_run_prints_the_table_and_both_ratios(capsys):
    assert overhead.main(["--frames", "12", "--link-mbps", "0"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if re.match(r"\s+\d+k ", line)]
    rows = {cells[0]: cells for cells in lines}
    assert set(rows) == {"1k", "40k", "200k"}
    # What the client chose depends on how fast this machine's loopback is.
    assert {row[1] for row in rows.values()} <= {"raw", "zstd"}
    assert 30_000 < int(rows["40k"][2]) < 41_000
    last = out.strip().splitlines()[-1]
    match = re.fullmatch(r"overhead_ratio_40k=(\d+\.\d+) floor_ratio_40k=(\d+\.\d+)", last)
    assert match and float(match[1]) > 0 and float(match[2]) > 0


def test_frames_below_one_are_refused(capsys):
    with pytest.raises(SystemExit):
        overhead.main(["--frames", "0"])
    assert "--frames must be at least 1, got 0" in capsys.readouterr().err
