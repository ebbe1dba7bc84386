"""A fake SkyPilot API server placed at the SDK boundary: the SDK functions that send requests (`sky.jobs.launch`,
`queue_v2`, `tail_logs`, `cancel`, `sky.get`) and the storage download (`SkyPilotClient._shell`, which would run the
cloud CLI). It answers with SkyPilot's own types (`ManagedJobRecord`, `ManagedJobStatus`); the `sky.Task` launched is
the real one our client built, so tests read the launch request off it. The bucket is a local folder.

SkyPilot writes `~/.sky` when imported: `install` points HOME at a temporary folder first and imports it then.
"""

from __future__ import annotations

import importlib
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dispatch.backends.skypilot.client import SkyPilotClient
from dispatch.errors import BackendUnavailableError


def import_sky(monkeypatch: pytest.MonkeyPatch, home: Path) -> Any:
    """`sky`, imported (or used) with HOME in a temporary folder: SkyPilot keeps its state under ~/.sky."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    reason = "the SkyPilot extra is not installed (pip install 'chexvision[skypilot]')"
    if os.environ.get("CI") == "true":  # .ci/run installs it: there the SkyPilot tests must run, never skip
        try:
            return importlib.import_module("sky")
        except ImportError:
            pytest.fail(f"{reason}; .ci/run installs it with its click pin overridden")
    return pytest.importorskip("sky", reason=reason)


@dataclass
class _Request:
    """A request id: what the SDK returns at once; `sky.get` resolves it."""

    kind: str
    value: Any = None


@dataclass
class FakeSky:
    bucket: Path  # plays the storage: s3://BUCKET/PATH is bucket/BUCKET/PATH
    status: str = "PENDING"  # a ManagedJobStatus member name, for every launched job
    failure_reason: str | None = None
    recovery_count: int = 0
    log_text: str = "[chexvision 12:00:00] bundle unpacked\nepoch 1/2 ...\n"
    launch_error: Exception | None = None  # raised by sky.get of a launch request, as the API server would
    launched: list[tuple[Any, str | None]] = field(default_factory=list)  # (the real sky.Task, its job name)
    cancelled: list[int] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # storage commands run

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeSky:
        sky = import_sky(monkeypatch, self.bucket.parent / "home")
        monkeypatch.setattr(sky.jobs, "launch", self._launch)
        monkeypatch.setattr(sky.jobs, "queue_v2", self._queue)
        monkeypatch.setattr(sky.jobs, "tail_logs", self._tail_logs)
        monkeypatch.setattr(sky.jobs, "cancel", self._cancel)
        monkeypatch.setattr(sky, "get", self._get)
        fake = self

        def shell(client: SkyPilotClient, command: str, what: str) -> None:
            fake._shell(command)

        monkeypatch.setattr(SkyPilotClient, "_shell", shell)
        return self

    def folder(self, url: str) -> Path:
        return self.bucket / url.split("://", 1)[1]

    def write_outputs(self, url: str, files: dict[str, bytes]) -> None:
        """The remote job leaves these files in its output folder `url`."""
        for name, data in files.items():
            target = self.folder(url) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    # --- the SDK functions --------------------------------------------------------------------------------------
    def _launch(self, task: Any, name: str | None = None, **_: Any) -> _Request:
        assert type(task).__name__ == "Task" and task.run  # the real sky.Task our client built
        self.launched.append((task, name))
        return _Request("launch", len(self.launched))

    def _queue(self, refresh: bool, job_ids: list[int] | None = None, **_: Any) -> _Request:
        from sky.jobs import ManagedJobStatus
        from sky.schemas.api.responses import ManagedJobRecord

        ids = job_ids or list(range(1, len(self.launched) + 1))
        records = [
            ManagedJobRecord(
                job_id=i,
                job_name=self.launched[i - 1][1],
                status=ManagedJobStatus[self.status],
                failure_reason=self.failure_reason,
                recovery_count=self.recovery_count,
            )
            for i in ids
            if 0 < i <= len(self.launched)
        ]
        return _Request("queue", (records, len(records), {}, len(records)))

    def _tail_logs(self, job_id: int | None = None, follow: bool = True, output_stream: Any = None, **_: Any) -> None:
        assert not follow and output_stream is not None  # a snapshot: `logs --follow` polls
        output_stream.write(self.log_text)

    def _cancel(self, job_ids: list[int] | None = None, **_: Any) -> _Request:
        self.cancelled += list(job_ids or [])
        self.status = "CANCELLED"
        return _Request("cancel")

    def _get(self, request: _Request) -> Any:
        if request.kind == "launch":
            if self.launch_error is not None:
                raise self.launch_error
            return [request.value], None
        return request.value

    def _shell(self, command: str) -> None:
        self.commands.append(command)
        source, dest = shlex.split(command.split("&&")[-1])[-2:]
        src = self.folder(source)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dest)
        else:  # what the real `_shell` raises when the cloud CLI fails
            raise BackendUnavailableError(f"the download of {source} failed: the key does not exist")

    def finish(self, files: dict[str, bytes]) -> None:
        """Every launched job succeeds, leaving `files` in its output folder."""
        for task, _name in self.launched:
            (storage,) = task.storage_mounts.values()
            self.write_outputs(f"{storage.source}/{task.name}", files)
        self.status = "SUCCEEDED"
