"""Trace files: each format parses, round-trips where writable, and fails precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitedge.simulations import trace_formats as F
from splitedge.simulations import traces as T
from splitedge.simulations.trace_formats import TraceFormatError
from splitedge.simulations.traces import TraceError

# Recorded Mahimahi traces beside the project (never copied into it): ../shared/traces.
CELLULAR = Path(__file__).resolve().parents[2].parent / "shared" / "traces" / "cellular"


def test_mahimahi_file_round_trip(tmp_path):
    tr = T.step([(0.0, 12.0), (0.004, 36.0)], duration_s=0.008)
    path = tmp_path / "link.up"
    F.write_mahimahi(tr, path)
    assert path.read_text().split() == ["1", "2", "3", "4"] + [str(t) for t in (5, 6, 7, 8)
                                                                for _ in range(3)]  # fmt: skip
    back = F.read_mahimahi(path)
    assert back.sample([0.002, 0.006]).tolist() == pytest.approx([12.0, 36.0])
    assert F.read_trace(path, "mahimahi").mean_mbps == pytest.approx(tr.mean_mbps)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: no delivery opportunities (empty trace)"),
        ("1\n2\nabc\n", ":3: expected a non-negative integer millisecond, got 'abc'"),
        ("1\n-4\n", ":2: expected a non-negative integer millisecond, got '-4'"),
        ("1\n5\n\n3\n", ":4: timestamp 3 ms goes back in time (previous 5 ms)"),
        ("0\n0\n", ":2: the last timestamp (the period) must be > 0 ms"),
    ],
)
def test_mahimahi_errors_name_the_line(text, message):
    with pytest.raises(TraceFormatError) as info:
        F.parse_mahimahi(text, source="up.trace")
    assert str(info.value) == "up.trace" + message


def test_csv_round_trip_keeps_duration(tmp_path):
    tr = T.step([(0.0, 5.0), (2.0, 20.0), (4.0, 5.0)], duration_s=7.5)
    path = tmp_path / "log.csv"
    F.write_csv(tr, path)
    back = F.read_trace(path)  # .csv picks the csv reader
    assert back.duration_s == 7.5
    assert back.start_s.tolist() == tr.start_s.tolist()
    assert back.rate_mbps.tolist() == tr.rate_mbps.tolist()


def test_csv_without_duration_repeats_the_last_interval_and_rebases_time():
    tr = F.parse_csv("time_s,mbps\n10,1.5\n11,2.5\n12.5,0.5\n")
    assert tr.start_s.tolist() == [0.0, 1.0, 2.5]
    assert tr.duration_s == 4.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,rate\n0,1\n", ":1: expected header 'time_s,mbps', got 'time,rate'"),
        ("time_s,mbps\n0,1\n1,2,3\n", ":3: expected 2 fields (time_s,mbps), got 3"),
        ("time_s,mbps\n0,fast\n", ":2: mbps 'fast' is not a number"),
        ("time_s,mbps\n0,1\n0,2\n", ":3: time_s 0.0 does not increase (previous 0.0)"),
        ("time_s,mbps\n0,-1\n", ":2: mbps -1.0 is negative"),
        ("time_s,mbps\n0,inf\n", ":2: mbps 'inf' is not finite"),
        ("time_s,mbps\n", ":1: no samples"),
        ("# duration_s=1\ntime_s,mbps\n0,1\n2,1\n", ":1: duration_s=1.0 must exceed"),
    ],
)
def test_csv_errors_name_the_line(text, message):
    with pytest.raises(TraceFormatError) as info:
        F.parse_csv(text, source="log.csv")
    assert str(info.value).startswith("log.csv" + message)


def test_cooked_pensieve_traces(tmp_path):
    tr = F.parse_cooked("0.0 1.2\n1.0   0.8\n2.0\t1.6\n")
    assert tr.rate_mbps.tolist() == [1.2, 0.8, 1.6] and tr.duration_s == 3.0
    path = tmp_path / "trace_cooked"
    F.write_cooked(T.step([(0.0, 2.0), (1.5, 4.0)], 3.0), path, interval_s=1.0)
    back = F.read_trace(path, "cooked")
    assert back.rate_mbps.tolist() == pytest.approx([2.0, 3.0, 4.0])
    with pytest.raises(TraceFormatError, match=r"cooked:2: expected 2 fields \(time_s mbps\)"):
        F.parse_cooked("0 1\n1 2 3\n", source="cooked")


HSDPA = (
    "1289406399 549692 59.851754 10.781778 250000 1000\n"
    "1289406400 550692 59.851801 10.781901 125000 500\n"
    "1289406401 551192 59.851850 10.782000 0 1500\n"
)


@pytest.mark.parametrize("parse", [F.parse_hsdpa, F.parse_belgium_4g])
def test_bytes_over_elapsed_logs(parse):
    tr = parse(HSDPA)
    assert tr.start_s.tolist() == [0.0, 1.0, 1.5]
    assert tr.rate_mbps.tolist() == pytest.approx([2.0, 2.0, 0.0])
    assert tr.duration_s == 3.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 2 3 4 5", ":2: expected >= 6 columns (..., bytes, elapsed_ms), got 5"),
        ("1 2 3 4 many 1000", ":2: bytes 'many' is not a number"),
        ("1 2 3 4 -5 1000", ":2: bytes -5 is negative"),
        ("1 2 3 4 500 0", ":2: elapsed_ms 0 must be > 0"),
    ],
)
def test_bytes_over_elapsed_errors_name_the_line(line, message):
    with pytest.raises(TraceFormatError) as info:
        F.parse_belgium_4g("1 2 3 4 100 1000\n" + line + "\n", source="report_bus_0001.log")
    assert str(info.value) == "report_bus_0001.log" + message
    assert info.value.line_no == 2


def test_read_trace_file_problems(tmp_path):
    with pytest.raises(TraceError) as info:
        F.read_trace(tmp_path / "x.json", "json")
    assert str(info.value) == (
        f"{tmp_path / 'x.json'}: unknown trace format 'json'; "
        "one of mahimahi, csv, cooked, hsdpa, belgium-4g"
    )
    for missing in ("x.log", "missing.csv", "missing.up"):
        with pytest.raises(TraceError, match="cannot read trace file"):
            F.read_trace(tmp_path / missing)
    bad = tmp_path / "bin.csv"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match="cannot read trace file"):
        F.read_trace(bad)


# -- which format: suffix, else the first lines ---------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("TMobile.up", "1\n1\n3\n", "mahimahi"),
        ("TMobile.down", "1\n1\n3\n", "mahimahi"),
        ("trace.txt", "1\n1\n3\n", "mahimahi"),  # one integer per line, any name
        ("trace", "\n1\n 2 \n4\n", "mahimahi"),
        ("rates.log", "# duration_s=3\ntime_s, mbps\n0,1\n", "csv"),
        ("trace_cooked", "0.0 1.2\n1.0\t0.8\n", "cooked"),
        ("report_bus_0001.log", HSDPA, "hsdpa"),
        ("x.CSV", "anything", "csv"),
        ("notes.txt", "hello\n", None),
        ("mixed", "1\n2\n3 4 5\n", None),
        ("empty.log", "", None),
    ],
)
def test_guess_format_from_suffix_then_lines(tmp_path, name, text, fmt):
    path = tmp_path / name
    path.write_text(text)
    assert F.guess_format(path) == fmt


def test_a_mahimahi_trace_reads_without_a_format_under_any_name(tmp_path):
    tr = T.step([(0.0, 12.0), (0.004, 36.0)], duration_s=0.008)
    for name in ("link.up", "link.down", "link", "link.trace"):
        F.write_mahimahi(tr, tmp_path / name)
        back = F.read_trace(tmp_path / name)
        assert back.mean_mbps == pytest.approx(tr.mean_mbps), name


def test_an_explicit_format_wins_over_suffix_and_content(tmp_path):
    path = tmp_path / "odd.up"  # the suffix says mahimahi, the caller knows better
    path.write_text("0 4\n1 8\n")
    assert F.read_trace(path, "cooked").rate_mbps.tolist() == [4.0, 8.0]
    ints = tmp_path / "ints.log"  # integers, but read as a cooked log with one column
    ints.write_text("1\n2\n")
    with pytest.raises(TraceFormatError, match=r"ints.log:1: expected 2 fields"):
        F.read_trace(ints, "cooked")


def test_unknown_layout_names_the_file_and_the_formats(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(TraceError) as info:
        F.read_trace(path)
    assert str(info.value) == (
        f"{path}: cannot tell the trace format from its name or its first lines; "
        "name one of mahimahi, csv, cooked, hsdpa, belgium-4g"
    )


def test_sniffing_reads_the_head_and_the_reader_names_a_bad_line_further_on(tmp_path):
    lines = [str(1 + i // 4) for i in range(40_000)]  # > 64 KiB of integers
    lines[30_000] = "12x"
    path = tmp_path / "long.trace"
    path.write_text("\n".join(lines) + "\n")
    assert F.guess_format(path) == "mahimahi"
    with pytest.raises(TraceFormatError) as info:
        F.read_trace(path)
    assert (
        str(info.value) == f"{path}:30001: expected a non-negative integer millisecond, got '12x'"
    )


def _cellular(name: str) -> Path:
    path = CELLULAR / name
    if not path.is_file():
        pytest.skip(f"recorded trace {path} is absent (the shared traces folder is not here)")
    return path


@pytest.mark.parametrize(
    ("name", "duration_s", "mean_mbps"),
    [
        ("TMobile-UMTS-driving.up", 931.233, 0.943),
        ("TMobile-UMTS-driving.down", 928.424, 2.020),
        ("ATT-LTE-driving-2016.up", 120.002, 1.910),
    ],
)
def test_recorded_mahimahi_traces_read_under_their_own_name(name, duration_s, mean_mbps):
    trace = F.read_trace(_cellular(name))
    # Duration and mean as the shared README lists them.
    assert trace.duration_s == pytest.approx(duration_s)
    assert trace.mean_mbps == pytest.approx(mean_mbps, abs=5e-4)


def test_recorded_umts_uplink_has_its_deep_fade():
    trace = F.read_trace(_cellular("TMobile-UMTS-driving.up"))
    _, fade = trace.mean_rates(1.0, 70.0)
    assert fade[52:60].max() < 0.02  # 52-60 s: the bottom of the fade
    assert fade[:25].mean() > 0.3
