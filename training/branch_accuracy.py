"""Per-branch accuracy on a fixed-seed validation video, run the way the runtime runs it.

:func:`make_video_validator` turns a detector (a :class:`SplitModel`) into the
``Validator`` that :func:`splitedge.training.profiling.measure_profile` calls
once per :class:`~splitedge.mobile_client.profile.BranchConfig`. The validation
video comes from the data package's video mode (:func:`generate_clips`): clips of
``clip_frames`` frames, each its own scene (a scene cut: detection restarts at each
clip), with ground truth from the generator. Accuracy differs far more between
scenes than between the frames of one (the defocus of one scene costs the GHND
student's code 0.28 mAP@.5 and its teacher 0.09), so a score predicts a run only on
the same frames: the validator records which (``accuracy_video``, copied into the
profile), and a run that plays ``generate_clips`` with the same arguments plays
exactly them. For every config each frame really crosses the branch's path:

- ``local``: ``model.run_local`` on the device;
- ``offload``: the frame JPEG- (or PNG-) encoded at the branch's format and quality
  by :func:`splitedge.proto.codec.encode_image` (what ``encode_offload`` sends),
  decoded as the server does, then ``model.run_tail``;
- ``split``: ``model.run_head`` -> :func:`codec.encode_tensor` at the config's
  ``bits`` (+ zstd, what ``encode_head`` sends) -> :func:`codec.decode_tensor`
  -> ``model.run_tail``.

A slimmable model is set to the config's width first (its split branches fix
their own width; a config that names another is refused). ``input_size`` resizes
the frame's short side first and the boxes are scaled back. With detection
interval k the branch runs on frames 0, k, 2k.. of each clip and
:class:`~splitedge.mobile_client.tracker.BoxTracker` carries its boxes (same
labels and scores) through the frames in between.

Scores are pycocotools COCO metrics over all frames (``overall``) and over the
frames of each content bin (``by_bin``). Bins come from the ground truth, one
feature at a time: object count, mean box area as a fraction of the frame, mean
box-centre motion per frame as a fraction of the frame diagonal (tracks matched by
id with the previous frame, the next one for a clip's first frame). A bin with
fewer than ``min_bin_frames`` frames, or no ground-truth box at all (its mAP is
undefined, e.g. ``object_count:0``), is left out.

Detections are cached per (branch, bits, width, input size) and frame, so the
intervals of one branch share their detector runs; records are cached per config
key. Everything is deterministic for a given model and seed.

It is offline measurement (synthetic data, pycocotools, a torch model to score), so
it lives in ``splitedge.training``, not in the device runtime; it replays the
client's own detect-vs-track path by importing the client's tracker and content
bins, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitedge.mobile_client.profile import (
    DEFAULT_BIN_EDGES,
    AccuracyRecord,
    AccuracyVideo,
    BranchConfig,
    content_bins,
)
from splitedge.mobile_client.sources import resize_short_side
from splitedge.mobile_client.tracker import BoxTracker
from splitedge.models.data import (
    SceneConfig,
    VideoConfig,
    box_annotations,
    evaluate_detections,
    generate_clips,
)
from splitedge.models.data.export import CATEGORIES
from splitedge.models.types import Detections, SplitModel, TailInput
from splitedge.proto import codec
from splitedge.training.teacher_data import VAL_DATA_SEED

DEFAULT_FRAMES = 64
DEFAULT_CLIP_FRAMES = 16
DEFAULT_SIZE = (320, 240)  # (width, height), as the profile command's --size
MIN_BIN_FRAMES = 5
METRICS = {"mAP50": "map50", "mAP": "map"}  # metric name -> evaluate_detections key


class BranchAccuracyError(ValueError):
    """Bad validator settings, or a config this model cannot score."""


@dataclass(frozen=True)
class ValidationVideo:
    """The frames, their COCO ground truth and each frame's content bins."""

    frames: tuple[np.ndarray, ...]
    clip_starts: frozenset[int]  # frame indices where a clip (and detection) restarts
    coco_gt: dict[str, Any]  # image id = frame index + 1
    bins: tuple[tuple[str, ...], ...]  # per frame, e.g. ("object_count:1", "motion:2")


