"""The public API the CLI calls: dispatch a training run, follow it, cancel it, fetch its run directory.

Functions return data (records, results) and raise typed errors; nothing here prints. Every function opens the
registry for the duration of the call only.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError, RunFailedError
from dispatch.backends import BACKENDS, Backend, LaunchRequest, get_backend
from dispatch.errors import BackendUnavailableError, RunVerificationError
from dispatch.registry import Registry, RunRecord, chexvision_home, new_run_id, utcnow
from dispatch.status import RunStatus

__all__ = [
    "DEFAULT_HF_REPO",
    "DEFAULT_HF_REVISION",
    "MODELS",
    "REQUIRED_RUN_FILES",
    "DispatchResult",
    "FetchResult",
    "TrainRequest",
    "cancel_run",
    "default_backend",
    "dispatch_train",
    "fetch_run",
    "follow_logs",
    "get_run",
    "list_runs",
    "parse_data_source",
    "run_logs",
    "verify_run_dir",
    "watch_run",
]

MODELS = ("densenet", "seresnet")
# DESIGN §2: the published data set at its pinned revision (chexvision.data.download has the same values).
DEFAULT_HF_REPO = "arudaev/chest-xray-14-320"
DEFAULT_HF_REVISION = "44443e6ee968b3c6094b63f14a27698c40b50680"
SYNTH_DEFAULTS = {"images": 2000, "size": 64, "seed": 0}  # the local default: what the smoke preset is tuned on
REQUIRED_RUN_FILES = ("run.json", "config.json", "history.json", "metrics.json", "model.safetensors")
EXPECTED_RUN_FILES = ("last.ckpt", "train.log")


@dataclass(frozen=True)
class TrainRequest:
    """What `chexvision dispatch train` asks for."""

    model: str
    backend: str | None = None  # None: kaggle when credentials are configured, else local
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    data: str | None = None  # hf[:REPO@REV] | synthetic[:IMAGES[:SIZE]] | kaggle:OWNER/SLUG | a local folder
    gpu: str = "t4x2"
    time_budget: float | None = None  # hours
    resume_from: str | None = None
    split_scheme: str | None = None


@dataclass(frozen=True)
class DispatchResult:
    run_id: str
    backend: str
    status: RunStatus
    bundle_sha256: str
    bundle_size: int
    bundle_files: int
    script_size: int
    data: dict[str, Any]
    notice: str | None = None
    handle: str | None = None
    dry_run_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "backend": self.backend,
            "status": str(self.status),
            "handle": self.handle,
            "bundle_sha256": self.bundle_sha256,
            "bundle_size": self.bundle_size,
            "bundle_files": self.bundle_files,
            "script_size": self.script_size,
            "data": self.data,
            "notice": self.notice,
            "dry_run_dir": str(self.dry_run_dir) if self.dry_run_dir else None,
        }


@dataclass(frozen=True)
class FetchResult:
    run_id: str
    run_dir: Path
    files: list[Path] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    best_val_auc: float | None = None


def default_backend() -> tuple[str, str | None]:
    """(backend, notice): Kaggle when its credentials are configured, else local with a one-line notice."""
    from dispatch.backends.kaggle_client import credentials_configured

    if credentials_configured():
        return "kaggle", None
    return "local", "no Kaggle credentials configured: running on the local backend (--backend kaggle to change)"


def _hf_defaults() -> tuple[str, str]:
    try:
        from chexvision.data import download

        return str(download.REPO_ID), str(download.REVISION)
    except (ImportError, AttributeError):
        return DEFAULT_HF_REPO, DEFAULT_HF_REVISION


def parse_data_source(spec: str | None, backend: str) -> dict[str, Any]:
    """`--data` -> the kernel's DATA dict. Default: the HF data set on Kaggle, synthetic data locally."""
    if spec is None:
        spec = "hf" if backend == "kaggle" else "synthetic"
    kind, _, rest = spec.partition(":")
    if kind == "hf":
        repo, revision = _hf_defaults()
        if rest:
            repo, _, rev = rest.partition("@")
            revision = rev or revision
        return {"kind": "hf", "repo_id": repo, "revision": revision}
    if kind == "synthetic":
        values = dict(SYNTH_DEFAULTS)
        for key, text in zip(("images", "size"), filter(None, rest.split(":")), strict=False):
            if not text.isdigit():
                raise BadInputError(f"--data {spec!r}: {key} must be a number", "e.g. --data synthetic:400:64")
            values[key] = int(text)
        return {"kind": "synthetic", **values}
    if kind == "kaggle":
        if rest.count("/") != 1:
            raise BadInputError(f"--data {spec!r} is not kaggle:OWNER/SLUG", "e.g. --data kaggle:nih-chest-xrays/data")
        return {"kind": "kaggle", "dataset": rest}
    path = Path(spec).expanduser()
    if path.is_dir():
        if backend != "local":
            raise BadInputError(f"--data {spec}: a local folder only works on the local backend", "use --data hf")
        return {"kind": "dir", "path": str(path.resolve())}
    raise BadInputError(
        f"--data {spec!r} is not a data source",
        "use hf[:REPO@REV], synthetic[:N[:SIZE]], kaggle:OWNER/SLUG or a folder",
    )


