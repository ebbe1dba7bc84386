"""The run directory (DESIGN §4): run.json, config.json, history.json, metrics.json, train.log, weights.

Every JSON file is written atomically (tmp + rename), so a reader (dispatch fetch, a killed run) never sees half
a file. Only rank 0 of a distributed run calls these.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision.data.shards import read_dataset_meta
from chexvision.files import read_json_object, write_json_atomic

__all__ = [
    "RunDir",
    "dataset_info",
    "environment_info",
    "epoch_log_line",
    "git_sha",
    "new_run_id",
    "utc_now",
]

RUN_STATUSES = ("running", "complete", "incomplete", "error")


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(model: str) -> str:
    """`densenet-20261126-0912-3fa1`: readable, sortable by time, unique enough for one user."""
    return f"{model}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M}-{secrets.token_hex(2)}"


def git_sha() -> str | None:
    """CHEXVISION_GIT_SHA (set by dispatch for bundles), else `git rev-parse HEAD` of the source tree, else None."""
    sha = os.environ.get("CHEXVISION_GIT_SHA")
    if sha:
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    import torch

    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda, "gpus": gpus}


def dataset_info(data_dir: Path, split_scheme: str, counts: dict[str, int], loader_clahe: bool) -> dict[str, Any]:
    """run.json "dataset": source / repo_id / revision from the data dir's dataset.json (when present).

    "clahe" says whether the images the model saw had CLAHE (baked in by `data build`, or applied by the loader):
    prediction on raw images repeats exactly that.
    """
    meta = read_dataset_meta(Path(data_dir))
    return {
        "source": meta.get("source", "local"),
        "repo_id": meta.get("repo_id"),
        "revision": meta.get("revision"),
        "split_scheme": split_scheme,
        "counts": dict(counts),
        "clahe": bool(loader_clahe or meta.get("clahe", False)),
    }


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def config_json(self) -> Path:
        return self.path / "config.json"

    @property
    def history_json(self) -> Path:
        return self.path / "history.json"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def weights(self) -> Path:
        return self.path / "model.safetensors"

    @property
    def last_ckpt(self) -> Path:
        return self.path / "last.ckpt"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    def has_run(self) -> bool:
        return self.run_json.exists() or self.last_ckpt.exists()

    def read_run(self) -> dict[str, Any]:
        return read_json_object(self.run_json) if self.run_json.exists() else {}

    def write_run(self, run: dict[str, Any]) -> None:
        write_json_atomic(self.run_json, run)

    def set_status(self, status: str, reason: str | None = None) -> dict[str, Any]:
        """Update run.json's status (+ finished_at unless running; `reason` for errors)."""
        assert status in RUN_STATUSES, status
        run = self.read_run()
        run["status"] = status
        run["finished_at"] = None if status == "running" else utc_now()
        if reason is not None:
            run["reason"] = reason
        else:
            run.pop("reason", None)
        self.write_run(run)
        return run

    def start(
        self, *, run_id: str, model: str, preset: str | None, config: dict[str, Any], dataset: dict[str, Any]
    ) -> None:
        """config.json and run.json (status running) for a new or resumed run; a resumed run keeps its start."""
        self.path.mkdir(parents=True, exist_ok=True)
        previous = self.read_run()
        write_json_atomic(self.config_json, config)
        self.write_run({
            "run_id": run_id, "model": model, "preset": preset, "status": "running",
            "started_at": previous.get("started_at") or utc_now(), "finished_at": None, "git_sha": git_sha(),
            "bundle_sha256": os.environ.get("CHEXVISION_BUNDLE_SHA256"), "dataset": dataset,
            "env": environment_info(), "resumes": previous["resumes"] + 1 if "resumes" in previous else 0,
        })  # fmt: skip
        self.append_log(f"run {run_id} {'resumed' if previous else 'started'}: model {model}, preset {preset}")

    def write_history(self, epochs: list[dict[str, Any]], best_epoch: int | None, best_auc: float | None) -> None:
        write_json_atomic(
            self.history_json, {"epochs": epochs, "best_epoch": best_epoch, "best_val_macro_auc": best_auc}
        )

    def write_best_metrics(self, split_scheme: str, record: dict[str, Any]) -> None:
        """metrics.json "val" from a history record; keeps "test" and anything else evaluation added."""
        metrics = read_json_object(self.metrics_json) if self.metrics_json.exists() else {}
        metrics["split_scheme"] = split_scheme
        metrics["val"] = {
            "macro_auc": record["val_macro_auc"], "binary_auc": record["val_binary_auc"],
            "binary_f1": record["val_binary_f1"], "per_class_auc": record["val_per_class_auc"],
            "epoch": record["epoch"],
        }  # fmt: skip
        write_json_atomic(self.metrics_json, metrics)

    def append_log(self, line: str) -> None:
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"{utc_now()} {line}\n")


def epoch_log_line(r: dict[str, Any], total: int, is_best: bool) -> str:
    """The train.log summary of one history record."""

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    return (
        f"epoch {r['epoch']}/{total} phase {r['phase']} lr {r['lr']:.2e} train_loss {r['train_loss']:.4f} "
        f"val_loss {r['val_loss']:.4f} val_macro_auc {f(r['val_macro_auc'])} val_binary_auc {f(r['val_binary_auc'])} "
        f"val_binary_f1 {r['val_binary_f1']:.4f} {r['seconds']:.1f}s {r['images_per_second']:.0f} img/s"
        + (" *best" if is_best else "")
    )