def _features(samples: list[Any], diagonal: float, area: float) -> list[dict[str, float]]:
    """Ground-truth content features of each frame of one clip."""

    def centres(sample: Any) -> dict[int, np.ndarray]:
        return {
            inst.track_id: np.array([x + w / 2, y + h / 2], np.float64)
            for inst in sample.instances
            for (x, y, w, h) in [inst.bbox_xywh]
        }

    per_frame = [centres(s) for s in samples]
    out = []
    for t, sample in enumerate(samples):
        feats: dict[str, float] = {"object_count": float(len(sample.instances))}
        if sample.instances:
            feats["object_size"] = float(
                np.mean([w * h for (_, _, w, h) in (i.bbox_xywh for i in sample.instances)]) / area
            )
        other = t - 1 if t > 0 else t + 1
        if 0 <= other < len(samples):
            shared = per_frame[t].keys() & per_frame[other].keys()
            if shared:
                moves = [np.linalg.norm(per_frame[t][k] - per_frame[other][k]) for k in shared]
                feats["motion"] = float(np.mean(moves)) / diagonal
        out.append(feats)
    return out


@functools.lru_cache(maxsize=4)
def validation_video(
    frames: int,
    seed: int,
    size: tuple[int, int],
    clip_frames: int,
    video: VideoConfig,
    bin_edges: tuple[tuple[str, tuple[float, ...]], ...],
) -> ValidationVideo:
    """Generate (once per argument set) ``frames`` frames in clips of ``clip_frames``."""
    width, height = size
    scene = SceneConfig(width=width, height=height)
    images: list[np.ndarray] = []
    starts: set[int] = set()
    coco_images, annotations = [], []
    bins: list[tuple[str, ...]] = []
    edges = dict(bin_edges)
    everything = generate_clips(scene, video, seed, frames, clip_frames)
    for first in range(0, frames, clip_frames):
        samples = everything[first : first + clip_frames]
        starts.add(len(images))
        for sample, feats in zip(
            samples, _features(samples, math.hypot(width, height), width * height), strict=True
        ):
            image_id = len(images) + 1
            images.append(sample.image)
            bins.append(content_bins(feats, edges))
            coco_images.append({"id": image_id, "width": width, "height": height, "file_name": ""})
            annotations += box_annotations(sample.instances, image_id, len(annotations) + 1)
    gt = {"images": coco_images, "annotations": annotations, "categories": CATEGORIES}
    return ValidationVideo(tuple(images), frozenset(starts), gt, tuple(bins))


