"""Class names a model reports: given as a list, read from a COCO JSON, or known defaults.

Index ``i`` names the model's class ``i``, background (0) included, the way torchvision's
``weights.meta["categories"]`` does (``"__background__"`` first, ``"N/A"`` in the gaps of
COCO's ids). Errors are :class:`~splitedge.models.split_errors.SplitModelError`, one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from splitedge.models.split_errors import SplitModelError

BACKGROUND = "__background__"
GAP = "N/A"  # torchvision's name for an id the COCO label space leaves unused

__all__ = ["check_class_names", "default_class_names", "read_coco_categories"]


def check_class_names(names: Any, what: str = "class_names") -> tuple[str, ...]:
    """``names`` as a tuple of strings, or a one-line error saying what is wrong."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise SplitModelError(
            f"{what} must be a list of names (background first), got {type(names).__name__} "
            f"{names!r}"[:200]
        )
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise SplitModelError(f"{what}[{i}] must be a non-empty string, got {name!r}")
    if len(names) < 2:
        raise SplitModelError(
            f"{what} needs at least 2 names (background included), got {len(names)}"
        )
    return tuple(names)


def read_coco_categories(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """A COCO annotation file's ``categories`` as names indexed by category id:
    ``"__background__"`` at 0 and ``"N/A"`` for ids no category uses (so COCO 2017's
    file gives torchvision's 91 names)."""
    where = f"classes_from {str(path)!r}"
    try:
        with Path(path).open("rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise SplitModelError(f"{where} does not exist") from None
    except OSError as exc:
        raise SplitModelError(f"{where} cannot be read ({exc.strerror})") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise SplitModelError(f"{where} is not valid JSON ({exc})".splitlines()[0]) from exc
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise SplitModelError(f"{where} has no 'categories' list (a COCO annotation file has)")
    by_id: dict[int, str] = {}
    for i, cat in enumerate(categories):
        cat_id = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if isinstance(cat_id, bool) or not isinstance(cat_id, int) or not 1 <= cat_id <= 65535:
            raise SplitModelError(
                f"{where}: categories[{i}].id must be an integer 1-65535 "
                f"(0 is background), got {cat_id!r}"
            )
        if not isinstance(name, str) or not name.strip():
            raise SplitModelError(
                f"{where}: categories[{i}].name must be a non-empty string, got {name!r}"
            )
        if cat_id in by_id:
            raise SplitModelError(f"{where}: category id {cat_id} appears twice")
        by_id[cat_id] = name
    return (BACKGROUND, *(by_id.get(i, GAP) for i in range(1, max(by_id) + 1)))


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """torchvision's COCO or VOC names when the count matches, else ``class_<i>``."""
    from torchvision.models import _meta

    for known in (_meta._COCO_CATEGORIES, _meta._VOC_CATEGORIES):
        if len(known) == num_classes:
            return tuple(known)
    return tuple(f"class_{i}" for i in range(num_classes))
