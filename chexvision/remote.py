"""Remote training: a `TrainRequest` becomes a `dispatch.job.JobSpec`; runs are followed and fetched through dispatch.

The one chexvision module that builds JobSpecs. It validates the model name, the preset and every `--set`
override against the real config schema before anything is bundled, builds the `chexvision train` command line
(once: the kernel only runs it), resolves `--data` into a data source and its preparation step, and reads what
dispatch must not know: the best validation AUC of a run (from history.json) and the run-directory verification
(`chexvision.rundir`). Nothing here prints; functions return data and raise typed errors.

Torch-free at import and when dispatching: `chexvision dispatch train`, `status`, `logs` and `fetch` answer fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.config import SPLIT_SCHEMES
from chexvision.errors import BadInputError, UnknownName
from dispatch import runs  # light: no jinja2, no SDK until a run is rendered or a backend called
from dispatch.registry import RunRecord

if TYPE_CHECKING:
    from dispatch.job import DataSource, JobSpec, Sources, Step

__all__ = [
    "SPLIT_SCHEMES",
    "DispatchResult",
    "FetchResult",
    "RunProgress",
    "TrainRequest",
    "best_val_auc",
    "build_job",
    "cancel_run",
    "default_backend",
    "describe_handle",
    "dispatch_train",
    "fetch_run",
    "follow_logs",
    "get_run",
    "home",
    "job_sources",
    "list_runs",
    "parse_data_source",
    "record_publication",
    "repair_registry",
    "repo_root",
    "run_logs",
    "run_progress",
    "run_summary",
    "train_argv",
    "validate_request",
    "wait_for_runs",
    "watch_run",
    "watch_runs",
]

SYNTH_DEFAULTS = {"images": 2000, "size": 64, "seed": 0}  # the local default: what the smoke preset is tuned on
PACKAGE = "chexvision"
RESOURCES = "chexvision/data/resources"
# Package data the kernel reads; the published shards carry labels and file names, so the 1 MB NIH metadata CSV,
# the train_val list and the BBox list stay home (and the CheXNet lists unless that split scheme is asked for).
# `data synth` reads the few-KB NIH statistics, never the CSV.
ALWAYS_RESOURCES = ("official_test.txt.gz", "nih_synth_stats.json.gz")
# A job that builds shards from raw NIH PNGs also ships the v2020 labels, in the compact copy made for the bundle
# (`chexvision.data.build.LABELS_RESOURCE`: 0.17 MB against the CSV's 0.98 MB, which base64 would push past
# Kaggle's 1 MB source limit).
BUILD_RESOURCES = ("nih_labels_v2020.json.xz",)
# Kaggle datasets holding the raw NIH release (images_0NN/images/*.png and the 2017 CSVs): the kernel builds our
# shards from the mount before training. Kaggle's API does not list a dataset's files without a download, so any
# other Kaggle dataset is read as shards; a local folder is looked at (`_folder_layout`).
RAW_NIH_DATASETS = ("nih-chest-xrays/data",)
BUILT_DATA = "{scratch}/shards"  # where a build or transcode step writes the shards train reads (a path token)
CHEXNET_RESOURCES = ("chexnet_train.txt.gz", "chexnet_val.txt.gz", "chexnet_test.txt.gz")
# File kinds the kernel needs from the package besides that data: source, templates (model card, reports), presets.
SOURCE_SUFFIXES = (".py", ".j2", ".toml")
# What the Kaggle Python image may lack or have too old: (distribution, minimum version, pinned install).
# Everything else chexvision needs (torch, torchvision, numpy, pandas, pyarrow, opencv, scikit-learn, matplotlib,
# pillow, jinja2, rich) is in the image.
REQUIREMENTS = (
    ("typer", "0.12", "typer==0.29.2"),
    ("safetensors", "0.4", "safetensors==0.8.0"),
    ("huggingface_hub", "0.24", "huggingface_hub==2.4.0"),
)
# A cloud image (SkyPilot) has CUDA but none of the Python stack: the kernel installs it too (only what is missing).
CLOUD_STACK = (
    ("torch", "2.4", "torch==2.14.1"),
    ("torchvision", "0.19", "torchvision==0.29.1"),
    ("numpy", "1.26", "numpy==2.4.6"),
    ("pyarrow", "15", "pyarrow==26.0.1"),
    ("pandas", "2.1", "pandas==3.1.1"),
    ("jinja2", "3.1", "jinja2==3.1.6"),
    ("rich", "13", "rich==15.0.0"),
    ("opencv-python-headless", "4.8", "opencv-python-headless==5.0.0.93"),
    ("scikit-learn", "1.3", "scikit-learn==1.9.1"),
    ("matplotlib", "3.8", "matplotlib==3.11.2"),
    ("pillow", "10", "pillow==13.0.0"),
)
IMAGE_REQUIREMENTS = {"skypilot": (*CLOUD_STACK, *REQUIREMENTS)}  # backend -> what its image lacks (else REQUIREMENTS)
TORCH_PROBE = (  # logged at the kernel's start
    "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"
)
# --data kind -> (the dispatch DataSource kind; what to call it; the fix when the backend cannot provide it).
_DATA_KINDS = {
    "hf": ("prepared", "the Hugging Face data set", "use --data synthetic"),
    "synthetic": ("prepared", "synthetic data", "use --data hf"),
    "dir": ("local-dir", "a local folder", "use --backend local, or --data hf"),
    "kaggle": ("kaggle-dataset", "a Kaggle dataset", "use --backend kaggle, or --data synthetic or a folder"),
}


@dataclass(frozen=True)
class TrainRequest:
    """What `chexvision dispatch train` asks for."""

    model: str
    backend: str | None = None  # None: the configured backend with the highest priority (Kaggle, else local)
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    data: str | None = None  # hf[:REPO[@REV]] | synthetic[:IMAGES[:SIZE]] | kaggle:OWNER/SLUG | a local folder
    gpu: str | None = None  # None: the backend's default (Kaggle: t4x2)
    time_budget: float | None = None  # hours; None: the backend's default (Kaggle: stop before its 12 h limit)
    resume_from: str | None = None
    split_scheme: str | None = None
    run_id: str | None = None  # None: a new one; a caller that must not dispatch twice (a study) picks it first
    nodes: int = 1  # machines (multi-node DDP: SkyPilot)
    infra: str | None = None  # SkyPilot: aws | gcp | k8s | slurm/NAME | aws/us-east-1 ...; None: any it can use
    spot: bool = False  # SkyPilot: preemptible machines (the managed job resumes from its last checkpoint)
    output: str | None = None  # SkyPilot: the storage URL run directories go to (s3://bucket/prefix)


@dataclass(frozen=True)
class DispatchResult:
    run_id: str
    backend: str
    backend_title: str
    status: str
    bundle_sha256: str
    bundle_size: int
    bundle_files: int
    script_size: int
    source_limit: int | None
    data: dict[str, Any]
    notice: str | None = None
    handle: str | None = None
    dry_run_dir: Path | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dry_run_dir"] = str(self.dry_run_dir) if self.dry_run_dir else None
        return data


@dataclass(frozen=True)
class FetchResult:
    run_id: str
    run_dir: Path
    files: list[Path] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    best_val_auc: float | None = None


def home() -> Path:
    """`$CHEXVISION_HOME` (default `~/.chexvision`): the registry, local runs and fetched runs live here."""
    return Path(os.environ.get("CHEXVISION_HOME") or Path.home() / ".chexvision")


def repo_root() -> Path:
    """The source tree the bundle is built from: the one holding the imported `chexvision` (tests patch it)."""
    return Path(__file__).resolve().parent.parent


def default_backend() -> tuple[str, str | None]:
    """(backend, notice): the configured backend with the highest priority, and why a preferred one was skipped."""
    return runs.choose_backend()


# --------------------------------------------------------------------------------------------------------------
# Validation and the job


def _positive_ints(spec: str, rest: str) -> dict[str, int]:
    parts = rest.split(":") if rest else []
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise BadInputError(f"--data {spec!r} is not synthetic[:IMAGES[:SIZE]]", "e.g. --data synthetic:400:64")
    return dict(zip(("images", "size"), map(int, parts), strict=False))


def parse_data_source(spec: str | None, backend: str) -> dict[str, Any]:
    """`--data` -> its description. Default: the pinned HF data set on a remote backend, synthetic data locally."""
    if spec is None:
        spec = "hf" if runs.backend_capabilities(backend).remote else "synthetic"
    kind, _, rest = spec.partition(":")
    if kind == "hf":
        from chexvision.data.download import REPO_ID, REVISION

        repo, _, rev = rest.partition("@")
        repo = repo or REPO_ID
        # The published data set is pinned (DESIGN §2); another repo without @REV means its main branch.
        return {"kind": "hf", "repo_id": repo, "revision": rev or (REVISION if repo == REPO_ID else "main")}
    if kind == "synthetic":
        return {"kind": "synthetic", **SYNTH_DEFAULTS, **_positive_ints(spec, rest)}
    if kind == "kaggle":
        if rest.count("/") != 1 or not all(rest.split("/")):
            raise BadInputError(f"--data {spec!r} is not kaggle:OWNER/SLUG", "e.g. --data kaggle:nih-chest-xrays/data")
        return {"kind": "kaggle", "dataset": rest, "layout": "nih-png" if rest in RAW_NIH_DATASETS else "shards"}
    path = Path(spec).expanduser()
    if path.is_dir():
        return {"kind": "dir", "path": str(path.resolve()), "layout": _folder_layout(path)}
    raise BadInputError(
        f"--data {spec!r} is not a data source",
        "use hf[:REPO[@REV]], synthetic[:N[:SIZE]], kaggle:OWNER/SLUG or an existing folder",
    )


def _folder_layout(path: Path) -> str:
    """`shards` when the folder holds Parquet shards (`DIR/data/*.parquet` or `DIR/*.parquet`, as the reader looks),
    else `nih-png` when it holds PNGs anywhere below (raw NIH: the kernel builds shards first), else `shards` (and
    train names what is missing). A glob, not `chexvision.data.shards`: dispatching stays free of OpenCV/pyarrow."""
    if next(path.glob("data/*.parquet"), None) or next(path.glob("*.parquet"), None):
        return "shards"
    return "nih-png" if next(path.rglob("*.png"), None) else "shards"


def validate_request(req: TrainRequest) -> None:
    """Refuse a bad model, override, preset, budget or split scheme before anything is bundled."""
    from chexvision.config import load_config
    from chexvision.models.registry import list_models  # numpy via labels: only when a run is dispatched
    from dispatch.bundle import find_secret_in_text

    models = list_models()
    if req.model not in models:
        raise UnknownName("model", req.model, models)
    for item in req.overrides:
        if "=" not in item:
            raise BadInputError(f"--set {item!r} is not key=value", "e.g. --set train.epochs=3")
        what = find_secret_in_text(item)
        if what:  # overrides travel inside the kernel script: a credential must not
            raise BadInputError(f"a --set value looks like {what}", "credentials never enter the kernel; remove it")
    load_config(req.preset, None, [f"model.name={req.model}", *req.overrides])  # the real schema: keys and types
    if req.time_budget is not None and req.time_budget <= 0:
        raise BadInputError(f"--time-budget {req.time_budget} is not a positive number of hours", "e.g. 11")
    if req.split_scheme and req.split_scheme not in SPLIT_SCHEMES:
        raise UnknownName("split scheme", req.split_scheme, SPLIT_SCHEMES)


def _check_backend(req: TrainRequest, backend: str, data: dict[str, Any]) -> None:
    """Refuse what the backend declares it cannot do, in the CLI's terms (dispatch checks again)."""
    caps = runs.backend_capabilities(backend)
    kind, what, fix = _DATA_KINDS[data["kind"]]
    if kind not in caps.data_kinds:
        raise BadInputError(f"--data {req.data}: the {backend} backend cannot read {what}", fix)
    if req.gpu is not None and req.gpu not in caps.gpus:
        if not caps.gpus:
            raise BadInputError(f"--gpu {req.gpu}: the {backend} backend uses this machine's GPUs", "drop --gpu")
        raise BadInputError(f"unknown GPU {req.gpu!r}", f"choose one of: {', '.join(caps.gpus)}")
    if req.nodes < 1:
        raise BadInputError(f"--nodes {req.nodes} is not a number of machines", "e.g. --nodes 2")
    cloud = [f"--{k}" for k, v in (("nodes", req.nodes > 1), ("infra", req.infra), ("spot", req.spot)) if v]
    if not caps.remote and (cloud or req.output):
        raise BadInputError(
            f"{', '.join([*cloud, *(['--output'] if req.output else [])])}: the {backend} backend runs on this machine",
            "drop them, or use --backend skypilot",
        )