def _git_sha(root: Path) -> str | None:
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "chexvision"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def _train_command(req: TrainRequest, run_id: str, resume: bool) -> list[str]:
    cmd = [
        "python",
        "-m",
        "chexvision",
        "train",
        "--model",
        req.model,
        "--data",
        "DATA",
        "--out",
        "OUTPUT",
        "--run-id",
        run_id,
    ]
    if req.preset:
        cmd += ["--preset", req.preset]
    for item in req.overrides:
        cmd += ["--set", item]
    if req.time_budget is not None:
        cmd += ["--time-budget", str(req.time_budget)]
    if req.split_scheme:
        cmd += ["--split-scheme", req.split_scheme]
    if resume:
        cmd.append("--resume")
    return cmd


def repo_root() -> Path:
    """The source tree the bundle is built from (tests point it at a small tree)."""
    from dispatch.bundle import repo_root as root

    return root()


def _validate(req: TrainRequest) -> None:
    if req.model not in MODELS:
        raise BadInputError(f"unknown model {req.model!r}", f"choose one of: {', '.join(MODELS)}")
    for item in req.overrides:
        if "=" not in item:
            raise BadInputError(f"--set {item!r} is not key=value", "e.g. --set train.epochs=3")
    presets = repo_root() / "chexvision" / "presets"
    if req.preset and presets.is_dir() and not (presets / f"{req.preset}.toml").is_file():
        names = sorted(p.stem for p in presets.glob("*.toml"))
        raise BadInputError(f"unknown preset {req.preset!r}", f"choose one of: {', '.join(names)}")
    if req.time_budget is not None and req.time_budget <= 0:
        raise BadInputError("--time-budget must be positive hours")


