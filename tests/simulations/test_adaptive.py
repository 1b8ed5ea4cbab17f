"""The adaptive scheduler as a simulation policy, detect-vs-track in the DES, its benchmark."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from benchmarks import scheduler as bench_mod
from benchmarks.scheduler import DELAY_MS, Bench, Setting, builtin_profile
from splitedge.mobile_client.policy import Candidate
from splitedge.simulations.des import DesConfig, simulate
from splitedge.simulations.policies import AdaptivePolicy, PolicyError, make_policy
from splitedge.simulations.scenario import PolicyConfig
from splitedge.simulations.trace_formats import write_mahimahi
from splitedge.simulations.traces import constant, step


@pytest.fixture(scope="module")
def bench() -> Bench:
    return Bench.build(builtin_profile())


def _config(bench: Bench, trace, sla_ms: float = 100.0) -> DesConfig:
    return DesConfig(
        clients=1,
        duration_s=trace.duration_s,
        fps=1000.0 / sla_ms,
        sla_ms=sla_ms,
        deadline_ms=4 * sla_ms,
        uplink=trace,
        downlink=trace,
        delay_ms=DELAY_MS,
        jitter=True,
        tracker_ms=bench.tracker_ms,
    )


def _bytes_per_frame(rows, lo_s: float, hi_s: float) -> float:
    window = [r for r in rows if lo_s <= r.t_s < hi_s]
    assert window
    return sum(r.payload_bytes for r in window) / len(window)


def test_adaptive_leaves_the_link_when_it_drops_and_returns_when_it_recovers(bench):
    trace = step([(0.0, 20.0), (12.0, 0.3), (24.0, 20.0)], 36.0)
    factory = bench.policies(Setting(trace, 100.0))["adaptive"]
    rows = simulate(_config(bench, trace), bench.sim, factory, name="adaptive").rows
    high = _bytes_per_frame(rows, 6.0, 12.0)
    low = _bytes_per_frame(rows, 16.0, 24.0)
    recovered = _bytes_per_frame(rows, 30.0, 36.0)
    assert high > 5_000  # a JPEG or an 8-bit bottleneck per frame on the fast link
    assert low < 0.2 * high  # local (tracked) or a few-hundred-byte bottleneck
    assert recovered > 0.5 * high
    # every tracked frame stayed on the device
    tracked = [r for r in rows if r.candidate.endswith("+track")]
    assert tracked and all(r.payload_bytes == 0 and r.network_ms == 0 for r in tracked)


class _DetectEveryFourth:
    """A remote candidate at detection interval 4: detect, then three tracked frames."""

    name = "every-4th"

    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate

    def pick(self, frame_index: int, now_s: float) -> Candidate:
        return self.candidate if frame_index % 4 == 0 else replace(self.candidate, track=True)

    def observe(self, candidate, outcome) -> None:
        pass


def test_tracked_frames_put_no_bytes_on_the_link(bench):
    offload = next(c for c in bench.accuracy if c.branch == "offload-jpeg95" and c.interval == 4)
    trace = constant(2.0, 8.0)  # a JPEG takes ~120 ms here: link time would show
    result = simulate(
        _config(bench, trace, 200.0), bench.sim, lambda i, clock: _DetectEveryFourth(offload)
    )
    detections = [r for r in result.rows if r.candidate == offload.tag]
    tracked = [r for r in result.rows if r.candidate == replace(offload, track=True).tag]
    assert len(tracked) == 3 * len(detections) > 0
    assert all(r.payload_bytes == 0 and r.source == "local" for r in tracked)
    assert all(r.latency_ms == pytest.approx(bench.tracker_ms) for r in tracked)
    payload = bench.sim.get(offload).payload_bytes
    assert result.summary.uplink_mb == pytest.approx(len(detections) * int(payload) / 1e6)
    assert min(r.latency_ms for r in detections) > 100  # the detections did cross the link


def test_oracle_with_the_same_accuracies_is_at_least_as_accurate(bench):
    trace = step([(0.0, 20.0), (10.0, 0.5), (20.0, 8.0)], 30.0)
    setting = Setting(trace, 100.0)
    policies = bench.policies(setting)
    adaptive = bench.run(setting, "adaptive", policies["adaptive"], seed=0)
    oracle = bench.run(setting, "oracle", policies["oracle"], seed=0)
    assert oracle.accuracy >= adaptive.accuracy > 0.8 * oracle.accuracy


def test_make_policy_builds_adaptive_only_with_a_scheduler_profile(bench):
    trace = constant(10.0, 5.0)
    config = PolicyConfig("adaptive", "adaptive")
    with pytest.raises(PolicyError, match="scheduler profile"):
        make_policy(config, [], sla_ms=100.0, uplink=trace)
    policy = make_policy(config, [], sla_ms=100.0, uplink=trace, scheduler_profile=bench.profile)
    assert isinstance(policy, AdaptivePolicy)
    candidate = policy.pick(0, 0.0)
    assert candidate in set(policy.candidates.values())  # the first frame detects


SUMMARY = re.compile(
    r"^summary: accuracy_vs_oracle=\d+\.\d{3} sla_violation_pct=\d+\.\d{2} beats_static=\d+/\d+$"
)


def test_benchmark_quick_prints_the_summary_line(tmp_path, capsys):
    path = tmp_path / "link.mahi"
    write_mahimahi(step([(0.0, 10.0), (2.0, 1.0)], 4.0), path)
    code = bench_mod.main(["--quick", "--trace", str(path), "--sla-ms", "150", "--duration-s", "4"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert SUMMARY.match(out[-1]), out[-1]
    assert any(line.startswith("== link.mahi") for line in out)
    n, m = map(int, out[-1].rsplit("=", 1)[1].split("/"))
    assert 0 <= n <= m and m == 15  # local, offload, 12 fixed splits, Neurosurgeon


@pytest.mark.parametrize("content", [None, "12\nnot-a-number\n"])
def test_benchmark_rejects_a_missing_or_bad_trace_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.mahi"
    if content is not None:
        path.write_text(content)
    assert bench_mod.main(["--quick", "--trace", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("benchmarks.scheduler: error: ")
    assert "bad.mahi" in err[0]


def test_group_scoring_counts_a_detection_with_its_tracked_frames():
    from splitedge.simulations.report import FrameRow

    def row(i: int, tag: str, ms: float) -> FrameRow:
        return FrameRow("p", 0, i, i * 0.1, 5.0, tag, "local", "", ms, sla_met=ms <= 100)

    rows = [row(0, "local/k4", 160.0)] + [row(i, "local/k4+track", 8.0) for i in (1, 2, 3)]
    rows += [row(4, "local", 90.0)]
    s = bench_mod.score(
        rows,
        {"local/k4": 0.25, "local/k4+track": 0.25, "local": 0.3},
        sla_ms=100.0,
        deadline_ms=400.0,
        fallback_accuracy=0.3,
    )
    assert s.frame_violation_pct == pytest.approx(20.0)  # the detection frame alone
    assert s.group_violation_pct == 0.0  # (160 + 3 x 8) / 4 = 46 ms, then 90 ms
    assert s.accuracy == pytest.approx(np.mean([0.25] * 4 + [0.3]))