def _data_source(data: dict[str, Any]) -> tuple[DataSource, tuple[Step, ...], str | None]:
    """The dispatch data source, the steps that prepare it in the kernel, and the folder token train reads (None:
    `{data}`). Attached shards need no step. Raw NIH PNGs (attached or a local folder) are built into `BUILT_DATA`
    with every CPU, labels from the shipped v2020 metadata. The published RGB PNG shards are downloaded, then
    transcoded once into `BUILT_DATA` (one channel, JPEG, CLAHE applied): it costs about 1.4 epochs of their decode
    and saves the rest (BENCHMARKS.md, "Published shards, transcoded once")."""
    from dispatch.job import DATA, PYTHON, DataSource, Step

    cli = (PYTHON, "-m", "chexvision", "data")
    if data.get("layout") == "nih-png":
        kaggle = data["kind"] == "kaggle"
        kind, reference = ("kaggle-dataset", data["dataset"]) if kaggle else ("local-dir", data["path"])
        argv = (*cli, "build", "--images", DATA, "--out", BUILT_DATA, "--workers", "0", "--size", "320")
        return DataSource(kind, reference, data), (Step("data build", argv),), BUILT_DATA
    if data["kind"] == "hf":
        download = (*cli, "download", "--out", DATA, "--repo", data["repo_id"], "--revision", data["revision"])
        source = DataSource("prepared", f"hf:{data['repo_id']}@{data['revision']}", data)
        transcode = (*cli, "transcode", "--data", DATA, "--out", BUILT_DATA, "--workers", "0")
        return source, (Step("data download", download), Step("data transcode", transcode)), BUILT_DATA
    if data["kind"] == "synthetic":
        sizes = ("--images", str(data["images"]), "--size", str(data["size"]), "--seed", str(data["seed"]))
        step = Step("data synth", (*cli, "synth", "--out", DATA, *sizes))
        return DataSource("prepared", "synthetic", data), (step,), None
    if data["kind"] == "kaggle":
        return DataSource("kaggle-dataset", data["dataset"], data), (), None
    return DataSource("local-dir", data["path"], data), (), None


