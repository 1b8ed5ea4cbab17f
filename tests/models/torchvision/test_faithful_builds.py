"""Each torchvision family is built with torchvision's own settings for it, options
override them, and class names come from options, a COCO JSON, or the weights."""

from __future__ import annotations

import json

import pytest
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_320_fpn,
    fasterrcnn_mobilenet_v3_large_fpn,
)

from splitedge.models.registry import create_model
from splitedge.models.split_errors import SplitModelError

LARGE = "fasterrcnn_mobilenet_v3_large_fpn"
SMALL = "fasterrcnn_mobilenet_v3_large_320_fpn"
TORCHVISION = {
    LARGE: fasterrcnn_mobilenet_v3_large_fpn,
    SMALL: fasterrcnn_mobilenet_v3_large_320_fpn,
}


def _settings(model) -> dict:
    """What decides how a Faster R-CNN sees an image and proposes boxes at inference."""
    rpn = model.rpn
    return {
        "min_size": tuple(model.transform.min_size),
        "max_size": model.transform.max_size,
        "pre_nms_top_n": rpn._pre_nms_top_n["testing"],
        "post_nms_top_n": rpn._post_nms_top_n["testing"],
        "rpn_score_thresh": rpn.score_thresh,
        "rpn_nms_thresh": rpn.nms_thresh,
        "box_score_thresh": model.roi_heads.score_thresh,
        "detections_per_img": model.roi_heads.detections_per_img,
    }


@pytest.mark.parametrize("name", [LARGE, SMALL])
def test_built_without_options_as_torchvision_builds_it(name):
    ours = create_model(name)
    theirs = TORCHVISION[name](weights=None, weights_backbone=None)
    assert _settings(ours.torch_model) == _settings(theirs)
    assert (ours.min_size, ours.max_size) == (
        theirs.transform.min_size[0],
        theirs.transform.max_size,
    )


def test_the_large_model_is_not_the_320_variant():
    large = _settings(create_model(LARGE).torch_model)
    assert (large["min_size"], large["max_size"], large["post_nms_top_n"]) == ((800,), 1333, 1000)
    small = _settings(create_model(SMALL).torch_model)
    assert (small["min_size"], small["max_size"], small["post_nms_top_n"]) == ((320,), 640, 150)


def test_an_option_overrides_and_the_rest_stays_torchvision():
    model = create_model(LARGE, min_size=256, score_thresh=0.3)
    got = _settings(model.torch_model)
    assert got["min_size"] == (256,) and got["max_size"] == 1333  # only what was given
    assert got["post_nms_top_n"] == 1000 and got["box_score_thresh"] == 0.3
    assert (model.min_size, model.max_size) == (256, 1333)


def test_an_override_is_checked_against_the_default_left_out():
    with pytest.raises(
        SplitModelError, match=r"min_size=700 max_size=640 \(.*defaults to 320/640\)"
    ):
        create_model(SMALL, min_size=700)


def test_class_names_option_names_the_classes_and_sets_num_classes():
    names = ["__background__", "cat", "dog"]
    model = create_model(SMALL, class_names=names)
    assert model.class_names == tuple(names) and model.num_classes == 3
    assert model.torch_model.roi_heads.box_predictor.cls_score.out_features == 3


def test_without_names_the_default_stays():
    assert create_model(SMALL, num_classes=4).class_names == tuple(f"class_{i}" for i in range(4))
    assert create_model(SMALL).class_names[1] == "person"  # 91 classes: torchvision's COCO names


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"class_names": ["bg", ""]}, r"^class_names\[1\] must be a non-empty string, got ''$"),
        (
            {"class_names": ["bg", "cat"], "num_classes": 5},
            r"^class_names has 2 names but the model has 5 classes "
            r"\(background included: name it first\)$",
        ),
        (
            {"class_names": ["bg", "cat"], "classes_from": "x.json"},
            r"^give class_names or classes_from, not both$",
        ),
    ],
)
def test_bad_class_names_get_one_line(options, message):
    # (A single name is a one-item list, and a non-string item is refused by the
    # builder's option types: tests/models/test_builder_options.py.)
    with pytest.raises(SplitModelError, match=message) as info:
        create_model(SMALL, **options)
    assert "\n" not in str(info.value)


def test_classes_from_a_coco_json_places_names_by_id(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps(
            {
                "images": [],
                "categories": [
                    {"id": 1, "name": "cat", "supercategory": "animal"},
                    {"id": 3, "name": "dog"},
                ],
            }
        )
    )
    model = create_model(SMALL, classes_from=str(path))
    assert model.class_names == ("__background__", "cat", "N/A", "dog") and model.num_classes == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"classes_from '.*nope\.json' does not exist$"),
        ("{not json", r"classes_from '.*bad\.json' is not valid JSON \("),
        ('{"images": []}', r"has no 'categories' list"),
        (
            '{"categories": [{"id": 0, "name": "bg"}]}',
            r"categories\[0\]\.id must be an integer 1-65535",
        ),
        (
            '{"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}',
            r"category id 1 appears twice",
        ),
    ],
)
def test_a_bad_coco_json_gets_one_line(tmp_path, text, message):
    path = tmp_path / ("nope.json" if text is None else "bad.json")
    if text is not None:
        path.write_text(text)
    with pytest.raises(SplitModelError, match=message) as info:
        create_model(SMALL, classes_from=str(path))
    assert "\n" not in str(info.value)


def test_a_class_name_that_is_no_string_is_refused_by_the_option_types():
    from splitedge.models.registry import OptionTypeError

    with pytest.raises(OptionTypeError) as info:
        create_model(SMALL, class_names=["bg", 7])
    assert str(info.value) == (
        "option 'class_names': expected a string or a list of strings, got ['bg', 7]"
    )
