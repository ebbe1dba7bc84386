"""Reading and checking a run directory: the typed reader, recorded file hashes, the safetensors header check."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError, RunFailedError
from chexvision.files import SafetensorsHeaderError, read_json_object, safetensors_header, sha256_file
from chexvision.rundir.names import (
    CONFIG_JSON,
    EXPECTED_FILES,
    HISTORY_JSON,
    JSON_FILES,
    METRICS_JSON,
    REQUIRED_FILES,
    RUN_JSON,
    WEIGHTS,
)

__all__ = [
    "FilesChangedError",
    "RunDirInvalidError",
    "RunInfo",
    "changed_files",
    "check_files",
    "read_run_dir",
    "read_safetensors_header",
    "recorded_files",
    "safetensors_problem",
    "verify_run_dir",
]


class RunDirInvalidError(RunFailedError):
    """A run directory that is not a valid DESIGN §4 run directory (every problem listed)."""

    def __init__(self, run_dir: Path, problems: list[str]) -> None:
        super().__init__(
            f"run directory {run_dir} is not valid: {'; '.join(problems)}",
            "check the run's log with `chexvision logs RUN_ID`; re-fetch with `chexvision fetch --run RUN_ID`",
        )
        self.run_dir = run_dir
        self.problems = problems


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file (name -> {dtype, shape, data_offsets}), `__metadata__` left out.

    A damaged file is a BadInputError naming it. Nothing is loaded: this is what a parameter count needs.
    """
    try:
        header, _ = safetensors_header(Path(path))
    except (OSError, SafetensorsHeaderError) as exc:
        raise BadInputError(f"cannot read {path}: {exc}", "fetch or publish the run again") from exc
    return {k: v for k, v in header.items() if k != "__metadata__"}


def safetensors_problem(path: Path) -> str | None:
    """Check a safetensors file's header and offsets without unpickling (or importing torch); None when sound."""
    try:
        header, n = safetensors_header(path)
    except SafetensorsHeaderError as exc:
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


# --- file hashes (run.json "files") -----------------------------------------------------------------------------


class FilesChangedError(BadInputError):
    """Files of a run directory whose content is not what its writer recorded in run.json "files"."""

    def __init__(self, run_dir: Path, names: list[str]) -> None:
        super().__init__(
            f"{', '.join(names)} in {run_dir} does not match the sha256 run.json recorded (changed after it was "
            "written)",
            "restore it from the run's own copy (`chexvision fetch --run RUN_ID`, or download the model again); "
            "nothing is loaded, evaluated or published from a changed file",
        )
        self.run_dir = run_dir
        self.names = names


def recorded_files(run: Mapping[str, Any]) -> dict[str, str]:
    """run.json "files" ({name: sha256}); {} for run directories written before hashes were recorded."""
    files = run.get("files")
    return {str(k): str(v) for k, v in files.items()} if isinstance(files, dict) else {}


def changed_files(run_dir: Path, run: Mapping[str, Any], names: Collection[str] | None = None) -> list[str]:
    """The recorded files (of `names`, default all) present in `run_dir` whose sha256 differs from the record."""
    wanted = recorded_files(run)
    return [
        name for name, sha in wanted.items()
        if (names is None or name in names) and (run_dir / name).is_file() and sha256_file(run_dir / name) != sha
    ]  # fmt: skip


def check_files(run_dir: Path, run: Mapping[str, Any] | None = None, names: Collection[str] | None = None) -> None:
    """Raise FilesChangedError (exit 2) naming every recorded file of `names` whose content changed.

    `run` defaults to `run_dir`'s run.json; without one (or without "files") there is nothing recorded to check.
    """
    if run is None:
        run = _read_optional(run_dir / RUN_JSON, strict=False)
    changed = changed_files(run_dir, run, names)
    if changed:
        raise FilesChangedError(run_dir, changed)


def verify_run_dir(run_dir: Path) -> list[str]:
    """Check a DESIGN §4 run directory: recorded hashes (FilesChangedError), then RunDirInvalidError listing every
    problem.

    Returns the expected-but-optional files that are missing (last.ckpt, train.log).
    """
    check_files(run_dir)  # a changed file first: it explains any problem below (FilesChangedError, exit 2)
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
        """run.json "dataset": source, repo_id, revision, split_scheme, counts, clahe; seed, split_rule and
        split_fingerprints from training ({} for older uploads)."""
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

    @property
    def split_fingerprints(self) -> dict[str, dict[str, Any]] | None:
        """run.json dataset.split_fingerprints (`{split: {"count", "sha256"}}`); None for runs that predate them."""
        recorded = self.dataset.get("split_fingerprints")
        if not isinstance(recorded, dict):
            return None
        return {str(k): dict(v) for k, v in recorded.items() if isinstance(v, dict) and "sha256" in v}


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
