"""Bottleneck student of the LR-ASPP segmenter: branches, head -> bytes -> tail."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from splitedge.models import zoo
from splitedge.models.bottleneck import BottleneckConfig, BottleneckConfigError, Student
from splitedge.models.bottleneck_seg import SegBottleneckSplitModel, build_seg_teacher
from splitedge.models.bottleneck_split import branch_name
from splitedge.models.data import SceneConfig, generate_image, mean_iou
from splitedge.models.registry import create_model
from splitedge.models.split import image_to_tensor
from splitedge.models.split_errors import BranchKindError, InputError, UnknownBranchError
from splitedge.models.types import SegmentationMask, TailInput
from splitedge.proto import codec
from splitedge.training.teacher_data import validation_set

torch.set_num_threads(1)
TEACHER = "lraspp_mobilenet_v3_small"
SMALL = {"min_size": 96, "max_size": 128}
COMMITTED = "ghnd-lraspp-small-c12"


@pytest.fixture(scope="module")
def model():
    return create_model("bottleneck-seg", teacher=TEACHER, teacher_options=SMALL, channels=12)


def _through_codec(model, branch, image):
    head = model.run_head(branch, image)
    bits = model.branches[branch].default_bits
    wire = codec.encode_tensor(head.tensors["z"], "z", bits=bits, compression="zstd")
    item = TailInput(head.orig_size, head.input_size, {"z": codec.decode_tensor(wire)})
    return head, model.run_tail(branch, [item])[0]


def test_branches_name_width_and_bits_with_their_code_spec(model):
    assert model.task == "segmentation"
    names = [b for b, s in model.branches.items() if s.kind == "split"]
    assert names == [branch_name(12, w, b) for w in (1.0, 0.75, 0.5, 0.25) for b in (8, 4)]
    spec = model.branches["bottleneck-12-w0.25-4bit"]
    assert spec.default_bits == 4 and spec.split_point == "student:features.2"
    assert spec.tensors[0].name == "z" and spec.tensors[0].shape == (1, 3, -1, -1)
    assert "local" in model.branches and "offload-png" in model.branches


def test_split_point_is_the_lraspp_low_feature(model):
    batch = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        low = model.rest.teacher_split_feature(batch)
        features = model.rest(low)
    assert low.shape == (1, model.config.split_channels, 12, 16)  # stride 8, 24 channels
    assert list(features) == ["low", "high"] and features["high"].shape[1] == 576


def test_server_side_fed_the_teacher_low_feature_reproduces_the_teacher(model):
    frame = generate_image(SceneConfig(width=128, height=96), 7, 0).image
    with torch.no_grad():
        batch, sizes = model.preprocess([image_to_tensor(frame, torch.device("cpu"))])
        low = model.rest.teacher_split_feature(batch)
        (raw,) = model.finisher(model.rest(low), sizes, [(96, 128)])
    np.testing.assert_array_equal(raw["mask"].numpy(), model.run_local(frame).mask)


def test_head_codec_bytes_tail_returns_a_mask_of_the_original_size(model):
    frame = generate_image(SceneConfig(width=400, height=300), 5, 0).image
    head, mask = _through_codec(model, "bottleneck-12-w0.5-8bit", frame)
    assert head.tensors["z"].shape == (1, 6, 12, 16)
    assert head.input_size == (96, 128) and head.orig_size == (300, 400)
    assert isinstance(mask, SegmentationMask) and mask.mask.shape == (300, 400)
    assert mask.mask.dtype == np.uint8 and mask.mask.max() < model.num_classes


def test_width_switch_through_the_model_needs_no_reload(model):
    frame = generate_image(SceneConfig(width=128, height=96), 5, 1).image
    pointers = [p.data_ptr() for p in model.student.parameters()]
    shapes = {
        w: model.run_head(branch_name(12, w, 8), frame).tensors["z"].shape[1]
        for w in model.config.widths
    }
    assert shapes == {0.25: 3, 0.5: 6, 0.75: 9, 1.0: 12}
    assert [p.data_ptr() for p in model.student.parameters()] == pointers


def test_bad_calls_get_precise_errors(model):
    frame = np.zeros((96, 128, 3), np.uint8)
    branch = "bottleneck-12-w0.5-8bit"
    with pytest.raises(UnknownBranchError, match="unknown branch 'nope'"):
        model.run_head("nope", frame)
    with pytest.raises(BranchKindError, match="only bottleneck branches have a head"):
        model.run_head("offload-png", frame)
    with pytest.raises(BranchKindError, match="no tail"):
        model.run_tail("local", [TailInput((96, 128), (96, 128), {})])
    wrong = TailInput((96, 128), (96, 128), {"z": np.zeros((1, 5, 12, 16), np.float32)})
    with pytest.raises(InputError, match=r"tensor 'z' has shape \[1, 5, 12, 16\]"):
        model.run_tail(branch, [wrong])
    small = TailInput((96, 128), (96, 128), {"z": np.zeros((1, 6, 6, 8), np.float32)})
    with pytest.raises(InputError, match="is 6x8, input \\(96, 128\\) needs 12x16 at stride 8"):
        model.run_tail(branch, [small])
    with pytest.raises(InputError, match="expected \\['z'\\]"):
        model.run_tail(branch, [TailInput((96, 128), (96, 128), {})])


def test_students_of_the_wrong_shape_or_teacher_are_refused(model):
    student = Student(BottleneckConfig(channels=12, stride=16))
    with pytest.raises(BottleneckConfigError, match="code stride 8, got 16"):
        SegBottleneckSplitModel(model.teacher, student)
    with pytest.raises(BottleneckConfigError, match="is a detection model, not segmentation"):
        build_seg_teacher("fasterrcnn_mobilenet_v3_small_fpn_lite", {"min_size": 96})


def test_listing_models_names_bottleneck_seg_without_importing_torch():
    code = (
        "import sys; from splitedge.models.registry import list_models; "
        "names = list_models(); print('bottleneck-seg' in names, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_committed_student_stays_near_its_teacher_on_validation_frames():
    model = zoo.load(COMMITTED)
    assert model.task == "segmentation" and model.weights_source.endswith(f"{COMMITTED}.pt")
    profile = model.profiles["bottleneck-12-w1-8bit"]
    assert profile.accuracy_metric == "mIoU" and profile.bytes_per_frame > 0
    val = validation_set(4)
    branch = "bottleneck-12-w1-8bit"
    teacher_masks = [model.run_local(s.image).mask for s in val.samples]
    student_masks = [_through_codec(model, branch, s.image)[1].mask for s in val.samples]
    gt = [s.semantic for s in val.samples]
    teacher = mean_iou(teacher_masks, gt, model.num_classes)
    student = mean_iou(student_masks, gt, model.num_classes)
    assert 0.6 * teacher <= student <= teacher + 0.1, (student, teacher)
    # mIoU on so few frames is mostly background; the student must also find the
    # teacher's objects, which an all-background mask (what a random student gives) does not.
    background = [np.zeros_like(m) for m in teacher_masks]
    floor = mean_iou(background, teacher_masks, model.num_classes)
    assert mean_iou(student_masks, teacher_masks, model.num_classes) >= 1.5 * floor
