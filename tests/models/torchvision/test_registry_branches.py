"""Registry names, branch naming, and precise errors for bad calls and inputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from splitedge.models.registry import create_model, list_models
from splitedge.models.split_errors import (
    BranchKindError,
    InputError,
    SplitModelError,
    SplitPointError,
    UnknownBranchError,
)
from splitedge.models.types import TailInput

FAMILIES = (
    "deeplabv3_mobilenet_v3_large",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_resnet50_fpn",
    "lraspp_mobilenet_v3_large",
    "retinanet_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
)
DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"


def test_list_models_lists_the_families():
    names = list_models()
    assert set(FAMILIES) <= set(names)
    assert names == sorted(names)


def test_registering_does_not_import_torch():
    """A device without torch can list and route the families."""
    code = (
        "import sys; from splitedge.models.registry import list_models; names = list_models(); "
        "assert 'fasterrcnn_resnet50_fpn' in names, names; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_branch_names_and_specs(calibrated):
    model = calibrated(DETECTOR)
    assert list(model.branches) == [
        "local",
        "split@features.3",
        "split@features.6",
        "split@features.12",
        "offload-jpeg90",
        "offload-png",
    ]
    split = model.branches["split@features.6"]
    assert (split.kind, split.split_point, split.default_bits) == ("split", "backbone.body.6", 8)
    assert [(t.name, t.dtype, t.shape) for t in split.tensors] == [
        ("x", "float32", (1, 40, -1, -1))
    ]
    jpeg = model.branches["offload-jpeg90"]
    assert (jpeg.kind, jpeg.image_format, jpeg.image_quality) == ("offload", "jpeg", 90)
    assert model.branches["offload-png"].image_format == "png"
    assert model.task == "detection" and model.num_classes == 91
    assert model.class_names[1] == "person"


def test_cut_after_a_returned_level_ships_the_levels(calibrated):
    """LR-ASPP reads the stride-8 'low' level: cuts after it ship it beside the cut."""
    model = calibrated("lraspp_mobilenet_v3_large")
    at_low = model.branches["split@features.4"].tensors
    after_low = model.branches["split@features.12"].tensors
    assert [t.name for t in at_low] == ["feat_low"]  # the cut is the level: sent once
    assert [t.name for t in after_low] == ["feat_low", "x"]
    assert model.task == "segmentation" and model.class_names[15] == "person"


def test_ssdlite_split_tensors_have_fixed_shapes(calibrated):
    model = calibrated("ssdlite320_mobilenet_v3_large")
    assert model.branches["split@features.6"].tensors[0].shape == (1, 40, 40, 40)
    assert (model.min_size, model.max_size) == (320, 320)


def test_custom_split_points_and_jpeg_qualities():
    model = create_model(
        DETECTOR, split_points=["features.9", "backbone.body.2"], jpeg_qualities=(50, 95)
    )
    assert [n for n, b in model.branches.items() if b.kind != "local"] == [
        "split@features.9",
        "split@features.2",
        "offload-jpeg50",
        "offload-jpeg95",
        "offload-png",
    ]


def test_unknown_split_point_names_the_valid_ones():
    with pytest.raises(
        SplitPointError, match=r"unknown split point 'layer2'; .*: features\.0, .*features\.15$"
    ):
        create_model(DETECTOR, split_points=["layer2"])
    with pytest.raises(SplitPointError, match=r"features\.16"):  # the last stage cannot be cut
        create_model(DETECTOR, split_points=["features.16"])


def test_bad_build_options():
    with pytest.raises(ValueError, match=r"jpeg quality 0 is outside 1\.\.100"):
        create_model(DETECTOR, jpeg_qualities=(0,))
    with pytest.raises(SplitModelError, match="fixed 320x320 input; min_size=200"):
        create_model("ssdlite320_mobilenet_v3_large", min_size=200)
    with pytest.raises(SplitModelError, match="score_thresh does not apply"):
        create_model("lraspp_mobilenet_v3_large", score_thresh=0.5)
    with pytest.raises(SplitModelError, match=r"score_thresh must be in \[0, 1\], got 2"):
        create_model(DETECTOR, score_thresh=2)
    with pytest.raises(SplitModelError, match="need 0 < min_size <= max_size"):
        create_model(DETECTOR, min_size=500, max_size=400)


def test_unknown_branch_names_the_known_ones(calibrated, frame):
    model = calibrated(DETECTOR)
    with pytest.raises(KeyError) as info:
        model.run_head("split@layer9", frame(1))
    assert isinstance(info.value, UnknownBranchError)
    assert str(info.value) == (
        f"unknown branch 'split@layer9' for model '{DETECTOR}'; known branches: local, "
        "split@features.3, split@features.6, split@features.12, offload-jpeg90, offload-png"
    )
    with pytest.raises(UnknownBranchError):
        model.run_tail("nope", [])


def test_wrong_branch_kind(calibrated, frame):
    model = calibrated(DETECTOR)
    with pytest.raises(BranchKindError, match="'offload-png' is an offload branch; only split"):
        model.run_head("offload-png", frame(1))
    with pytest.raises(BranchKindError, match="'local' runs on the device"):
        model.run_tail("local", [])


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            np.zeros((20, 30, 3), np.float32),
            r"HxWx3 uint8 RGB, got shape \[20, 30, 3\] dtype float32",
        ),
        (np.zeros((20, 30), np.uint8), r"got shape \[20, 30\] dtype uint8"),
        (np.zeros((0, 30, 3), np.uint8), r"got shape \[0, 30, 3\]"),
        ([[1, 2, 3]], "got list"),
    ],
)
def test_bad_images(calibrated, image, message):
    model = calibrated(DETECTOR)
    with pytest.raises(InputError, match=message):
        model.run_local(image)
    with pytest.raises(InputError, match=message):
        model.run_head("split@features.6", image)
    with pytest.raises(InputError, match=message):
        model.run_tail("offload-png", [TailInput((20, 30), image=image)])


def test_bad_tail_inputs(calibrated, frame):
    model = calibrated(DETECTOR)
    branch = "split@features.6"
    head = model.run_head(branch, frame(1))
    good = TailInput(head.orig_size, head.input_size, head.tensors)
    assert len(model.run_tail(branch, [good])) == 1
    cases = [
        (
            TailInput(head.orig_size, head.input_size, {}),
            r"input 0 .*got tensors \[\], expected \['x'\]",
        ),
        (
            TailInput(head.orig_size, head.input_size, {"x": head.tensors["x"][:, :20]}),
            r"tensor 'x' has shape \[1, 20, .*expected \[1, 40, -1, -1\]",
        ),
        (
            TailInput((0, 200), head.input_size, head.tensors),
            r"orig_size \(0, 200\) must be two sizes > 0",
        ),
        (
            TailInput(head.orig_size, (0, 0), head.tensors),
            r"input_size \(0, 0\) must be two sizes > 0",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            model.run_tail(branch, [bad])
    with pytest.raises(InputError, match=r"tail input 1 .*offload branches need an image"):
        model.run_tail(
            "offload-png", [TailInput((160, 200), image=frame(1)), TailInput((160, 200))]
        )
    with pytest.raises(InputError, match=r"tail input 1 for branch 'split@features.6'"):
        model.run_tail(branch, [good, TailInput(head.orig_size, head.input_size, {})])
