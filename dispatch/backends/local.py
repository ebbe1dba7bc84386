"""The local backend: the same rendered kernel as a detached process in Kaggle-like folders.

`$CHEXVISION_HOME/local/<run_id>/` holds `input/` (data, parent outputs), `working/` (the output folder),
`scratch/` (the unpacked bundle) and `kernel.log`. The process runs in its own session so it outlives the CLI;
its pid and start time (so a reused pid is not mistaken for it) are in the registry. A process that vanished
without a final marker reads `error`, never `running` forever.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dispatch.backends.base import (
    MARKER_NAME,
    Backend,
    LaunchRequest,
    RemoteState,
    kernel_slug,
    kernel_title,
    read_marker,
)
from dispatch.registry import RunRecord, chexvision_home, utcnow
from dispatch.render import KernelSpec, MetadataSpec, RenderedKernel
from dispatch.status import RunStatus

__all__ = ["LocalBackend", "process_alive", "process_start_time"]

LOG_NAME = "kernel.log"
_TERMINATE_GRACE_S = 5.0


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after the closing parenthesis are plain.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def process_alive(pid: int | None, start: str | None) -> bool:
    """True when `pid` runs and is the same process that started at `start`."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(pid):
        return False
    return start is None or process_start_time(pid) in (None, start)


class LocalBackend(Backend):
    name = "local"
    cannot = frozenset({"gpu-choice", "kaggle-dataset-source"})

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or chexvision_home()

    def run_root(self, run_id: str) -> Path:
        return self.home / "local" / run_id

    def _kernel_spec(self, request: LaunchRequest) -> KernelSpec:
        resume = request.parent.run_id if request.parent else None
        return dataclasses.replace(request.kernel, resume_source=resume)

    def _metadata_spec(self, request: LaunchRequest) -> MetadataSpec:
        run_id = request.record.run_id
        return MetadataSpec(kernel_id=f"local/{kernel_slug(run_id)}", title=kernel_title(run_id), machine_shape="local")

    def _submit(self, rendered: RenderedKernel, request: LaunchRequest) -> dict[str, Any]:
        root = self.run_root(request.record.run_id)
        for sub in ("input", "working", "scratch"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if request.parent is not None:
            self._attach_parent_output(request.parent, root / "input" / request.parent.run_id)
        env = dict(os.environ)
        env.update(
            CHEXVISION_KERNEL_INPUT=str(root / "input"),
            CHEXVISION_KERNEL_WORKING=str(root / "working"),
            CHEXVISION_KERNEL_SCRATCH=str(root / "scratch"),
            CHEXVISION_KERNEL_SKIP_INSTALL="1",  # this interpreter already has the dependencies
            PYTHONUNBUFFERED="1",
        )
        with open(root / LOG_NAME, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-u", str(rendered.script)],
                cwd=root / "working",
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: survives the CLI, cancel kills the group
            )
        return {
            "status": RunStatus.RUNNING,
            "pid": proc.pid,
            "pid_start": process_start_time(proc.pid),
            "local_dir": str(root),
            "started_at": utcnow(),
        }

    def _attach_parent_output(self, parent: RunRecord, target: Path) -> None:
        candidates = [Path(p) for p in (parent.output_dir,) if p]
        if parent.local_dir:
            candidates.append(Path(parent.local_dir) / "working")
        source = next((c for c in candidates if (c / "last.ckpt").is_file()), None)
        if source is None:
            from chexvision.errors import BadInputError

            raise BadInputError(
                f"run {parent.run_id} has no last.ckpt to resume from",
                f"fetch it first: `chexvision fetch --run {parent.run_id}`",
            )
        shutil.copytree(source, target, dirs_exist_ok=True)

    def _poll(self, record: RunRecord) -> RemoteState:
        working = Path(record.local_dir or self.run_root(record.run_id)) / "working"
        marker = read_marker(working)
        if marker and marker.get("status") in ("complete", "error"):
            return RemoteState(RunStatus(marker["status"]), marker.get("reason"))
        if process_alive(record.pid, record.pid_start):
            return RemoteState(RunStatus.RUNNING)
        return RemoteState(
            RunStatus.ERROR,
            f"the kernel process (pid {record.pid}) exited without a final status marker (killed? out of memory?);"
            f" see `chexvision logs {record.run_id}`",
        )

    def _logs(self, record: RunRecord) -> str:
        path = Path(record.local_dir or self.run_root(record.run_id)) / LOG_NAME
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _cancel(self, record: RunRecord) -> RemoteState:
        if record.pid and process_alive(record.pid, record.pid_start):
            _terminate_group(record.pid)
        return RemoteState(RunStatus.CANCELLED, "cancelled by the user")

    def _download(self, record: RunRecord, dest: Path) -> list[Path]:
        working = Path(record.local_dir or self.run_root(record.run_id)) / "working"
        copied: list[Path] = []
        for src in sorted(p for p in working.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
            target = dest / src.relative_to(working)
            if src.name == MARKER_NAME or not target.exists() or target.stat().st_size != src.stat().st_size:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".part")
                shutil.copy2(src, partial)
                os.replace(partial, target)
            copied.append(target)
        return copied


def _terminate_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _TERMINATE_GRACE_S
    while time.monotonic() < deadline:
        if not process_alive(pid, None):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
