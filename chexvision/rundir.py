"""The run directory (DESIGN §4) as code: its file names, the writer training uses, one typed reader, verification.

Torch-free: `fetch`, `publish` and `status` read and check run directories without importing torch (training
passes its torch/CUDA environment in, from `chexvision.engine.state.environment_info`). Every other module asks
this one for file names; no literal `"run.json"` lives anywhere else. A published model folder (`--hub-dir`, a
Hub snapshot) holds a subset of the same files under the same names, so `read_run_dir` reads it too.

Every JSON file is written atomically (tmp + rename), so a reader (dispatch fetch, a killed run) never sees half
a file. Only rank 0 of a distributed run writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import struct
import subprocess
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError, RunFailedError
from chexvision.files import read_json_object, write_json_atomic

__all__ = [
    "CONFIG_JSON",
    "EXPECTED_FILES",
    "HISTORY_JSON",
    "JSON_FILES",
    "LAST_CKPT",
    "METRICS_JSON",
    "REQUIRED_FILES",
    "RUN_JSON",
    "RUN_STATUSES",
    "TRAIN_LOG",
    "WEIGHTS",
    "RunDir",
    "RunDirInvalidError",
    "RunInfo",
    "bundle_sha256",
    "dataset_info",
    "epoch_log_line",
    "git_sha",
    "new_run_id",
    "read_run_dir",
    "read_safetensors_header",
    "safetensors_problem",
    "utc_now",
    "verify_run_dir",
]

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"
METRICS_JSON = "metrics.json"
WEIGHTS = "model.safetensors"
LAST_CKPT = "last.ckpt"
TRAIN_LOG = "train.log"

JSON_FILES = (RUN_JSON, CONFIG_JSON, HISTORY_JSON, METRICS_JSON)
REQUIRED_FILES = (*JSON_FILES, WEIGHTS)  # what makes a run directory usable (fetch, publish, load)
EXPECTED_FILES = (LAST_CKPT, TRAIN_LOG)  # written by every run, but a run directory works without them
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def utc_now() -> str:
    """The one UTC timestamp format of run.json and the registry: `2026-11-26T09:12:03Z`."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(model: str) -> str:
    """`densenet-20261126-0912-3fa1`: readable, sortable by time, unique enough for one user."""
    return f"{model}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M}-{secrets.token_hex(2)}"


class RunDirInvalidError(RunFailedError):
    """A run directory that is not a valid DESIGN §4 run directory (every problem listed)."""

    def __init__(self, run_dir: Path, problems: list[str]) -> None:
        super().__init__(
            f"run directory {run_dir} is not valid: {'; '.join(problems)}",
            "check the run's log with `chexvision logs RUN_ID`; re-fetch with `chexvision fetch --run RUN_ID`",
        )
        self.run_dir = run_dir
        self.problems = problems


class _HeaderError(ValueError):
    pass


def _header(path: Path) -> tuple[dict[str, Any], int]:
    """(JSON header, header length) of a safetensors file, read without torch or numpy."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _HeaderError(f"{path.name} is truncated")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise _HeaderError(f"{path.name} has an impossible header length")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise _HeaderError(f"{path.name} header is not JSON") from None
    if not isinstance(header, dict):
        raise _HeaderError(f"{path.name} header is not a JSON object")
    return header, n


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file (name -> {dtype, shape, data_offsets}), `__metadata__` left out.

    A damaged file is a BadInputError naming it. Nothing is loaded: this is what a parameter count needs.
    """
    try:
        header, _ = _header(Path(path))
    except (OSError, _HeaderError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}", "fetch or publish the run again") from exc
    return {k: v for k, v in header.items() if k != "__metadata__"}


def safetensors_problem(path: Path) -> str | None:
    """Check a safetensors file's header and offsets without unpickling (or importing torch); None when sound."""
    try:
        header, n = _header(path)
    except _HeaderError as exc:
        return str(exc)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        return f"{path.name} holds no tensors"
    try:
        end = max(int(v["data_offsets"][1]) for v in tensors.values())
    except (KeyError, IndexError, TypeError, ValueError):
        return f"{path.name} header has a tensor without data_offsets"
    size = path.stat().st_size
    if 8 + n + end != size:
        return f"{path.name} size {size} does not match its header ({8 + n + end})"
    return None


