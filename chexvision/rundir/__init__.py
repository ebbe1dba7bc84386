"""The run directory (DESIGN §4) as code: its file names, the writer training uses, one typed reader, verification.

Torch-free: `fetch`, `publish` and `status` read and check run directories without importing torch (training
passes its torch/CUDA environment in, from `chexvision.engine.state.environment_info`). Every other module asks
this package for file names (`names`); no literal `"run.json"` lives anywhere else. A published model folder
(`--hub-dir`, a Hub snapshot) holds a subset of the same files under the same names, so `read_run_dir` reads it.

Integrity: every write through `RunDir` records the file's sha256 in run.json "files" (DESIGN §4) and is atomic
(temporary siblings, then renames, run.json last), so a reader never sees half a file and a full disk leaves the
last complete write. Consumers check the record: `verify_run_dir` (fetch), `check_files` (load, publish).

- `names`: file names, HASHED_FILES, RUN_STATUSES, RESUME_CHANGEABLE;
- `read`: RunInfo / read_run_dir, the hash check, verify_run_dir, the torch-free safetensors check;
- `write`: RunDir, DiskFullError, provenance, the resume config rule.
"""

from __future__ import annotations

from chexvision.rundir.names import (
    CONFIG_JSON,
    EXPECTED_FILES,
    HASHED_FILES,
    HISTORY_JSON,
    JSON_FILES,
    LAST_CKPT,
    METRICS_JSON,
    REQUIRED_FILES,
    RESUME_CHANGEABLE,
    RUN_JSON,
    RUN_STATUSES,
    TRAIN_LOG,
    WEIGHTS,
)
from chexvision.rundir.read import (
    FilesChangedError,
    RunDirInvalidError,
    RunInfo,
    changed_files,
    check_files,
    read_run_dir,
    read_safetensors_header,
    recorded_files,
    safetensors_problem,
    verify_run_dir,
)
from chexvision.rundir.write import (
    DiskFullError,
    RunDir,
    Writer,
    bundle_sha256,
    check_resume_config,
    config_changes,
    dataset_info,
    epoch_log_line,
    git_sha,
    new_run_id,
    utc_now,
)

__all__ = [
    "CONFIG_JSON",
    "EXPECTED_FILES",
    "HASHED_FILES",
    "HISTORY_JSON",
    "JSON_FILES",
    "LAST_CKPT",
    "METRICS_JSON",
    "REQUIRED_FILES",
    "RESUME_CHANGEABLE",
    "RUN_JSON",
    "RUN_STATUSES",
    "TRAIN_LOG",
    "WEIGHTS",
    "DiskFullError",
    "FilesChangedError",
    "RunDir",
    "RunDirInvalidError",
    "RunInfo",
    "Writer",
    "bundle_sha256",
    "changed_files",
    "check_files",
    "check_resume_config",
    "config_changes",
    "dataset_info",
    "epoch_log_line",
    "git_sha",
    "new_run_id",
    "read_run_dir",
    "read_safetensors_header",
    "recorded_files",
    "safetensors_problem",
    "utc_now",
    "verify_run_dir",
]
