"""The Kaggle backend against a fake at the client boundary (dispatch/backends/kaggle_client.KaggleClient).

Everything above the fake is real: request objects are the official kagglesdk ones, as the real client sends them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from kagglesdk.kernels.types.kernels_api_service import (
    ApiAcceleratorQuota,
    ApiGetAcceleratorQuotaStatisticsResponse,
    ApiGetKernelSessionStatusResponse,
    ApiKernelSessionOutputFile,
    ApiListKernelSessionOutputResponse,
    ApiSaveKernelResponse,
)
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus
from slugify import slugify
from typer.testing import CliRunner

import dispatch.backends.kaggle as kaggle_backend
import dispatch.runs as runs
from chexvision.cli.main import app
from dispatch.registry import Registry
from dispatch.status import KAGGLE_STATUS_MAP, RunStatus


def http_error(code: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = code
    return requests.HTTPError(f"HTTP {code}", response=response)


def output_body(name: str) -> bytes:
    if name == "model.safetensors":
        header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
        return len(header).to_bytes(8, "little") + header + b"\0" * 4
    if name == "chexvision-status.json":
        return json.dumps({"status": "error", "reason": "data download failed with exit code 1: 404"}).encode()
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

    def delete_kernel(self, request: Any) -> None:
        self._record("delete_kernel", request)

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
        body = output_body(url.removeprefix("https://fake/"))
        with open(dest, "ab" if offset else "wb") as out:
            out.write(body[offset:])

    def requests_named(self, name: str) -> list[Any]:
        return [r for n, r in self.calls if n == name]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeKaggle:
    tiny = tmp_path / "tree"  # a tiny source tree keeps each dispatch fast; bundling is tested on its own
    (tiny / "chexvision").mkdir(parents=True)
    (tiny / "chexvision" / "__init__.py").write_text("")
    monkeypatch.setattr(runs, "repo_root", lambda: tiny)
    fake = FakeKaggle()
    monkeypatch.setattr(kaggle_backend, "KaggleClient", lambda: fake)
    monkeypatch.setattr(kaggle_backend, "backoff_sleep", lambda s: fake.calls.append(("sleep", s)))
    config = Path(__import__("os").environ["KAGGLE_CONFIG_DIR"])
    (config / "kaggle.json").write_text(json.dumps({"username": "alice", "key": "not-a-real-key"}))
    return fake


def dispatch(**kwargs: Any) -> runs.DispatchResult:
    return runs.dispatch_train(runs.TrainRequest(model="densenet", backend="kaggle", preset="smoke", **kwargs))


def test_push_request_fields(fake: FakeKaggle) -> None:
    result = dispatch(data="kaggle:nih-chest-xrays/data")
    [push] = fake.requests_named("save_kernel")
    owner, slug = push.slug.split("/")
    assert owner == "alice" and slug == f"chexvision-{result.run_id}"
    assert slugify(push.new_title) == slug and 5 <= len(push.new_title) <= 50
    assert push.is_private is True and push.enable_gpu is True and push.enable_internet is True
    assert push.machine_shape == "NvidiaTeslaT4"
    assert (push.kernel_type, push.language) == ("script", "python")
    assert push.dataset_data_sources == ["nih-chest-xrays/data"]
    assert push.kernel_data_sources == []
    assert f"RUN_ID = {result.run_id!r}" in push.text and "BUNDLE_B64" in push.text
    assert result.handle == f"alice/{slug}/1" and result.status == RunStatus.QUEUED
    with Registry.open() as reg:
        record = reg.get(result.run_id)
    assert (record.kaggle_owner, record.kaggle_slug, record.kaggle_version) == ("alice", slug, 1)
    assert record.bundle_sha256 == result.bundle_sha256


def test_default_data_is_pinned_hf_dataset(fake: FakeKaggle) -> None:
    from chexvision.data.download import REPO_ID, REVISION

    dispatch()
    [push] = fake.requests_named("save_kernel")
    assert push.dataset_data_sources == []
    assert REPO_ID in push.text and REVISION in push.text and "'kind': 'hf'" in push.text


@pytest.mark.parametrize("member", list(KernelWorkerStatus), ids=lambda m: m.name)
def test_every_kaggle_status_maps(fake: FakeKaggle, member: KernelWorkerStatus) -> None:
    assert member.name in KAGGLE_STATUS_MAP
    result = dispatch()
    fake.status = member
    record = runs.get_run(result.run_id)
    assert record.status == KAGGLE_STATUS_MAP[member.name]
    [request] = fake.requests_named("get_kernel_session_status")
    assert (request.user_name, request.kernel_slug, request.version_label) == (
        "alice",
        f"chexvision-{result.run_id}",
        "v1",
    )


def test_failure_message_becomes_reason(fake: FakeKaggle) -> None:
    result = dispatch()
    fake.status, fake.failure_message = KernelWorkerStatus.ERROR, "train failed with exit code 1: CUDA OOM"
    out = CliRunner().invoke(app, ["status", result.run_id, "--json"])
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["status"] == "error" and data["failure_reason"].endswith("CUDA OOM")
    assert data["backend"] == "kaggle" and data["model"] == "densenet"


def test_error_without_message_reads_the_kernel_marker(fake: FakeKaggle) -> None:
    result = dispatch()
    fake.status = KernelWorkerStatus.ERROR
    fake.pages[-1].append("chexvision-status.json")
    record = runs.get_run(result.run_id)
    assert record.status == RunStatus.ERROR
    assert record.failure_reason == "data download failed with exit code 1: 404"


def test_output_download_across_pages_pinned_and_resumable(fake: FakeKaggle, tmp_path: Path) -> None:
    result = dispatch()
    fake.status = KernelWorkerStatus.COMPLETE
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors.part").write_bytes(output_body("model.safetensors")[:5])  # an interrupted earlier fetch
    fetched = runs.fetch_run(result.run_id, out)
    names = sorted(p.relative_to(out.resolve()).as_posix() for p in fetched.files)
    assert names == sorted(
        ["run.json", "config.json", "history.json", "metrics.json", "model.safetensors", "sub/train.log"]
    )
    assert ("https://fake/model.safetensors", 5) in fake.downloads  # resumed from the partial file
    pages = fake.requests_named("list_kernel_session_output")
    assert [p.page_token for p in pages] == ["", "1", "2"]
    assert {p.version_label for p in pages} == {"v1"}
    assert "epoch 1 done" in (out / "kaggle-kernel.log").read_text()
    assert fetched.best_val_auc == pytest.approx(0.81)
    fake.downloads.clear()
    runs.fetch_run(result.run_id, out)
    assert fake.downloads == []  # complete files are not fetched again


def test_every_call_is_version_pinned(fake: FakeKaggle) -> None:
    result = dispatch()
    runs.run_logs(result.run_id)
    runs.get_run(result.run_id)
    pinned = [r for n, r in fake.calls if n in ("get_kernel_session_status", "list_kernel_session_output")]
    assert pinned and all(r.version_label == "v1" for r in pinned)
    assert "epoch 1 done" in runs.run_logs(result.run_id)


def test_push_error_in_response_is_surfaced(fake: FakeKaggle) -> None:
    fake.push_error = "Notebook title is already in use"
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 2
    assert "Kaggle rejected the kernel push: Notebook title is already in use" in out.stderr
    [record] = runs.list_runs(refresh=False)
    assert record.status == RunStatus.ERROR and "title is already in use" in (record.failure_reason or "")


def test_push_quota_error_is_a_backend_error(fake: FakeKaggle) -> None:
    fake.push_error = "Maximum concurrent GPU sessions exceeded"
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 3


def test_throttling_is_retried_with_backoff(fake: FakeKaggle) -> None:
    fake.failures["save_kernel"] = [http_error(429), http_error(503)]
    result = dispatch()
    assert result.status == RunStatus.QUEUED
    sleeps = [s for n, s in fake.calls if n == "sleep"]
    assert sleeps == [2.0, 4.0]
    assert len(fake.requests_named("save_kernel")) == 3


def test_client_errors_are_not_retried(fake: FakeKaggle) -> None:
    result = dispatch()
    fake.failures["get_kernel_session_status"] = [http_error(403)]
    out = CliRunner().invoke(app, ["status", result.run_id])
    assert out.exit_code == 3 and "HTTP 403" in out.stderr
    assert len(fake.requests_named("get_kernel_session_status")) == 1


def test_unreachable_backend_exits_3(fake: FakeKaggle) -> None:
    result = dispatch()
    fake.failures["get_kernel_session_status"] = [requests.ConnectionError("no route")]
    out = CliRunner().invoke(app, ["status", result.run_id])
    assert out.exit_code == 3 and "could not reach Kaggle" in out.stderr


def test_persistent_5xx_gives_up(fake: FakeKaggle) -> None:
    result = dispatch()
    fake.failures["get_kernel_session_status"] = [http_error(502)] * 5
    out = CliRunner().invoke(app, ["status", result.run_id])
    assert out.exit_code == 3
    assert len(fake.requests_named("get_kernel_session_status")) == 5


def test_cancel_deletes_the_runs_kernel(fake: FakeKaggle) -> None:
    result = dispatch()
    out = CliRunner().invoke(app, ["cancel", result.run_id])
    assert out.exit_code == 0, out.output
    [request] = fake.requests_named("delete_kernel")
    assert (request.user_name, request.kernel_slug) == ("alice", f"chexvision-{result.run_id}")
    assert runs.get_run(result.run_id).status == RunStatus.CANCELLED
    CliRunner().invoke(app, ["cancel", result.run_id])
    assert len(fake.requests_named("delete_kernel")) == 1  # already ended: nothing to do


def test_resume_attaches_parent_version(fake: FakeKaggle) -> None:
    parent = dispatch()
    fake.status = KernelWorkerStatus.COMPLETE
    runs.get_run(parent.run_id)
    child = dispatch(resume_from=parent.run_id)
    push = fake.requests_named("save_kernel")[-1]
    assert push.kernel_data_sources == [f"alice/chexvision-{parent.run_id}/1"]
    assert f"RESUME_SOURCE = 'chexvision-{parent.run_id}'" in push.text
    assert runs.get_run(child.run_id, refresh=False).parent_run_id == parent.run_id


def test_preflight_refuses_a_third_session(fake: FakeKaggle) -> None:
    dispatch()
    dispatch()
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "seresnet", "--backend", "kaggle"])
    assert out.exit_code == 3 and "already active" in out.stderr
    assert len(fake.requests_named("save_kernel")) == 2


def test_preflight_refuses_without_gpu_quota(fake: FakeKaggle) -> None:
    fake.quota_left = timedelta()
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 3 and "GPU quota" in out.stderr
    assert fake.requests_named("save_kernel") == []


def test_no_credentials_refuses_kaggle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kaggle_backend, "KaggleClient", lambda: pytest.fail("client must not be built"))
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 3 and "no Kaggle credentials" in out.stderr


def test_default_backend_follows_credentials(fake: FakeKaggle, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runs.default_backend() == ("kaggle", None)
    (Path(__import__("os").environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").unlink()
    backend, notice = runs.default_backend()
    assert backend == "local" and notice and "local" in notice


def test_dry_run_pushes_nothing(fake: FakeKaggle, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app,
        [
            "dispatch",
            "train",
            "--model",
            "densenet",
            "--backend",
            "kaggle",
            "--dry-run",
            "--out",
            str(tmp_path / "k"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    meta = json.loads((tmp_path / "k" / "kernel-metadata.json").read_text())
    assert meta["is_private"] is True and meta["machine_shape"] == "NvidiaTeslaT4"
    assert meta["id"].startswith("alice/chexvision-densenet-")
    assert json.loads(out.stdout)["run_id"] in meta["id"]
    assert fake.requests_named("save_kernel") == []
    assert runs.list_runs(refresh=False) == []


def test_metadata_validation_catches_what_kaggle_would_reject(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print(1)")
    good = {
        "id": "alice/chexvision-densenet-x",
        "title": "chexvision densenet x",
        "code_file": "train.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_internet": True,
        "machine_shape": "NvidiaTeslaT4",
    }
    assert kaggle_backend.validate_metadata(good, tmp_path) == []
    bad = dict(good, title="abc", is_private=False, machine_shape="", code_file="missing.py")
    problems = " | ".join(kaggle_backend.validate_metadata(bad, tmp_path))
    assert "5-50 characters" in problems and "is_private" in problems and "machine_shape" in problems
    assert "missing.py" in problems
    mismatch = dict(good, title="another title here")
    assert "does not slugify" in kaggle_backend.validate_metadata(mismatch, tmp_path)[0]
