"""The SkyPilot task of a run, as the dict SkyPilot's YAML schema describes (validated by SkyPilot's own parser in
`client.SkyPilotClient.task_yaml`, never concatenated as text).

Every node runs the same rendered kernel (`train.py`, synced as the task's workdir). `setup` runs it in install-only
mode once per cluster (an interpreter of its own, then what the image lacks); `run` translates SkyPilot's node
variables into the kernel's (`DISPATCH_KERNEL_NNODES`, `_NODE_RANK`, `_MASTER_ADDR`, `_NPROC_PER_NODE`), so torchrun
joins the nodes. The output storage (a bucket the user names) is mounted at `MOUNT` on every node: the run's output
folder is `MOUNT/<run_id>`, and a parent run's outputs, in the same bucket, are `MOUNT/<parent_id>`. A managed job
that is preempted restarts the task; the kernel then finds its own last checkpoint in the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dispatch.job import JobSpec, Resources

__all__ = [
    "MOUNT",
    "MOUNT_MODE",
    "PYTHON_VERSION",
    "VENV",
    "output_folder",
    "resources_config",
    "run_command",
    "setup_command",
    "task_config",
]

MOUNT = "/chexvision-output"  # where the output storage is mounted on every node
# Cached mounts write locally and upload in the background: checkpoints and appended logs work (a plain MOUNT
# cannot append), and a preempted node loses at most the last upload.
MOUNT_MODE = "MOUNT_CACHED"
PYTHON_VERSION = "3.11"  # the kernel's interpreter, as on Kaggle's image (cloud images ship older ones)
VENV = "$HOME/.dispatch-venv"
# Preemptions are always recovered by managed jobs; a kernel that fails by itself is not restarted (its marker says
# why, and a restart would only fail again).
JOB_RECOVERY = {"strategy": "EAGER_NEXT_REGION", "max_restarts_on_errors": 0}


def output_folder(output: str, run_id: str) -> str:
    """The run's output folder in the storage: `<output>/<run_id>`."""
    return f"{output.rstrip('/')}/{run_id}"


def setup_command() -> str:
    """Once per cluster: an interpreter of the kernel's Python version, then the kernel installs what it lacks."""
    return "\n".join(
        [
            "set -euo pipefail",
            f'if [ ! -x "{VENV}/bin/python" ]; then',
            "  python3 -m pip install --quiet --upgrade uv",
            f'  python3 -m uv venv --seed --python {PYTHON_VERSION} "{VENV}"',
            "fi",
            f'DISPATCH_KERNEL_INSTALL_ONLY=1 "{VENV}/bin/python" train.py',
        ]
    )


def run_command() -> str:
    """On every node: SkyPilot's node variables as the kernel's, then the kernel (node 0 writes, all train)."""
    return "\n".join(
        [
            "set -euo pipefail",
            'export DISPATCH_KERNEL_NNODES="$SKYPILOT_NUM_NODES"',
            'export DISPATCH_KERNEL_NODE_RANK="$SKYPILOT_NODE_RANK"',
            'export DISPATCH_KERNEL_MASTER_ADDR="$(echo "$SKYPILOT_NODE_IPS" | head -n1)"',
            'export DISPATCH_KERNEL_NPROC_PER_NODE="$SKYPILOT_NUM_GPUS_PER_NODE"',
            'export DISPATCH_KERNEL_SCRATCH="${DISPATCH_KERNEL_SCRATCH:-$HOME/dispatch-scratch}"',
            "export DISPATCH_KERNEL_SKIP_INSTALL=1  # setup installed it",
            f'exec "${{DISPATCH_KERNEL_PYTHON:-{VENV}/bin/python}}" -u train.py',
        ]
    )


def resources_config(res: Resources, gpu: str) -> dict[str, Any]:
    """The task's `resources` on `gpu` (e.g. "H100:8")."""
    resources: dict[str, Any] = {"accelerators": gpu, "use_spot": res.spot, "job_recovery": dict(JOB_RECOVERY)}
    if res.infra:
        resources["infra"] = res.infra
    return resources


def task_config(job: JobSpec, workdir: Path, gpu: str, output: str) -> dict[str, Any]:
    """The task of `job` on `gpu` (e.g. "H100:8"), its outputs going to the storage URL `output`."""
    res = job.resources
    envs = {
        "DISPATCH_KERNEL_WORKING": f"{MOUNT}/{job.run_id}",
        "DISPATCH_KERNEL_INPUT": MOUNT,  # a parent run's outputs: MOUNT/<parent run id>
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",  # the HF token never leaves the user's side
    }
    return {
        "name": job.run_id,
        "workdir": str(workdir),
        "num_nodes": res.nodes,
        "resources": resources_config(res, gpu),
        "envs": envs,
        "file_mounts": {MOUNT: {"source": output.rstrip("/"), "mode": MOUNT_MODE}},
        "setup": setup_command(),
        "run": run_command(),
    }