class VideoValidator:
    """A ``Validator``: ``validator(config)`` -> ``AccuracyRecord`` (cached per config key)."""

    def __init__(
        self,
        model: SplitModel,
        video: ValidationVideo,
        *,
        metric: str = "mAP50",
        zstd_level: int = 3,
        min_bin_frames: int = MIN_BIN_FRAMES,
        accuracy_video: AccuracyVideo | None = None,
    ) -> None:
        if getattr(model, "task", "") != "detection":
            name, task = getattr(model, "name", model), getattr(model, "task", None)
            raise BranchAccuracyError(
                f"model {name!r} has task {task!r}; the video validator scores detection models "
                "only"
            )
        if metric not in METRICS:
            raise BranchAccuracyError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        self.model = model
        self.video = video
        self.metric = metric
        self.zstd_level = zstd_level
        self.min_bin_frames = min_bin_frames
        self.accuracy_video = accuracy_video  # what a profile records of these frames
        self._records: dict[str, AccuracyRecord] = {}
        self._detections: dict[tuple[str, int, float, int], dict[int, Detections]] = {}

    def __call__(self, config: BranchConfig) -> AccuracyRecord:
        if config.key not in self._records:
            self._records[config.key] = self._score(self.predictions(config))
        return self._records[config.key]

    # -- running a branch -------------------------------------------------------------

    def _check(self, config: BranchConfig) -> None:
        spec = self.model.branches.get(config.branch)
        if spec is None:
            raise BranchAccuracyError(
                f"{config.key}: model has no branch {config.branch!r}; "
                f"known: {', '.join(self.model.branches)}"
            )
        if config.detection_interval < 1:
            raise BranchAccuracyError(f"{config.key}: detection interval must be >= 1")
        branch_width = getattr(self.model, "branch_width", None)
        if spec.kind == "split" and branch_width is not None:
            own = branch_width(config.branch)
            if not math.isclose(own, config.width):
                raise BranchAccuracyError(
                    f"{config.key}: branch {config.branch!r} runs at width {own:g}, "
                    f"the config says {config.width:g}"
                )
        elif config.width != 1.0 and not hasattr(self.model, "set_width"):
            raise BranchAccuracyError(f"{config.key}: model is not slimmable (width must be 1)")

    def detect(self, config: BranchConfig, index: int) -> Detections:
        """The branch's detections on frame ``index`` (boxes in frame pixels), cached."""
        cache = self._detections.setdefault(
            (config.branch, config.bits, config.width, config.input_size), {}
        )
        if index not in cache:
            cache[index] = self._run(config, self.video.frames[index])
        return cache[index]

    def _run(self, config: BranchConfig, frame: np.ndarray) -> Detections:
        model = self.model
        spec = model.branches[config.branch]
        image = resize_short_side(frame, config.input_size)
        if hasattr(model, "set_width"):
            model.set_width(config.width)
        if spec.kind == "local":
            pred = model.run_local(image)
        elif spec.kind == "offload":
            encoded = codec.encode_image(
                image, format=spec.image_format or "jpeg", quality=spec.image_quality or 90
            )
            decoded = codec.decode_image(encoded)
            item = TailInput((image.shape[0], image.shape[1]), image=decoded)
            pred = model.run_tail(config.branch, [item])[0]
        else:
            head = model.run_head(config.branch, image)
            tensors = {
                name: codec.decode_tensor(
                    codec.encode_tensor(
                        np.ascontiguousarray(array),
                        name,
                        bits=config.bits,
                        zstd_level=self.zstd_level,
                    )
                )
                for name, array in head.tensors.items()
            }
            item = TailInput(head.orig_size, head.input_size, tensors=tensors)
            pred = model.run_tail(config.branch, [item])[0]
        if not isinstance(pred, Detections):
            raise BranchAccuracyError(
                f"{config.key}: the branch returned {type(pred).__name__}, not Detections"
            )
        boxes = np.asarray(pred.boxes, np.float32).reshape(-1, 4).copy()
        if image.shape[:2] != frame.shape[:2]:
            boxes[:, [0, 2]] *= frame.shape[1] / image.shape[1]
            boxes[:, [1, 3]] *= frame.shape[0] / image.shape[0]
        return Detections(boxes, np.asarray(pred.scores, np.float32), pred.labels)

    def predictions(self, config: BranchConfig) -> list[Detections]:
        """Per frame: detections on detection frames, tracked boxes in between."""
        self._check(config)
        k = config.detection_interval
        out: list[Detections] = []
        tracker = BoxTracker()
        last: Detections | None = None
        since = 0
        for i, frame in enumerate(self.video.frames):
            if i in self.video.clip_starts:
                since = 0
            if last is None or since % k == 0:
                last = self.detect(config, i)
                tracker.init(frame, last.boxes)
                out.append(last)
            else:
                boxes = tracker.update(frame).copy()
                out.append(Detections(boxes, last.scores, last.labels))
            since += 1
        return out

    # -- scoring ------------------------------------------------------------------------

    def score(self, predictions: Mapping[int, Detections]) -> float:
        """The metric over the frames in ``predictions`` (frame index -> its boxes), the
        others left out: e.g. a run's answered frames. NaN if they hold no object."""
        n = len(self.video.frames)
        bad = [i for i in predictions if not 0 <= i < n]
        if bad:
            raise BranchAccuracyError(f"frame {bad[0]} is not in the {n}-frame video")
        empty = Detections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        )
        every = [predictions.get(i, empty) for i in range(n)]
        return self._metric(sorted(predictions), every)

    def _metric(self, frames: list[int], predictions: list[Detections]) -> float:
        keep = {i + 1 for i in frames}
        gt = self.video.coco_gt
        subset = {
            "images": [im for im in gt["images"] if im["id"] in keep],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in keep],
            "categories": gt["categories"],
        }
        if not subset["annotations"]:
            return float("nan")  # no ground truth: the metric is undefined
        preds = [
            {"image_id": i + 1, "boxes": d.boxes, "scores": d.scores, "labels": d.labels}
            for i, d in enumerate(predictions)
            if i + 1 in keep
        ]
        return float(evaluate_detections(subset, preds)[METRICS[self.metric]])

    def _score(self, predictions: list[Detections]) -> AccuracyRecord:
        n = len(predictions)
        overall = self._metric(list(range(n)), predictions)
        if math.isnan(overall):
            raise BranchAccuracyError("the validation video has no ground-truth object")
        members: dict[str, list[int]] = {}
        for i, names in enumerate(self.video.bins):
            for name in names:
                members.setdefault(name, []).append(i)
        by_bin = {}
        for name in sorted(members):
            if len(members[name]) < self.min_bin_frames:
                continue
            value = self._metric(members[name], predictions)
            if not math.isnan(value):
                by_bin[name] = round(value, 4)
        return AccuracyRecord(round(overall, 4), by_bin)


