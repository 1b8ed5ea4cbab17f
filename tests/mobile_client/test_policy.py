from splitedge.mobile_client.outcome import FrameOutcome, FrameTiming
from splitedge.mobile_client.policy import Candidate, RateRule
from splitedge.proto.status import ServerTiming

OFFLOAD = Candidate("offload-jpeg90")
SPLIT2 = Candidate("split@x", 2)
LOCAL = Candidate("local", remote=False)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def edge(payload: int, network_ms: float, server_ms: float = 20.0) -> FrameOutcome:
    timing = FrameTiming(
        network_ms=network_ms, server=ServerTiming(server_total_ms=server_ms), encode_ms=1.0
    )
    return FrameOutcome(0, "b", "edge", timing=timing, payload_bytes=payload)


def local(ms: float) -> FrameOutcome:
    return FrameOutcome(0, "local", "local", timing=FrameTiming(local_ms=ms, total_ms=ms))


def link(mbps: float, payload: int, floor_ms: float = 10.0) -> float:
    return floor_ms + payload * 8 / (mbps * 1000)


def feed(rule: RateRule, clock: Clock, mbps: float, frames: int) -> list[Candidate]:
    """Run ``frames`` decisions against a link of ``mbps``; returns the picks."""
    size = {OFFLOAD: 30_000, SPLIT2: 6_000}
    picks = []
    for _ in range(frames):
        clock.t += 0.2
        c = rule.pick()
        picks.append(c)
        rule.observe(c, local(150.0) if c is LOCAL else edge(size[c], link(mbps, size[c])))
    return picks


def test_probes_every_candidate_once_then_prefers_the_first_that_fits():
    clock = Clock()
    rule = RateRule([OFFLOAD, SPLIT2, LOCAL], sla_ms=300, clock=clock)
    picks = feed(rule, clock, 40.0, 6)
    assert picks[:3] == [OFFLOAD, SPLIT2, LOCAL]
    assert picks[3:] == [OFFLOAD] * 3


def test_bandwidth_estimate_ignores_the_fixed_network_floor():
    clock = Clock()
    rule = RateRule([OFFLOAD, SPLIT2, LOCAL], sla_ms=300, clock=clock)
    feed(rule, clock, 8.0, 12)
    # Samples are payload / (network time - floor). The floor is the smallest network
    # time seen (the 6 kB probe: 10 ms + 6 ms), so the estimate errs a little high,
    # but is not dragged down to payload / whole network time (30 kB / 40 ms = 6 Mbps).
    assert rule.network_floor_ms == 16.0
    assert 8.0 <= rule.bandwidth_mbps <= 10.5


def test_backs_off_when_the_link_collapses_and_returns_when_it_recovers():
    clock = Clock()
    rule = RateRule([OFFLOAD, SPLIT2, LOCAL], sla_ms=300, clock=clock)
    feed(rule, clock, 40.0, 10)
    slow = feed(rule, clock, 0.3, 30)
    # 30 kB at 0.3 Mbps is 800 ms: offload stops; split 2-bit (6 kB, 170 ms) fits.
    assert slow[-10:].count(OFFLOAD) == 0
    assert slow[-10:].count(SPLIT2) >= 8
    fast = feed(rule, clock, 40.0, 40)
    assert fast[-10:].count(OFFLOAD) >= 8


def test_falls_back_to_the_fastest_when_nothing_fits():
    clock = Clock()
    rule = RateRule([OFFLOAD, LOCAL], sla_ms=50, clock=clock)
    picks = feed(rule, clock, 1.0, 12)
    # Offload (250 ms) never fits 50 ms, local (150 ms) neither: the fastest is local,
    # with a re-probe of the link every ``probe_every`` local frames.
    assert picks[2:].count(LOCAL) >= 8
    assert OFFLOAD in picks[2:]


def test_needs_candidates():
    import pytest

    with pytest.raises(ValueError, match="at least one candidate"):
        RateRule([], sla_ms=100)


def test_published_server_load_counts_before_frames_feel_it():
    clock = Clock()
    load = {"ms": 0.0}
    rule = RateRule(
        [OFFLOAD, LOCAL],
        sla_ms=300,
        clock=clock,
        server_hint=lambda c: load["ms"] if c.remote else None,
    )
    feed(rule, clock, 40.0, 6)
    assert rule.pick() == OFFLOAD
    # Other devices filled the edge's queue: it publishes 400 ms of expected wait.
    load["ms"] = 400.0
    assert rule.predict_ms(OFFLOAD) > 400
    assert rule.pick() == LOCAL
