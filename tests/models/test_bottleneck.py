"""Bottleneck student: quantization in the loop, decoder shapes, the split model's branches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from splitedge.models.bottleneck import (
    BottleneckCheckpointError,
    BottleneckConfig,
    BottleneckConfigError,
    Student,
    fake_quantize,
    load_student,
    save_student,
)
from splitedge.models.bottleneck_split import TeacherRest, branch_name
from splitedge.models.data import SceneConfig, generate_image
from splitedge.models.registry import create_model
from splitedge.models.split_errors import BranchKindError, InputError, UnknownBranchError
from splitedge.models.types import Detections, TailInput
from splitedge.proto import codec

torch.set_num_threads(1)
TEACHER = "fasterrcnn_mobilenet_v3_small_fpn_lite"
SMALL = {"min_size": 96, "max_size": 128, "score_thresh": 0.0}


@pytest.fixture(scope="module")
def model():
    return create_model("bottleneck", teacher=TEACHER, teacher_options=SMALL, channels=12)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_fake_quantize_equals_the_codec_round_trip(bits):
    torch.manual_seed(bits)
    x = torch.randn(3, 6, 5, 7) * 3 + 1
    got = fake_quantize(x, bits)
    for i in range(x.shape[0]):  # each frame is its own tensor on the wire
        frame = x[i : i + 1].numpy()
        wire = codec.decode_tensor(codec.encode_tensor(frame, "z", bits=bits))
        step = (frame.max() - frame.min()) / ((1 << bits) - 1)
        diff = np.abs(got[i : i + 1].numpy() - wire)
        assert diff.max() <= 1e-4 * step + 1e-6, f"{bits}-bit frame {i} differs by {diff.max()}"


def test_fake_quantize_passes_the_gradient_straight_through():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    (fake_quantize(x, 4) * 2.0).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


def test_fake_quantize_of_a_constant_frame_is_exact():
    x = torch.full((1, 2, 3, 3), 0.7)
    torch.testing.assert_close(fake_quantize(x, 2), x)


def test_fake_quantize_refuses_bit_depths_the_codec_cannot_carry():
    with pytest.raises(BottleneckConfigError, match="bits must be"):
        fake_quantize(torch.zeros(1, 1, 2, 2), 3)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"stride": 4}, "code stride"),
        ({"train_bits": (3,)}, "train_bits"),
        ({"channels": 0}, "channels"),
        ({"channels": 2, "widths": (0.5, 0.6)}, "widths"),
    ],
)
def test_bad_bottleneck_configs_are_refused(kwargs, fragment):
    with pytest.raises(BottleneckConfigError, match=fragment):
        BottleneckConfig(**kwargs)


@pytest.mark.parametrize("stride", [8, 16])
def test_decoder_rebuilds_the_teacher_split_feature_shape_at_every_width(model, stride):
    rest: TeacherRest = model.rest
    student = Student(BottleneckConfig(channels=12, stride=stride)).eval()
    batch = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        target = rest.teacher_split_feature(batch)
        for width in student.config.widths:
            code = student.head.set_width(width) or student.head(batch)
            assert code.shape[1] == student.config.code_channels(width)
            assert code.shape[2:] == (96 // stride, 128 // stride)
            assert student.decoder(code).shape == target.shape


def test_student_checkpoint_round_trips_and_bad_files_are_refused(tmp_path):
    torch.manual_seed(1)
    student = Student(BottleneckConfig(channels=6, widths=(0.5, 1.0), stride=16)).eval()
    path = save_student(student, tmp_path / "s.pt", TEACHER, {"k": 1})
    loaded, meta = load_student(path)
    assert loaded.config == student.config and meta["teacher"] == TEACHER
    for key, value in student.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    with pytest.raises(BottleneckCheckpointError, match="does not exist"):
        load_student(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BottleneckCheckpointError, match="cannot read"):
        load_student(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(BottleneckCheckpointError, match="is not a splitedge-bottleneck-v1"):
        load_student(tmp_path / "foreign.pt")


def test_branches_name_width_and_bits_with_their_code_spec(model):
    names = [b for b, s in model.branches.items() if s.kind == "split"]
    assert len(names) == 8
    spec = model.branches[branch_name(12, 0.25, 4)]
    assert spec.name == "bottleneck-12-w0.25-4bit" and spec.default_bits == 4
    assert spec.tensors[0].name == "z" and spec.tensors[0].shape == (1, 3, -1, -1)
    assert "local" in model.branches and "offload-png" in model.branches


def test_head_codec_bytes_tail_returns_detections_in_original_coordinates(model):
    frame = generate_image(SceneConfig(width=400, height=300), 5, 0).image
    branch = "bottleneck-12-w0.5-8bit"
    head = model.run_head(branch, frame)
    assert head.tensors["z"].shape == (1, 6, 96 // 8, 128 // 8)
    assert head.input_size == (96, 128) and head.orig_size == (300, 400)
    wire = codec.encode_tensor(head.tensors["z"], "z", bits=8)
    tail_in = TailInput(head.orig_size, head.input_size, {"z": codec.decode_tensor(wire)})
    (det,) = model.run_tail(branch, [tail_in])
    assert isinstance(det, Detections) and len(det.boxes) > 0
    assert det.boxes[:, [0, 2]].max() <= 400 and det.boxes[:, [1, 3]].max() <= 300
    assert det.boxes[:, 2].max() > 128  # rescaled from the 96x128 input to the frame


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
    with pytest.raises(UnknownBranchError, match="unknown branch 'nope'"):
        model.run_head("nope", frame)
    with pytest.raises(BranchKindError, match="only bottleneck branches have a head"):
        model.run_head("offload-png", frame)
    with pytest.raises(BranchKindError, match="no tail"):
        model.run_tail("local", [TailInput((96, 128), (96, 128), {})])
    wrong = TailInput((96, 128), (96, 128), {"z": np.zeros((1, 5, 12, 16), np.float32)})
    with pytest.raises(InputError, match=r"tensor 'z' has shape \[1, 5, 12, 16\]"):
        model.run_tail("bottleneck-12-w0.5-8bit", [wrong])
    small = TailInput((96, 128), (96, 128), {"z": np.zeros((1, 6, 6, 8), np.float32)})
    with pytest.raises(InputError, match="needs 12x16 at stride 8"):
        model.run_tail("bottleneck-12-w0.5-8bit", [small])
    with pytest.raises(InputError, match="expected \\['z'\\]"):
        model.run_tail("bottleneck-12-w0.5-8bit", [TailInput((96, 128), (96, 128), {})])


def test_offload_and_local_branches_run_the_teacher(model):
    frame = generate_image(SceneConfig(width=128, height=96), 5, 2).image
    (offload,) = model.run_tail("offload-png", [TailInput((96, 128), image=frame)])
    local = model.run_local(frame)
    np.testing.assert_allclose(offload.boxes, local.boxes, atol=1e-3)
