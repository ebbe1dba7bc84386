"""Resumable training state in `last.ckpt`, readable with `torch.load(weights_only=True)` (no pickle of objects).

RNG states are stored as tensors and plain lists so the safe loader accepts them. `checkpoint_writer` and
`safetensors_writer` are `chexvision.rundir.Writer`s: `RunDir.commit` has them write temporary files, renames them
with the epoch's other files and records their sha256, so a run killed or out of disk mid-write keeps the previous
epoch whole. `save_checkpoint` / `save_safetensors` write one file atomically on their own (outside a run directory).
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chexvision.engine.state import Trainer
from chexvision.errors import BadInputError
from chexvision.files import tmp_sibling
from chexvision.rundir import RunDir, Writer

__all__ = [
    "capture_rng",
    "checkpoint_state",
    "checkpoint_writer",
    "load_checkpoint",
    "open_run",
    "restore_rng",
    "safetensors_writer",
    "save_checkpoint",
    "save_safetensors",
    "write_checkpoint",
]


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states in weights_only-safe types."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    return {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(states: dict[str, Any]) -> None:
    version, state, gauss = states["python"]
    random.setstate((int(version), tuple(int(s) for s in state), gauss))
    name, key, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def _write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Plain Python writes + fsync: a full disk is an OSError(ENOSPC), not a C++ writer's RuntimeError."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to exactly `path` (serialised in memory first), then fsync; the caller renames it into place."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _write_bytes(path, buffer.getbuffer())


def _atomic(write: Writer, path: Path) -> None:
    tmp = tmp_sibling(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary sibling, fsync, then rename over `path`."""
    _atomic(checkpoint_writer(state), path)


def checkpoint_writer(state: dict[str, Any]) -> Writer:
    """A Writer of `state` as a checkpoint (for `RunDir.commit`)."""
    return lambda path: write_checkpoint(path, state)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with the safe unpickler; a foreign or corrupt file is a BadInputError."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError for the same damage
        raise BadInputError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc})",
            "start a new run with another --out, or restore the file",
        ) from exc
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise BadInputError(f"{path} is not a CheXVision checkpoint", "pass the run directory that wrote it")
    return state


def save_safetensors(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Best weights without pickle: contiguous CPU copies, atomic write."""
    _atomic(safetensors_writer(state_dict, metadata), path)


def safetensors_writer(state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Writer:
    """A Writer of `state_dict` as safetensors (contiguous CPU copies taken now, for `RunDir.commit`)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    return lambda path: _write_bytes(path, save(tensors, metadata=metadata))


def checkpoint_state(tr: Trainer, epoch: int, history: list[dict[str, Any]], best: dict[str, Any]) -> dict[str, Any]:
    """Everything `--resume` needs to continue exactly after `epoch` (weights_only-loadable)."""
    assert tr.optimizer is not None and tr.scheduler is not None and tr.scaler is not None and tr.phase is not None
    return {
        "model": tr.model.state_dict(),
        "optimizer": tr.optimizer.state_dict(),
        "scheduler": tr.scheduler.state_dict(),
        "scaler": tr.scaler.state_dict(),
        "epoch": epoch,
        "phase": tr.phase.index,
        "rng": capture_rng(),
        "early_stop": dict(best),
        "history": history,
    }


def open_run(run: RunDir, resume: bool, is_main: bool = True) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: start fresh); refuses to overwrite an existing run.

    On resume the main process first clears an earlier crash's temporary files and records the files as found
    (`RunDir.adopt_files`).
    """
    if run.has_run() and not resume:
        raise BadInputError(f"{run.path} already holds a run", "continue it with --resume, or choose another --out")
    if resume and is_main:
        run.adopt_files()
    if resume and run.last_ckpt.exists():
        return load_checkpoint(run.last_ckpt)
    return None  # --resume before the first finished epoch starts over
