"""Command line for the procedural dataset: make one, or look at one.

    python -m splitedge.models.data.cli make --out DIR --images N --seed S [--video] [--size WxH]
    python -m splitedge.models.data.cli preview --data DIR --out grid.png [--count 16]

``make`` writes a COCO folder (see :mod:`splitedge.models.data.export`) with a
progress bar; ``preview`` draws boxes, class names and track ids on the first
frames of any COCO folder, so a person can check what a model will see.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from splitedge.models.data.coco import CocoDetection
from splitedge.models.data.errors import DataError
from splitedge.models.data.export import IMAGE_FORMATS, build_dataset
from splitedge.models.data.synthetic import SceneConfig
from splitedge.models.data.video import VideoConfig
from splitedge.proto.options import size_arg

_PALETTE = [
    (255, 64, 64),
    (64, 255, 64),
    (64, 160, 255),
    (255, 220, 0),
    (255, 64, 255),
    (0, 255, 255),
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m splitedge.models.data.cli", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="generate a COCO-format dataset folder")
    make.add_argument("--out", type=Path, required=True, help="output folder")
    make.add_argument("--images", type=int, required=True, help="number of frames")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument(
        "--size", type=size_arg(), default=(320, 240), help="WIDTHxHEIGHT, default 320x240"
    )
    make.add_argument("--video", action="store_true", help="write sequences with track ids")
    make.add_argument("--frames-per-video", type=int, default=16)
    make.add_argument(
        "--empty-fraction", type=float, default=0.2, help="share of frames without objects"
    )
    make.add_argument(
        "--format", choices=IMAGE_FORMATS, default="png", help="png (lossless) or jpeg (q95)"
    )
    make.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    preview = commands.add_parser(
        "preview", help="draw labels on the first frames of a COCO folder"
    )
    preview.add_argument("--data", type=Path, required=True, help="dataset folder")
    preview.add_argument("--out", type=Path, required=True, help="PNG to write")
    preview.add_argument("--count", type=int, default=16)
    return parser


def _make(args: argparse.Namespace) -> int:
    width, height = args.size
    scene = SceneConfig(width=width, height=height, empty_fraction=args.empty_fraction)
    video = VideoConfig(frames=args.frames_per_video) if args.video else None
    started = time.perf_counter()
    with tqdm(total=args.images, unit="img", desc="generating") as bar:
        path = build_dataset(
            args.out, args.images, args.seed, scene, video, args.format, args.overwrite, bar.update
        )
    elapsed_s = time.perf_counter() - started
    print(f"wrote {args.images} images to {args.out} in {elapsed_s:.1f} s ({path.name})")
    return 0


def _preview(args: argparse.Namespace) -> int:
    dataset = CocoDetection(args.data)
    tiles = []
    for index in range(min(args.count, len(dataset))):
        image, target = dataset[index]
        canvas = Image.fromarray(image)
        draw = ImageDraw.Draw(canvas)
        for box, label, track in zip(
            target["boxes"], target["labels"], target["track_ids"], strict=True
        ):
            colour = _PALETTE[(int(label) - 1) % len(_PALETTE)]
            draw.rectangle([float(v) for v in box], outline=colour)
            name = dataset.categories.get(int(label), str(label)) + (f" #{track}" if track else "")
            draw.text((float(box[0]) + 1, float(box[1]) + 1), name, fill=colour)
        tiles.append(np.asarray(canvas))
    if not tiles:
        print(f"{args.data} has no images", file=sys.stderr)
        return 1
    columns = min(4, len(tiles))
    height, width = tiles[0].shape[:2]
    grid = np.zeros((-(-len(tiles) // columns) * height, columns * width, 3), np.uint8)
    for k, tile in enumerate(tiles):
        row, col = divmod(k, columns)
        grid[row * height : (row + 1) * height, col * width : (col + 1) * width] = tile[
            :height, :width
        ]
    Image.fromarray(grid).save(args.out)
    print(f"wrote {len(tiles)} labelled frames to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for bad input, with a one-line message)."""
    args = _parser().parse_args(argv)
    try:
        return _make(args) if args.command == "make" else _preview(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
