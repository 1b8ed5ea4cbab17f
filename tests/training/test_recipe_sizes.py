"""Every recorded recipe's ``--size`` is WIDTHxHEIGHT: replaying it trains at the recorded size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from splitedge.proto.options import parse_size

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"


def _recorded(doc: dict) -> list[tuple[str, tuple[int, int]]]:
    """(command, the (height, width) it trained at) for each recipe line in a zoo record."""
    out = []
    training = doc.get("training", {})
    if "size_hw" in training:
        out.append((doc["recipe"], tuple(training["size_hw"])))
    if isinstance(doc.get("recipe"), dict) and "command" in doc:  # the depth prior's record
        out.append((doc["command"], tuple(doc["recipe"]["size_hw"])))
    return out


RECORDS = [p for p in sorted(ZOO.glob("*.json")) if _recorded(json.loads(p.read_text()))]


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_recorded_recipes_replay_their_size(path: Path):
    for command, (h, w) in _recorded(json.loads(path.read_text())):
        (size,) = re.findall(r"--size (\S+)", command)
        assert parse_size(size) == (w, h), command


def test_every_size_recording_zoo_record_is_checked():
    assert len(RECORDS) >= 6
