"""A fake Kaggle client placed at the client boundary (`dispatch.backends.kaggle.client.KaggleClient`).

It takes the official kagglesdk request objects and answers with the kagglesdk response objects the real API
returns (errors in `.error` / `.error_message`, KernelWorkerStatus members), so all code above it is real.
Fixtures: `fake_kaggle` (the fake installed, credentials in place, a tiny source tree to bundle) and
`kaggle_dispatch` (dispatch a densenet smoke run to it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kagglesdk.kernels.types.kernels_api_service import (
    ApiAcceleratorQuota,
    ApiDeleteKernelResponse,
    ApiGetAcceleratorQuotaStatisticsResponse,
    ApiGetKernelSessionStatusResponse,
    ApiKernelSessionOutputFile,
    ApiListKernelSessionOutputResponse,
    ApiSaveKernelResponse,
)
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

import dispatch.backends.kaggle.backend as kaggle_backend
from chexvision import remote


def output_body(name: str, marker: dict[str, Any] | None = None) -> bytes:
    if name == "model.safetensors":
        header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
        return len(header).to_bytes(8, "little") + header + b"\0" * 4
    if name == "chexvision-status.json":
        return json.dumps(marker).encode()
    if name.endswith(".json"):
        return json.dumps({"best_val_macro_auc": 0.81, "epochs": []}).encode()
    return b"log\n"


class FakeKaggle:
    """Records every request; answers like the Kaggle API would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.push_error: str | None = None
        self.status = KernelWorkerStatus.RUNNING
        self.failure_message = ""
        self.pages: list[list[str]] = [
            ["run.json", "config.json"],
            ["history.json", "metrics.json"],
            ["model.safetensors", "sub/train.log"],
        ]
        self.downloads: list[tuple[str, int]] = []
        self.quota_left = timedelta(hours=20)
        self.delete_error = ""
        self.marker: dict[str, Any] = {"status": "error", "reason": "data download failed with exit code 1: 404"}

    def _record(self, name: str, request: Any) -> None:
        self.calls.append((name, request))
        queue = self.failures.get(name)
        if queue:
            raise queue.pop(0)

    def username(self) -> str:
        return "alice"

    def save_kernel(self, request: Any) -> ApiSaveKernelResponse:
        self._record("save_kernel", request)
        response = ApiSaveKernelResponse()
        if self.push_error:
            response.error = self.push_error
            return response
        response.ref = f"/code/{request.slug}"
        response.version_number = 1
        return response

    def get_kernel_session_status(self, request: Any) -> ApiGetKernelSessionStatusResponse:
        self._record("get_kernel_session_status", request)
        response = ApiGetKernelSessionStatusResponse()
        response.status = self.status
        response.failure_message = self.failure_message
        return response

    def list_kernel_session_output(self, request: Any) -> ApiListKernelSessionOutputResponse:
        self._record("list_kernel_session_output", request)
        index = int(request.page_token or 0)
        response = ApiListKernelSessionOutputResponse()
        files = []
        for name in self.pages[index]:
            item = ApiKernelSessionOutputFile()
            item.file_name = name
            item.url = f"https://fake/{name}"
            files.append(item)
        response.files = files
        response.log = json.dumps([{"stream_name": "stdout", "time": 1.0, "data": "epoch 1 done\n"}])
        response.next_page_token = str(index + 1) if index + 1 < len(self.pages) else ""
        return response

    def delete_kernel(self, request: Any) -> ApiDeleteKernelResponse:
        self._record("delete_kernel", request)
        response = ApiDeleteKernelResponse()
        response.error_message = self.delete_error
        return response

    def get_accelerator_quota_statistics(self, request: Any) -> ApiGetAcceleratorQuotaStatisticsResponse:
        self._record("get_accelerator_quota_statistics", request)
        quota = ApiAcceleratorQuota()
        quota.total_time_allowed = timedelta(hours=30)
        quota.time_used = timedelta(hours=30) - self.quota_left
        quota.time_reserved = timedelta()
        response = ApiGetAcceleratorQuotaStatisticsResponse()
        response.gpu_quota = quota
        return response

    def download(self, url: str, dest: Path, offset: int = 0) -> None:
        self.downloads.append((url, offset))
        body = output_body(url.removeprefix("https://fake/"), self.marker)
        with open(dest, "ab" if offset else "wb") as out:
            out.write(body[offset:])

    def requests_named(self, name: str) -> list[Any]:
        return [r for n, r in self.calls if n == name]

    @staticmethod
    def http_error(code: int) -> requests.HTTPError:
        response = requests.Response()
        response.status_code = code
        return requests.HTTPError(f"HTTP {code}", response=response)

    @staticmethod
    def body(name: str, marker: dict[str, Any] | None = None) -> bytes:
        """What the fake serves for the output file `name`."""
        return output_body(name, marker)


@pytest.fixture
def fake_kaggle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeKaggle:
    """A FakeKaggle at the client boundary, Kaggle credentials in place and a tiny source tree to bundle."""
    tiny = tmp_path / "tree"  # a tiny source tree keeps each dispatch fast; bundling is tested on its own
    (tiny / "chexvision").mkdir(parents=True)
    (tiny / "chexvision" / "__init__.py").write_text("")
    monkeypatch.setattr(remote, "repo_root", lambda: tiny)
    fake = FakeKaggle()
    monkeypatch.setattr(kaggle_backend, "KaggleClient", lambda: fake)
    monkeypatch.setattr(kaggle_backend, "backoff_sleep", lambda s: fake.calls.append(("sleep", s)))
    config = Path(os.environ["KAGGLE_CONFIG_DIR"])
    (config / "kaggle.json").write_text(json.dumps({"username": "alice", "key": "not-a-real-key"}))
    (config / "kaggle.json").chmod(0o600)  # as the kaggle client asks; a readable one is warned about
    return fake


@pytest.fixture
def kaggle_dispatch(fake_kaggle: FakeKaggle) -> Callable[..., remote.DispatchResult]:
    """Dispatch a densenet smoke run to the fake Kaggle; keyword arguments go to the TrainRequest."""

    def dispatch(**kwargs: Any) -> remote.DispatchResult:
        return remote.dispatch_train(remote.TrainRequest(model="densenet", backend="kaggle", preset="smoke", **kwargs))

    return dispatch
