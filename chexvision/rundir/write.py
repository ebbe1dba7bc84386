"""Writing a run directory: the RunDir writer training and evaluation use, provenance, the resume config rule.

Every write goes through `RunDir.commit`: all files to temporary siblings, then the renames, run.json (with the
new sha256 of each file in "files") last. A full disk fails before any rename, so the directory keeps its last
complete write. Only rank 0 of a distributed run writes.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError, RunFailedError
from chexvision.files import (
    is_disk_full,
    json_text,
    read_json_object,
    remove_stale_tmps,
    sha256_file,
    tmp_sibling,
    write_json_atomic,
)
from chexvision.rundir.names import (
    CONFIG_JSON,
    HASHED_FILES,
    HISTORY_JSON,
    LAST_CKPT,
    METRICS_JSON,
    RESUME_CHANGEABLE,
    RUN_JSON,
    RUN_STATUSES,
    TRAIN_LOG,
    WEIGHTS,
)
from chexvision.rundir.read import check_files, recorded_files

__all__ = [
    "DiskFullError",
    "RunDir",
    "Writer",
    "bundle_sha256",
    "check_resume_config",
    "config_changes",
    "dataset_info",
    "epoch_log_line",
    "git_sha",
    "new_run_id",
    "utc_now",
]


def utc_now() -> str:
    """The one UTC timestamp format of run.json and the registry: `2026-11-26T09:12:03Z`."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(model: str) -> str:
    """`densenet-20261126-0912-3fa1`: readable, sortable by time, unique enough for one user."""
    return f"{model}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M}-{secrets.token_hex(2)}"


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
    meta: Mapping[str, Any], split_scheme: str, counts: Mapping[str, int], loader_clahe: bool, *,
    seed: int | None = None, split_rule: str | None = None, split_fingerprints: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """run.json "dataset" from the data folder's dataset.json `meta` (source, repo_id, revision when present).

    "clahe" says whether the images the model saw had CLAHE (baked in by `data build`, or applied by the loader):
    inference on other images repeats exactly that (`chexvision.inference.preprocess`). Training also records its
    split: "seed", "split_rule" (`chexvision.data.splits.SPLIT_RULE`) and "split_fingerprints" (`{split: {"count",
    "sha256"}}`, sha256 of the split's sorted image names), which `evaluate` checks.
    """
    info: dict[str, Any] = {
        "source": meta.get("source", "local"),
        "repo_id": meta.get("repo_id"),
        "revision": meta.get("revision"),
        "split_scheme": split_scheme,
        "counts": dict(counts),
        "clahe": bool(loader_clahe or meta.get("clahe", False)),
    }
    split = {"seed": seed, "split_rule": split_rule, "split_fingerprints": split_fingerprints}
    info.update({key: value for key, value in split.items() if value is not None})
    return info


# --- the writer (training) ----------------------------------------------------------------------------------------

Writer = Callable[[Path], None]  # writes one file's full content to the path it is given


class DiskFullError(RunFailedError):
    """No space left while writing a run directory; the directory still holds its last complete write."""

    def __init__(self, folder: Path, needed: int | None) -> None:
        free = _free_bytes(folder)
        want = f"the write needs at least {_mb(needed)} free there" if needed else "free some space there"
        super().__init__(
            f"disk full writing {folder}: {want} ({_mb(free)} free now)",
            f"then continue with `chexvision train ... --out {folder} --resume`: the run directory still holds "
            "its last finished epoch",
        )
        self.folder, self.needed = folder, needed


