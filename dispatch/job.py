"""JobSpec: everything dispatch knows of a job. The caller builds and validates it; dispatch ships and tracks it.

A job is a source bundle (an allow-list of folders under one root), ordered command lines (steps) run inside the
kernel, a data source the backend may have to attach, the outputs the job must leave, resources and environment.
Nothing here knows what the job computes.

Command lines may hold placeholder tokens, replaced by the kernel where an argument equals the token, or where a
folder token leads a path (`{scratch}/shards` becomes the scratch folder's `shards`: where a step leaves what a later
step reads):

| token       | becomes                                                                            |
|-------------|------------------------------------------------------------------------------------|
| `{python}`  | the kernel's interpreter (`sys.executable`); a distributed step swaps it for torchrun |
| `{data}`    | the data folder: the attached source's mount, a local folder, or `scratch/data`    |
| `{output}`  | the output folder (Kaggle: `/kaggle/working`), saved and downloaded by fetch       |
| `{scratch}` | a scratch folder that is not saved                                                 |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DATA",
    "OUTPUT",
    "PLACEHOLDERS",
    "PYTHON",
    "SCRATCH",
    "DataSource",
    "JobSpec",
    "Outputs",
    "Requirement",
    "Resources",
    "Sources",
    "Step",
]

PYTHON = "{python}"
DATA = "{data}"
OUTPUT = "{output}"
SCRATCH = "{scratch}"
PLACEHOLDERS = (PYTHON, DATA, OUTPUT, SCRATCH)


@dataclass(frozen=True)
class Sources:
    """What goes into the bundle: folders under `root`, minus caches, tests and binaries, narrowed by the allow-lists.

    Whatever is shipped or not, every file of these folders is scanned for credentials before anything is built.
    """

    root: Path  # the tree the names below are relative to (the bundle's archive names are relative to it too)
    include: tuple[str, ...]  # posix folders relative to root, e.g. ("mypkg",); each must exist
    # folder -> the only file names shipped from it (package data allow-list); a folder not listed ships whole
    only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # the file suffixes shipped from the other folders, e.g. (".py", ".j2"); (): every file but binaries
    suffixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One command line the kernel runs, in order; a failing step fails the job with its last output lines."""

    name: str  # shown in the log and in the failure reason ("data download", "train")
    argv: tuple[str, ...]  # the command line, with placeholder tokens
    # With more than one GPU, run it as `torchrun --standalone --nproc_per_node N <argv[1:]>` (argv[0] = {python});
    # across nodes when the backend sets DISPATCH_KERNEL_NNODES/NODE_RANK/MASTER_ADDR (kernels/README.md)
    distributed: bool = False
    # A recovered job (restarted by its backend after a preemption, e.g. a SkyPilot managed job) finds its earlier
    # attempt's outputs in {output}: when every file of `resume_if` is there at start, `resume_argv` is appended.
    resume_if: tuple[str, ...] = ()
    resume_argv: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataSource:
    """Where the job's data comes from, as far as the backend is concerned.

    kind: `prepared` (a step makes or downloads it into `{data}`; any backend), `kaggle-dataset` (the backend
    mounts the Kaggle dataset `owner/slug` and `{data}` is its mount), `local-dir` (`{data}` is the folder
    `reference` on the machine that runs the job). Backends declare the kinds they accept in `Capabilities`.
    """

    kind: str
    reference: str = ""  # kaggle-dataset: owner/slug; local-dir: an absolute path; prepared: a description
    details: Mapping[str, Any] = field(default_factory=dict)  # the caller's own description, kept in the registry


@dataclass(frozen=True)
class Outputs:
    """What the job leaves in `{output}`."""

    required: tuple[str, ...] = ()  # file names fetch checks for once the run is complete
    # A JSON file with a "status" key that the last step writes: "error" fails the job, "incomplete" ends it
    # complete with `incomplete_reason`; the job fails when the file is missing after its steps succeeded.
    status_file: str | None = None
    incomplete_reason: str | None = None  # e.g. how to continue a run stopped at its time budget
    parent_files: tuple[str, ...] = ()  # files a continued job needs from its parent's outputs (e.g. a checkpoint)


@dataclass(frozen=True)
class Resources:
    gpu: str | None = None  # an accelerator name the backend accepts (Capabilities.gpus); None: its default
    time_budget_hours: float | None = None  # informational for dispatch; the caller puts it in the command line
    nodes: int = 1  # machines the job spans; a one-machine backend refuses more
    infra: str | None = None  # where a multi-cloud backend runs it (SkyPilot: aws, gcp, k8s, slurm/NAME...); None: any
    spot: bool = False  # preemptible machines; the backend restarts the job, which resumes from {output}
    output: str | None = None  # storage URL the output folder goes to (s3://bucket/prefix); None: the backend's


@dataclass(frozen=True)
class Requirement:
    """A distribution the kernel installs when the remote image lacks it or has it older than `minimum`."""

    distribution: str
    minimum: str
    pin: str  # what pip installs, e.g. "typer==0.29.2"


@dataclass(frozen=True)
class JobSpec:
    """A job, complete: dispatch needs nothing else to bundle, render, run, track and fetch it."""

    run_id: str  # unique, readable, made by the caller; also names the kernel (Kaggle slug)
    label: str  # a short display name, e.g. the model trained
    sources: Sources
    steps: tuple[Step, ...]  # run in order; the last is the main step
    data: DataSource = DataSource("prepared")
    outputs: Outputs = Outputs()
    resources: Resources = Resources()
    parent_run_id: str | None = None  # a continued job: the parent's outputs are restored into {output} first
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment of every step
    requirements: tuple[Requirement, ...] = ()
    probes: tuple[tuple[str, ...], ...] = ()  # commands whose output is logged at start (failures ignored)
    meta: Mapping[str, str] = field(default_factory=dict)  # the caller's key-values, stored and shown (model...)

    @property
    def main(self) -> Step:
        return self.steps[-1]

    def describe(self) -> dict[str, Any]:
        """The JSON-able description kept in the registry (everything but the source root)."""
        data = dataclasses.asdict(self)
        data.pop("sources")
        return data