def verify_run_dir(run_dir: Path) -> list[str]:
    """Check a DESIGN §4 run directory; raise RunDirInvalidError listing every problem.

    Returns the expected-but-optional files that are missing (last.ckpt, train.log).
    """
    problems = [f"{name} missing" for name in REQUIRED_FILES if not (run_dir / name).is_file()]
    for name in JSON_FILES:
        path = run_dir / name
        if path.is_file():
            try:
                if not isinstance(json.loads(path.read_text()), dict):
                    problems.append(f"{name} is not a JSON object")
            except ValueError as exc:
                problems.append(f"{name} is not valid JSON ({exc})")
    weights = run_dir / WEIGHTS
    if weights.is_file():
        problem = safetensors_problem(weights)
        if problem:
            problems.append(problem)
    if problems:
        raise RunDirInvalidError(run_dir, problems)
    return [name for name in EXPECTED_FILES if not (run_dir / name).is_file()]


# --- provenance ---------------------------------------------------------------------------------------------------


def git_sha() -> str | None:
    """DISPATCH_GIT_SHA (exported by the kernel), else the older CHEXVISION_GIT_SHA, else `git rev-parse HEAD`."""
    sha = os.environ.get("DISPATCH_GIT_SHA") or os.environ.get("CHEXVISION_GIT_SHA")
    if sha:
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
            timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def bundle_sha256() -> str | None:
    """The sha256 of the source bundle a dispatched run was unpacked from (None for a local run)."""
    return os.environ.get("DISPATCH_BUNDLE_SHA256") or os.environ.get("CHEXVISION_BUNDLE_SHA256") or None


def dataset_info(
    meta: Mapping[str, Any], split_scheme: str, counts: Mapping[str, int], loader_clahe: bool
) -> dict[str, Any]:
    """run.json "dataset" from the data folder's dataset.json `meta` (source, repo_id, revision when present).

    "clahe" says whether the images the model saw had CLAHE (baked in by `data build`, or applied by the loader):
    inference on other images repeats exactly that (`chexvision.inference.preprocess`).
    """
    return {
        "source": meta.get("source", "local"),
        "repo_id": meta.get("repo_id"),
        "revision": meta.get("revision"),
        "split_scheme": split_scheme,
        "counts": dict(counts),
        "clahe": bool(loader_clahe or meta.get("clahe", False)),
    }


# --- the writer (training) ----------------------------------------------------------------------------------------

RUN_STATUSES = ("running", "complete", "incomplete", "error")


@dataclass(frozen=True)
class RunDir:
    """Where training writes a run directory, and the writes it makes."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def config_json(self) -> Path:
        return self.path / CONFIG_JSON

    @property
    def history_json(self) -> Path:
        return self.path / HISTORY_JSON

    @property
    def metrics_json(self) -> Path:
        return self.path / METRICS_JSON

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS

    @property
    def last_ckpt(self) -> Path:
        return self.path / LAST_CKPT

    @property
    def log(self) -> Path:
        return self.path / TRAIN_LOG

    def has_run(self) -> bool:
        return self.run_json.exists() or self.last_ckpt.exists()

    def read_run(self) -> dict[str, Any]:
        return read_json_object(self.run_json) if self.run_json.exists() else {}

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
        write_json_atomic(self.run_json, run)
        return run

    def start(
        self, *, run_id: str, model: str, preset: str | None, config: dict[str, Any], dataset: dict[str, Any],
        env: Mapping[str, Any],
    ) -> None:  # fmt: skip
        """config.json and run.json (status running) for a new or resumed run; `env` is run.json's "env".

        Resuming the same run keeps its start and counts the resume. Continuing another run's directory under a
        new `run_id` (dispatch `--resume-from`) is a new run: its own id and start, and `parent_run_id` = that run.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        previous = self.read_run()
        same = previous.get("run_id") == run_id
        parent = previous.get("parent_run_id") if same else previous.get("run_id")
        write_json_atomic(self.config_json, config)
        write_json_atomic(self.run_json, {
            "run_id": run_id, "parent_run_id": parent, "model": model, "preset": preset, "status": "running",
            "started_at": (previous.get("started_at") if same else None) or utc_now(), "finished_at": None,
            "git_sha": git_sha(), "bundle_sha256": bundle_sha256(), "dataset": dataset, "env": dict(env),
            "resumes": previous.get("resumes", -1) + 1 if same else 0,
        })  # fmt: skip
        verb = "resumed" if same else (f"continues {parent}" if parent else "started")
        self.append_log(f"run {run_id} {verb}: model {model}, preset {preset}")

    def write_history(self, epochs: list[dict[str, Any]], best_epoch: int | None, best_auc: float | None) -> None:
        write_json_atomic(
            self.history_json, {"epochs": epochs, "best_epoch": best_epoch, "best_val_macro_auc": best_auc}
        )

    def write_best_metrics(self, split_scheme: str, record: dict[str, Any]) -> None:
        """metrics.json "val" from a history record; keeps "test" and anything else evaluation added."""
        self.write_metrics_section("val", {
            "macro_auc": record["val_macro_auc"], "binary_auc": record["val_binary_auc"],
            "binary_f1": record["val_binary_f1"], "per_class_auc": record["val_per_class_auc"],
            "epoch": record["epoch"],
        }, split_scheme=split_scheme)  # fmt: skip

    def write_metrics_section(
        self, section: str, values: Mapping[str, Any], *, split_scheme: str | None = None
    ) -> None:
        """Set one section of metrics.json ("val" from training, "test"/"val_eval" from evaluation), keep the rest."""
        metrics = read_json_object(self.metrics_json) if self.metrics_json.exists() else {}
        if split_scheme is not None:
            metrics["split_scheme"] = split_scheme
        metrics[section] = dict(values)
        write_json_atomic(self.metrics_json, metrics)

    def append_log(self, line: str) -> None:
        with open(self.log, "a", encoding="utf-8") as fh:
            fh.write(f"{utc_now()} {line}\n")


