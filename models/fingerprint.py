"""Head weights identity: one SHA-256 per split branch of the weights its head runs.

The edge states it for each split branch in ``Describe`` and in each exported ONNX
head's spec (``weights_sha256``); a device that runs heads with torch computes its own
and refuses to stream codes its head made from other weights (the edge's tail would
decode them into boxes in the wrong places, with no error anywhere).

The hash covers the head module's ``state_dict`` (parameters and buffers: names in
sorted order, dtype, shape and the bytes of a contiguous CPU copy), the branch's
identity (its name; for a slimmable student its config, since every width shares one
set of weights) and the pre-processing facts the head depends on (resize and
normalization: :func:`preprocess_facts`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from splitedge.models.types import SplitModel

__all__ = ["head_fingerprints", "module_sha256", "preprocess_facts"]


def module_sha256(*modules: Any, extra: Any = None) -> str:
    """SHA-256 over the modules' state (names, dtypes, shapes, bytes) and ``extra``."""
    digest = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            digest.update(f"{i}:{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
            digest.update(t.numpy().tobytes() if t.numel() else b"")
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def preprocess_facts(preprocess: Any) -> dict[str, Any] | None:
    """A head's pre-processing as data (what a device replays in numpy), None when it
    is neither kind: detection heads (torchvision's ``GeneralizedRCNNTransform``:
    resize, normalize, pad; ``"rcnn"``) or segmentation heads
    (:class:`~splitedge.models.segmentation.SegmentationPreprocess`: antialiased resize,
    normalize; ``"seg"``)."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from splitedge.models.segmentation import SegmentationPreprocess

    transform = getattr(preprocess, "transform", None)
    if isinstance(transform, GeneralizedRCNNTransform):
        fixed = transform.fixed_size
        return {
            "preprocess": "rcnn",
            "min_size": int(transform.min_size[-1]),
            "max_size": int(transform.max_size),
            "mean": [float(v) for v in transform.image_mean],
            "std": [float(v) for v in transform.image_std],
            "size_divisible": int(transform.size_divisible),
            "fixed_size": [int(fixed[1]), int(fixed[0])] if fixed is not None else None,
        }
    if isinstance(preprocess, SegmentationPreprocess):
        return {
            "preprocess": "seg",
            "min_size": int(preprocess.min_size),
            "max_size": int(preprocess.max_size),
            "mean": [float(v) for v in preprocess.mean.flatten()],
            "std": [float(v) for v in preprocess.std.flatten()],
            "size_divisible": 1,
            "fixed_size": None,
        }
    return None


def head_fingerprints(model: SplitModel) -> dict[str, str]:
    """Split branch name -> SHA-256 (hex) of its head's weights; branches of a model
    whose heads are not torch modules (the echo model) are left out."""
    from splitedge.models.bottleneck_split import BottleneckSplitModel

    split = [b.name for b in model.branches.values() if b.kind == "split"]
    if not split:
        return {}
    if isinstance(model, BottleneckSplitModel):
        facts = preprocess_facts(model.preprocess)
        student = model.student
        weights = module_sha256(student.head, extra=[student.config.to_json(), facts])
        return dict.fromkeys(split, weights)
    head_module = getattr(model, "head_module", None)
    if head_module is None:
        return {}
    out: dict[str, str] = {}
    for name in split:
        head = head_module(name)
        facts = preprocess_facts(head.preprocess)
        out[name] = module_sha256(head, extra=[name, facts])
    return out
