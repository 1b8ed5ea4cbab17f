"""Seeded video sequences: the still-image scenes, set in motion, with stable track ids.

Background and distractors stay put (a fixed camera); objects move on their own
paths with their own speed and acceleration, some rotate or grow/shrink, some
enter through a frame edge after the first frame and some leave. Because objects
keep their paint order, they occlude each other as they cross. A track is
annotated in a frame only while it passes the same visibility rule as still
images, so it disappears from the labels while hidden and comes back with the
same ``track_id`` (``video_index * 1000 + k + 1``, unique in a dataset).

Every sequence of at least six frames has at least one track that enters after
frame 0 and one that leaves before the end, so tests and trackers always see both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from splitedge.models.data.camera import CameraSpec
from splitedge.models.data.errors import DataConfigError
from splitedge.models.data.shapes import CLASS_NAMES, ShapeSpec
from splitedge.models.data.synthetic import (
    Sample,
    SceneConfig,
    SceneSpec,
    render_scene,
    sample_object,
    sample_scene,
)

_TRACKS_PER_VIDEO_LIMIT = 1000


@dataclass(frozen=True)
class VideoConfig:
    """Motion settings; speeds in pixels per frame, rates per frame."""

    frames: int = 16
    max_tracks: int = 6
    min_speed_px: float = 0.3
    max_speed_px: float = 6.0
    rotate_fraction: float = 0.5
    scale_fraction: float = 0.3
    enter_fraction: float = 0.3

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise DataConfigError(f"frames per video must be >= 1, got {self.frames}")
        if not 2 <= self.max_tracks < _TRACKS_PER_VIDEO_LIMIT:
            raise DataConfigError(
                f"max_tracks must be in [2, {_TRACKS_PER_VIDEO_LIMIT - 1}], got {self.max_tracks}"
            )
        if not 0 < self.min_speed_px <= self.max_speed_px:
            raise DataConfigError(
                f"need 0 < min_speed_px <= max_speed_px, got {self.min_speed_px}, "
                f"{self.max_speed_px}"
            )
        for name in ("rotate_fraction", "scale_fraction", "enter_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise DataConfigError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class Track:
    """An object's path: ``start`` is its pose at frame ``birth``."""

    start: ShapeSpec
    birth: int
    velocity_px: tuple[float, float]
    accel_px: tuple[float, float]
    spin_rad: float
    scale_rate: float

    def at(self, frame: int, min_px: float, max_px: float) -> ShapeSpec | None:
        """The pose at ``frame``, or None before the track is born."""
        dt = frame - self.birth
        if dt < 0:
            return None
        size = float(np.clip(self.start.size_px * self.scale_rate**dt, min_px, max_px))
        return replace(
            self.start,
            cx=self.start.cx + self.velocity_px[0] * dt + 0.5 * self.accel_px[0] * dt * dt,
            cy=self.start.cy + self.velocity_px[1] * dt + 0.5 * self.accel_px[1] * dt * dt,
            angle_rad=self.start.angle_rad + self.spin_rad * dt,
            size_px=size,
        )


def _edge_point(
    rng: np.random.Generator, config: SceneConfig, inset_px: float
) -> tuple[float, float, float, float]:
    """A point ``inset_px`` inside an edge (negative = outside) and that edge's inward normal."""
    edge = int(rng.integers(4))
    w, h = config.width, config.height
    along_x, along_y = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
    if edge == 0:
        return inset_px, along_y, 1.0, 0.0
    if edge == 1:
        return w - inset_px, along_y, -1.0, 0.0
    if edge == 2:
        return along_x, inset_px, 0.0, 1.0
    return along_x, h - inset_px, 0.0, -1.0


