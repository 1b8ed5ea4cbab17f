"""Bottleneck student of the LR-ASPP segmenter: branches, head -> bytes -> tail, GHND-seg."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from splitedge.models import train_cli, zoo
from splitedge.models.bottleneck import BottleneckConfig, BottleneckConfigError, Student
from splitedge.models.bottleneck_seg import SegBottleneckSplitModel, build_seg_teacher
from splitedge.models.bottleneck_split import branch_name
from splitedge.models.data import SceneConfig, generate_image, mean_iou
from splitedge.models.distill_seg import SegDistillConfig, distill_seg
from splitedge.models.registry import create_model
from splitedge.models.split import image_to_tensor
from splitedge.models.split_errors import BranchKindError, InputError, UnknownBranchError
from splitedge.models.teacher_data import validation_set
from splitedge.models.types import SegmentationMask, TailInput
from splitedge.proto import codec

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


# A student small enough for a test: 6 channels, two widths, 96x128 frames.
TINY_STUDENT = dict(
    teacher=TEACHER,
    teacher_options=SMALL,
    channels=6,
    widths=(0.5, 1.0),
    batch_size=2,
    size_hw=(96, 128),
)


def test_a_tiny_ghnd_seg_run_lowers_its_loss():
    config = SegDistillConfig(iterations=30, **TINY_STUDENT)
    student, record = distill_seg(config, progress=False)
    assert record["loss_last"] < 0.8 * record["loss_first"], record
    assert not student.training and record["ghnd_features"] == ["backbone.2", "backbone.12"]


def test_cli_tiny_recipe_writes_a_loadable_zoo_entry(tmp_path, capsys):
    argv = ["ghnd-seg", "--tiny", "--iterations", "2", "--teacher", TEACHER, "--name", "seg-tiny"]
    assert train_cli.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "seg-tiny.pt").stat().st_size < 10 * 2**20
    entry = zoo.get_entry("seg-tiny", tmp_path)
    assert entry.kind == "student" and entry.builder == "bottleneck-seg"
    assert "--tiny" in entry.recipe and entry.training["iterations"] == 2
    loaded = zoo.load("seg-tiny", tmp_path)
    assert loaded.task == "segmentation" and "bottleneck-12-w0.25-4bit" in loaded.branches
    assert train_cli.main(["ghnd-seg", "--iterations", "0", "--out", str(tmp_path)]) == 2
    assert "--iterations and --batch-size must be >= 1" in capsys.readouterr().err


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


def test_segmentation_task_loss_reaches_the_split_feature():
    from splitedge.models.bottleneck_seg import seg_teacher_rest
    from splitedge.models.distill_seg import teacher_segmentation_loss
    from splitedge.models.segmentation import SegmentationPreprocess
    from splitedge.models.teacher_data import scene_of, training_batch

    teacher = build_seg_teacher(TEACHER, SMALL)
    rest = seg_teacher_rest(teacher)
    frames = training_batch(scene_of((96, 128)), 0, 0, 2, np.random.default_rng(0))
    batch, sizes = SegmentationPreprocess(96, 128)(
        [image_to_tensor(f[0], torch.device("cpu")) for f in frames]
    )
    low = rest.teacher_split_feature(batch).detach().requires_grad_(True)
    loss = teacher_segmentation_loss(rest.classifier)(rest(low), batch, sizes, frames)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert low.grad is not None and low.grad.abs().sum() > 0


def test_seg_fine_tuning_starts_from_the_init_student(tmp_path):
    from splitedge.models.bottleneck import save_student
    from splitedge.models.distill_seg import recipe_line

    base, _ = distill_seg(SegDistillConfig(iterations=2, **TINY_STUDENT), progress=False)
    path = save_student(base, tmp_path / "base.pt", TEACHER, {"recipe": "seg base"})
    config = SegDistillConfig(
        iterations=3, init=str(path), task_weight=0.5, lr=1e-2, **TINY_STUDENT
    )
    tuned, record = distill_seg(config, progress=False)
    assert tuned.config == base.config
    assert record["init_recipe"] == "seg base" and record["task_weight"] == 0.5
    before, after = base.state_dict(), tuned.state_dict()
    assert any(
        not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point()
    )
    assert f"--init {path} --task-weight 0.5 " in recipe_line(config, "ft")