def train_argv(req: TrainRequest, run_id: str, data: str | None = None) -> tuple[str, ...]:
    """`python -m chexvision train ...` as the kernel runs it ({data} and {output} stand for its folders; `data`:
    another folder token, e.g. `BUILT_DATA` after a build step)."""
    from dispatch.job import DATA, OUTPUT, PYTHON

    cmd = [PYTHON, "-m", "chexvision", "train", "--model", req.model, "--data", data or DATA, "--out", OUTPUT]
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
    return tuple(cmd)


def job_sources(root: Path, split_scheme: str | None = None, *, build: bool = False) -> Sources:
    """What a training kernel needs from the tree `root`: the package, and only the package data it reads
    (`build`: the kernel builds shards from raw NIH PNGs, so the v2020 labels go too)."""
    from dispatch.job import Sources

    wanted = ALWAYS_RESOURCES + (CHEXNET_RESOURCES if split_scheme == "chexnet" else ())
    wanted += BUILD_RESOURCES if build else ()
    return Sources(root=root, include=(PACKAGE,), only={RESOURCES: wanted}, suffixes=SOURCE_SUFFIXES)


def build_job(req: TrainRequest, data: dict[str, Any], run_id: str) -> JobSpec:
    """The JobSpec of a validated request (time budget already defaulted from the backend)."""
    from chexvision import rundir
    from dispatch.job import JobSpec, Outputs, Requirement, Resources

    source, prepare, train_data = _data_source(data)
    built = data.get("layout") == "nih-png"
    outputs = Outputs(
        required=rundir.REQUIRED_FILES,
        status_file=rundir.RUN_JSON,
        incomplete_reason="stopped at the time budget; continue with "
        f"`chexvision dispatch train --resume-from {run_id}`",
        parent_files=(rundir.LAST_CKPT,),
    )
    meta = {"model": req.model, **({"preset": req.preset} if req.preset else {})}
    return JobSpec(
        run_id=run_id,
        label=req.model,
        sources=job_sources(repo_root(), req.split_scheme, build=built),
        steps=(*prepare, _train_step(req, run_id, train_data)),
        data=source,
        outputs=outputs,
        resources=Resources(
            gpu=req.gpu,
            time_budget_hours=req.time_budget,
            nodes=req.nodes,
            infra=req.infra,
            spot=req.spot,
            output=req.output,
        ),
        parent_run_id=req.resume_from,
        requirements=tuple(Requirement(*r) for r in IMAGE_REQUIREMENTS.get(req.backend or "", REQUIREMENTS)),
        probes=(("{python}", "-c", TORCH_PROBE),),
        meta=meta,
    )


