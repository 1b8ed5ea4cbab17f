"""A torchvision family built from command-line text: one split point or JPEG quality
is a one-item list (it was read letter by letter: "unknown split point 'f'", and
``jpeg_qualities=50`` raised "'int' object is not iterable")."""

from __future__ import annotations

import pytest

from splitedge.models.registry import OptionTypeError, create_model
from splitedge.proto.options import parse_options

SMALL = {"min_size": 128, "max_size": 160}


def test_one_split_point_and_one_jpeg_quality_from_text():
    options = parse_options(["split_points=features.9", "jpeg_qualities=50"], "--model-option")
    model = create_model("fasterrcnn_mobilenet_v3_large_fpn", **options, **SMALL)
    assert list(model.branches) == ["local", "split@features.9", "offload-jpeg50", "offload-png"]


def test_two_split_points_with_a_semicolon():
    options = parse_options(["split_points=features.9;features.12"], "--model-option")
    model = create_model("fasterrcnn_mobilenet_v3_large_fpn", **options, **SMALL)
    assert [b for b in model.branches if b.startswith("split@")] == [
        "split@features.9",
        "split@features.12",
    ]


def test_a_wrong_item_type_names_the_option():
    with pytest.raises(OptionTypeError, match=r"^option 'jpeg_qualities': expected an integer"):
        create_model("fasterrcnn_mobilenet_v3_large_fpn", jpeg_qualities="high", **SMALL)
