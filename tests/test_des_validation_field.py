"""benchmarks.des_validation --field: input checks and the skip without traces (no runs here)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
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
        (
            ["--devices", "0.5"],
            "--devices: expected numbers >= 1 or 'pi' separated by commas, got '0.5'",
        ),
        (["--duration-s", "-3"], "--duration-s: expected a number > 0, got -3.0"),
        (["--repeats", "0"], "--repeats: expected a whole number >= 1, got '0'"),
        (["--repeats", "two"], "--repeats: expected a whole number >= 1, got 'two'"),
        (["--des-seeds", "0"], "--des-seeds: expected a whole number >= 1, got '0'"),
        (["--devices", "pi,phone"], "--devices: expected numbers >= 1 or 'pi' separated"),
        (
            ["--policies", "adaptive,oracle"],
            "--policies: expected some of adaptive, rate-rule, local, offload separated by "
            "commas, got 'adaptive,oracle'",
        ),
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


def test_field_check_ranges_show_the_real_runs_spread():
    check = des_validation.FieldCheck("adaptive", real_map=[0.326, 0.256, 0.301])
    assert check.spread(check.real_map) == "0.256-0.326"
    assert check.spread([0.3]) == ""  # one run: no range


def test_field_check_counts_answers_by_track_age_with_old_ones_together():
    check = des_validation.FieldCheck("adaptive")
    check.real_ages.update([-1, 0, 0, 1, 2, 7, 9])
    check.des_ages.update([0, 1, 1, 6])
    assert check.ages_text() == "0: 2/1, 1: 1/2, 2: 1/0, 6+: 2/1"  # -1 (dropped) left out


def test_the_errors_interval_comes_from_the_paired_runs_differences():
    # Three real runs, each paired with the mean of its DES runs: differences in points
    # 1, 2, 3 (sd 1) and in mAP50 -0.01, 0.0, +0.01 (sd 0.01) on a real mean of 0.35.
    check = des_validation.FieldCheck(
        "adaptive", real_map=[0.34, 0.35, 0.36],
        pairs=[(1.0, -0.01), (2.0, 0.0), (3.0, 0.01)],
    )  # fmt: skip
    viol_ci, acc_ci = check.error_ci95()
    t2 = 4.302652729911275  # Student's t, 97.5 %, 2 degrees of freedom
    assert viol_ci == pytest.approx(t2 * 1.0 / math.sqrt(3))
    assert acc_ci == pytest.approx(t2 * 0.01 / math.sqrt(3) * 100 / 0.35)
    # The same spread over twelve pairs: t falls to 2.2 and sqrt(n) doubles.
    more = replace(check, pairs=check.pairs * 4)
    assert more.error_ci95()[0] < viol_ci / 3
    # Pairs that move together (the DES tracks each real run's luck): a narrow interval
    # however far apart the real runs are.
    steady = replace(check, real_map=[0.30, 0.35, 0.40], pairs=[(2.0, 0.01)] * 3)
    assert steady.error_ci95() == (0.0, 0.0)
    one = replace(check, pairs=[(2.0, 0.0)])
    assert all(math.isnan(x) for x in one.error_ci95())


def _row(t_s: float, network_ms: float, payload: int = 2900, source: str = "edge"):
    from splitedge.simulations.report import FrameRow

    return FrameRow(
        "adaptive", 0, int(t_s * 5), t_s, 12.0, "offload-jpeg50", source,
        device_ms=2.0, network_ms=network_ms, server_ms=50.0, payload_bytes=payload,
    )  # fmt: skip


def test_the_link_replay_puts_real_answers_on_the_des_link_at_their_send_times():
    from splitedge.simulations.profiles import CandidateProfile, CostProfile
    from splitedge.simulations.traces import constant

    costs = CostProfile(
        "zoo:x",
        {
            "offload-jpeg50": CandidateProfile(
                "offload-jpeg50", "offload-jpeg50", None, True, 1.0,
                payload_bytes=2900.0, uplink_wire_bytes=3000.0, downlink_wire_bytes=600.0,
            ),
            "local": CandidateProfile("local", "local", None, False, 240.0),
        },
        overhead_ms=2.0,
    )  # fmt: skip
    # 12 Mbit/s both ways: one 1500-byte opportunity per ms. 3000 bytes up take the next
    # two (2 ms), the 600-byte reply the next one (at most 1 ms), 2 x 40 ms delay, 2 ms
    # overhead: 84-85 ms.
    rows = [
        _row(1.0, 84.0),
        _row(2.0, 100.0),  # the real one took 15-16 ms longer than the DES's link says
        _row(3.0, 0.0, source="local"),  # not an edge answer: left out
        _row(4.0, 84.0),
        _row(4.0, 84.0),  # sent with the one before: it waits behind its two packets
    ]
    errors = des_validation.link_replay_errors(
        rows, constant(12.0), constant(12.0), delay_ms=40.0, costs=costs
    )
    assert len(errors) == 4
    assert 0.0 <= errors[0] <= 1.001
    assert -16.0 <= errors[1] <= -14.999
    assert errors[3] == pytest.approx(errors[2] + 2.0, abs=0.01)
    check = des_validation.FieldCheck("adaptive", link_errors=errors)
    assert check.link_text().startswith("the DES's link on the real runs' 4 edge answers")
    assert des_validation.FieldCheck("local").link_text() == ""


def test_a_batch_written_for_des_only_reads_back_and_bad_ones_are_refused(tmp_path: Path):
    params = {
        "duration_s": 60.0, "slowdown": 14.1, "device_local_ms": 240.0, "video_seed": 0,
        "repeats": 3, "policies": ("adaptive",),
    }  # fmt: skip
    des_validation.write_batch(tmp_path, **params)
    assert des_validation.read_batch(tmp_path) == params
    doc = json.loads((tmp_path / "batch.json").read_text())
    for key, value, message in [
        ("trace", "Verizon-LTE-short", "this check runs ATT-LTE-driving-2016"),
        ("repeats", "three", "not a field batch's parameters"),
        ("policies", ["adaptive", "oracle"], "not a field batch's parameters"),
        ("slowdown", 0.5, "not a field batch's parameters"),
    ]:
        (tmp_path / "batch.json").write_text(json.dumps({**doc, key: value}))
        with pytest.raises(des_validation.FieldBatchError, match=message):
            des_validation.read_batch(tmp_path)
    (tmp_path / "batch.json").write_text("{not json")
    with pytest.raises(des_validation.FieldBatchError, match=r"batch\.json: not a field batch"):
        des_validation.read_batch(tmp_path)


def test_a_finished_runs_profile_rows_and_figures_read_back(tmp_path: Path):
    from splitedge.simulations.profiles import CandidateProfile, CostProfile
    from splitedge.simulations.report import summarize, write_csv, write_summary

    run = tmp_path / "run2"
    run.mkdir()
    costs = CostProfile("zoo:x", {"local": CandidateProfile("local", "local", None, False, 240.0)})
    costs.save(run / "profile.json")
    rows = [_row(0.0, 90.0), _row(0.2, 250.0), _row(0.4, 0.0, source="local")]
    write_csv(rows, run / "frames.csv")
    write_summary(summarize(rows), run)
    got_costs, got_rows, figures = des_validation.read_batch_run(tmp_path, 1, repeats=3)
    assert got_costs.candidates["local"].device_ms == 240.0
    assert [(r.t_s, r.source, r.network_ms) for r in got_rows] == [
        (r.t_s, r.source, r.network_ms) for r in rows
    ]
    assert set(figures) == {"adaptive"}
    assert figures["adaptive"][0] == pytest.approx(summarize(rows)[0].sla_violation_pct)
    # Run 3 of 3 was never written: the check before any work names the file.
    with pytest.raises(des_validation.FieldBatchError, match=r"run1/profile.json: no such file"):
        des_validation.check_batch_runs(tmp_path, repeats=3)
    (run / "summary.csv").write_text("policy,frames\nadaptive,3\n")  # no violation column
    with pytest.raises(des_validation.FieldBatchError, match=r"run2: unreadable run"):
        des_validation.read_batch_run(tmp_path, 1, repeats=3)


def test_des_only_without_a_batch_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert des_validation.main(["--field", "--des-only", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"python -m benchmarks.des_validation: error: --des-only: {tmp_path / 'batch.json'}: "
        "no such file (--des-only takes the folder a --field run wrote with --out, e.g. "
        "OUT/field-pi)"
    )


def test_des_only_with_a_runs_file_missing_stops_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    des_validation.write_batch(
        tmp_path, duration_s=60.0, slowdown=14.1, device_local_ms=240.0, video_seed=0,
        repeats=2, policies=("adaptive",),
    )  # fmt: skip
    assert des_validation.main(["--field", "--des-only", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing re-scored, nothing run
    assert captured.err.strip() == (
        f"python -m benchmarks.des_validation: error: --des-only: "
        f"{tmp_path / 'run1' / 'profile.json'}: no such file (is {tmp_path} a finished batch?)"
    )
