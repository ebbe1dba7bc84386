"""The Kaggle backend: one private GPU script kernel per run, every call pinned to `owner/slug/N`.

Its handle is `{owner, slug, version}`.
Built on the official client's request objects (kagglesdk) sent through `KaggleClient`, the one HTTP boundary.
Kaggle has no stop: cancel deletes the kernel, which holds exactly one version because each run has its own slug.
Push errors come back in the response's `.error`, not as exceptions; they are surfaced here. Only throttling
(429) and server errors (5xx) are retried, with exponential backoff.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatch.backends.base import MARKER_NAME, Backend, Capabilities, Launched, LaunchRequest, RemoteState, read_marker
from dispatch.backends.kaggle.client import (
    KaggleClient,
    check_credentials_file,
    credentials_configured,
    no_credentials_error,
)
from dispatch.backends.kaggle.metadata import (
    GPU_SHAPES,
    METADATA_NAME,
    REFUSED_SHAPES,
    SOURCE_LIMIT,
    MetadataSpec,
    kernel_slug,
    kernel_title,
    render_metadata,
    validate_metadata,
)
from dispatch.errors import (
    BackendUnavailableError,
    CapabilityError,
    DispatchError,
    InvalidJobError,
    NotFoundError,
    PushRejectedError,
)
from dispatch.job import JobSpec
from dispatch.registry import RunRecord
from dispatch.status import RunStatus, from_kaggle

if TYPE_CHECKING:
    from dispatch.render import RenderedKernel

__all__ = ["KaggleBackend", "translate_error"]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
OUTPUT_PAGE_SIZE = 50
_QUOTA_WORDS = ("quota", "limit", "concurrent", "too many", "exceeded")


def backoff_sleep(seconds: float) -> None:
    """The pause between retries (module-level so tests can make it instant)."""
    time.sleep(seconds)


def translate_error(exc: BaseException, what: str) -> DispatchError:
    """The chokepoint that turns client failures into typed errors (raise `translate_error(e, ...) from e`)."""
    if isinstance(exc, DispatchError):
        return exc
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return BackendUnavailableError(
            f"Kaggle refused {what} (HTTP {status})",
            "check your Kaggle credentials (kaggle.json / KAGGLE_KEY) and that the kernel is yours",
            status,
        )
    if status == 404:
        return NotFoundError(
            f"Kaggle has no such kernel for {what} (HTTP 404)", "check the run id: `chexvision status`"
        )
    if status is not None:
        return BackendUnavailableError(f"Kaggle failed {what} (HTTP {status})", "retry later", status)
    if isinstance(exc, ValueError):
        return InvalidJobError(f"Kaggle client refused {what}: {exc}")
    return BackendUnavailableError(
        f"could not reach Kaggle for {what}: {type(exc).__name__}: {exc}", "check the network and retry"
    )


class KaggleBackend(Backend):
    name = "kaggle"
    title = "Kaggle"
    capabilities = Capabilities(
        data_kinds=frozenset({"prepared", "kaggle-dataset"}),
        gpus=(*GPU_SHAPES, *REFUSED_SHAPES),  # the refused ones are refused by `check`, with the reason
        default_gpu="t4x2",
        max_active_runs=2,  # Kaggle runs at most two GPU sessions per account at once
        source_limit=SOURCE_LIMIT,
        # A session is killed at 12 h: stop after 11 so the run ends cleanly (data download and the final save
        # take the rest) and can be continued.
        default_time_budget=11.0,
        remote=True,
        auto_priority=2,  # preferred whenever credentials are configured
    )

    def __init__(self, home: Path, client: Any = None, sleep: Callable[[float], None] | None = None) -> None:
        super().__init__(home)
        self._client = client
        self._sleep = sleep

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if credentials_configured() else "no Kaggle credentials configured"

    def check(self, job: JobSpec) -> None:
        """The shared checks, an accelerator or a shape Kaggle cannot give, then a kaggle.json that cannot work are
        refused before anything is built."""
        super().check(job)
        gpu = job.resources.gpu
        if gpu in REFUSED_SHAPES:
            raise CapabilityError(
                self.name, f"--gpu {gpu}: {REFUSED_SHAPES[gpu]}", f"use --gpu {' or '.join(GPU_SHAPES)}"
            )
        res = job.resources
        cloud = [f"--{k}" for k, v in (("nodes", res.nodes > 1), ("infra", res.infra), ("spot", res.spot)) if v]
        if cloud or res.output:
            cloud += ["--output"] if res.output else []
            raise CapabilityError(
                self.name,
                f"{', '.join(cloud)}: a Kaggle kernel is one machine, and its outputs stay on Kaggle",
                "drop them, or use --backend skypilot",
            )
        check_credentials_file()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = KaggleClient()
        return self._client

    # --- the retrying call ----------------------------------------------------------------------------------
    def _call(self, method: str, request: Any, what: str) -> Any:
        delay = 2.0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return getattr(self.client, method)(request)
            except DispatchError:
                raise
            except Exception as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status in RETRY_STATUS and attempt < MAX_ATTEMPTS:
                    log.warning("Kaggle %s: HTTP %s, retrying in %.0f s", what, status, delay)
                    (self._sleep or backoff_sleep)(delay)
                    delay = min(delay * 2, 60.0)
                    continue
                raise translate_error(exc, what) from exc
        raise AssertionError("unreachable")

    # --- rendering --------------------------------------------------------------------------------------------
    def owner(self) -> str:
        try:  # an access token is resolved to a user name over the network
            name = self.client.username()
        except DispatchError:
            raise
        except Exception as exc:
            raise translate_error(exc, "the user name lookup") from exc
        if not name:
            raise BackendUnavailableError("could not tell the Kaggle user name", "set KAGGLE_USERNAME")
        return str(name)

    def _restore_source(self, parent: RunRecord) -> str:
        return kernel_slug(parent.run_id)  # the parent's version is attached as a kernel source

    def _describe(self, handle: dict[str, Any]) -> str:
        return f"{handle['owner']}/{handle['slug']}/{handle['version']}"

    def _render_extra(self, request: LaunchRequest, rendered: RenderedKernel) -> tuple[Path, ...]:
        meta = render_metadata(self._metadata_spec(request, rendered.script.name))
        path = rendered.folder / METADATA_NAME
        path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return (path,)

    def _metadata_spec(self, request: LaunchRequest, code_file: str) -> MetadataSpec:
        job = request.job
        gpu = job.resources.gpu or self.capabilities.default_gpu or ""
        if gpu not in GPU_SHAPES:
            raise InvalidJobError(f"unknown GPU {gpu!r}", f"choose one of: {', '.join(GPU_SHAPES)}")
        datasets = [job.data.reference] if job.data.kind == "kaggle-dataset" else []
        kernels = []
        if request.parent is not None:
            if not request.parent.handle:
                raise InvalidJobError(
                    f"run {request.parent.run_id} is not a Kaggle run", "resume a Kaggle run on Kaggle"
                )
            kernels = [self.describe(request.parent.handle)]  # the parent's exact version
        owner = self.owner() if credentials_configured() else "your-kaggle-username"
        return MetadataSpec(
            kernel_id=f"{owner}/{kernel_slug(job.run_id)}",
            title=kernel_title(job.run_id),
            machine_shape=GPU_SHAPES[gpu],
            dataset_sources=datasets,
            kernel_sources=kernels,
            code_file=code_file,
        )

    @staticmethod
    def _metadata(rendered: RenderedKernel) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((rendered.folder / METADATA_NAME).read_text())
        return data

    # --- launch ------------------------------------------------------------------------------------------------
    def _preflight(self, rendered: RenderedKernel, request: LaunchRequest) -> None:
        if not credentials_configured():
            raise no_credentials_error()
        meta = self._metadata(rendered)
        problems = validate_metadata(meta, rendered.folder)
        if problems:
            raise InvalidJobError(
                f"kernel metadata invalid: {'; '.join(problems)}", "this is a dispatch bug; report it"
            )
        self._check_gpu_quota()

    def _check_gpu_quota(self) -> None:
        from kagglesdk.kernels.types.kernels_api_service import ApiGetAcceleratorQuotaStatisticsRequest

        try:
            stats = self._call(
                "get_accelerator_quota_statistics", ApiGetAcceleratorQuotaStatisticsRequest(), "the GPU quota query"
            )
        except BackendUnavailableError as exc:
            if exc.status_code in (401, 403):
                raise
            log.warning("GPU quota unknown (%s); pushing anyway", exc.message)
            return
        quota = getattr(stats, "gpu_quota", None)
        allowed = getattr(quota, "total_time_allowed", None)
        if not isinstance(allowed, timedelta):
            return  # the API did not tell
        used = (getattr(quota, "time_used", None) or timedelta()) + (
            getattr(quota, "time_reserved", None) or timedelta()
        )
        if used >= allowed:
            raise BackendUnavailableError(
                f"Kaggle GPU quota used up ({used} of {allowed})",
                f"wait until {getattr(stats, 'quota_refresh_time', 'the weekly reset')} or use --backend local",
            )

    def _submit(self, rendered: RenderedKernel, request: LaunchRequest) -> Launched:
        from kagglesdk.kernels.types.kernels_api_service import ApiSaveKernelRequest

        meta = self._metadata(rendered)
        push = ApiSaveKernelRequest()
        push.slug = meta["id"]
        push.new_title = meta["title"]
        push.text = rendered.script.read_text(encoding="utf-8")
        push.language = meta["language"]
        push.kernel_type = meta["kernel_type"]
        push.is_private = meta["is_private"]
        push.enable_gpu = meta["enable_gpu"]
        push.enable_tpu = meta["enable_tpu"]
        push.enable_internet = meta["enable_internet"]
        push.machine_shape = meta["machine_shape"]
        push.dataset_data_sources = meta["dataset_sources"]
        push.kernel_data_sources = meta["kernel_sources"]
        push.competition_data_sources = meta["competition_sources"]
        push.model_data_sources = meta["model_sources"]
        push.category_ids = meta["keywords"]
        response = self._call("save_kernel", push, "the kernel push")
        self._raise_push_error(response)
        owner, slug = meta["id"].split("/")
        version = getattr(response, "version_number", None)
        if not version:
            raise BackendUnavailableError("Kaggle accepted the push but returned no version number", "retry")
        return Launched(RunStatus.QUEUED, {"owner": owner, "slug": slug, "version": int(version)})

    @staticmethod
    def _raise_push_error(response: Any) -> None:
        error = getattr(response, "error", None)
        invalid = {
            name: getattr(response, f"invalid_{name}", None) or []
            for name in ("dataset_sources", "kernel_sources", "model_sources", "competition_sources", "tags")
        }
        bad = {k: v for k, v in invalid.items() if v}
        if bad:
            detail = "; ".join(f"invalid {k.replace('_', ' ')}: {', '.join(map(str, v))}" for k, v in bad.items())
            raise PushRejectedError(f"{error + '; ' if error else ''}{detail}", "check --data / --resume-from")
        if error:
            if any(word in str(error).lower() for word in _QUOTA_WORDS):
                raise BackendUnavailableError(
                    f"Kaggle rejected the kernel push: {error}", "wait for a running session to end or for quota"
                )
            raise PushRejectedError(str(error))

    # --- pinned calls ------------------------------------------------------------------------------------------
    @staticmethod
    def _pinned(record: RunRecord, request: Any) -> Any:
        handle = record.handle
        if not handle.get("version"):
            raise InvalidJobError(f"run {record.run_id} has no Kaggle version yet", "it may still be submitting")
        request.user_name = handle["owner"]
        request.kernel_slug = handle["slug"]
        request.version_label = f"v{handle['version']}"  # the API wants v<N>; a bare number is a 404
        return request

    def _poll(self, record: RunRecord) -> RemoteState:
        from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelSessionStatusRequest

        response = self._call(
            "get_kernel_session_status",
            self._pinned(record, ApiGetKernelSessionStatusRequest()),
            f"the status of {self.describe(record.handle)}",
        )
        status = from_kaggle(response.status)
        reason = getattr(response, "failure_message", None) or None
        if status == RunStatus.ERROR and not reason:
            reason = self._marker_reason(record) or (
                f"the kernel failed before writing its status marker; see `chexvision logs {record.run_id}`"
            )
        elif status == RunStatus.COMPLETE:
            reason = self._marker_reason(record)  # e.g. stopped at the time budget: how to continue it
        return RemoteState(status, reason)

    def _marker_reason(self, record: RunRecord) -> str | None:
        """The reason the kernel wrote to its status marker (Kaggle often gives no failure message), if any."""
        token = ""
        while True:
            page = self._output_page(record, token)
            for item in getattr(page, "files", None) or []:
                if item.file_name == MARKER_NAME:
                    with tempfile.TemporaryDirectory() as tmp:
                        self._download_file(item.url, Path(tmp) / MARKER_NAME)
                        marker = read_marker(Path(tmp))
                    return str(marker.get("reason")) if marker and marker.get("reason") else None
            token = getattr(page, "next_page_token", None) or ""
            if not token:
                return None

    def _output_page(self, record: RunRecord, token: str) -> Any:
        from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

        request = self._pinned(record, ApiListKernelSessionOutputRequest())
        request.page_size = OUTPUT_PAGE_SIZE
        request.page_token = token
        return self._call("list_kernel_session_output", request, f"the output of {self.describe(record.handle)}")

    def _logs(self, record: RunRecord) -> str:
        return _log_text(getattr(self._output_page(record, ""), "log", None) or "")

    def _cancel(self, record: RunRecord) -> RemoteState:
        from kagglesdk.kernels.types.kernels_api_service import ApiDeleteKernelRequest

        handle = record.handle
        if not handle.get("version"):  # the push never returned a version: there is nothing remote to stop
            return RemoteState(RunStatus.CANCELLED, "cancelled by the user before Kaggle accepted the push")
        request = ApiDeleteKernelRequest()
        request.user_name = handle["owner"]
        request.kernel_slug = handle["slug"]  # the run's own kernel: its only version is N
        response = None
        with contextlib.suppress(NotFoundError):  # already gone (404): cancelling twice converges
            response = self._call("delete_kernel", request, f"the cancel of {self.describe(record.handle)}")
        error = getattr(response, "error_message", None)
        if error:  # like a push, a refused delete answers 200 with the reason in the body
            raise BackendUnavailableError(
                f"Kaggle did not delete {handle['owner']}/{handle['slug']}: {error}",
                f"retry `chexvision cancel {record.run_id}`, or delete the kernel on kaggle.com",
            )
        return RemoteState(RunStatus.CANCELLED, "cancelled by the user (Kaggle kernel version deleted)")

    def _download(self, record: RunRecord, dest: Path) -> list[Path]:
        root = dest.resolve()
        files: list[Path] = []
        token = ""
        log_text = None
        while True:
            page = self._output_page(record, token)
            if log_text is None:
                log_text = getattr(page, "log", None) or ""
            for item in getattr(page, "files", None) or []:
                target = (dest / item.file_name).resolve()
                if not target.is_relative_to(root):
                    raise BackendUnavailableError(f"Kaggle output name {item.file_name!r} escapes {dest}")
                self._download_file(item.url, target)
                files.append(target)
            token = getattr(page, "next_page_token", None) or ""
            if not token:
                break
        if log_text:
            (dest / "kaggle-kernel.log").write_text(_log_text(log_text))
        return files

    def _download_file(self, url: str, target: Path) -> None:
        if target.exists():
            return  # complete from an earlier fetch
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        offset = partial.stat().st_size if partial.exists() else 0
        try:
            self.client.download(url, partial, offset)
        except DispatchError:
            raise
        except Exception as exc:
            raise translate_error(exc, f"the download of {target.name}") from exc
        partial.replace(target)


def _log_text(raw: str) -> str:
    """Kaggle returns the log as a JSON list of {stream_name, time, data}; plain text passes through."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(entries, list):
        return raw
    return "".join(str(e.get("data", "")) for e in entries if isinstance(e, dict))
