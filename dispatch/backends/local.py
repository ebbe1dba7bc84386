"""The local backend: the same rendered kernel as a detached process in Kaggle-like folders.

`<home>/local/<run_id>/` holds `input/` (data, parent outputs), `working/` (the output folder),
`scratch/` (the unpacked bundle) and `kernel.log`. The process runs in its own session so it outlives the CLI;
its handle is `{pid, pid_start, dir}` (the start time, so a reused pid is not mistaken for it). A process that
vanished without a final marker reads `error`, never `running` forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatch.backends.base import MARKER_NAME, Backend, Capabilities, Launched, LaunchRequest, RemoteState, read_marker
from dispatch.errors import InvalidJobError
from dispatch.registry import RunRecord
from dispatch.status import RunStatus

if TYPE_CHECKING:
    from dispatch.render import RenderedKernel

__all__ = ["LocalBackend", "kernel_environment", "process_alive", "process_start_time"]

LOG_NAME = "kernel.log"
_TERMINATE_GRACE_S = 5.0
# What the kernel gets of this process's environment (a Kaggle kernel starts with none of it): the system's
# basics, the caller's own settings, GPU and thread settings, offline switches and cache folders. Never a token.
_ENV_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TEMP", "TMP",
    "SYSTEMROOT", "CI", "MPLBACKEND", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
    "HF_ENDPOINT", "TRANSFORMERS_OFFLINE", "TORCH_HOME", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
})  # fmt: skip
_ENV_PREFIXES = ("LC_", "CHEXVISION_", "DISPATCH_KERNEL_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "PYTORCH_")
_SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after the closing parenthesis are plain.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def kernel_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of `environ` the kernel may see: the allow-list above, minus anything credential-like.

    A name that mentions a token, key, secret or password is dropped even when its prefix is allowed, and so is a
    value that holds a credential (a proxy URL with a password in it). huggingface_hub would still find a token
    saved under HF_HOME, so implicit tokens are switched off: the HF token never leaves the user's side.
    """
    from dispatch.secrets import find_secret_in_text

    kept: dict[str, str] = {}
    for name, value in environ.items():
        if name not in _ENV_NAMES and not name.startswith(_ENV_PREFIXES):
            continue
        if any(part in name.upper() for part in _SECRET_NAME_PARTS) or find_secret_in_text(value):
            continue
        if "proxy" in name.lower() and "@" in value:  # user:password@host
            continue
        kept[name] = value
    kept["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    return kept


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
    title = "local"
    capabilities = Capabilities(
        data_kinds=frozenset({"prepared", "local-dir"}),
        live_outputs=True,
        auto_priority=1,  # the embedded default: always available
    )

    def run_root(self, run_id: str) -> Path:
        return self.home / "local" / run_id

    def _root(self, record: RunRecord) -> Path:
        return Path(record.handle.get("dir") or self.run_root(record.run_id))

    def live_output(self, record: RunRecord) -> Path | None:
        return self._root(record) / "working"

    def _restore_source(self, parent: RunRecord) -> str:
        return parent.run_id  # _submit copies the parent's outputs to input/<parent run id>

    def _describe(self, handle: dict[str, Any]) -> str:
        return str(handle.get("dir") or "-")

    def _submit(self, rendered: RenderedKernel, request: LaunchRequest) -> Launched:
        root = self.run_root(request.job.run_id)
        for sub in ("input", "working", "scratch"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        if request.parent is not None:
            needs = request.job.outputs.parent_files
            self._attach_parent_output(request.parent, root / "input" / request.parent.run_id, needs)
        env = kernel_environment(os.environ)
        env.update(
            DISPATCH_KERNEL_INPUT=str(root / "input"),
            DISPATCH_KERNEL_WORKING=str(root / "working"),
            DISPATCH_KERNEL_SCRATCH=str(root / "scratch"),
            DISPATCH_KERNEL_SKIP_INSTALL="1",  # this interpreter already has the dependencies
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
        handle = {"pid": proc.pid, "pid_start": process_start_time(proc.pid), "dir": str(root)}
        return Launched(RunStatus.RUNNING, handle)

    def _attach_parent_output(self, parent: RunRecord, target: Path, needs: tuple[str, ...]) -> None:
        candidates = [Path(p) for p in (parent.output_dir,) if p]
        candidates.append(self._root(parent) / "working")
        source = next((c for c in candidates if c.is_dir() and all((c / n).is_file() for n in needs)), None)
        if source is None:
            raise InvalidJobError(
                f"run {parent.run_id} has no {', '.join(needs) or 'output'} to resume from",
                f"fetch it first: `chexvision fetch --run {parent.run_id}`",
            )
        shutil.copytree(source, target, dirs_exist_ok=True)

    def _poll(self, record: RunRecord) -> RemoteState:
        marker = read_marker(self._root(record) / "working")
        if marker and marker.get("status") in ("complete", "error"):
            return RemoteState(RunStatus(marker["status"]), marker.get("reason"))
        pid = record.handle.get("pid")
        if process_alive(pid, record.handle.get("pid_start")):
            return RemoteState(RunStatus.RUNNING)
        return RemoteState(
            RunStatus.ERROR,
            f"the kernel process (pid {pid}) exited without a final status marker (killed? out of memory?);"
            f" see `chexvision logs {record.run_id}`",
        )

    def _logs(self, record: RunRecord) -> str:
        try:
            return (self._root(record) / LOG_NAME).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _cancel(self, record: RunRecord) -> RemoteState:
        pid, start = record.handle.get("pid"), record.handle.get("pid_start")
        if pid and process_alive(pid, start):
            _terminate_group(pid)
        return RemoteState(RunStatus.CANCELLED, "cancelled by the user")

    def _download(self, record: RunRecord, dest: Path) -> list[Path]:
        working = self._root(record) / "working"
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
