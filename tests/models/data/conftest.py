"""Small generated datasets shared by the data tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitedge.models.data import SceneConfig, VideoConfig, build_dataset

SMALL = SceneConfig(width=96, height=72, min_object_px=6.0)


@pytest.fixture(scope="session")
def image_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 still frames, 96x72, seed 5."""
    out = tmp_path_factory.mktemp("images")
    build_dataset(out, 12, seed=5, scene=SMALL)
    return out


@pytest.fixture(scope="session")
def video_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 10-frame videos plus a 4-frame remainder, 96x72, seed 5."""
    out = tmp_path_factory.mktemp("video")
    build_dataset(out, 24, seed=5, scene=SMALL, video=VideoConfig(frames=10))
    return out