def dispatch_train(req: TrainRequest, *, dry_run_out: Path | None = None) -> DispatchResult:
    """Bundle, render and start a training run (or, with `dry_run_out`, only write the kernel folder)."""
    from dispatch.bundle import build_bundle
    from dispatch.render import KernelSpec

    _validate(req)
    notice = None
    backend_name = req.backend
    if backend_name is None:
        backend_name, notice = default_backend()
    if backend_name not in BACKENDS:
        raise BadInputError(f"unknown backend {backend_name!r}", f"choose one of: {', '.join(BACKENDS)}")
    backend = get_backend(backend_name)
    data = parse_data_source(req.data, backend_name)
    parent = None
    if req.resume_from:
        with Registry.open() as reg:
            parent = reg.get(req.resume_from)
        if parent.backend != backend_name:
            raise BadInputError(
                f"run {parent.run_id} ran on {parent.backend}", f"resume it with --backend {parent.backend}"
            )
    root = repo_root()
    bundle = build_bundle(root, split_scheme=req.split_scheme)
    run_id = new_run_id(req.model)
    record = RunRecord(
        run_id=run_id,
        backend=backend_name,
        model=req.model,
        preset=req.preset,
        command=_train_command(req, run_id, parent is not None),
        git_sha=_git_sha(root),
        bundle_sha256=bundle.sha256,
        bundle_size=bundle.size,
        parent_run_id=parent.run_id if parent else None,
        data_source=json.dumps(data),
    )
    kernel = KernelSpec(
        run_id=run_id,
        model=req.model,
        bundle=bundle.data,
        bundle_sha256=bundle.sha256,
        data=data,
        preset=req.preset,
        overrides=req.overrides,
        time_budget=req.time_budget,
        split_scheme=req.split_scheme,
        git_sha=record.git_sha,
    )
    request = LaunchRequest(record=record, kernel=kernel, gpu=req.gpu, parent=parent)

    def result(status: RunStatus, script_size: int, handle: str | None, dry: Path | None) -> DispatchResult:
        return DispatchResult(
            run_id,
            backend_name,
            status,
            bundle.sha256,
            bundle.size,
            len(bundle.files),
            script_size,
            data,
            notice,
            handle,
            dry,
        )

    if dry_run_out is not None:
        rendered = backend.render(request, dry_run_out)
        backend.check_size(rendered)
        return result(RunStatus.SUBMITTING, rendered.script_size, None, dry_run_out)

    _check_capacity(backend)
    with Registry.open() as reg:
        reg.add(record)
    folder = chexvision_home() / "kernels" / run_id
    try:
        updates = backend.launch(request, folder)
    except Exception as exc:
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        with Registry.open() as reg:
            reg.update(
                run_id, status=RunStatus.ERROR, failure_reason=f"dispatch failed: {reason}", finished_at=utcnow()
            )
        raise
    with Registry.open() as reg:
        record = reg.update(run_id, **updates)
    script_size = (folder / "train.py").stat().st_size
    return result(record.status, script_size, record.kaggle_handle or record.local_dir, None)


def _check_capacity(backend: Backend) -> None:
    if backend.max_active_runs is None:
        return
    active = [
        r
        for r in list_runs(refresh=True)
        if r.backend == backend.name and not r.status.is_terminal() and r.status != RunStatus.SUBMITTING
    ]
    if len(active) >= backend.max_active_runs:
        ids = ", ".join(r.run_id for r in active)
        raise BackendUnavailableError(
            f"{len(active)} {backend.name} runs are already active ({ids}); the limit is {backend.max_active_runs}",
            "wait for one to finish (`chexvision status --watch`) or cancel one",
        )


def _best_auc(folder: Path) -> float | None:
    try:
        value = json.loads((folder / "history.json").read_text()).get("best_val_macro_auc")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _refresh(record: RunRecord, backends: dict[str, Backend]) -> RunRecord:
    if record.status.is_terminal() or record.status == RunStatus.SUBMITTING:
        return record
    backend = backends.setdefault(record.backend, get_backend(record.backend))
    state = backend.poll(record)
    updates: dict[str, Any] = {}
    if state.status != record.status or state.reason != record.failure_reason:
        updates.update(status=state.status, failure_reason=state.reason)
        if state.status.is_terminal():
            updates["finished_at"] = utcnow()
    if record.local_dir:
        best = _best_auc(Path(record.local_dir) / "working")
        if best is not None and best != record.best_val_auc:
            updates["best_val_auc"] = best
    if not updates:
        return record
    with Registry.open() as reg:
        return reg.update(record.run_id, **updates)


def list_runs(refresh: bool = True, limit: int | None = 50) -> list[RunRecord]:
    with Registry.open() as reg:
        records = reg.list(limit)
    if not refresh:
        return records
    backends: dict[str, Backend] = {}
    return [_refresh(r, backends) for r in records]


def get_run(run_id: str, refresh: bool = True) -> RunRecord:
    with Registry.open() as reg:
        record = reg.get(run_id)
    return _refresh(record, {}) if refresh else record


def run_logs(run_id: str) -> str:
    record = get_run(run_id, refresh=False)
    if record.status == RunStatus.SUBMITTING or (record.backend == "kaggle" and not record.kaggle_handle):
        return ""
    return get_backend(record.backend).logs(record)