def _train_step(req: TrainRequest, run_id: str, data: str | None) -> Step:
    """The main step. A recovered attempt (a preempted SkyPilot job) finds its config.json in {output}: it resumes."""
    from chexvision.rundir import CONFIG_JSON
    from dispatch.job import Step

    argv = train_argv(req, run_id, data)
    recover = {} if req.resume_from else {"resume_if": (CONFIG_JSON,), "resume_argv": ("--resume",)}
    return Step("train", argv, distributed=True, **recover)


def dispatch_train(req: TrainRequest, *, dry_run_out: Path | None = None) -> DispatchResult:
    """Validate, build the job and submit it (or, with `dry_run_out`, only write the kernel folder there)."""
    from chexvision.rundir import new_run_id

    validate_request(req)
    notice = None
    backend = req.backend
    if backend is None:
        backend, notice = default_backend()
    caps = runs.backend_capabilities(backend)  # an unknown name raises listing the valid ones
    if req.time_budget is None:
        req = dataclasses.replace(req, time_budget=caps.default_time_budget)
    data = parse_data_source(req.data, backend)
    _check_backend(req, backend, data)
    job = build_job(req, data, req.run_id or new_run_id(req.model))
    done = runs.submit(job, home(), backend=backend, dry_run_out=dry_run_out)
    return DispatchResult(
        run_id=done.run_id,
        backend=done.backend,
        backend_title=done.backend_title,
        status=str(done.status),
        bundle_sha256=done.bundle_sha256,
        bundle_size=done.bundle_size,
        bundle_files=done.bundle_files,
        script_size=done.script_size,
        source_limit=done.source_limit,
        data=data,
        notice=notice,
        handle=done.handle,
        dry_run_dir=done.dry_run_dir,
    )


