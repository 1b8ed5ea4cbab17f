"""Where and how a student recipe runs: device, mixed precision, ``torchrun`` processes,
periodic checkpoints and resuming.

- ``--device auto`` is CUDA when torch sees a GPU, else the CPU.
- ``--amp``: autocast to float16 on CUDA (with a gradient scaler), bfloat16 on the CPU.
- Started by ``torchrun --nproc_per_node N``, each process trains the student on its
  own share of the batches and ``DistributedDataParallel`` averages the gradients
  (NCCL on CUDA, gloo on the CPU); only rank 0 writes files and shows progress.
- ``--checkpoint-every K`` writes ``<out>/<name>-step<k>.train.pt`` every K steps:
  student, optimizer, LR scheduler, gradient scaler, RNG states and the loss history;
  ``--resume FILE`` restores all of them and continues at step k, so the run ends
  with the weights an uninterrupted run would have (same data, same draws).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRAIN_CHECKPOINT_FORMAT = "splitedge-student-train-v1"


class RunConfigError(ValueError):
    """A device / precision / process setting that cannot work (one line)."""


@dataclass
class Runtime:
    """The resolved run settings one process trains with."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> Any:
        enabled = self.amp_dtype == torch.float16
        return torch.amp.GradScaler(self.device.type, enabled=enabled)


def resolve_device(device: str) -> torch.device:
    """``cuda``, ``cuda:<i>``, ``cpu`` or ``auto``; CUDA refused in one line when absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RunConfigError(f"--device {device}: torch sees no CUDA device here")
        return torch.device(device)
    raise RunConfigError(f"--device must be cuda, cpu or auto, got {device!r}")


def start(device: str, amp: bool) -> Runtime:
    """Resolve ``--device``/``--amp`` and join the ``torchrun`` process group if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    target = resolve_device(device)
    if world_size > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if target.type == "cuda":
            target = torch.device("cuda", local_rank)
            torch.cuda.set_device(target)
        backend = "nccl" if target.type == "cuda" else "gloo"
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend)
    amp_dtype = None
    if amp:
        amp_dtype = torch.float16 if target.type == "cuda" else torch.bfloat16
    return Runtime(target, amp_dtype, rank, world_size)


def finish(runtime: Runtime) -> None:
    if runtime.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap(student: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """The student as each process trains it (DDP across ``torchrun`` processes).

    Slimmable widths leave the other widths' batch norms unused in a step, hence
    ``find_unused_parameters``.
    """
    if not runtime.distributed:
        return student
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        student, device_ids=ids, find_unused_parameters=True
    )


def no_sync(model: torch.nn.Module, last: bool) -> Any:
    """Skip DDP's gradient all-reduce for all but the last backward of a step."""
    if last or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def checkpoint_path(out_dir: Path, name: str, step: int) -> Path:
    return Path(out_dir) / f"{name}-step{step}.train.pt"


def save_training_state(
    path: Path,
    *,
    step: int,
    student: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    rng: np.random.Generator,
    losses: list[float],
    recipe: dict[str, Any],
) -> Path:
    """Everything a resumed run needs to continue at ``step`` (written atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": TRAIN_CHECKPOINT_FORMAT,
        "step": int(step),
        "student": student.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "losses": list(losses),
        "recipe": recipe,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_training_state(path: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of :func:`save_training_state`, refused in one line when it cannot be
    read or was written by another recipe (``recipe``: the fields that must match)."""
    path = Path(path)
    if not path.is_file():
        raise RunConfigError(f"--resume {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise RunConfigError(f"--resume {path}: cannot read it ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != TRAIN_CHECKPOINT_FORMAT:
        raise RunConfigError(f"--resume {path}: not a training checkpoint of a student recipe")
    differ = [
        f"{k} {state['recipe'].get(k)!r} (checkpoint) != {v!r} (now)"
        for k, v in recipe.items()
        if state["recipe"].get(k) != v
    ]
    if differ:
        raise RunConfigError(f"--resume {path}: another recipe: {'; '.join(differ)}")
    return state
