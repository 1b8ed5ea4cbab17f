"""Read any COCO-format detection folder (real COCO, or one written by :mod:`.export`).

:class:`CocoDetection` checks the whole annotation file when it is opened, so a
broken dataset fails at once with one precise line (missing file, bad JSON, a
missing field, image files not on disk, a bbox with negative size) instead of
deep inside a training loop. Items are ``(image, target)``: ``image`` is
(H, W, 3) uint8 RGB and ``target`` holds numpy arrays (``boxes`` float32 xyxy in
pixels, ``labels`` int64 COCO category ids, ...). :class:`TorchDetectionDataset`
turns those into torchvision detection targets; torch is imported only there.

Zero-width/height boxes (which real COCO has a few of) are dropped from targets,
because torchvision's detectors reject degenerate boxes; crowd regions are dropped
by default, as torchvision's reference training does.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from splitedge.models.data.errors import (
    AnnotationFileNotFoundError,
    ImageFilesMissingError,
    InvalidBBoxError,
    MalformedAnnotationsError,
)
from splitedge.models.data.export import ANNOTATION_FILE, IMAGE_DIR, SEMANTIC_DIR

_SHOWN_MISSING = 3  # how many missing file names an error message lists


def load_annotations(path: str | Path) -> dict[str, Any]:
    """Parse a COCO annotation file, with precise errors for a missing or non-JSON file."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationFileNotFoundError(f"annotation file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MalformedAnnotationsError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise MalformedAnnotationsError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    if not isinstance(document, dict):
        raise MalformedAnnotationsError(
            f"{path}: top level must be an object, got {type(document).__name__}"
        )
    return document


