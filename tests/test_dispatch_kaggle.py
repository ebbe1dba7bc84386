"""The Kaggle backend against a fake at the client boundary (dispatch/backends/kaggle/client.KaggleClient).

Everything above the fake is real: request objects are the official kagglesdk ones, as the real client sends them.
The fake and its fixtures (`fake_kaggle`, `kaggle_dispatch`) come from the tests/fakes/kaggle.py plugin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus
from slugify import slugify
from typer.testing import CliRunner

import dispatch.backends.kaggle.backend as kaggle_backend
from chexvision import remote as runs
from chexvision.cli.main import app
from dispatch.backends.kaggle.metadata import validate_metadata
from dispatch.registry import Registry
from dispatch.status import KAGGLE_STATUS_MAP, RunStatus

if TYPE_CHECKING:
    from fakes.kaggle import FakeKaggle

Dispatch = Callable[..., runs.DispatchResult]


@pytest.fixture
def fake(fake_kaggle: FakeKaggle) -> FakeKaggle:
    return fake_kaggle


@pytest.fixture
def dispatch(kaggle_dispatch: Dispatch) -> Dispatch:
    return kaggle_dispatch


def test_push_request_fields(fake: FakeKaggle, dispatch: Dispatch) -> None:
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
    assert "TIME_BUDGET_HOURS = 11.0" in push.text  # stops cleanly before Kaggle's 12 h limit unless told otherwise
    assert result.handle == f"alice/{slug}/1" and result.status == RunStatus.QUEUED
    with Registry.at(runs.home()) as reg:
        record = reg.get(result.run_id)
    assert record.handle == {"owner": "alice", "slug": slug, "version": 1}
    assert record.bundle_sha256 == result.bundle_sha256
    assert record.command[record.command.index("--time-budget") + 1] == "11.0"


def test_default_data_is_pinned_hf_dataset(fake: FakeKaggle, dispatch: Dispatch) -> None:
    from chexvision.data.download import REPO_ID, REVISION

    dispatch()
    [push] = fake.requests_named("save_kernel")
    assert push.dataset_data_sources == []
    assert REPO_ID in push.text and REVISION in push.text and "'kind': 'hf'" in push.text


@pytest.mark.parametrize("member", list(KernelWorkerStatus), ids=lambda m: m.name)
def test_every_kaggle_status_maps(fake: FakeKaggle, member: KernelWorkerStatus, dispatch: Dispatch) -> None:
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


def test_failure_message_becomes_reason(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.status, fake.failure_message = KernelWorkerStatus.ERROR, "train failed with exit code 1: CUDA OOM"
    out = CliRunner().invoke(app, ["status", result.run_id, "--json"])
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert data["status"] == "error" and data["failure_reason"].endswith("CUDA OOM")
    assert data["backend"] == "kaggle" and data["model"] == "densenet"


def test_error_without_message_reads_the_kernel_marker(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.status = KernelWorkerStatus.ERROR
    fake.pages[-1].append("chexvision-status.json")
    record = runs.get_run(result.run_id)
    assert record.status == RunStatus.ERROR
    assert record.failure_reason == "data download failed with exit code 1: 404"


def test_complete_at_the_time_budget_says_how_to_continue(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.status = KernelWorkerStatus.COMPLETE
    fake.marker = {"status": "complete", "reason": "stopped at the time budget; continue with --resume-from x"}
    fake.pages[-1].append("chexvision-status.json")
    record = runs.get_run(result.run_id)
    assert record.status == RunStatus.COMPLETE and "time budget" in (record.failure_reason or "")


def test_output_download_across_pages_pinned_and_resumable(
    fake: FakeKaggle, tmp_path: Path, dispatch: Dispatch
) -> None:
    result = dispatch()
    fake.status = KernelWorkerStatus.COMPLETE
    assert runs.get_run(result.run_id).status == RunStatus.COMPLETE
    fake.calls.clear()  # what follows is the fetch alone
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.safetensors.part").write_bytes(fake.body("model.safetensors")[:5])  # an interrupted earlier fetch
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
    assert runs.best_val_auc(runs.get_run(result.run_id)) == pytest.approx(0.81)  # stored for `status`
    fake.downloads.clear()
    runs.fetch_run(result.run_id, out)
    assert fake.downloads == []  # complete files are not fetched again


def test_every_call_is_version_pinned(fake: FakeKaggle, dispatch: Dispatch) -> None:
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


def test_throttling_is_retried_with_backoff(fake: FakeKaggle, dispatch: Dispatch) -> None:
    fake.failures["save_kernel"] = [fake.http_error(429), fake.http_error(503)]
    result = dispatch()
    assert result.status == RunStatus.QUEUED
    sleeps = [s for n, s in fake.calls if n == "sleep"]
    assert sleeps == [2.0, 4.0]
    assert len(fake.requests_named("save_kernel")) == 3


def test_client_errors_are_not_retried(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.failures["get_kernel_session_status"] = [fake.http_error(403)]
    out = CliRunner().invoke(app, ["status", result.run_id])
    assert out.exit_code == 3 and "HTTP 403" in out.stderr
    assert len(fake.requests_named("get_kernel_session_status")) == 1


def test_unreachable_backend_exits_3(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.failures["get_kernel_session_status"] = [requests.ConnectionError("no route")]
    out = CliRunner().invoke(app, ["status", result.run_id])
    assert out.exit_code == 3 and "could not reach Kaggle" in out.stderr


def test_persistent_5xx_gives_up(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.failures["get_kernel_session_status"] = [fake.http_error(502)] * 5
    out = CliRunner().invoke(app, ["status", result.run_id])
    assert out.exit_code == 3
    assert len(fake.requests_named("get_kernel_session_status")) == 5


def test_cancel_deletes_the_runs_kernel(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    out = CliRunner().invoke(app, ["cancel", result.run_id])
    assert out.exit_code == 0, out.output
    [request] = fake.requests_named("delete_kernel")
    assert (request.user_name, request.kernel_slug) == ("alice", f"chexvision-{result.run_id}")
    assert runs.get_run(result.run_id).status == RunStatus.CANCELLED
    CliRunner().invoke(app, ["cancel", result.run_id])
    assert len(fake.requests_named("delete_kernel")) == 1  # already ended: nothing to do


def test_refused_delete_is_surfaced(fake: FakeKaggle, dispatch: Dispatch) -> None:
    result = dispatch()
    fake.delete_error = "Kernel is locked"
    out = CliRunner().invoke(app, ["cancel", result.run_id])
    assert out.exit_code == 3 and "Kernel is locked" in out.stderr
    assert not runs.get_run(result.run_id, refresh=False).status.is_terminal()  # not recorded as cancelled


def test_resume_attaches_parent_version(fake: FakeKaggle, dispatch: Dispatch) -> None:
    parent = dispatch()
    fake.status = KernelWorkerStatus.COMPLETE
    runs.get_run(parent.run_id)
    child = dispatch(resume_from=parent.run_id)
    push = fake.requests_named("save_kernel")[-1]
    assert push.kernel_data_sources == [f"alice/chexvision-{parent.run_id}/1"]
    assert f"RESUME_SOURCE = 'chexvision-{parent.run_id}'" in push.text
    assert runs.get_run(child.run_id, refresh=False).parent_run_id == parent.run_id


def test_preflight_refuses_a_third_session(fake: FakeKaggle, dispatch: Dispatch) -> None:
    dispatch()
    dispatch()
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "seresnet", "--backend", "kaggle"])
    assert out.exit_code == 3 and "already active" in out.stderr
    assert len(fake.requests_named("save_kernel")) == 2


def test_local_folder_is_refused_on_kaggle(fake: FakeKaggle, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle", "--data", str(tmp_path)]
    )
    assert out.exit_code == 2 and "the kaggle backend cannot read a local folder" in out.stderr
    assert fake.calls == [] and runs.list_runs(refresh=False) == []


def test_preflight_refuses_without_gpu_quota(fake: FakeKaggle) -> None:
    fake.quota_left = timedelta()
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 3 and "GPU quota" in out.stderr
    assert fake.requests_named("save_kernel") == []
    assert runs.list_runs(refresh=False) == []  # refused before it was recorded


def test_no_credentials_refuses_kaggle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kaggle_backend, "KaggleClient", lambda: pytest.fail("client must not be built"))
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 3 and "no Kaggle credentials" in out.stderr
    assert os.environ["KAGGLE_CONFIG_DIR"] in out.stderr  # the hint names where the client looks
    assert runs.list_runs(refresh=False) == []


def test_credentials_found_where_the_client_looks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dispatch.backends.kaggle.client import credentials_configured

    monkeypatch.delenv("KAGGLE_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert not credentials_configured()
    xdg = tmp_path / ".config" / "kaggle"  # kaggle's default on Linux when ~/.kaggle does not exist
    xdg.mkdir(parents=True)
    (xdg / "kaggle.json").write_text("{}")
    assert credentials_configured()
    (xdg / "kaggle.json").unlink()
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "access_token").write_text("token")
    assert credentials_configured()


def test_client_notices_stay_off_stdout(capsys: pytest.CaptureFixture[str], fake: FakeKaggle) -> None:
    """The kaggle client prints version warnings to stdout, where `--json` goes: they must land on stderr."""
    from contextlib import contextmanager

    from dispatch.backends.kaggle.client import KaggleClient

    class Api:
        @contextmanager
        def build_kaggle_client(self) -> Any:
            print("Warning: Looks like you're using an outdated `kaggle` version")
            yield type("K", (), {"kernels": type("S", (), {"kernels_api_client": fake})})

    client = KaggleClient()
    client._kaggle = Api()
    client.delete_kernel(None)
    captured = capsys.readouterr()
    assert captured.out == "" and "outdated" in captured.err


def test_default_backend_follows_credentials(fake: FakeKaggle, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runs.default_backend() == ("kaggle", None)
    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").unlink()
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
    assert validate_metadata(good, tmp_path) == []
    bad = dict(good, title="abc", is_private=False, machine_shape="", code_file="missing.py")
    problems = " | ".join(validate_metadata(bad, tmp_path))
    assert "5-50 characters" in problems and "is_private" in problems and "machine_shape" in problems
    assert "missing.py" in problems
    mismatch = dict(good, title="another title here")
    assert "does not slugify" in validate_metadata(mismatch, tmp_path)[0]


# --- issue 10, defect 10: a kaggle.json that cannot work is bad input naming the file, not "Kaggle rejected" exit 3

KEY = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"username": "alice", "key": "' + KEY + '"', "not valid JSON (line 1 column"),
        ("", "not valid JSON"),
        (json.dumps({"username": "alice"}), 'no "key"'),
        (json.dumps({"username": "alice", "key": ""}), 'no "key"'),
        (json.dumps({"key": KEY}), 'no "username"'),
        (json.dumps(["alice", KEY]), "not a JSON object"),
    ],
)
def test_unusable_kaggle_json_is_refused_naming_the_file(content: str, problem: str) -> None:
    from dispatch.backends.kaggle.client import KaggleClient
    from dispatch.errors import InvalidCredentialsError

    path = Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(InvalidCredentialsError) as info:
        KaggleClient()._api()  # checked before the kaggle package is imported (it would exit on authentication)
    line = info.value.one_line()
    assert info.value.exit_code == 2 and str(path) in line and problem in line
    assert KEY not in line and "alice" not in line  # the file's content is never shown


def test_unusable_kaggle_json_stops_dispatch_before_anything_is_built(fake: FakeKaggle) -> None:
    path = Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    path.write_text('{"username": "alice"}')
    out = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"])
    assert out.exit_code == 2, out.output
    assert f"Kaggle credentials file {path} is not usable" in out.stderr and "rejected" not in out.stderr
    assert fake.calls == [] and runs.list_runs(refresh=False) == []
    assert not (runs.home() / "kernels").exists()  # refused before the kernel was rendered


def test_environment_credentials_take_precedence_over_a_broken_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from dispatch.backends.kaggle.client import check_credentials_file

    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").write_text("{oops")
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    check_credentials_file()  # the client would not read the file: nothing to refuse


def test_a_kaggle_json_readable_by_others_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    from dispatch.backends.kaggle.client import check_credentials_file

    path = Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    path.write_text(json.dumps({"username": "alice", "key": KEY}))
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        check_credentials_file()
    assert f"chmod 600 {path}" in caplog.text and "readable by other users" in caplog.text
    assert KEY not in caplog.text
    caplog.clear()
    path.chmod(0o600)
    with caplog.at_level("WARNING"):
        check_credentials_file()
    assert caplog.text == ""
