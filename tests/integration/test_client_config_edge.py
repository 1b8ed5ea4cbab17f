"""A custom split point end to end: the edge serves fasterrcnn_mobilenet_v3_large_fpn
cut at ``features.9`` (``--model NAME:split_points=features.9``: one value, once read
letter by letter), and ``splitedge-client run --config`` naming the same split point in
its ``[model]`` options sends split frames and gets answers (the client had no config
file, and no way to give one split point as a list)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MODEL = "fasterrcnn_mobilenet_v3_large_fpn"


def test_client_config_uses_the_split_point_the_edge_was_given(edge_factory, tmp_path: Path):
    # random init (no downloads), small inputs; both sides build the same seeded weights
    edge = edge_factory(
        "--model", f"{MODEL}:split_points=features.9,min_size=128,max_size=160,score_thresh=0.0"
    )
    config = tmp_path / "client.toml"
    config.write_text(
        f'server = "{edge.address}"\n'
        'branch = "split@features.9"\n'
        'size = "160x128"\n'
        "frames = 2\n"
        "deadline_ms = 0\n"
        'backend = "torch"\n'
        'out = "results.jsonl"\n'
        "[model]\n"
        f'name = "{MODEL}"\n'
        'options = { split_points = "features.9", min_size = 128, max_size = 160, '
        "score_thresh = 0.0 }\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "splitedge.mobile_client.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 2, lines
    assert all(line["source"] == "edge" for line in lines), lines
    assert all(line["branch"] == "split@features.9" for line in lines), lines
    assert all(line["payload_bytes"] > 0 for line in lines), lines
    assert "2 frames (edge=2)" in proc.stderr


def test_edge_refuses_a_wrong_list_item_in_one_line(tmp_path: Path):
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "splitedge.edge.cli", "serve", "--port", "0"),
            *("--model", f"{MODEL}:jpeg_qualities=high"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [
        f"splitedge-edge: error: models[0] ({MODEL}): bad options (option 'jpeg_qualities': "
        "expected an integer or a list of integers, got 'high')"
    ], proc.stderr
