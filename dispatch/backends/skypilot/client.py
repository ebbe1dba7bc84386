"""The one module that imports SkyPilot (`sky`, the optional extra `chexvision[skypilot]`).

`SkyPilotClient` validates tasks with SkyPilot's own parser and talks to its API server through the SDK: since
0.10 the SDK is asynchronous, each call returning a request id that `sky.get` resolves. Tests replace the SDK's
network functions (`sky.jobs.launch`, `queue_v2`, `tail_logs`, `cancel`, `sky.get`) and `_shell` (the storage
download) with fakes; everything else here is real. Credentials stay with SkyPilot: its own cloud configuration,
never read here, never shipped.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import subprocess
from pathlib import Path
from typing import Any

from dispatch.errors import BackendUnavailableError, CapabilityError, DispatchError, InvalidJobError, NotFoundError

__all__ = ["EXTRA", "SkyPilotClient", "missing_sdk_error", "sdk_installed", "translate_error"]

EXTRA = "chexvision[skypilot]"


def sdk_installed() -> bool:
    """Whether SkyPilot can be imported (without importing it: that takes seconds)."""
    return importlib.util.find_spec("sky") is not None


def missing_sdk_error() -> CapabilityError:
    return CapabilityError(
        "skypilot", "the skypilot backend needs SkyPilot, which is not installed", f"pip install '{EXTRA}'"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_error(exc: BaseException, what: str) -> DispatchError:
    """The chokepoint that turns SkyPilot failures into typed one-line errors (`raise translate_error(e) from e`)."""
    if isinstance(exc, DispatchError):
        return exc
    name = type(exc).__name__
    if name in ("InvalidSkyPilotConfigError", "ValueError", "InvalidSkyPilotConfig"):
        return InvalidJobError(f"SkyPilot refused {what}: {_first_line(exc)}", "check --gpu, --infra and --output")
    if name in ("ResourcesUnavailableError", "ResourcesMismatchError", "NotSupportedError"):
        return BackendUnavailableError(
            f"SkyPilot could not {what}: {_first_line(exc)}", "try another --infra or --gpu, or drop --spot"
        )
    if name in ("ApiServerConnectionError", "ConnectionError", "RequestCancelled"):
        return BackendUnavailableError(
            f"could not reach the SkyPilot API server for {what}: {_first_line(exc)}", "check `sky api info`"
        )
    if name in ("ClusterNotUpError", "ManagedJobUserCancelledError"):
        return BackendUnavailableError(f"SkyPilot could not {what}: {_first_line(exc)}", "check `sky jobs queue`")
    return BackendUnavailableError(
        f"SkyPilot failed {what}: {name}: {_first_line(exc)}", "check the SkyPilot setup with `sky check`"
    )


class SkyPilotClient:
    """Thin adapter over the SkyPilot SDK; imports `sky` on first use."""

    def __init__(self) -> None:
        self._sky: Any = None

    @property
    def sky(self) -> Any:
        if self._sky is None:
            if not sdk_installed():
                raise missing_sdk_error()
            import sky  # seconds: only when a SkyPilot run is rendered, launched or followed

            self._sky = sky
        return self._sky

    # --- local: SkyPilot's own parser and YAML writer (no network) ----------------------------------------------
    def task(self, config: dict[str, Any]) -> Any:
        """A `sky.Task` from the config, validated by SkyPilot's task schema."""
        try:
            return self.sky.Task.from_yaml_config(copy.deepcopy(config))
        except DispatchError:
            raise
        except Exception as exc:
            raise translate_error(exc, "the task") from exc

    def check_resources(self, config: dict[str, Any]) -> None:
        """Refuse resources SkyPilot's schema rejects (an unknown --infra...), before anything is written."""
        try:
            self.sky.Resources.from_yaml_config(copy.deepcopy(config))
        except DispatchError:
            raise
        except Exception as exc:
            raise translate_error(exc, "the resources") from exc

    def task_yaml(self, config: dict[str, Any]) -> dict[str, Any]:
        """The task as SkyPilot writes it (`Task.to_yaml_config()`), minus its private bookkeeping keys."""
        data: dict[str, Any] = self.task(config).to_yaml_config()
        return {key: value for key, value in data.items() if not key.startswith("_")}

    def dump_yaml(self, path: Path, config: dict[str, Any]) -> None:
        from sky.utils import yaml_utils

        yaml_utils.dump_yaml(str(path), config)

    # --- the API server: every call resolves a request id ------------------------------------------------------
    def _resolve(self, request_id: Any, what: str) -> Any:
        try:
            return self.sky.get(request_id)
        except DispatchError:
            raise
        except Exception as exc:
            raise translate_error(exc, what) from exc

    def launch(self, config: dict[str, Any], name: str) -> int:
        """Launch the task as a managed job; its job id."""
        task = self.task(config)
        try:
            request = self.sky.jobs.launch(task, name=name)
        except Exception as exc:
            raise translate_error(exc, "launch the managed job") from exc
        job_ids, _handle = self._resolve(request, "launch the managed job")
        if not job_ids:
            raise BackendUnavailableError("SkyPilot accepted the job but returned no job id", "see `sky jobs queue`")
        return int(job_ids[0])

    def job(self, job_id: int) -> Any:
        """The managed job's record (`ManagedJobRecord`: status, failure_reason, recovery_count...)."""
        try:
            request = self.sky.jobs.queue_v2(refresh=False, job_ids=[job_id])
        except Exception as exc:
            raise translate_error(exc, f"read managed job {job_id}") from exc
        result = self._resolve(request, f"read managed job {job_id}")
        records = result[0] if isinstance(result, tuple) else result
        for record in records or []:
            if int(getattr(record, "job_id", -1)) == job_id:
                return record
        raise NotFoundError(f"SkyPilot has no managed job {job_id}", "see `sky jobs queue` (or another API server?)")

    def logs(self, job_id: int) -> str:
        """The job's log so far (not following)."""
        stream = io.StringIO()
        try:
            self.sky.jobs.tail_logs(job_id=job_id, follow=False, output_stream=stream)
        except Exception as exc:
            raise translate_error(exc, f"read the log of managed job {job_id}") from exc
        return stream.getvalue()

    def cancel(self, job_id: int) -> None:
        try:
            request = self.sky.jobs.cancel(job_ids=[job_id])
        except Exception as exc:
            raise translate_error(exc, f"cancel managed job {job_id}") from exc
        self._resolve(request, f"cancel managed job {job_id}")

    # --- the storage ---------------------------------------------------------------------------------------------
    def _store(self, url: str) -> Any:
        from sky import cloud_stores

        try:
            return cloud_stores.get_storage_from_path(url)
        except AssertionError:
            scheme = url.split("://", 1)[0]
            raise InvalidJobError(f"SkyPilot cannot read storage {scheme}://", "use s3://, gs://, r2:// ...") from None

    def sync_command(self, url: str, dest: Path) -> str:
        """SkyPilot's own download command for a storage folder (`aws s3 sync`, `gsutil rsync`, ...)."""
        command: str = self._store(url).make_sync_dir_command(url, str(dest))
        return command

    def download(self, url: str, dest: Path) -> None:
        """Copy the storage folder `url` into `dest` (sync: files already there are not fetched again)."""
        dest.mkdir(parents=True, exist_ok=True)
        self._shell(self.sync_command(url, dest), f"the download of {url}")

    def download_file(self, url: str, dest: Path) -> None:
        """Copy one storage file to `dest` (SkyPilot's `aws s3 cp`, `gsutil cp`, ...)."""
        command: str = self._store(url).make_sync_file_command(url, str(dest))
        self._shell(command, f"the download of {url}")

    def _shell(self, command: str, what: str) -> None:
        """Run a cloud CLI command (the network boundary of storage); its credentials are the CLI's own."""
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            raise BackendUnavailableError(f"{what} failed: {tail[0]}", "check the storage URL and its credentials")