def _field(record: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise MalformedAnnotationsError(f"{where} lacks {key!r}")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedAnnotationsError(
            f"{where} has {key!r} of type {type(value).__name__}, expected {kind}"
        )
    return value


def _check_bbox(bbox: Any, where: str) -> list[float]:
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise InvalidBBoxError(f"{where} has bbox {bbox!r}; expected [x, y, width, height]")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
        raise InvalidBBoxError(f"{where} has bbox {bbox!r} with a non-finite or non-number value")
    if bbox[2] < 0 or bbox[3] < 0:
        raise InvalidBBoxError(
            f"{where} has bbox {bbox!r} with negative size (width {bbox[2]}, height {bbox[3]})"
        )
    return [float(v) for v in bbox]


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, RLE or compressed RLE) as a (H, W) uint8 mask."""
    if isinstance(segmentation, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    with warnings.catch_warnings():
        # pycocotools' Cython RLE object predates NumPy 2's __array__(copy=...) protocol;
        # the warning is about its code, and the decoded mask is correct.
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(np.uint8)


class CocoDetection:
    """A COCO-format dataset folder as a sequence of ``(image, target)``.

    ``root`` holds ``annotations.json`` and ``images/`` by default; pass ``ann_file``
    and ``image_dir`` (absolute, or relative to ``root``) for other layouts, e.g.
    real COCO's ``annotations/instances_val2017.json`` and ``val2017``.
    ``with_masks`` adds ``masks`` (N, H, W) uint8; ``with_semantic`` adds the
    ``semantic`` (H, W) uint8 map that generated datasets carry.
    """

    def __init__(
        self,
        root: str | Path,
        ann_file: str | Path | None = None,
        image_dir: str | Path | None = None,
        with_masks: bool = False,
        with_semantic: bool = False,
        skip_crowd: bool = True,
        check_files: bool = True,
    ) -> None:
        self.root = Path(root)
        self.ann_path = self.root / (ann_file or ANNOTATION_FILE)
        self.image_dir = self.root / (image_dir or IMAGE_DIR)
        self.with_masks, self.with_semantic, self.skip_crowd = with_masks, with_semantic, skip_crowd
        document = load_annotations(self.ann_path)
        where = str(self.ann_path)
        for key in ("images", "categories"):
            _field(document, key, list, where)
        self.info: dict[str, Any] = document.get("info") or {}
        self.categories: dict[int, str] = {}
        for i, category in enumerate(document["categories"]):
            at = f"{where}: categories[{i}]"
            self.categories[_field(category, "id", int, at)] = _field(category, "name", str, at)
        self.images: list[dict[str, Any]] = []
        self._index_of: dict[int, int] = {}
        for i, image in enumerate(document["images"]):
            at = f"{where}: images[{i}]"
            for key, kind in (("id", int), ("file_name", str), ("width", int), ("height", int)):
                _field(image, key, kind, at)
            self._index_of[image["id"]] = len(self.images)
            self.images.append(image)
        self.annotations: list[list[dict[str, Any]]] = [[] for _ in self.images]
        for i, annotation in enumerate(document.get("annotations") or []):
            at = f"{where}: annotation id {annotation.get('id', f'#{i}')}"
            image_id = _field(annotation, "image_id", int, at)
            category_id = _field(annotation, "category_id", int, at)
            if image_id not in self._index_of:
                raise MalformedAnnotationsError(f"{at} refers to unknown image id {image_id}")
            if category_id not in self.categories:
                raise MalformedAnnotationsError(f"{at} refers to unknown category id {category_id}")
            annotation["bbox"] = _check_bbox(annotation.get("bbox"), f"{at} (image {image_id})")
            self.annotations[self._index_of[image_id]].append(annotation)
        if check_files:
            self._check_files()

    def _check_files(self) -> None:
        missing = [
            im["file_name"]
            for im in self.images
            if not (self.image_dir / im["file_name"]).is_file()
        ]
        if missing:
            shown = ", ".join(missing[:_SHOWN_MISSING]) + (
                ", ..." if len(missing) > _SHOWN_MISSING else ""
            )
            raise ImageFilesMissingError(
                f"{len(missing)} of {len(self.images)} image files listed in {self.ann_path.name} "
                f"are missing under {self.image_dir}: {shown}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> int:
        return int(self.images[index]["id"])

    def load_image(self, index: int) -> np.ndarray:
        """Image ``index`` as (H, W, 3) uint8 RGB, checked against its declared size."""
        record = self.images[index]
        path = self.image_dir / record["file_name"]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
        except FileNotFoundError as exc:
            raise ImageFilesMissingError(f"image file missing: {path}") from exc
        except OSError as exc:
            raise MalformedAnnotationsError(
                f"image file cannot be decoded: {path} ({exc})"
            ) from exc
        if array.shape[:2] != (record["height"], record["width"]):
            raise MalformedAnnotationsError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but {self.ann_path.name} says "
                f"{record['width']}x{record['height']}"
            )
        return array

    def target(self, index: int) -> dict[str, Any]:
        """Labels of image ``index`` as numpy arrays (no pixels are read unless masks/semantic)."""
        record = self.images[index]
        height, width = record["height"], record["width"]
        kept = [
            a
            for a in self.annotations[index]
            if a["bbox"][2] > 0 and a["bbox"][3] > 0 and not (self.skip_crowd and a.get("iscrowd"))
        ]
        xywh = np.array([a["bbox"] for a in kept], np.float32).reshape(-1, 4)
        target: dict[str, Any] = {
            "image_id": int(record["id"]),
            "boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            "labels": np.array([a["category_id"] for a in kept], np.int64),
            "area": np.array(
                [a.get("area", a["bbox"][2] * a["bbox"][3]) for a in kept], np.float32
            ),
            "iscrowd": np.array([int(a.get("iscrowd", 0)) for a in kept], np.int64),
            "track_ids": np.array([int(a.get("track_id", 0)) for a in kept], np.int64),
        }
        if self.with_masks:
            masks = np.zeros((len(kept), height, width), np.uint8)
            for k, annotation in enumerate(kept):
                if "segmentation" not in annotation:
                    raise MalformedAnnotationsError(
                        f"{self.ann_path}: annotation id {annotation.get('id')} has no "
                        "segmentation; load with with_masks=False"
                    )
                masks[k] = segmentation_to_mask(annotation["segmentation"], height, width)
            target["masks"] = masks
        if self.with_semantic:
            target["semantic"] = self._load_semantic(record)
        return target

    def _load_semantic(self, record: dict[str, Any]) -> np.ndarray:
        folder = self.root / str(self.info.get("semantic_dir", SEMANTIC_DIR))
        path = folder / (Path(record["file_name"]).stem + ".png")
        if not path.is_file():
            raise ImageFilesMissingError(f"semantic map missing: {path}")
        with Image.open(path) as image:
            return np.asarray(image, dtype=np.uint8)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        return self.load_image(index), self.target(index)


class TorchDetectionDataset:
    """torchvision-style detection items: ``(image float32 [3, H, W] in [0, 1], target)``.

    ``target`` has tensors ``boxes`` (N, 4) float32 xyxy, ``labels`` int64, ``image_id``
    int64 scalar, ``area``, ``iscrowd``, and ``masks`` (N, H, W) uint8 when the
    underlying dataset loads them. ``transforms(image, target)`` runs last.
    Works with ``torch.utils.data.DataLoader(..., collate_fn=detection_collate)``.
    """

    def __init__(
        self,
        dataset: CocoDetection,
        transforms: Callable[[Any, dict[str, Any]], tuple[Any, dict[str, Any]]] | None = None,
    ) -> None:
        self.dataset, self.transforms = dataset, transforms

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, dict[str, Any]]:
        import torch  # lazily: the device runtime reads datasets without torch

        image, target = self.dataset[index]
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0
        out: dict[str, Any] = {
            key: torch.from_numpy(value)
            for key, value in target.items()
            if isinstance(value, np.ndarray)
        }
        out["image_id"] = torch.tensor(target["image_id"], dtype=torch.int64)
        if self.transforms is not None:
            return self.transforms(tensor, out)
        return tensor, out


def detection_collate(batch: list[tuple[Any, Any]]) -> tuple[tuple[Any, ...], ...]:
    """Keep images of different sizes apart: a batch is (images, targets) tuples."""
    return tuple(zip(*batch, strict=True))