# --------------------------------------------------------------------------------------------------------------
# Following and fetching runs (dispatch does the work; chexvision adds what it reads from a run directory)


def run_summary(folder: Path) -> dict[str, Any] | None:
    """What `status` shows of a run directory: `{"best_val_auc": ...}` from history.json, or None while none."""
    from chexvision.rundir import HISTORY_JSON

    try:
        value = json.loads((folder / HISTORY_JSON).read_text()).get("best_val_macro_auc")
    except (OSError, ValueError, AttributeError):
        return None
    return {"best_val_auc": float(value)} if isinstance(value, (int, float)) else None


# The epoch line of train.log (`chexvision.rundir.epoch_log_line`) and of `chexvision train`'s own output without a
# TTY (what a kernel log holds; two spaces between fields): the fields `status --watch` shows.
_EPOCH_LINE = re.compile(
    r"\bepoch (?P<epoch>\d+)/(?P<total>\d+)\s.*?\btrain_loss (?P<loss>[-+.\deE]+|nan)\s.*?"
    r"\bval_macro_auc (?P<auc>[-+.\deE]+|n/a)\s(?:.*?\s)?(?P<seconds>\d+(?:\.\d+)?)s\s+(?P<ips>\d+) img/s"
)


@dataclass(frozen=True)
class RunProgress:
    """Where a training run stands, read from its log's epoch lines."""

    epoch: int
    total_epochs: int
    train_loss: float
    val_macro_auc: float | None
    seconds_per_epoch: float  # the mean over the epochs logged so far (resumed runs: this run's epochs)
    best: bool  # the latest epoch is the best so far

    @property
    def eta_seconds(self) -> float:
        return max(self.total_epochs - self.epoch, 0) * self.seconds_per_epoch

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eta_seconds": round(self.eta_seconds, 1)}


