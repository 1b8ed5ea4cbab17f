"""Training and validation data for the student recipes: generated frames or a COCO folder.

Without ``--data`` the students train on generated frames drawn on the fly
(:func:`splitedge.training.teacher_data.training_batch`, the committed recipes'
data), in process. With ``--data DIR`` they read a COCO-format folder through
:class:`splitedge.models.data.CocoDetection`, in a ``DataLoader`` with ``--workers``
processes. Layouts found in ``DIR`` (first match wins):

- ``DIR/train/annotations.json`` + ``DIR/train/images/`` (and ``DIR/val/...``);
- ``DIR/annotations/instances_train*.json`` + ``DIR/train*/`` (real COCO; val alike);
- ``DIR/annotations.json`` + ``DIR/images/`` (training only; ``--val-data`` names a
  validation folder of the same layout).

Segmentation class maps come from ``semantic/<image stem>.png`` (8-bit class
indices, the layout :mod:`splitedge.models.data.export` writes) when the folder has
one, else they are painted from the instances' masks with each category id as the
class index (larger instances first); class ids the teacher does not have become
255 (ignored).

Augmentation follows torchvision's reference scripts: detection frames are flipped
horizontally with probability 0.5 (boxes flipped with them) and resized by the
teacher's own transform (its ``min_size``/``max_size``); segmentation frames are
resized so the shorter side is the teacher's ``min_size``, flipped, and randomly
cropped (padded with ignore where smaller) to a ``min_size`` square so they batch.
The flip and crop of item ``i`` in epoch ``e`` are drawn from ``(seed, e, i)``, so a
resumed run sees the same frames as an uninterrupted one, whatever the workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from splitedge.models.data.coco import CocoDetection
from splitedge.models.data.errors import AnnotationFileNotFoundError, DataConfigError
from splitedge.models.data.export import ANNOTATION_FILE, IMAGE_DIR, SEMANTIC_DIR
from splitedge.training.teacher_data import scene_of, training_batch

IGNORE_INDEX = 255


@dataclass(frozen=True)
class Split:
    """One COCO-format split: its annotation file and image folder."""

    root: Path
    ann_file: Path
    image_dir: Path

    def open(self, *, check_files: bool = True, with_masks: bool = False) -> CocoDetection:
        semantic = (self.root / SEMANTIC_DIR).is_dir()
        return CocoDetection(
            self.root,
            self.ann_file,
            self.image_dir,
            with_semantic=semantic and with_masks,
            with_masks=with_masks and not semantic,
            check_files=check_files,
        )


def _flat(folder: Path) -> Split | None:
    if (folder / ANNOTATION_FILE).is_file():
        return Split(folder, folder / ANNOTATION_FILE, folder / IMAGE_DIR)
    return None


def _coco(folder: Path, kind: str) -> Split | None:
    found = sorted((folder / "annotations").glob(f"instances_{kind}*.json"))
    if not found:
        return None
    stem = found[0].stem.removeprefix("instances_")  # train2017
    return Split(folder, found[0], folder / stem)


def find_splits(data: Path, val_data: Path | None = None) -> tuple[Split, Split | None]:
    """The training split and the validation split (None when the folder has none and
    ``val_data`` is not given) of ``--data``; one line naming what is missing."""
    data = Path(data)
    if not data.is_dir():
        raise AnnotationFileNotFoundError(f"--data {data}: no such folder")
    train = _flat(data / "train") or _coco(data, "train") or _flat(data)
    if train is None:
        raise AnnotationFileNotFoundError(
            f"--data {data}: no COCO annotation file; expected {data / 'train' / ANNOTATION_FILE}, "
            f"{data / 'annotations' / 'instances_train*.json'} or {data / ANNOTATION_FILE}"
        )
    val = _flat(data / "val") or _coco(data, "val")
    if val_data is not None:
        val = _flat(Path(val_data))
        if val is None:
            raise AnnotationFileNotFoundError(
                f"--val-data {val_data}: no {ANNOTATION_FILE} in that folder"
            )
    return train, val


def class_map(coco: CocoDetection, index: int, target: dict[str, Any], num_classes: int) -> Any:
    """The (H, W) uint8 class map of item ``index`` (semantic PNG, else painted masks)."""
    if "semantic" in target:
        semantic = np.array(target["semantic"], dtype=np.uint8)
    else:
        record = coco.images[index]
        semantic = np.zeros((record["height"], record["width"]), np.uint8)
        masks = target.get("masks", np.zeros((0, *semantic.shape), np.uint8))
        for k in np.argsort(-target["area"], kind="stable"):
            label = int(target["labels"][k])
            semantic[masks[k] > 0] = label if label < 256 else IGNORE_INDEX
    semantic[(semantic >= num_classes) & (semantic != IGNORE_INDEX)] = IGNORE_INDEX
    return semantic


class StudentDataset(torch.utils.data.Dataset):
    """Items ``(image float32 [3, H, W] in [0, 1], target)`` for the distillation loop.

    ``target``: ``boxes`` (N, 4) xyxy pixels of the returned image and ``labels``
    (detection), or ``mask`` (H, W) int64 class map (segmentation).
    """

    def __init__(
        self,
        split: Split,
        task: str,
        *,
        seed: int,
        train: bool = True,
        crop: int | None = None,
        num_classes: int = 256,
    ) -> None:
        self.coco = split.open(with_masks=task == "segmentation")
        self.task, self.seed, self.train = task, seed, train
        self.crop, self.num_classes = crop, num_classes
        self.epoch = 0
        if task == "segmentation" and crop is None:
            raise DataConfigError("segmentation training needs a crop size (the min_size)")

    def __len__(self) -> int:
        return len(self.coco)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        image = self.coco.load_image(index)
        target = self.coco.target(index)
        flip = self.train and rng.random() < 0.5
        out: dict[str, torch.Tensor] = {}
        if self.task == "detection":
            boxes = target["boxes"].astype(np.float32)
            if flip:
                image = image[:, ::-1]
                boxes = boxes.copy()
                boxes[:, [0, 2]] = image.shape[1] - target["boxes"][:, [2, 0]]
            out["boxes"] = torch.from_numpy(boxes).reshape(-1, 4)
            out["labels"] = torch.from_numpy(target["labels"].astype(np.int64))
        else:
            semantic = class_map(self.coco, index, target, self.num_classes)
            if flip:
                image, semantic = image[:, ::-1], semantic[:, ::-1]
            image, semantic = _resize_crop(image, semantic, int(self.crop or 0), rng, self.train)
            out["mask"] = torch.from_numpy(semantic.astype(np.int64))
        pixels = torch.from_numpy(np.ascontiguousarray(image).transpose(2, 0, 1).copy())
        return pixels.float().div_(255.0), out


def _resize_crop(
    image: np.ndarray, semantic: np.ndarray, size: int, rng: np.random.Generator, train: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Shorter side to ``size``, then a ``size`` square: random (train) or centred crop,
    padded with black / ignore where the frame is smaller."""
    h, w = semantic.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    image = np.asarray(
        Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.BILINEAR)
    )
    semantic = np.asarray(
        Image.fromarray(np.ascontiguousarray(semantic)).resize((nw, nh), Image.NEAREST)
    )
    y = int(rng.integers(0, nh - size + 1)) if train else (nh - size) // 2
    x = int(rng.integers(0, nw - size + 1)) if train else (nw - size) // 2
    return image[y : y + size, x : x + size], semantic[y : y + size, x : x + size]