def watch_run(
    run_id: str, *, interval: float = 2.0, max_interval: float = 60.0, sleep: Callable[[float], None] = time.sleep
) -> Iterator[RunRecord]:
    """Yield the run's record until it ends, polling with exponential backoff (interval x1.5, capped)."""
    while True:
        record = get_run(run_id)
        yield record
        if record.status.is_terminal():
            return
        sleep(interval)
        interval = min(interval * 1.5, max_interval)


def follow_logs(run_id: str, *, interval: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Yield new log text until the run ends."""
    seen = 0
    for record in watch_run(run_id, interval=interval, max_interval=15.0, sleep=sleep):
        text = run_logs(run_id)
        if len(text) > seen:
            yield text[seen:]
            seen = len(text)
        if record.status.is_terminal():
            return


def cancel_run(run_id: str) -> RunRecord:
    record = get_run(run_id)
    if record.status.is_terminal():
        return record  # cancelling an ended run changes nothing
    state = get_backend(record.backend).cancel(record)
    with Registry.open() as reg:
        return reg.update(run_id, status=state.status, failure_reason=state.reason, finished_at=utcnow())


def _safetensors_problem(path: Path) -> str | None:
    """Check the safetensors header and offsets without unpickling (or importing torch)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "model.safetensors is truncated"
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100_000_000):
            return "model.safetensors has an impossible header length"
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return "model.safetensors header is not JSON"
    tensors = {k: v for k, v in header.items() if k != "__metadata__"} if isinstance(header, dict) else {}
    if not tensors:
        return "model.safetensors holds no tensors"
    end = max(int(v["data_offsets"][1]) for v in tensors.values())
    if 8 + n + end != size:
        return f"model.safetensors size {size} does not match its header ({8 + n + end})"
    return None


def verify_run_dir(run_dir: Path) -> list[str]:
    """Check a DESIGN §4 run directory; raise RunVerificationError listing every problem.

    Returns the expected-but-optional files that are missing (last.ckpt, train.log).
    """
    problems = [f"{name} missing" for name in REQUIRED_RUN_FILES if not (run_dir / name).is_file()]
    for name in ("run.json", "config.json", "history.json", "metrics.json"):
        path = run_dir / name
        if path.is_file():
            try:
                if not isinstance(json.loads(path.read_text()), dict):
                    problems.append(f"{name} is not a JSON object")
            except ValueError as exc:
                problems.append(f"{name} is not valid JSON ({exc})")
    weights = run_dir / "model.safetensors"
    if weights.is_file():
        problem = _safetensors_problem(weights)
        if problem:
            problems.append(problem)
    if problems:
        raise RunVerificationError(run_dir, problems)
    return [name for name in EXPECTED_RUN_FILES if not (run_dir / name).is_file()]


def record_publication(run_id: str, *, repo: str, revision: str | None, commit: str, tag: str) -> RunRecord:
    """Remember where a fetched run was published (repo, commit and the tag named after the run)."""
    with Registry.open() as reg:
        reg.update(run_id, hub_repo=repo, hub_revision=revision, hub_commit=commit, hub_tag=tag)
        return reg.get(run_id)


def fetch_run(run_id: str, out: Path | None = None) -> FetchResult:
    """Download exactly this run's outputs (resumably), verify them and record the run directory."""
    record = get_run(run_id)
    if not record.status.is_terminal():
        raise BadInputError(f"run {run_id} is still {record.status}", f"wait: `chexvision status {run_id} --watch`")
    if record.status != RunStatus.COMPLETE:
        raise RunFailedError(
            f"run {run_id} ended {record.status}: {record.failure_reason or 'no reason recorded'}",
            f"see `chexvision logs {run_id}`",
        )
    run_dir = (out or chexvision_home() / "runs" / run_id).expanduser()
    files = get_backend(record.backend).download(record, run_dir)
    missing = verify_run_dir(run_dir)
    best = _best_auc(run_dir)
    with Registry.open() as reg:
        reg.update(run_id, output_dir=str(run_dir.resolve()), best_val_auc=best)
    return FetchResult(run_id, run_dir, files, missing, best)
