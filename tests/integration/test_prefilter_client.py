"""The committed prefilter gating a real client in front of a real edge server: frames it
rejects are recorded as prefiltered and never reach the server; the CLI loads it by name."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from splitedge.mobile_client import Client
from splitedge.mobile_client.sources import CameraFrame
from splitedge.models.data import SceneConfig, generate_image
from splitedge.models.prefilter import load_prefilter

pytestmark = pytest.mark.integration


def _mixed_frames(prefilter, want: int = 3) -> list[CameraFrame]:
    """Synthetic validation frames: ``want`` it keeps and ``want`` it drops, interleaved."""
    images = [generate_image(SceneConfig(), 5, i).image for i in range(120)]
    keep = [prefilter.keep(im) for im in images]
    kept = [im for im, k in zip(images, keep, strict=True) if k][:want]
    dropped = [im for im, k in zip(images, keep, strict=True) if not k][:want]
    assert len(kept) == want and len(dropped) == want, "validation frames lack both kinds"
    order = [im for pair in zip(kept, dropped, strict=True) for im in pair]
    return [CameraFrame(i, im, time.monotonic_ns()) for i, im in enumerate(order)]


async def test_prefiltered_frames_never_touch_the_server(edge_factory):
    prefilter = load_prefilter("prefilter-frame.pt")
    frames = _mixed_frames(prefilter)
    edge = edge_factory("--model", "echo")
    async with Client(edge.address, "echo", prefilter=prefilter.keep) as client:
        outcomes = [o async for o in client.run(frames, "offload-jpeg90")]
        status = await client.status()
    assert [o.frame_id for o in outcomes] == [f.index for f in frames]
    for frame, outcome in zip(frames, outcomes, strict=True):
        if prefilter.keep(frame.image):
            assert outcome.source == "edge" and outcome.payload_bytes > 0
        else:
            assert (outcome.source, outcome.reason) == ("dropped", "prefiltered")
            assert outcome.payload_bytes == 0 and outcome.timing.roundtrip_ms == 0
        assert outcome.timing.prefilter_ms > 0
    assert client.prefiltered == 3
    served = sum(b.frames for b in status.branches if b.branch == "offload-jpeg90")
    assert served == 3  # only the kept frames reached the edge


def _client_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "splitedge.mobile_client.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_prefilter_by_zoo_name(edge_factory, tmp_path):
    edge = edge_factory("--model", "echo")
    out = tmp_path / "out.jsonl"
    done = _client_cli(
        "run", "--server", edge.address, "--model", "echo", "--branch", "offload-jpeg90",
        "--frames", "6", "--size", "160x120", "--prefilter", "zoo:prefilter-frame",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6
    assert all(line["timing_ms"]["prefilter_ms"] > 0 for line in lines)
    assert {(line["source"], line["reason"]) for line in lines} <= {
        ("edge", ""),
        ("dropped", "prefiltered"),
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("zoo:teacher-frcnn-small", "is a teacher-detector, not a prefilter"),
        ("zoo:nope", "unknown zoo entry 'nope'"),
        ("/nonexistent/pf.pt", "does not exist"),
    ],
)
def test_cli_bad_prefilter_is_one_line_error(value, message):
    done = _client_cli(
        "run", "--server", "127.0.0.1:9", "--model", "echo", "--branch", "offload-jpeg90",
        "--frames", "1", "--prefilter", value,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_bad_file_is_refused(tmp_path):
    bad = tmp_path / "pf.pt"
    bad.write_bytes(np.arange(10, dtype=np.uint8).tobytes())
    done = _client_cli(
        "run", "--server", "127.0.0.1:9", "--model", "echo", "--branch", "offload-jpeg90",
        "--prefilter", str(bad),
    )  # fmt: skip
    assert done.returncode == 2 and "cannot read prefilter checkpoint" in done.stderr
