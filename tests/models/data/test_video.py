"""Video mode: stable track ids, motion, objects entering and leaving, determinism."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest

from splitedge.models.data import (
    DataConfigError,
    SceneConfig,
    VideoConfig,
    generate_clips,
    generate_video,
)

SCENE = SceneConfig(width=128, height=96)
VIDEO = VideoConfig(frames=12)


def _tracks(video_index: int) -> tuple[list[dict[int, tuple[int, ...]]], dict[int, set[int]]]:
    """Per frame {track_id: bbox}, and the classes each track id was ever given."""
    frames, classes = [], defaultdict(set)
    for sample in generate_video(SCENE, VIDEO, seed=9, video_index=video_index):
        ids = [i.track_id for i in sample.instances]
        assert len(ids) == len(set(ids)), "a track id appears twice in one frame"
        frames.append({i.track_id: i.bbox_xywh for i in sample.instances})
        for instance in sample.instances:
            classes[instance.track_id].add(instance.class_id)
    return frames, classes


@pytest.mark.parametrize("video_index", [0, 1, 2])
def test_track_ids_are_stable_and_unique_to_their_video(video_index: int) -> None:
    _, classes = _tracks(video_index)
    assert all(len(c) == 1 for c in classes.values()), "a track changed class"
    assert all(tid // 1000 == video_index and tid % 1000 >= 1 for tid in classes)


@pytest.mark.parametrize("video_index", [0, 1, 2])
def test_objects_move_between_frames(video_index: int) -> None:
    frames, _ = _tracks(video_index)

    def centre(box: tuple[int, ...]) -> np.ndarray:
        return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])

    moves = [
        float(np.hypot(*(centre(now[t]) - centre(before[t]))))
        for before, now in itertools.pairwise(frames)
        for t in now.keys() & before.keys()
    ]
    assert moves and np.mean([m > 0 for m in moves]) > 0.5


@pytest.mark.parametrize("video_index", [0, 1, 2])
def test_some_object_enters_and_some_leaves_through_an_edge(video_index: int) -> None:
    frames, _ = _tracks(video_index)
    entered = set().union(*frames[1:]) - frames[0].keys()
    assert entered, "no track appears after the first frame"
    left = frames[0].keys() - frames[-1].keys()
    assert left, "no track present at the start is gone at the end"
    for tid in left:
        last = max(k for k, frame in enumerate(frames) if tid in frame)
        x, y, w, h = frames[last][tid]
        touches = x <= 0 or y <= 0 or x + w >= SCENE.width or y + h >= SCENE.height
        if touches:
            return
    pytest.fail("no track left through a frame edge")


def test_frames_carry_video_id_and_frame_index() -> None:
    samples = generate_video(SCENE, VideoConfig(frames=5), seed=1, video_index=4)
    assert [(s.video_id, s.frame_index) for s in samples] == [(4, k) for k in range(5)]


def test_video_is_deterministic_and_seed_dependent() -> None:
    config = VideoConfig(frames=3)
    first = generate_video(SCENE, config, seed=2, video_index=0)
    again = generate_video(SCENE, config, seed=2, video_index=0)
    other = generate_video(SCENE, config, seed=3, video_index=0)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].image, other[0].image)


def test_clips_are_scenes_of_their_own_each_a_video_of_the_seed() -> None:
    # 7 frames in clips of 3: videos 5, 6 (3 frames each) and 7 (1 frame) of seed 2.
    clips = generate_clips(SCENE, VideoConfig(), seed=2, frames=7, clip_frames=3, first_video=5)
    assert [(s.video_id, s.frame_index) for s in clips] == [
        (5, 0), (5, 1), (5, 2), (6, 0), (6, 1), (6, 2), (7, 0),
    ]  # fmt: skip
    for first, video_index, n in ((0, 5, 3), (3, 6, 3), (6, 7, 1)):
        alone = generate_video(SCENE, VideoConfig(frames=n), seed=2, video_index=video_index)
        for a, b in zip(clips[first : first + n], alone, strict=True):
            assert np.array_equal(a.image, b.image)
            assert [i.bbox_xywh for i in a.instances] == [i.bbox_xywh for i in b.instances]
    # One clip as long as the video is the single-scene video itself.
    one = generate_clips(SCENE, VideoConfig(), seed=2, frames=5, clip_frames=5, first_video=3)
    alone = generate_video(SCENE, VideoConfig(frames=5), seed=2, video_index=3)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(one, alone, strict=True))
    for bad, message in (
        ({"frames": 0}, "frames must be >= 1"),
        ({"clip_frames": 0}, "clip_frames must be >= 1"),
        ({"first_video": -1}, "first_video must be >= 0"),
    ):
        args = {"frames": 2, "clip_frames": 2, "first_video": 0, **bad}
        with pytest.raises(DataConfigError, match=message):
            generate_clips(SCENE, VideoConfig(), 2, **args)


def test_background_is_static_but_sensor_noise_is_not() -> None:
    a, b = generate_video(SCENE, VideoConfig(frames=2), seed=2, video_index=0)
    background = (a.semantic == 0) & (b.semantic == 0)
    diff = np.abs(a.image.astype(int) - b.image.astype(int))[background]
    assert 0 < diff.mean() < 20


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"frames": 0}, "frames per video must be >= 1, got 0"),
        ({"max_tracks": 1}, "max_tracks must be in [2, 999], got 1"),
        ({"min_speed_px": 5.0, "max_speed_px": 1.0}, "need 0 < min_speed_px <= max_speed_px"),
        ({"enter_fraction": -0.1}, "enter_fraction must be in [0, 1], got -0.1"),
    ],
)
def test_bad_video_config_is_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(DataConfigError) as caught:
        VideoConfig(**options)  # type: ignore[arg-type]
    assert message in str(caught.value)