def collate(batch: list[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


class FolderBatches:
    """Endless ``(images, targets)`` batches from a folder, epoch after epoch, sharded
    over ``world_size`` ranks; ``start_step`` skips what a resumed run already did."""

    def __init__(
        self,
        dataset: StudentDataset,
        batch_size: int,
        *,
        workers: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(dataset) < batch_size * world_size:
            raise DataConfigError(
                f"{dataset.coco.ann_path}: {len(dataset)} images, fewer than one batch "
                f"({batch_size} x {world_size} processes)"
            )
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.per_epoch = len(dataset) // (batch_size * world_size)

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()
        usable = self.per_epoch * self.batch_size * self.world_size
        return order[:usable][self.rank :: self.world_size]

    def iterate(self, start_step: int) -> Iterator[tuple[list[Any], list[Any]]]:
        epoch, skip = divmod(start_step, self.per_epoch)
        while True:
            self.dataset.set_epoch(epoch)
            indices = self._order(epoch)[skip * self.batch_size :]
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(self.dataset, indices),
                batch_size=self.batch_size,
                shuffle=False,
                num_workers=self.workers,
                collate_fn=collate,
                drop_last=True,
            )
            yield from loader
            epoch, skip = epoch + 1, 0


def synthetic_batches(
    size_hw: tuple[int, int],
    data_seed: int,
    batch_size: int,
    rng: np.random.Generator,
    start_step: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Generated batches (the committed recipes' data: frame ``step * batch + i`` of the
    data seed, randomly flipped with ``rng``); rank ``r`` of ``n`` takes its own frames."""
    scene = scene_of(size_hw)
    step = start_step
    while True:
        frames = training_batch(scene, data_seed, step * world_size + rank, batch_size, rng)
        yield synthetic_to_batch(frames)
        step += 1


def synthetic_to_batch(frames: list[Any]) -> tuple[list[Any], list[Any]]:
    """Generated ``(image, semantic, DetectionTarget)`` frames -> ``(images, targets)``."""
    images, targets = [], []
    for image, semantic, target in frames:
        images.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255)
        targets.append(
            {
                "boxes": torch.from_numpy(target.boxes_xyxy).float(),
                "labels": torch.from_numpy(target.labels).long(),
                "mask": torch.from_numpy(semantic.astype(np.int64)),
            }
        )
    return images, targets