def run_progress(log_text: str) -> RunProgress | None:
    """The latest epoch line of a train.log (any prefix before `epoch` allowed), or None before the first epoch."""
    matches = [m for m in map(_EPOCH_LINE.search, log_text.splitlines()) if m]
    if not matches:
        return None
    last = matches[-1]
    seconds = [float(m["seconds"]) for m in matches]
    return RunProgress(
        epoch=int(last["epoch"]),
        total_epochs=int(last["total"]),
        train_loss=float(last["loss"]),
        val_macro_auc=None if last["auc"] == "n/a" else float(last["auc"]),
        seconds_per_epoch=sum(seconds) / len(seconds),
        best=last.string.rstrip().endswith("*best"),
    )


def best_val_auc(record: RunRecord) -> float | None:
    value = record.summary.get("best_val_auc")
    return float(value) if isinstance(value, (int, float)) else None


def list_runs(refresh: bool = True, limit: int | None = 50) -> list[RunRecord]:
    return runs.list_runs(home(), refresh=refresh, limit=limit, summarize=run_summary)


def get_run(run_id: str, refresh: bool = True) -> RunRecord:
    return runs.get_run(home(), run_id, refresh=refresh, summarize=run_summary)


def describe_handle(record: RunRecord) -> str:
    return runs.describe_handle(home(), record)


def run_logs(run_id: str) -> str:
    return runs.run_logs(home(), run_id)


def watch_run(run_id: str, **kwargs: Any) -> Iterator[RunRecord]:
    return runs.watch_run(home(), run_id, summarize=run_summary, **kwargs)


def wait_for_runs(**kwargs: Any) -> list[RunRecord]:
    return runs.wait_for_runs(home(), summarize=run_summary, **kwargs)


def watch_runs(**kwargs: Any) -> Iterator[list[RunRecord]]:
    return runs.watch_runs(home(), summarize=run_summary, **kwargs)


def follow_logs(run_id: str, **kwargs: Any) -> Iterator[str]:
    return runs.follow_logs(home(), run_id, **kwargs)


def cancel_run(run_id: str) -> RunRecord:
    return runs.cancel_run(home(), run_id)


def repair_registry() -> tuple[Path, Path | None]:
    """(the registry file, where an unreadable one was moved, or None when it was healthy or absent)."""
    from dispatch.registry import DB_NAME
    from dispatch.registry import repair_registry as move_aside

    return home() / DB_NAME, move_aside(home())


def record_publication(run_id: str, *, repo: str, revision: str | None, commit: str, tag: str) -> RunRecord:
    return runs.record_publication(home(), run_id, repo=repo, revision=revision, commit=commit, tag=tag)


def fetch_run(run_id: str, out: Path | None = None) -> FetchResult:
    """Download the run's outputs (dispatch checks the declared files), verify the run directory, record it."""
    from chexvision.rundir import verify_run_dir

    fetched = runs.fetch_outputs(home(), run_id, out)
    missing = verify_run_dir(fetched.run_dir)
    summary = run_summary(fetched.run_dir) or {}
    runs.set_summary(home(), run_id, summary)
    best = summary.get("best_val_auc")
    return FetchResult(run_id, fetched.run_dir, fetched.files, missing, best)