def _free_bytes(folder: Path) -> int | None:
    import shutil

    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _mb(n: int | None) -> str:
    return "? MB" if n is None else f"{n / 1e6:.1f} MB"


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{dotted key: [old, new]} for every leaf that differs ("preset" is recorded, not read: never a change)."""
    a, b = _flat(old), _flat(new)
    keys = sorted((set(a) | set(b)) - {"preset"})
    return {k: [a.get(k), b.get(k)] for k in keys if a.get(k) != b.get(k)}


def check_resume_config(run_dir: Path, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The changes a resumed run makes to its config.json; a change outside RESUME_CHANGEABLE is a BadInputError."""
    changes = config_changes(old, new)
    refused = [k for k in changes if k not in RESUME_CHANGEABLE]
    if refused:
        shown = ", ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in refused[:4])
        more = f" (+{len(refused) - 4} more)" if len(refused) > 4 else ""
        raise BadInputError(
            f"cannot resume {run_dir} with a different config: {shown}{more}",
            f"a resumed run may change only {', '.join(RESUME_CHANGEABLE)}; train the new config into another --out",
        )
    return changes


@dataclass(frozen=True)
class RunDir:
    """Where training writes a run directory, and the writes it makes (each one recorded in run.json "files")."""

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

    def commit(self, files: Mapping[str, Writer | Mapping[str, Any]]) -> None:
        """Write `files` (name -> a Writer, or a JSON object) as one step, and record their sha256 in run.json.

        Every file is written to its temporary sibling first; only when all of them (and run.json with the new
        hashes) are on disk are they renamed into place, run.json last. A failed write (a full disk) removes the
        temporary files and leaves the directory as it was: DiskFullError names the folder and the space needed.
        """
        staged: dict[str, Path] = {}
        try:
            for name, content in files.items():
                staged[name] = tmp_sibling(self.path / name)
                _stage(staged[name], content)
            if RUN_JSON in staged or self.run_json.exists():
                run = read_json_object(staged.get(RUN_JSON, self.run_json))
                hashes = {n: sha256_file(t) for n, t in staged.items() if n in HASHED_FILES}
                run["files"] = {**recorded_files(run), **hashes}
                staged[RUN_JSON] = tmp_sibling(self.run_json)
                staged[RUN_JSON].write_text(json_text(run), encoding="utf-8")
        except BaseException as exc:
            needed = self._space_needed([*files, *staged], staged)
            for tmp in staged.values():
                tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise DiskFullError(self.path, needed or None) from exc
            raise
        for name in sorted(staged, key=lambda n: n == RUN_JSON):
            os.replace(staged[name], self.path / name)

    def _space_needed(self, names: list[str], staged: Mapping[str, Path]) -> int:
        """Bytes a commit of `names` needs free: per file the larger of what was staged and the current file."""
        return sum(max(_size(staged[n]) if n in staged else 0, _size(self.path / n)) for n in dict.fromkeys(names))

    def adopt_files(self) -> list[str]:
        """On resume: remove temporary files a killed run left, and re-record the hashes of the files present.

        A run killed between its renames and run.json's rewrite has newer files than run.json records; the resumed
        run continues from them (last.ckpt is loaded by the safe loader), so it records them as they are. Returns
        the names whose record changed.
        """
        removed = remove_stale_tmps(self.path)
        if removed:
            self.append_log(f"removed temporary files of an earlier crash: {', '.join(removed)}")
        if not self.run_json.exists():
            return []
        run = self.read_run()
        present = {n: sha256_file(self.path / n) for n in HASHED_FILES if (self.path / n).is_file()}
        changed = [n for n, sha in present.items() if recorded_files(run).get(n) != sha]
        if changed:
            run["files"] = {**recorded_files(run), **present}
            self._write_run(run)
            self.append_log(f"recorded the sha256 of {', '.join(changed)} as found on resume")
        return changed

    def _write_run(self, run: dict[str, Any]) -> None:
        """run.json atomically; on a full disk, rewritten in place (its blocks are already allocated)."""
        try:
            write_json_atomic(self.run_json, run)
        except OSError as exc:
            if not (is_disk_full(exc) and self.run_json.exists()):
                raise
            with open(self.run_json, "r+", encoding="utf-8") as fh:
                fh.write(json_text(run))
                fh.truncate()

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
        self._write_run(run)
        return run

    def start(
        self, *, run_id: str, model: str, preset: str | None, config: dict[str, Any], dataset: dict[str, Any],
        env: Mapping[str, Any],
    ) -> None:  # fmt: skip
        """config.json and run.json (status running) for a new or resumed run; `env` is run.json's "env".

        Resuming the same run keeps its start and counts the resume. Continuing another run's directory under a
        new `run_id` (dispatch `--resume-from`) is a new run: its own id and start, and `parent_run_id` = that run.
        Either way a config that differs from config.json in more than RESUME_CHANGEABLE is refused, before any
        write; the allowed changes are appended to run.json "config_changes".
        """
        self.path.mkdir(parents=True, exist_ok=True)
        previous = self.read_run()
        same = previous.get("run_id") == run_id
        parent = previous.get("parent_run_id") if same else previous.get("run_id")
        history = list(previous.get("config_changes") or [])
        if self.config_json.is_file():
            changes = check_resume_config(self.path, read_json_object(self.config_json), config)
            if changes:
                history.append({"at": utc_now(), "run_id": run_id, "changes": changes})
        self.commit({CONFIG_JSON: config, RUN_JSON: {
            "run_id": run_id, "parent_run_id": parent, "model": model, "preset": preset, "status": "running",
            "started_at": (previous.get("started_at") if same else None) or utc_now(), "finished_at": None,
            "git_sha": git_sha(), "bundle_sha256": bundle_sha256(), "dataset": dataset, "env": dict(env),
            "resumes": previous.get("resumes", -1) + 1 if same else 0, "config_changes": history,
            "files": recorded_files(previous),
        }})  # fmt: skip
        verb = "resumed" if same else (f"continues {parent}" if parent else "started")
        self.append_log(f"run {run_id} {verb}: model {model}, preset {preset}")

    @staticmethod
    def history_doc(epochs: list[dict[str, Any]], best_epoch: int | None, best_auc: float | None) -> dict[str, Any]:
        return {"epochs": epochs, "best_epoch": best_epoch, "best_val_macro_auc": best_auc}

    def write_history(self, epochs: list[dict[str, Any]], best_epoch: int | None, best_auc: float | None) -> None:
        self.commit({HISTORY_JSON: self.history_doc(epochs, best_epoch, best_auc)})

    def best_metrics_doc(self, split_scheme: str, record: dict[str, Any]) -> dict[str, Any]:
        """metrics.json with "val" from a history record; keeps "test" and anything else evaluation added."""
        return self.metrics_doc("val", {
            "macro_auc": record["val_macro_auc"], "binary_auc": record["val_binary_auc"],
            "binary_f1": record["val_binary_f1"], "per_class_auc": record["val_per_class_auc"],
            "epoch": record["epoch"],
        }, split_scheme=split_scheme)  # fmt: skip

    def write_best_metrics(self, split_scheme: str, record: dict[str, Any]) -> None:
        self.commit({METRICS_JSON: self.best_metrics_doc(split_scheme, record)})

    def metrics_doc(
        self, section: str, values: Mapping[str, Any], *, split_scheme: str | None = None
    ) -> dict[str, Any]:
        """metrics.json with one section set; the sections it keeps must be what was recorded (check_files)."""
        if not self.metrics_json.exists():
            metrics: dict[str, Any] = {}
        else:
            check_files(self.path, names=(METRICS_JSON,))  # never carry a tampered section into a new record
            metrics = read_json_object(self.metrics_json)
        if split_scheme is not None:
            metrics["split_scheme"] = split_scheme
        metrics[section] = dict(values)
        return metrics

    def write_metrics_section(
        self, section: str, values: Mapping[str, Any], *, split_scheme: str | None = None
    ) -> None:
        """Set one section of metrics.json ("val" from training, "test"/"val_eval" from evaluation), keep the rest."""
        self.commit({METRICS_JSON: self.metrics_doc(section, values, split_scheme=split_scheme)})

    def append_log(self, line: str) -> None:
        try:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write(f"{utc_now()} {line}\n")
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(self.path, None) from exc
            raise


def _stage(tmp: Path, content: Writer | Mapping[str, Any]) -> None:
    if callable(content):
        content(tmp)
    else:
        tmp.write_text(json_text(content), encoding="utf-8")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
