"""Builder options typed on a command line reach builders in the shape their annotations
ask for: a single value for a list option becomes a one-item list, a wrong type is one
line naming the option (models.registry.typed_options)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from splitedge.models.registry import OptionTypeError, typed_options
from splitedge.proto.options import parse_options


@typed_options
def _builder(
    family: str,
    *,
    split_points: Sequence[str] | None = None,
    jpeg_qualities: Sequence[int] = (90,),
    widths: tuple[float, ...] = (1.0,),
    branch_bits: Sequence[int] | str = (8,),
    num_classes: int | None = None,
    score_thresh: float | None = None,
    weights: str | None = None,
    teacher_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"family": family, **locals()}


def test_a_single_value_for_a_list_option_is_a_one_item_list():
    # What `--model NAME:split_points=features.9,jpeg_qualities=50` gives a builder.
    options = parse_options(["split_points=features.9", "jpeg_qualities=50", "widths=0.5"], "-o")
    got = _builder("f", **options)
    assert got["split_points"] == ["features.9"]
    assert got["jpeg_qualities"] == [50]
    assert got["widths"] == [0.5]  # an int or float item of a float list


def test_lists_and_other_values_pass_as_given():
    got = _builder(
        "f",
        split_points=["a", "b"],
        jpeg_qualities=(90, 50),
        branch_bits="4,8",  # the str form branch_bits also takes
        score_thresh=1,  # an int is a float
        weights=Path("w.pt"),  # a value no text gives: the builder's to judge
        teacher_options={"q": 1},
    )
    assert got["split_points"] == ["a", "b"] and got["jpeg_qualities"] == [90, 50]
    assert got["branch_bits"] == "4,8" and got["score_thresh"] == 1
    assert got["weights"] == Path("w.pt") and got["teacher_options"] == {"q": 1}
    assert _builder("f", branch_bits=4)["branch_bits"] == [4]
    assert _builder("f", split_points=None)["split_points"] is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"jpeg_qualities": "high"},
            "option 'jpeg_qualities': expected an integer or a list of integers, got 'high'",
        ),
        (
            {"jpeg_qualities": [90, "low"]},
            "option 'jpeg_qualities': expected an integer or a list of integers, got [90, 'low']",
        ),
        (
            {"split_points": [9, 12]},
            "option 'split_points': expected a string or a list of strings, got [9, 12]",
        ),
        ({"num_classes": "seven"}, "option 'num_classes': expected an integer, got 'seven'"),
        ({"num_classes": True}, "option 'num_classes': expected an integer, got True"),
        ({"score_thresh": [0.3]}, "option 'score_thresh': expected a number, got [0.3]"),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_option(options, message):
    with pytest.raises(OptionTypeError) as info:
        _builder("f", **options)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)  # the edge and client report ValueErrors


def test_unknown_options_are_left_to_the_builder():
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        _builder("f", nope=1)