def epoch_log_line(r: Mapping[str, Any], total: int, is_best: bool) -> str:
    """The train.log summary of one history record."""

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    return (
        f"epoch {r['epoch']}/{total} phase {r['phase']} lr {r['lr']:.2e} train_loss {r['train_loss']:.4f} "
        f"val_loss {r['val_loss']:.4f} val_macro_auc {f(r['val_macro_auc'])} val_binary_auc {f(r['val_binary_auc'])} "
        f"val_binary_f1 {r['val_binary_f1']:.4f} {r['seconds']:.1f}s {r['images_per_second']:.0f} img/s"
        + (" *best" if is_best else "")
    )


# --- the reader (evaluation, publishing, loading, comparing) ------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """The JSON files of a run directory (or a published model folder), read once; {} for a file it lacks."""

    run_dir: Path
    run: dict[str, Any]
    config: dict[str, Any]
    history: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.run_dir / WEIGHTS

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id") or self.run_dir.name)

    @property
    def parent_run_id(self) -> str | None:
        return self.run.get("parent_run_id") or None

    @property
    def model_name(self) -> str:
        return str((self.config.get("model") or {}).get("name") or self.run.get("model") or "model")

    @property
    def dataset(self) -> dict[str, Any]:
        """run.json "dataset": source, repo_id, revision, split_scheme, counts, clahe ({} for older uploads)."""
        return dict(self.run.get("dataset") or {})

    @property
    def recorded_split_scheme(self) -> str | None:
        """The split scheme training used: config.json, else run.json, else metrics.json; None if none says."""
        for value in (
            (self.config.get("data") or {}).get("split_scheme"),
            self.dataset.get("split_scheme"),
            self.metrics.get("split_scheme"),
        ):
            if value:
                return str(value)
        return None

    @property
    def split_scheme(self) -> str:
        return self.recorded_split_scheme or "unknown"


def _read_optional(path: Path, strict: bool) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return read_json_object(path)
    except BadInputError:
        if strict:
            raise
        return {}  # optional provenance: a damaged copy must not block what the required files allow


def read_run_dir(
    run_dir: Path,
    *,
    required: Collection[str] = (CONFIG_JSON,),
    strict: bool = True,
    hint: str = "pass a folder written by `chexvision train` (or fetch the run: `chexvision fetch --run ID`)",
) -> RunInfo:
    """Read a run directory; a missing folder or `required` file is a BadInputError naming it.

    A malformed JSON file is a BadInputError too, except, with `strict=False`, one that is not `required`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run directory {run_dir} not found", hint)
    missing = [name for name in required if not (run_dir / name).is_file()]
    if missing:
        raise BadInputError(f"run directory {run_dir} lacks {', '.join(missing)}", hint)
    docs = {name: _read_optional(run_dir / name, strict or name in required) for name in JSON_FILES}
    return RunInfo(run_dir, docs[RUN_JSON], docs[CONFIG_JSON], docs[HISTORY_JSON], docs[METRICS_JSON])
