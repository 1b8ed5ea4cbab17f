"""The emulated slow device: its usual work stretched, a stall on this machine added once."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from splitedge.simulations.demo import SlowedBackend


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Backend:
    """Local runs that take the scripted host seconds on a fake clock."""

    has_local = True

    def __init__(self, clock: _Clock, times: list[float]) -> None:
        self.clock, self.times = clock, list(times)

    def local(self, image: object) -> str:
        self.clock.now += self.times.pop(0)
        return "boxes"


def test_a_stall_is_added_once_and_usual_work_is_stretched() -> None:
    clock, slept = _Clock(), []
    host = [0.04, 0.04, 0.04, 1.0, 0.04]  # the 4th run stalled (another process, a GC)
    slowed = SlowedBackend(_Backend(clock, host), 6.0, clock=clock, sleep=slept.append)
    assert [slowed.local(None) for _ in host] == ["boxes"] * 5
    assert slept[:3] == pytest.approx([0.2, 0.2, 0.2])  # 40 ms here: 240 ms on the device
    assert slept[3] == pytest.approx(0.2)  # 1.0 s + 0.2 s, not 6 s
    assert slept[4] == pytest.approx(0.2)
    assert slowed.has_local  # everything else is the wrapped backend's


def test_a_first_run_that_stalls_is_not_multiplied_once_the_usual_time_is_seeded() -> None:
    # The demo's first local frame stalled ~1 s here; unseeded, it was its own usual
    # time and the emulated device slept 11 s on it.
    clock, slept = _Clock(), []
    host = [1.0, 0.04, 0.04]
    slowed = SlowedBackend(
        _Backend(clock, host), 6.0, clock=clock, sleep=slept.append, usual_s={"(local model)": 0.04}
    )
    for _ in host:
        slowed.local(None)
    assert slept == pytest.approx([0.2, 0.2, 0.2])  # the stall once, not 6 x 1 s


def test_warm_device_returns_the_fastest_warm_time_per_piece_of_work(monkeypatch) -> None:
    from splitedge.simulations import demo

    clock = _Clock()
    monkeypatch.setattr(demo.time, "perf_counter", clock)

    class _Split:
        def __init__(self, name: str, kind: str) -> None:
            self.name, self.kind = name, kind

    class _WithHeads(_Backend):
        def __init__(self, clock: _Clock, times: list[float]) -> None:
            super().__init__(clock, times)
            branches = {"a": _Split("split-a", "split"), "b": _Split("offload", "offload")}
            self.model = SimpleNamespace(branches=branches)

        def head(self, spec: _Split, image: object) -> str:
            self.clock.now += self.times.pop(0)
            return "code"

    # local: a cold 2 s run, then 50 and 40 ms; the split head: cold 0.5 s, then 9 and 8 ms.
    backend = _WithHeads(clock, [2.0, 0.05, 0.04, 0.5, 0.009, 0.008])
    usual = demo.warm_device(backend, demo.CameraFrame(0, None, 0))  # type: ignore[arg-type]
    assert usual == pytest.approx({"(local model)": 0.04, "split-a": 0.008})
    assert backend.times == []


def test_a_slowdown_under_one_is_refused() -> None:
    with pytest.raises(ValueError, match="slowdown must be >= 1"):
        SlowedBackend(_Backend(_Clock(), []), 0.5)


def test_the_device_is_calibrated_on_this_machines_fastest_run(monkeypatch) -> None:
    # Beside a busy process two of five runs took 3-4x: the calibration must not take
    # those for this machine's speed (the demo's ~240 ms device would come out ~80 ms).
    from splitedge.simulations import demo

    clock = _Clock()
    monkeypatch.setattr(demo.time, "perf_counter", clock)
    backend = _Backend(clock, [0.048, 0.188, 0.048, 0.150, 0.052])
    assert demo.measure_local_ms(backend, demo.CameraFrame(0, None, 0)) == pytest.approx(48.0)  # type: ignore[arg-type]
    assert backend.times == []  # five runs


def test_a_pinned_device_keeps_its_detector_time_while_this_machine_speeds_up() -> None:
    # Calibrated on a 50 ms run, the machine then runs its detector in 37 ms: at a fixed
    # 4.8x the "240 ms" device became a 178 ms one. Pinned, it stays ~240 ms, and its
    # heads slow by the same factor.
    clock, slept = _Clock(), []
    host = [0.05] * 2 + [0.037] * 12
    slowed = SlowedBackend(
        _Backend(clock, host), 4.8, clock=clock, sleep=slept.append,
        usual_s={"(local model)": 0.05}, target_local_ms=240.0,
    )  # fmt: skip
    device_s = []
    for spent in host:
        slowed.local(None)
        device_s.append(spent + slept[-1])
    assert device_s[0] == pytest.approx(0.24)
    assert device_s[-1] == pytest.approx(0.24)  # 37 ms x 6.5, not x 4.8
    # While the usual time catches up, each run is 240 ms less its 13 ms saving, not
    # 4.8 x 37 = 178 ms: a run faster than usual is faster once, as a stall is slower.
    assert all(0.24 - 0.0131 <= s <= 0.24 + 1e-9 for s in device_s), device_s
    assert slowed.current_factor == pytest.approx(0.24 / 0.037)
    unpinned_slept: list[float] = []
    unpinned = SlowedBackend(
        _Backend(clock, list(host)), 4.8, clock=clock, sleep=unpinned_slept.append,
        usual_s={"(local model)": 0.05},
    )  # fmt: skip
    for _ in host:
        unpinned.local(None)
    assert host[-1] + unpinned_slept[-1] == pytest.approx(0.037 * 4.8)


def test_a_bad_pinned_time_is_refused() -> None:
    with pytest.raises(ValueError, match="device local time must be > 0 ms, got 0"):
        SlowedBackend(_Backend(_Clock(), []), 2.0, target_local_ms=0.0)
