"""The public API the CLI calls: dispatch a training run, follow it, cancel it, fetch its run directory.

This module checks a request, bundles, renders and starts the run; following runs lives in `dispatch.tracking`,
fetching and verifying them in `dispatch.fetch`, both re-exported here. Functions return data (records, results)
and raise typed errors; nothing here prints. Every function opens the registry for the duration of the call only.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from dispatch.backends import BACKENDS, Backend, LaunchRequest, get_backend
from dispatch.errors import BackendUnavailableError
from dispatch.fetch import REQUIRED_RUN_FILES, FetchResult, fetch_run, verify_run_dir
from dispatch.registry import Registry, RunRecord, chexvision_home, new_run_id, utcnow
from dispatch.status import RunStatus
from dispatch.tracking import (
    cancel_run,
    follow_logs,
    get_run,
    list_runs,
    record_publication,
    run_logs,
    wait_for_runs,
    watch_run,
)

if TYPE_CHECKING:  # bundle and render load when a run is dispatched, not for `status`
    from dispatch.bundle import Bundle

__all__ = [
    "MODELS",
    "REQUIRED_RUN_FILES",
    "SPLIT_SCHEMES",
    "DispatchResult",
    "FetchResult",
    "RunRecord",
    "TrainRequest",
    "cancel_run",
    "default_backend",
    "dispatch_train",
    "fetch_run",
    "follow_logs",
    "get_run",
    "list_runs",
    "parse_data_source",
    "record_publication",
    "repo_root",
    "run_logs",
    "verify_run_dir",
    "wait_for_runs",
    "watch_run",
]

# chexvision.models.list_models() and chexvision.data.splits.SPLIT_SCHEMES, repeated because those modules import
# torch and pandas (dispatch answers fast and never imports torch); a test checks they agree.
MODELS = ("densenet", "seresnet")
SPLIT_SCHEMES = ("official", "chexnet", "patient")
SYNTH_DEFAULTS = {"images": 2000, "size": 64, "seed": 0}  # the local default: what the smoke preset is tuned on
DEFAULT_GPU = "t4x2"
# --data kind -> (the capability it needs, in Backend.cannot terms; what to call it; the fix).
_DATA_NEEDS = {
    "dir": ("local-data-dir", "a local folder", "use --backend local, or --data hf"),
    "kaggle": ("kaggle-dataset-source", "a Kaggle dataset", "use --backend kaggle, or --data synthetic or a folder"),
}


@dataclass(frozen=True)
class TrainRequest:
    """What `chexvision dispatch train` asks for."""

    model: str
    backend: str | None = None  # None: kaggle when credentials are configured, else local
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    data: str | None = None  # hf[:REPO[@REV]] | synthetic[:IMAGES[:SIZE]] | kaggle:OWNER/SLUG | a local folder
    gpu: str = DEFAULT_GPU
    time_budget: float | None = None  # hours; None: the backend's default (Kaggle: stop before its 12 h limit)
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


def default_backend() -> tuple[str, str | None]:
    """(backend, notice): Kaggle when its credentials are configured, else local with a one-line notice."""
    from dispatch.backends.kaggle_client import credentials_configured

    if credentials_configured():
        return "kaggle", None
    return "local", "no Kaggle credentials configured: running on the local backend (--backend kaggle to change)"


def _positive_ints(spec: str, rest: str) -> dict[str, int]:
    parts = rest.split(":") if rest else []
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise BadInputError(f"--data {spec!r} is not synthetic[:IMAGES[:SIZE]]", "e.g. --data synthetic:400:64")
    return dict(zip(("images", "size"), map(int, parts), strict=False))


def parse_data_source(spec: str | None, backend: str) -> dict[str, Any]:
    """`--data` -> the kernel's DATA dict. Default: the HF data set on Kaggle, synthetic data locally."""
    if spec is None:
        spec = "hf" if backend == "kaggle" else "synthetic"
    kind, _, rest = spec.partition(":")
    if kind == "hf":
        from chexvision.data.download import REPO_ID, REVISION

        repo, _, rev = rest.partition("@")
        repo = repo or REPO_ID
        # The published data set is pinned (DESIGN §2); another repo without @REV means its main branch.
        revision = rev or (REVISION if repo == REPO_ID else "main")
        return {"kind": "hf", "repo_id": repo, "revision": revision}
    if kind == "synthetic":
        return {"kind": "synthetic", **SYNTH_DEFAULTS, **_positive_ints(spec, rest)}
    if kind == "kaggle":
        if rest.count("/") != 1 or not all(rest.split("/")):
            raise BadInputError(f"--data {spec!r} is not kaggle:OWNER/SLUG", "e.g. --data kaggle:nih-chest-xrays/data")
        return {"kind": "kaggle", "dataset": rest}
    path = Path(spec).expanduser()
    if path.is_dir():
        return {"kind": "dir", "path": str(path.resolve())}
    raise BadInputError(
        f"--data {spec!r} is not a data source",
        "use hf[:REPO[@REV]], synthetic[:N[:SIZE]], kaggle:OWNER/SLUG or an existing folder",
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


def _train_command(req: TrainRequest, run_id: str) -> list[str]:
    """The command line the kernel runs (DATA and OUTPUT stand for its folders), kept in the registry."""
    cmd = ["python", "-m", "chexvision", "train", "--model", req.model, "--data", "DATA", "--out", "OUTPUT"]
    cmd += ["--run-id", run_id]
    if req.preset:
        cmd += ["--preset", req.preset]
    for item in req.overrides:
        cmd += ["--set", item]
    if req.time_budget is not None:
        cmd += ["--time-budget", str(req.time_budget)]
    if req.split_scheme:
        cmd += ["--split-scheme", req.split_scheme]
    if req.resume_from:
        cmd.append("--resume")
    return cmd


def repo_root() -> Path:
    """The source tree the bundle is built from (tests point it at a small tree)."""
    from dispatch.bundle import repo_root as root

    return root()


def _validate(req: TrainRequest) -> None:
    from dispatch.bundle import find_secret_in_text

    if req.model not in MODELS:
        raise BadInputError(f"unknown model {req.model!r}", f"choose one of: {', '.join(MODELS)}")
    for item in req.overrides:
        if "=" not in item:
            raise BadInputError(f"--set {item!r} is not key=value", "e.g. --set train.epochs=3")
        what = find_secret_in_text(item)
        if what:  # overrides travel inside the kernel script: a credential must not
            raise BadInputError(f"a --set value looks like {what}", "credentials never enter the kernel; remove it")
    presets = repo_root() / "chexvision" / "presets"
    if req.preset and presets.is_dir() and not (presets / f"{req.preset}.toml").is_file():
        names = sorted(p.stem for p in presets.glob("*.toml"))
        raise BadInputError(f"unknown preset {req.preset!r}", f"choose one of: {', '.join(names)}")
    if req.time_budget is not None and req.time_budget <= 0:
        raise BadInputError(f"--time-budget {req.time_budget} is not a positive number of hours", "e.g. 11")
    if req.split_scheme and req.split_scheme not in SPLIT_SCHEMES:
        raise BadInputError(f"unknown split scheme {req.split_scheme!r}", f"choose one of: {', '.join(SPLIT_SCHEMES)}")


def _resolve_backend(req: TrainRequest) -> tuple[Backend, str | None, RunRecord | None]:
    """The backend (and the notice when it was chosen for the user) and the parent run of a --resume-from."""
    notice = None
    name = req.backend
    if name is None:
        name, notice = default_backend()
    if name not in BACKENDS:
        raise BadInputError(f"unknown backend {name!r}", f"choose one of: {', '.join(BACKENDS)}")
    parent = None
    if req.resume_from:
        with Registry.open() as reg:
            parent = reg.get(req.resume_from)
        if parent.backend != name:
            raise BadInputError(
                f"run {parent.run_id} ran on {parent.backend}", f"resume it with --backend {parent.backend}"
            )
    return get_backend(name), notice, parent


def _check_capabilities(backend: Backend, req: TrainRequest, data: dict[str, Any]) -> None:
    """Refuse what the backend declares it cannot do, before anything is bundled."""
    need = _DATA_NEEDS.get(data["kind"])
    if need and need[0] in backend.cannot:
        raise BadInputError(f"--data {req.data}: the {backend.name} backend cannot read {need[1]}", need[2])
    if req.gpu != DEFAULT_GPU and "gpu-choice" in backend.cannot:
        raise BadInputError(f"--gpu {req.gpu}: the {backend.name} backend uses this machine's GPUs", "drop --gpu")


def _launch_request(req: TrainRequest, backend: Backend, parent: RunRecord | None) -> tuple[LaunchRequest, Bundle]:
    """Bundle the sources and describe the run: its registry record and the kernel's variables."""
    from dispatch.bundle import build_bundle
    from dispatch.render import KernelSpec

    data = parse_data_source(req.data, backend.name)
    _check_capabilities(backend, req, data)
    root = repo_root()
    bundle = build_bundle(root, split_scheme=req.split_scheme)
    run_id = new_run_id(req.model)
    git_sha = _git_sha(root)
    record = RunRecord(
        run_id=run_id,
        backend=backend.name,
        model=req.model,
        preset=req.preset,
        command=_train_command(req, run_id),
        git_sha=git_sha,
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
        git_sha=git_sha,
    )
    return LaunchRequest(record=record, kernel=kernel, gpu=req.gpu, parent=parent), bundle


def dispatch_train(req: TrainRequest, *, dry_run_out: Path | None = None) -> DispatchResult:
    """Bundle, render and start a training run (or, with `dry_run_out`, only write the kernel folder).

    Everything that can be refused (input, secrets, size, credentials, quota, capacity) is checked before the run
    enters the registry; a run that fails to start after that is recorded as `error` with the reason.
    """
    _validate(req)
    backend, notice, parent = _resolve_backend(req)
    if req.time_budget is None:
        req = dataclasses.replace(req, time_budget=backend.default_time_budget)
    request, bundle = _launch_request(req, backend, parent)
    run_id = request.record.run_id
    folder = dry_run_out or chexvision_home() / "kernels" / run_id
    rendered = backend.render(request, folder)
    backend.check_size(rendered)

    def result(status: RunStatus, handle: str | None = None) -> DispatchResult:
        return DispatchResult(
            run_id=run_id,
            backend=backend.name,
            status=status,
            bundle_sha256=bundle.sha256,
            bundle_size=bundle.size,
            bundle_files=len(bundle.files),
            script_size=rendered.script_size,
            data=request.kernel.data,
            notice=notice,
            handle=handle,
            dry_run_dir=dry_run_out,
        )

    if dry_run_out is not None:
        return result(RunStatus.SUBMITTING)
    backend.preflight(rendered, request)
    _check_capacity(backend)
    with Registry.open() as reg:
        reg.add(request.record)
    try:
        updates = backend.submit(rendered, request)
    except Exception as exc:
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        with Registry.open() as reg:
            reg.update(
                run_id, status=RunStatus.ERROR, failure_reason=f"dispatch failed: {reason}", finished_at=utcnow()
            )
        raise
    with Registry.open() as reg:
        record = reg.update(run_id, **updates)
    return result(record.status, record.kaggle_handle or record.local_dir)


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
