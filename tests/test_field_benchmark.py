"""benchmarks.field end to end: a real edge process, a real client, a recorded-style link."""

from __future__ import annotations

import argparse
import math
import re

import pytest

from benchmarks import field
from splitedge.simulations.report import FrameRow, PolicySummary
from splitedge.simulations.trace_formats import format_mahimahi
from splitedge.simulations.traces import BandwidthTrace

ROW = re.compile(
    r"^\s*(adaptive|rate-rule)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s"
)
SUMMARY = re.compile(
    r"field_viol_pct=(\S+) rate_rule_viol_pct=(\S+) acc_vs_oracle=(\S+) "
    r"answered_pct=(\S+) recovery_s=(\S+) acc_vs_oracle_q95=(\S+) acc_sla_vs_oracle=(\S+) "
    r"per_trace_met=(\d+)/(\d+) per_trace_met_sla=(\d+)/(\d+) "
    r"oracle_ties=(\d+) oracle_ties_sla=(\d+)"
)


def _write_pair(folder, name: str) -> None:
    # 5 Mbps, a fade to 0.05 Mbps in the second second, 5 Mbps again: one fade ends at 2 s.
    trace = BandwidthTrace.from_steps([(0.0, 5.0), (1.0, 0.05), (2.0, 5.0)], 6.0, name=name)
    for suffix in ("up", "down"):
        (folder / f"{name}.{suffix}").write_text(format_mahimahi(trace))


