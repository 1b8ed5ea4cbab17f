"""The committed detector students, scored through real codec bytes on validation frames."""

from __future__ import annotations

import pytest
import torch

from splitedge.models import zoo
from splitedge.models.types import TailInput
from splitedge.proto import codec
from splitedge.training.teacher_data import detection_metrics, validation_set

torch.set_num_threads(1)
BRANCH = "bottleneck-12-w0.5-4bit"


def _student_map(model, val) -> float:
    def predict(image):
        head = model.run_head(BRANCH, image)
        wire = {
            k: codec.decode_tensor(codec.encode_tensor(v, k, bits=4))
            for k, v in head.tensors.items()
        }
        return model.run_tail(BRANCH, [TailInput(head.orig_size, head.input_size, wire)])[0]

    return detection_metrics(predict, val)["map"]


@pytest.fixture(scope="module")
def val():
    return validation_set(24)


def test_fine_tuned_student_keeps_close_to_its_teacher_and_beats_plain_ghnd(val):
    tuned = zoo.load("ghnd-frcnn-small-c12-ft")
    plain = zoo.load("ghnd-frcnn-small-c12")
    teacher_map = detection_metrics(tuned.run_local, val)["map"]
    tuned_map, plain_map = _student_map(tuned, val), _student_map(plain, val)
    assert teacher_map > 0.2, teacher_map
    # 2 mAP points is the aim on 256 frames; 24 frames get a looser bound.
    assert tuned_map >= teacher_map - 0.04, (tuned_map, teacher_map)
    assert tuned_map > plain_map, (tuned_map, plain_map)


def test_fine_tuned_entry_records_its_two_stage_recipe_and_branch_profiles():
    entry = zoo.get_entry("ghnd-frcnn-small-c12-ft")
    assert "--init zoo:ghnd-frcnn-small-c12 --task-weight 1 " in entry.recipe
    assert entry.training["init_recipe"] == zoo.get_entry("ghnd-frcnn-small-c12").recipe
    model = zoo.load("ghnd-frcnn-small-c12-ft")
    profile = model.profiles[BRANCH]
    assert profile.accuracy_metric == "mAP@[.5:.95]" and 0 < profile.accuracy < 1
    assert 0 < profile.bytes_per_frame < 0.1 * entry.metrics["jpeg95_bytes_mean"]


def test_bottleneck_benchmark_refuses_a_frame_count_under_one(capsys):
    from benchmarks import bottleneck

    with pytest.raises(SystemExit) as exit_info:
        bottleneck.main(["--frames", "0"])
    assert exit_info.value.code == 2
    assert "--frames must be at least 1, got 0" in capsys.readouterr().err
