"""The monocular prior network: its loss, a tiny training run, checkpoints and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splitedge.models.depth import InvalidInputError, make_scene  # noqa: E402
from splitedge.models.depth.prior_net import (  # noqa: E402
    DEFAULT_CHECKPOINT,
    NetworkPrior,
    PriorCheckpointError,
    build_prior_net,
    ssi_loss,
)
from splitedge.training.depth_prior import (  # noqa: E402
    RECIPE,
    TINY_RECIPE,
    TrainConfig,
    train_prior,
)
from splitedge.training.train_cli import main as train_main  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_ssi_loss_ignores_scale_and_shift_of_the_prediction() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 24, 32, generator=gen) + 0.2
    pred = torch.randn(2, 24, 32, generator=gen)
    base = ssi_loss(pred, target)
    assert torch.allclose(ssi_loss(3.0 * pred - 7.0, target), base, rtol=1e-4)
    # A prediction that is an affine map of the target has (almost) no loss.
    assert float(ssi_loss(0.5 * target + 2.0, target)) < 1e-6 < float(base)


def test_ssi_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(InvalidInputError, match=r"must be \(B, H, W\)"):
        ssi_loss(torch.zeros(1, 8, 8), torch.ones(1, 8, 9))


def test_tiny_training_reduces_the_validation_loss() -> None:
    config = TrainConfig(**{**TINY_RECIPE.__dict__, "threads": 1})
    net, result = train_prior(config, progress=False)
    assert len(result.loss_history) == config.steps
    assert result.val_loss_final < 0.7 * result.val_loss_initial
    assert 0 < result.val_abs_rel_prior_gtscale < 1
    assert not net.training


def test_train_cli_writes_a_checkpoint_its_record_and_a_usable_prior(tmp_path: Path) -> None:
    out = tmp_path / "zoo" / "prior.pt"
    args = ["depth-prior", "--tiny", "--steps", "3", "--threads", "1", "--no-progress"]
    code = train_main([*args, "--out", str(out)])
    assert code == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["recipe"]["steps"] == 3
    assert record["recipe"]["size_hw"] == list(TINY_RECIPE.size_hw)
    assert record["num_parameters"] == sum(
        p.numel() for p in build_prior_net(TINY_RECIPE.width).parameters()
    )
    for key in ("training_time_s", "final_loss", "seed"):
        assert key in record
    assert "abs_rel_prior_gtscale" in record["validation"]

    prior = NetworkPrior(out)
    rgb = make_scene(37, 53, seed=1).rgb  # not a multiple of 16: padded and cropped back
    rel = prior(rgb)
    assert rel.shape == (37, 53) and rel.dtype == np.float32 and np.all(np.isfinite(rel))


def test_train_cli_refuses_a_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "p.pt")
    assert train_main(["depth-prior", "--tiny", "--size", "20x40", "--out", out]) == 2
    assert "multiple of 16, got 20x40" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()


def test_train_cli_size_is_width_by_height() -> None:
    from splitedge.training.depth_prior import config_from_args
    from splitedge.training.train_cli import build_parser

    args = build_parser().parse_args(["depth-prior", "--tiny", "--size", "64x32"])
    assert config_from_args(args).size_hw == (32, 64)


def test_tiny_recipe_needs_an_explicit_out(capsys: pytest.CaptureFixture[str]) -> None:
    before = DEFAULT_CHECKPOINT.stat().st_mtime_ns
    assert train_main(["depth-prior", "--tiny", "--no-progress"]) == 2
    assert "--tiny needs --out" in capsys.readouterr().err
    assert DEFAULT_CHECKPOINT.stat().st_mtime_ns == before


def test_committed_checkpoint_matches_its_record() -> None:
    record = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert DEFAULT_CHECKPOINT.stat().st_size <= 10 * 2**20
    assert record["recipe"]["steps"] == RECIPE.steps
    assert record["recipe"]["batch_size"] == RECIPE.batch_size
    assert tuple(record["recipe"]["size_hw"]) == RECIPE.size_hw
    prior = NetworkPrior()
    assert prior.num_parameters == record["num_parameters"] < 1_000_000
    scene = make_scene(96, 128, seed=700_001, near_m=0.3, far_m=3.0)
    rel = prior(scene.rgb)
    assert rel.shape == (96, 128)
    # Higher output means nearer: the prior must rank depth better than chance.
    inv = 1.0 / scene.depth_m
    assert np.corrcoef(rel.ravel(), inv.ravel())[0, 1] > 0.5


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(PriorCheckpointError, match="prior checkpoint not found"):
        NetworkPrior(tmp_path / "nope.pt")


def test_corrupt_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(PriorCheckpointError, match="cannot read prior checkpoint"):
        NetworkPrior(path)


def test_checkpoint_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(PriorCheckpointError, match="not a depth-prior checkpoint"):
        NetworkPrior(path)


def test_checkpoint_that_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    state = build_prior_net(4).state_dict()
    del state["head.weight"]
    torch.save(state, path)
    with pytest.raises(PriorCheckpointError, match="state_dict does not fit"):
        NetworkPrior(path)


def test_checkpoint_that_is_not_a_dict(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(PriorCheckpointError, match="expected a state_dict, got a Tensor"):
        NetworkPrior(path)


def test_prior_refuses_bad_images() -> None:
    prior = NetworkPrior()
    with pytest.raises(InvalidInputError, match="uint8 RGB"):
        prior(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(InvalidInputError, match="at least 16x16"):
        prior(np.zeros((8, 32, 3), np.uint8))


def test_importing_the_module_does_not_import_torch() -> None:
    code = (
        "import sys; import splitedge.models.depth.prior_net, splitedge.training.depth_prior; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