@pytest.mark.integration
def test_a_tiny_run_prints_consistent_tables_and_the_summary(tmp_path, capsys):
    traces = tmp_path / "traces"
    traces.mkdir()
    _write_pair(traces, "fade")
    out = tmp_path / "out"
    argv = ["--traces", str(traces), "--trace", "fade", "--duration-s", "6", "--devices", "1"]
    argv += ["--policies", "adaptive,rate-rule", "--out", str(out)]
    assert field.main(argv) == 0
    text = capsys.readouterr().out
    rows = [ROW.match(line) for line in text.splitlines()]
    rows = [m for m in rows if m]
    # The run's table and the device's overall table, two policies each.
    assert [m[1] for m in rows] == ["adaptive", "rate-rule"] * 2
    for m in rows:
        frames, in_sla, viol = int(m[2]), float(m[3]), float(m[4])
        assert frames == 30  # 6 s at 5 fps
        assert in_sla + viol == pytest.approx(100.0, abs=0.11)
        assert 0.0 <= viol <= 100.0
        assert 0.0 <= float(m[6]) <= float(m[5])  # mAP50 counting late answers as none
        assert float(m[7]) >= 0.0  # uplink MB
    answered = [float(line.split()[-1]) for line in text.splitlines() if ROW.match(line)]
    assert all(0.0 <= a <= 100.0 for a in answered)
    assert "adaptive recovery: fade ends at 2 s ->" in text
    # The target is what a fresh client, started at the fade's end, picked (a real run).
    fresh = re.search(r"target ([\d.]+): fresh start (\S+) ([\d.]+),", text)
    assert fresh, text
    assert fresh[1] == fresh[3]
    assert (out / "fade-x1" / "fresh-2s" / "frames.csv").is_file()
    assert "skipped: fixed-all" in text
    assert re.search(r"^wall time \d+ s$", text, re.M)

    last = text.strip().splitlines()[-1]
    match = SUMMARY.fullmatch(last)
    assert match, last
    viol, rate_viol, acc, answered_pct, recovery, acc_q95, acc_sla = (
        float(v) for v in match.groups()[:7]
    )
    met, checks, met_sla, checks_sla, ties, ties_sla = (int(v) for v in match.groups()[7:])
    assert ties == ties_sla == 0  # no oracle ran: nothing ties it
    adaptive_overall, rate_overall = rows[2], rows[3]
    assert viol == pytest.approx(float(adaptive_overall[4]), abs=0.051)
    assert rate_viol == pytest.approx(float(rate_overall[4]), abs=0.051)
    assert math.isnan(acc) and math.isnan(acc_q95) and math.isnan(acc_sla)  # no oracle here
    # One check (adaptive against rate-rule) when either kept under 20 % violations.
    under = min(float(rows[0][4]), float(rows[1][4])) < field.VIOLATION_CAP_PCT
    assert checks == checks_sla == (1 if under else 0)
    assert met <= checks and met_sla <= checks
    assert ("per-trace targets" in text) == under
    assert 0.0 <= answered_pct <= 100.0
    assert answered_pct == pytest.approx(answered[2], abs=0.051)
    assert 0.0 <= recovery <= 4.0  # the fade ends at 2 s of a 6 s run
    assert (out / "fade-x1" / "frames.csv").is_file()
    assert (out / "field.csv").is_file()
    assert (out / "field.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_trace_folder_is_one_line_and_exit_0(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert field.main(["--traces", str(missing), "--quick"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    assert str(missing) in out and "--traces DIR" in out


def test_the_fresh_start_pick_is_the_reference_when_measured():
    picks = [(0.0, "local"), (2.4, "offload-jpeg20"), (2.6, "offload-jpeg90")]
    rows = [
        FrameRow("adaptive", 0, i, t, 5.0, c, "local" if c == "local" else "edge")
        for i, (t, c) in enumerate(picks)
    ]
    trace = BandwidthTrace.from_steps([(0.0, 5.0), (1.0, 0.05), (2.0, 5.0)], 6.0)
    acc = {("local", 1): 0.46, ("offload-jpeg20", 1): 0.40, ("offload-jpeg90", 1): 0.461}
    # Approximated: the lower of the oracle's pick (none here) and adaptive's first (local).
    (guess,) = field.recoveries(rows, trace, 6.0, acc)
    assert guess.target == 0.46 and guess.seconds == pytest.approx(0.6)
    # Measured: a fresh start picked offload-jpeg90 after this fade: the same frame is back.
    (fresh,) = field.recoveries(rows, trace, 6.0, acc, fresh={2.0: "offload-jpeg20"})
    assert fresh.target == 0.40 and fresh.seconds == pytest.approx(0.4)
    assert fresh.fresh_pick == "offload-jpeg20"
    assert "fresh start offload-jpeg20 0.400" in field.recovery_text([fresh], acc)


def _summary(policy: str, viol: float, map50: float, map50_sla: float) -> PolicySummary:
    return PolicySummary(
        policy, 100, 100, 0.0, 0.0, 0.0, viol, 0, {}, 0.0, 1.0, 0.0, map50, map50_sla
    )


def test_per_trace_targets_follow_the_issues_rule():
    # Within 1 point and 0.01, better on one: met; worse by 0.02 mAP50: not; better on
    # neither: not. Oracles are no reference; a trace where every policy violates >= 20 %
    # is not judged.
    good = field.Run("good", 1.0, [
        _summary("adaptive", 5.0, 0.40, 0.38),
        _summary("rate-rule", 4.5, 0.39, 0.36),   # +0.5 pts, +0.01 acc: met
        _summary("offload", 15.0, 0.42, 0.35),    # fewer viol, -0.02 mAP50, +0.03 sla
        _summary("fixed:x", 5.0, 0.40, 0.38),     # equal on both: better on neither
        _summary("oracle", 30.0, 0.45, 0.30),
    ])  # fmt: skip
    bad = field.Run("fade", 1.0, [_summary("adaptive", 25.0, 0.3, 0.2),
                                  _summary("rate-rule", 40.0, 0.3, 0.1)])  # fmt: skip
    checks = field.target_checks([good, bad])
    assert [(c.against, c.by_map50, c.by_map50_sla) for c in checks] == [
        ("rate-rule", True, True),
        ("offload", False, True),
        ("fixed:x", False, False),
    ]
    assert "per_trace_met=1/3 per_trace_met_sla=2/3" in field.summary_line([good, bad])


def test_fade_ends_need_three_seconds_back_above_1_mbps():
    steps = [(0.0, 5.0), (2.0, 0.1), (4.0, 2.0), (6.0, 0.5), (7.0, 3.0), (10.0, 0.1), (11.0, 4.0)]
    trace = BandwidthTrace.from_steps(steps, 13.0)
    # Back above 1 Mbps at 4 s for 2 s only; at 7 s for 3 s. At 11 s the run ends 2 s later.
    assert field.fade_ends(trace, 13.0) == [7.0]


def test_tags_score_at_their_detection_interval():
    acc = {("offload-jpeg90", 1): 0.46, ("offload-jpeg90", 4): 0.39, ("local", 1): 0.46}
    assert field.tag_accuracy("offload-jpeg90", acc) == 0.46
    assert field.tag_accuracy("offload-jpeg90/k4+track", acc) == 0.39
    assert field.tag_accuracy("local/k4", acc) == 0.46  # no k4 entry: its k1 accuracy
    assert field.tag_accuracy("unknown", acc) is None


def test_devices_are_factors_or_the_demos_pi_class_device():
    assert field.parse_devices("1,pi") == [1.0, "pi"]
    assert field.parse_devices("1, 6") == [1.0, 6.0]
    for bad in ("0.5", "pie", "", "1,nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="numbers >= 1 or 'pi'"):
            field.parse_devices(bad)
    assert field.parse_args([]).devices == [1.0, "pi"]


def test_repeats_are_judged_on_their_mean_with_an_interval():
    # Two runs of one trace: adaptive -0.02 then +0.01 against offload by mAP50 (mean
    # -0.005: met with 3 points fewer violations), where either run alone disagrees.
    runs = [
        field.Run("t", 1.0, [_summary("adaptive", 2.0, 0.38, 0.37),
                             _summary("offload", 5.0, 0.40, 0.36)], repeat=1),
        field.Run("t", 1.0, [_summary("adaptive", 2.0, 0.41, 0.40),
                             _summary("offload", 5.0, 0.40, 0.37)], repeat=2),
    ]  # fmt: skip
    assert [c.by_map50 for r in runs for c in field.target_checks([r])] == [False, True]
    (check,) = field.target_checks(runs)
    assert check.repeats == 2
    assert check.d_viol == pytest.approx(-3.0)
    assert check.d_map50 == pytest.approx(-0.005)
    assert check.by_map50 and check.by_map50_sla
    # Student's t at 1 degree of freedom over the differences -0.02 and +0.01: their
    # standard deviation 0.015 * sqrt(2), over sqrt(2) runs.
    assert check.half_map50 == pytest.approx(12.7062 * 0.015, rel=1e-3)
    assert check.half_viol == 0.0
    table = field.targets_table([check])
    assert "-0.005±0.191" in table and "-3.0±0.0" in table
    # One run: no interval.
    (single,) = field.target_checks(runs[:1])
    assert math.isnan(single.half_map50) and "±" not in field.targets_table([single])


def test_a_tie_with_a_policy_that_ties_the_oracle_is_labelled_and_still_not_met():
    # This machine as the device: local is the oracle's plan; adaptive equals it.
    run = field.Run("t", 1.0, [
        _summary("adaptive", 0.0, 0.424, 0.424),
        _summary("local", 0.0, 0.424, 0.424),
        _summary("offload", 9.0, 0.40, 0.37),
        _summary("oracle", 0.0, 0.424, 0.424),
    ])  # fmt: skip
    checks = {c.against: c for c in field.target_checks([run])}
    local, offload = checks["local"], checks["offload"]
    assert not local.by_map50 and local.oracle_tie and local.oracle_tie_sla
    assert offload.by_map50 and not offload.oracle_tie  # met is never a tie
    assert "tie at oracle" in field.targets_table([local])
    assert "per_trace_met=1/2 per_trace_met_sla=1/2 oracle_ties=1 oracle_ties_sla=1" in (
        field.summary_line([run])
    )
    # A tie with a policy the oracle beats is a plain miss; so is a tie without an oracle.
    beaten = field.Run("t", 1.0, [
        _summary("adaptive", 0.0, 0.40, 0.40),
        _summary("local", 0.0, 0.40, 0.40),
        _summary("oracle", 0.0, 0.43, 0.43),
    ])  # fmt: skip
    (check,) = field.target_checks([beaten])
    assert not check.by_map50 and not check.oracle_tie
    (alone,) = field.target_checks([field.Run("t", 1.0, run.summaries[:2])])
    assert not alone.by_map50 and not alone.oracle_tie


def test_repeats_must_be_a_count(capsys):
    with pytest.raises(SystemExit):
        field.parse_args(["--repeats", "0"])
    assert "--repeats: expected a whole number >= 1, got '0'" in capsys.readouterr().err
    assert field.parse_args(["--repeats", "3"]).repeats == 3


def test_saved_tables_are_judged_together(tmp_path, capsys):
    # Two invocations' tables, one run each of one trace: --judge reads them back and
    # judges the two runs on their mean, as --repeats 2 would have.
    def run(repeat: int, adaptive_map: float) -> field.Run:
        policies = [_summary("adaptive", 2.0, adaptive_map, adaptive_map),
                    _summary("offload", 5.0, 0.40, 0.37)]  # fmt: skip
        return field.Run("t", 7.6, policies, repeat=repeat)

    first, second = run(1, 0.38), run(2, 0.41)
    first.recoveries = [field.Recovery(5.0, 0.4, False, 0.46)]
    a = field.write_table([first], tmp_path / "a" / "field.csv")
    b = field.write_table([second], tmp_path / "b" / "field.csv")
    back = field.read_table(a)
    assert [(r.trace, r.slowdown, r.repeat) for r in back] == [("t", 7.6, 1)]
    got = [
        (s.policy, s.frames, s.answered, s.sla_violation_pct, s.map50) for s in back[0].summaries
    ]
    assert got == [("adaptive", 100, 100, 2.0, 0.38), ("offload", 100, 100, 5.0, 0.4)]
    assert [x.seconds for x in back[0].recoveries] == [0.4]

    assert field.main(["--judge", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"\s+t\s+x7.6\s+offload\s+2\s+-3.0±0.0\s+-0.005±0.191", text), text
    assert "per_trace_met=1/1" in text and "recovery_s=0.4" in text
    assert (tmp_path / "a" / "field.png").is_file()


def test_a_table_that_is_not_the_benchmarks_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "field.csv"
    bad.write_text("trace,device\nt,x1\n")
    assert field.main(["--judge", str(bad)]) == 2
    out = capsys.readouterr().out.strip()
    assert out == f"--judge: {bad}:2: not a benchmarks.field table row ('frames')"
    assert bad.read_text() == "trace,device\nt,x1\n"  # nothing written over it
    assert field.main(["--judge", str(tmp_path / "none.csv")]) == 2
    assert "--judge: cannot read" in capsys.readouterr().out