def make_video_validator(
    model: SplitModel,
    *,
    frames: int = DEFAULT_FRAMES,
    seed: int = VAL_DATA_SEED,
    size: tuple[int, int] = DEFAULT_SIZE,
    bin_edges: Mapping[str, tuple[float, ...]] | None = None,
    metric: str = "mAP50",
    clip_frames: int = DEFAULT_CLIP_FRAMES,
    video: VideoConfig | None = None,
    zstd_level: int = 3,
    min_bin_frames: int = MIN_BIN_FRAMES,
) -> VideoValidator:
    """A validator scoring ``model``'s branches on ``frames`` frames of synthetic video.

    ``size`` is (width, height); ``bin_edges`` default to the profile's
    ``DEFAULT_BIN_EDGES``; ``metric`` is ``mAP50`` (COCO AP at IoU .5) or ``mAP``
    (AP at IoU .5:.95); ``video`` sets the motion (its ``frames`` is replaced by the
    clip length). The video is generated on the first call and kept.
    """
    if frames < 1:
        raise BranchAccuracyError(f"frames must be >= 1, got {frames}")
    if clip_frames < 1:
        raise BranchAccuracyError(f"clip_frames must be >= 1, got {clip_frames}")
    if len(size) != 2 or min(size) < 32:
        raise BranchAccuracyError(f"size must be (width, height), each >= 32, got {tuple(size)}")
    edges = dict(DEFAULT_BIN_EDGES if bin_edges is None else bin_edges)
    for name, cuts in edges.items():
        if list(cuts) != sorted(cuts):
            raise BranchAccuracyError(f"bin edges of {name!r} must be ascending, got {list(cuts)}")
    clip_video = validation_video(
        int(frames),
        int(seed),
        (int(size[0]), int(size[1])),
        int(clip_frames),
        video or VideoConfig(),
        tuple((k, tuple(float(c) for c in v)) for k, v in edges.items()),
    )
    # A profile can name these frames only when the motion is the data package's default
    # (what a scenario run plays); a custom VideoConfig leaves the record empty.
    default_motion = video is None or replace(video, frames=VideoConfig().frames) == VideoConfig()
    record = (
        AccuracyVideo(int(seed), int(frames), int(clip_frames), int(size[0]), int(size[1]), metric)
        if default_motion
        else None
    )
    return VideoValidator(
        model,
        clip_video,
        metric=metric,
        zstd_level=zstd_level,
        min_bin_frames=min_bin_frames,
        accuracy_video=record,
    )