def sample_tracks(
    rng: np.random.Generator, scene: SceneConfig, video: VideoConfig, video_index: int
) -> list[Track]:
    """Track 1 enters late and track 2 leaves early (for sequences of >= 6 frames)."""
    forced = video.frames >= 6
    tracks: list[Track] = []
    for k in range(int(rng.integers(2, video.max_tracks + 1))):
        class_id = int(rng.integers(1, len(CLASS_NAMES) + 1))
        spec = sample_object(rng, scene, class_id, 0.0, 0.0)
        spec = replace(spec, track_id=video_index * _TRACKS_PER_VIDEO_LIMIT + k + 1)
        reach = 0.6 * spec.size_px * np.sqrt(max(spec.aspect, 1 / spec.aspect)) + 2.0
        speed = float(np.exp(rng.uniform(np.log(video.min_speed_px), np.log(video.max_speed_px))))
        heading = rng.uniform(0.0, 2 * np.pi)
        direction = (float(np.cos(heading)), float(np.sin(heading)))
        accel = (0.0, 0.0)
        birth = 0
        enters = (forced and k == 0) or (k > 1 and rng.random() < video.enter_fraction)
        if enters:
            # Born just outside an edge, fast enough to be well inside within a few frames.
            cx, cy, nx, ny = _edge_point(rng, scene, -reach)
            birth = int(rng.integers(1, max(video.frames // 2, 1) + 1)) if forced else 1
            speed = max(speed, 1.3 * reach / 3.0)
            direction = (nx, ny)
        elif forced and k == 1:
            # Starts in view near an edge and heads out, gone by about mid-sequence.
            cx, cy, nx, ny = _edge_point(rng, scene, float(rng.uniform(0.5, 0.9)) * reach)
            speed = max(speed, float(rng.uniform(1.0, 2.2)) * reach / (video.frames // 2))
            direction = (-nx, -ny)
        else:
            cx, cy = float(rng.uniform(0, scene.width)), float(rng.uniform(0, scene.height))
            accel_scale = 0.05 * speed
            accel = (
                float(rng.normal(0, accel_scale)),
                float(rng.normal(0, accel_scale)),
            )
        spin = rng.normal(0.0, 0.08) if rng.random() < video.rotate_fraction else 0.0
        scale = np.exp(rng.normal(0.0, 0.02)) if rng.random() < video.scale_fraction else 1.0
        tracks.append(
            Track(
                start=replace(spec, cx=float(cx), cy=float(cy)),
                birth=birth,
                velocity_px=(speed * direction[0], speed * direction[1]),
                accel_px=accel,
                spin_rad=float(spin),
                scale_rate=float(scale),
            )
        )
    return tracks


def generate_video(
    scene: SceneConfig, video: VideoConfig, seed: int, video_index: int
) -> list[Sample]:
    """All frames of video ``video_index`` of the dataset with ``seed`` (deterministic)."""
    # A three-word seed keeps video streams apart from still-image streams [seed, index].
    rng = np.random.default_rng([seed, video_index, 1])
    backdrop = sample_scene(rng, scene, empty=True)
    split = len(backdrop.layers) - round(len(backdrop.layers) * scene.occluder_fraction)
    under, over = backdrop.layers[:split], backdrop.layers[split:]
    tracks = sample_tracks(rng, scene, video, video_index)
    order = rng.permutation(len(tracks))  # paint order, fixed for the whole sequence
    gain_wobble = rng.uniform(0.0, 0.08)
    samples: list[Sample] = []
    for frame in range(video.frames):
        poses = (tracks[i].at(frame, 2.0, 1.5 * scene.max_object_px) for i in order)
        objects = tuple(pose for pose in poses if pose is not None)
        camera: CameraSpec = replace(
            backdrop.camera,
            gain=backdrop.camera.gain * (1.0 + gain_wobble * np.sin(0.7 * frame)),
            noise_seed=int(rng.integers(2**31)),
        )
        spec = SceneSpec(
            width=scene.width,
            height=scene.height,
            background=backdrop.background,
            layers=(*under, *objects, *over),
            camera=camera,
        )
        sample = render_scene(spec, scene.min_visibility, scene.min_area_px)
        sample.video_id, sample.frame_index = video_index, frame
        samples.append(sample)
    return samples


def generate_clips(
    scene: SceneConfig,
    video: VideoConfig,
    seed: int,
    frames: int,
    clip_frames: int,
    first_video: int = 0,
) -> list[Sample]:
    """``frames`` frames cut into clips of ``clip_frames``, each clip its own scene.

    Clip ``k`` is video ``first_video + k`` of ``seed`` (:func:`generate_video`, a new
    backdrop, camera and set of tracks); the last clip is shorter when ``clip_frames``
    does not divide ``frames``. A clip starts where ``sample.frame_index == 0``.

    One scene plays one camera for all of its frames, and a detector's accuracy varies
    from one camera to the next far more than over the frames of one clip (defocus
    blur costs a distilled bottleneck much more than its teacher), so a video meant to
    stand for the whole distribution needs many clips. The profile's validation video
    is made here; a run that plays the same call's frames plays exactly the frames the
    profile was measured on.
    """
    if frames < 1:
        raise DataConfigError(f"frames must be >= 1, got {frames}")
    if clip_frames < 1:
        raise DataConfigError(f"clip_frames must be >= 1, got {clip_frames}")
    if first_video < 0:
        raise DataConfigError(f"first_video must be >= 0, got {first_video}")
    samples: list[Sample] = []
    clip = first_video
    while len(samples) < frames:
        n = min(clip_frames, frames - len(samples))
        samples += generate_video(scene, replace(video, frames=n), seed, clip)
        clip += 1
    return samples
