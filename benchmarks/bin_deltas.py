"""Do a profile's per-content-bin accuracies carry over to other video? Scored per video.

    python -m benchmarks.bin_deltas [--videos SEED:FRAMES:CLIP,...] [--intervals 1,4]
                                    [--branches a,b] [--profile PATH] [--quick]

A profile rates each entry per content bin (``accuracy_by_bin``: object count, size,
motion; ``configs/profiles/README.md``) and the scheduler adds a bin's delta (bin minus
overall) to the entry's accuracy for the content its answers show. This scores the
profile's entries (the trained student ``zoo:ghnd-frcnn-small-c12`` by default) the way
the profile did (``splitedge.training.branch_accuracy``: 320x240 synthetic video, every
frame through the branch's real path) on several seeded videos, splits each delta into
the part shared by the entries of one detection interval (their mean) and each branch's
own part, and asks whether each part repeats from one video to another: the Pearson
correlation, over (entry, bin) pairs, between two videos' parts. The shared part of an
interval k > 1 is taken relative to interval 1's (what tracking does with the content:
e.g. fast motion hurts it). The first video is the profile's own (seed 424242, 32 clips
of 16 frames); seed 1 in 50-frame scenes is the field benchmark's.

Per video the table gives each entry's overall accuracy and the rms of the branch parts;
then each pair of videos' correlations. Last line:
``bin_branch_corr_mean=<x> bin_branch_rms=<y> bin_interval_corr_mean=<z>`` (the last
only with two intervals). The scheduler shares a bin's delta within an interval
(``Scheduler(bin_deltas="interval")``) because the branch parts did not repeat
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks._stats import machine, table

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "configs" / "profiles" / "ghnd-frcnn-small-c12.json"
VIDEOS = "424242:512:16,1:250:50,7:512:16,11:512:16"
QUICK_VIDEOS = "424242:64:16,7:64:16"


@dataclass(frozen=True)
class Video:
    seed: int
    frames: int
    clip: int

    @property
    def name(self) -> str:
        return f"{self.seed}:{self.frames}:{self.clip}"


@dataclass(frozen=True)
class Scored:
    """One video's scores: per entry (its config key, its detection interval), overall
    and per bin. The config key tells apart entries of one branch at other widths, bits
    or input sizes."""

    video: Video
    overall: dict[tuple[str, int], float]
    by_bin: dict[tuple[str, int], dict[str, float]]


def parse_videos(text: str) -> list[Video]:
    """``SEED:FRAMES:CLIP,...`` -> videos; ValueError naming the bad item."""
    videos = []
    for item in (s.strip() for s in text.split(",")):
        parts = item.split(":")
        try:
            seed, frames, clip = (int(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"--videos: {item!r} is not SEED:FRAMES:CLIP (three integers)"
            ) from None
        if frames < 1 or clip < 1 or seed < 0:
            raise ValueError(f"--videos: {item!r} needs seed >= 0, frames >= 1, clip >= 1")
        videos.append(Video(seed, frames, clip))
    if len(videos) < 2:
        raise ValueError("--videos: give at least two videos to compare")
    return videos


def parts(scored: Scored, bins: list[str]) -> tuple[dict, dict]:
    """The video's deltas split into (entry, bin) -> branch part and (interval, bin) ->
    shared part (relative to interval 1's for k > 1). Bins an entry lacks are left out."""
    shared: dict[tuple[int, str], float] = {}
    branch: dict[tuple[tuple[str, int], str], float] = {}
    intervals = sorted({k for _, k in scored.overall})
    for b in bins:
        for k in intervals:
            keys = [e for e in scored.overall if e[1] == k and b in scored.by_bin[e]]
            if not keys:
                continue
            deltas = {e: scored.by_bin[e][b] - scored.overall[e] for e in keys}
            mean = float(np.mean(list(deltas.values())))
            shared[(k, b)] = mean
            for e, d in deltas.items():
                branch[(e, b)] = d - mean
    relative = {
        (k, b): v - shared[(intervals[0], b)]
        for (k, b), v in shared.items()
        if k != intervals[0] and (intervals[0], b) in shared
    }
    return branch, relative


def correlation(a: dict, b: dict) -> float:
    """Pearson correlation over the keys both have; NaN with fewer than three."""
    keys = sorted(a.keys() & b.keys(), key=str)
    if len(keys) < 3:
        return float("nan")
    x, y = np.array([a[k] for k in keys]), np.array([b[k] for k in keys])
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def score(model, profile, video: Video, keys: list, progress) -> Scored:
    from splitedge.training.branch_accuracy import make_video_validator

    validator = make_video_validator(
        model,
        frames=video.frames,
        seed=video.seed,
        size=(320, 240),
        clip_frames=video.clip,
        bin_edges=profile.bin_edges,
        metric="mAP50",
    )
    overall, by_bin = {}, {}
    for e in profile.entries:
        key = (e.config.key, e.config.detection_interval)
        if key not in keys:
            continue
        record = validator(e.config)
        overall[key], by_bin[key] = record.overall, dict(record.by_bin)
        progress.update(1)
    return Scored(video, overall, by_bin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--videos",
        default=None,
        help=f"SEED:FRAMES:CLIP videos, the profile's first (default {VIDEOS})",
    )
    parser.add_argument("--intervals", default="1", help="detection intervals (default 1)")
    parser.add_argument("--branches", default="", help="branches to score (default: all)")
    parser.add_argument("--profile", default=str(PROFILE), help="the scheduler profile")
    parser.add_argument(
        "--model", default="zoo:ghnd-frcnn-small-c12", help="the model the profile rates"
    )
    parser.add_argument("--quick", action="store_true", help=f"two short videos ({QUICK_VIDEOS})")
    args = parser.parse_args(argv)
    try:
        videos = parse_videos(args.videos or (QUICK_VIDEOS if args.quick else VIDEOS))
        intervals = sorted({int(k) for k in args.intervals.split(",")})
        if min(intervals) < 1:
            raise ValueError("interval < 1")
    except ValueError as exc:
        text = str(exc)
        parser.error(
            text
            if text.startswith("--")
            else f"--intervals: {args.intervals!r} is not a "
            "comma-separated list of detection intervals >= 1"
        )
    from splitedge.mobile_client.profile import ProfileError, load_profile

    try:
        profile = load_profile(args.profile)
    except (OSError, ProfileError) as exc:
        parser.error(f"--profile: {exc}")
    wanted = {b.strip() for b in args.branches.split(",") if b.strip()}
    chosen = [
        e
        for e in profile.entries
        if e.config.detection_interval in intervals and (not wanted or e.config.branch in wanted)
    ]
    keys = [(e.config.key, e.config.detection_interval) for e in chosen]
    missing = wanted - {e.config.branch for e in chosen}
    if missing:
        parser.error(f"--branches: not in the profile at these intervals: {sorted(missing)}")
    if len(keys) < 2:
        parser.error("--branches/--intervals leave fewer than two profile entries")

    import torch

    from splitedge.models.registry import UnknownModelError, create_model

    torch.set_num_threads(1)
    try:
        model = create_model(args.model)
    except (UnknownModelError, OSError, ValueError) as exc:
        parser.error(f"--model: {exc}")
    print(f"# machine: {machine()}; profile {args.profile}; model {args.model}")
    scored = []
    with tqdm(total=len(videos) * len(keys), desc="scoring", unit="entry") as progress:
        for v in videos:
            scored.append(score(model, profile, v, keys, progress))
    bins = sorted({b for s in scored for d in s.by_bin.values() for b in d})
    split = [parts(s, bins) for s in scored]
    rows = []
    for s, (branch, _) in zip(scored, split, strict=True):
        rms = float(np.sqrt(np.mean([v * v for v in branch.values()]))) if branch else 0.0
        rows.append([s.video.name] + [s.overall[k] for k in keys] + [rms])
    print(table(["video"] + [key for key, _ in keys] + ["branch_rms"], rows))
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(split), 2):
        pairs.append(
            [videos[i].name, videos[j].name, correlation(a[0], b[0]), correlation(a[1], b[1])]
        )
    print()
    print(table(["video", "video", "branch_corr", "interval_corr"], pairs))
    branch_corr = float(np.nanmean([p[2] for p in pairs]))
    rms_all = float(np.mean([r[-1] for r in rows]))
    line = f"bin_branch_corr_mean={branch_corr:.3f} bin_branch_rms={rms_all:.4f}"
    if len(intervals) > 1:
        line += f" bin_interval_corr_mean={float(np.nanmean([p[3] for p in pairs])):.3f}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
