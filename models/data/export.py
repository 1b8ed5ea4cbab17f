"""Write generated samples as a COCO dataset folder that pycocotools and the loader read.

Layout of a dataset folder::

    annotations.json   COCO detection format (info, images, annotations, categories)
    images/000001.png  RGB frames, PNG by default (JPEG quality 95 on request)
    semantic/000001.png  8-bit class index per pixel, 0 = background

Images default to PNG: lossless, so the pixels a model sees are the ones the masks
were drawn on, and byte-identical for a given seed on any machine with the same
zlib. PNG level 1: noisy frames barely compress anyway (~144 KiB vs ~128 KiB at
level 6 for 320x240) and it writes 2.5x faster. JPEG (quality 95, no chroma
subsampling) is there for realistic compression and smaller folders.

Annotations: ``bbox`` [x, y, w, h] of the *visible* pixels, ``area`` their count,
``segmentation`` compressed RLE (pycocotools.mask), ``iscrowd`` 0, ``visibility``
(visible share of the full shape). Video frames add ``video_id`` / ``frame_index``
to images and ``track_id`` to annotations.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from splitedge.models.data.errors import DataConfigError
from splitedge.models.data.shapes import CLASS_NAMES
from splitedge.models.data.synthetic import Instance, Sample, SceneConfig, generate_image
from splitedge.models.data.video import VideoConfig, generate_video

ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"
SEMANTIC_DIR = "semantic"
IMAGE_FORMATS = ("png", "jpeg")
CATEGORIES: list[dict[str, Any]] = [
    {"id": index + 1, "name": name, "supercategory": "shape"}
    for index, name in enumerate(CLASS_NAMES)
]


def box_annotations(
    instances: Sequence[Instance], image_id: int, first_id: int
) -> list[dict[str, Any]]:
    """Box-only COCO annotations of ``instances`` (ids from ``first_id``), for in-memory
    ground truth handed to :func:`~splitedge.models.data.evaluation.evaluate_detections`."""
    return [
        {
            "id": first_id + i,
            "image_id": image_id,
            "category_id": int(inst.class_id),
            "bbox": [float(v) for v in inst.bbox_xywh],
            "area": float(inst.area_px),
            "iscrowd": 0,
        }
        for i, inst in enumerate(instances)
    ]


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a (H, W) boolean mask, JSON-ready (``counts`` as str)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


class CocoWriter:
    """Stream samples into a dataset folder; ``close()`` writes ``annotations.json``.

    Image ids count from 1 in the order samples are added; so do annotation ids.
    """

    def __init__(
        self,
        out_dir: str | Path,
        image_format: str = "png",
        info: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if image_format not in IMAGE_FORMATS:
            raise DataConfigError(
                f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}"
            )
        self.out_dir = Path(out_dir)
        if (self.out_dir / ANNOTATION_FILE).exists():
            if not overwrite:
                raise DataConfigError(
                    f"{self.out_dir} already holds a dataset ({ANNOTATION_FILE}); "
                    "pick another folder or pass overwrite=True"
                )
            for name in (IMAGE_DIR, SEMANTIC_DIR):
                shutil.rmtree(self.out_dir / name, ignore_errors=True)
        (self.out_dir / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
        (self.out_dir / SEMANTIC_DIR).mkdir(parents=True, exist_ok=True)
        self.image_format = image_format
        self._info = {"description": "splitedge procedural shapes", "version": "1", **(info or {})}
        self._info.update(image_format=image_format, semantic_dir=SEMANTIC_DIR)
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []

    @property
    def images_written(self) -> int:
        return len(self._images)

    def add(self, sample: Sample) -> int:
        """Write one frame and its labels; returns its image id."""
        image_id = len(self._images) + 1
        suffix = "png" if self.image_format == "png" else "jpg"
        file_name = f"{image_id:06d}.{suffix}"
        path = self.out_dir / IMAGE_DIR / file_name
        if self.image_format == "png":
            Image.fromarray(sample.image).save(path, compress_level=1)
        else:
            Image.fromarray(sample.image).save(path, quality=95, subsampling=0)
        Image.fromarray(sample.semantic).save(self.out_dir / SEMANTIC_DIR / f"{image_id:06d}.png")
        height, width = sample.semantic.shape
        record: dict[str, Any] = {
            "id": image_id,
            "file_name": file_name,
            "width": int(width),
            "height": int(height),
        }
        if sample.video_id is not None:
            record.update(video_id=int(sample.video_id), frame_index=int(sample.frame_index or 0))
        self._images.append(record)
        for instance in sample.instances:
            annotation: dict[str, Any] = {
                "id": len(self._annotations) + 1,
                "image_id": image_id,
                "category_id": int(instance.class_id),
                "bbox": [int(v) for v in instance.bbox_xywh],
                "area": int(instance.area_px),
                "segmentation": encode_rle(instance.mask),
                "iscrowd": 0,
                "visibility": round(float(instance.visibility), 4),
            }
            if sample.video_id is not None:
                annotation["track_id"] = int(instance.track_id)
            self._annotations.append(annotation)
        return image_id

    def close(self) -> Path:
        """Write ``annotations.json`` (compact, key order fixed) and return its path."""
        document = {
            "info": self._info,
            "images": self._images,
            "annotations": self._annotations,
            "categories": CATEGORIES,
        }
        path = self.out_dir / ANNOTATION_FILE
        path.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
        return path

    def __enter__(self) -> CocoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()


def build_dataset(
    out_dir: str | Path,
    num_images: int,
    seed: int,
    scene: SceneConfig | None = None,
    video: VideoConfig | None = None,
    image_format: str = "png",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate ``num_images`` frames into ``out_dir``; returns the annotation file's path.

    With ``video``, the frames come as sequences of ``video.frames`` (the last one cut
    short if ``num_images`` is not a multiple). ``progress(n)`` is called after each
    ``n`` frames written (for a progress bar).
    """
    if num_images < 1:
        raise DataConfigError(f"number of images must be >= 1, got {num_images}")
    scene = scene or SceneConfig()
    info: dict[str, Any] = {"seed": int(seed), "scene_config": asdict(scene)}
    if video is not None:
        info["video_config"] = asdict(video)
    with CocoWriter(out_dir, image_format, info, overwrite) as writer:
        if video is None:
            for index in range(num_images):
                writer.add(generate_image(scene, seed, index))
                if progress:
                    progress(1)
        else:
            video_index = 0
            while writer.images_written < num_images:
                frames = generate_video(scene, video, seed, video_index)
                for sample in frames[: num_images - writer.images_written]:
                    writer.add(sample)
                    if progress:
                        progress(1)
                video_index += 1
    return Path(out_dir) / ANNOTATION_FILE
