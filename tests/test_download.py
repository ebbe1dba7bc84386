from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data import download as dl
from chexvision.data.download import REPO_ID, REVISION, download_dataset
from chexvision.errors import BackendError, RemoteNotFoundError
from chexvision.hf import HubClient

runner = CliRunner()


class HTTPStatusFailure(Exception):
    """Shaped like the hub's HTTP errors: a `.response` with a `status_code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.response = SimpleNamespace(status_code=code)


class FakeHub:
    """Stands in for huggingface_hub: raises the queued failures, then 'downloads' two shards."""

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.failures = list(failures or [])
        self.calls: list[dict[str, Any]] = []
        self.sleeps: list[float] = []

    def snapshot_download(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        if self.failures:
            raise self.failures.pop(0)
        data = Path(kwargs["local_dir"]) / "data"
        data.mkdir(parents=True, exist_ok=True)
        for name in ("train-00000-of-00001.parquet", "test-00000-of-00001.parquet"):
            (data / name).write_bytes(b"PAR1")
        return str(kwargs["local_dir"])

    def client(self) -> HubClient:
        return HubClient(api=self, sleep=self.sleeps.append)  # the fake stands where HfApi would send HTTP


def test_download_asks_for_the_pinned_shards_and_writes_dataset_json(tmp_path: Path) -> None:
    hub = FakeHub()
    out = download_dataset(tmp_path / "nih", client=hub.client())
    assert out == tmp_path / "nih"
    (call,) = hub.calls
    assert call["repo_id"] == REPO_ID and call["revision"] == REVISION
    assert call["repo_type"] == "dataset"
    assert call["allow_patterns"] == ["data/*.parquet", "README.md"]
    assert call["local_dir"] == str(out)
    info = json.loads((out / "dataset.json").read_text())
    assert info == {"source": "hf", "repo_id": REPO_ID, "revision": REVISION, "default_split_scheme": "official"}


@pytest.mark.parametrize(
    "failure", [HTTPStatusFailure(503), HTTPStatusFailure(429), TimeoutError("read"), ConnectionResetError("reset")]
)
def test_transient_failure_is_retried_with_backoff(tmp_path: Path, failure: BaseException) -> None:
    hub = FakeHub([failure, failure])
    download_dataset(tmp_path, client=hub.client(), backoff_s=1.5)
    assert len(hub.calls) == 3
    assert hub.sleeps == [1.5, 3.0]


def test_permanent_404_is_not_retried_and_is_bad_input(tmp_path: Path) -> None:
    hub = FakeHub([HTTPStatusFailure(404)])
    with pytest.raises(RemoteNotFoundError) as err:
        download_dataset(tmp_path, "someone/missing", client=hub.client())
    assert len(hub.calls) == 1 and hub.sleeps == []
    assert "someone/missing" in err.value.message and "404" in err.value.message
    # one rule with `hub` (chexvision.hf): a repo or revision that does not exist is bad input, exit 2
    assert err.value.exit_code == 2 and err.value.status == 404 and "--revision" in (err.value.hint or "")


@pytest.mark.parametrize("code", [401, 403])
def test_refused_access_is_a_remote_error_exit_3(tmp_path: Path, code: int) -> None:
    hub = FakeHub([HTTPStatusFailure(code)])
    with pytest.raises(BackendError) as err:
        download_dataset(tmp_path, client=hub.client())
    assert err.value.exit_code == 3 and f"HTTP {code}" in err.value.message and "hf auth login" in err.value.one_line()
    assert len(hub.calls) == 1


def test_retries_give_up_after_the_limit(tmp_path: Path) -> None:
    hub = FakeHub([HTTPStatusFailure(502)] * 10)
    with pytest.raises(BackendError, match="kept failing"):
        download_dataset(tmp_path, client=hub.client(), retries=2)
    assert len(hub.calls) == 3 and len(hub.sleeps) == 2


def test_a_repo_without_parquet_files_is_an_error(tmp_path: Path) -> None:
    client = HubClient(
        api=SimpleNamespace(snapshot_download=lambda **kwargs: kwargs["local_dir"]), sleep=lambda s: None
    )
    with pytest.raises(BackendError, match="no data/"):
        download_dataset(tmp_path, client=client)
    assert not (tmp_path / "dataset.json").exists()


def test_offline_via_cli_exits_3_and_names_the_way_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    hub = FakeHub([LocalEntryNotFoundError("outgoing traffic has been disabled")])
    monkeypatch.setattr(dl, "HubClient", lambda **kw: hub.client())
    result = runner.invoke(app, ["data", "download", "--out", str(tmp_path / "nih")])
    assert result.exit_code == 3
    assert REPO_ID in result.stderr
    assert "data synth" in result.stderr and "data build" in result.stderr
    assert len(hub.calls) == 1  # offline is not transient


def test_real_client_offline_is_a_backend_error(tmp_path: Path) -> None:
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("huggingface_hub was imported before HF_HUB_OFFLINE=1 was set")
    with pytest.raises(BackendError, match="offline"):
        download_dataset(tmp_path / "nih")


def test_cli_success_prints_the_shard_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub()
    monkeypatch.setattr(dl, "HubClient", lambda **kw: hub.client())
    result = runner.invoke(app, ["data", "download", "--out", str(tmp_path), "--repo", "me/x", "--revision", "abc"])
    assert result.exit_code == 0, result.output
    assert "2 shards of me/x@abc" in result.stdout
    assert hub.calls[0]["repo_id"] == "me/x" and hub.calls[0]["revision"] == "abc"


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_revision_again_continues_and_another_is_refused_before_any_call(tmp_path: Path) -> None:
    from chexvision.errors import BadInputError

    hub = FakeHub()
    download_dataset(tmp_path, client=hub.client())
    download_dataset(tmp_path, client=hub.client())  # resumable: asks the hub again, which skips complete files
    assert len(hub.calls) == 2
    before = _digest(tmp_path)
    with pytest.raises(BadInputError, match=r"revision '44443e6ee968.*' \(asked 'abc'\)"):
        download_dataset(tmp_path, REPO_ID, "abc", client=hub.client())
    assert len(hub.calls) == 2 and _digest(tmp_path) == before
    download_dataset(tmp_path, REPO_ID, "abc", client=hub.client(), overwrite=True)
    assert json.loads((tmp_path / "dataset.json").read_text())["revision"] == "abc"


def test_download_into_a_synthetic_set_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chexvision.data.synthetic import write_synthetic

    write_synthetic(tmp_path, 4, 32, seed=0)
    before = _digest(tmp_path)
    hub = FakeHub()
    monkeypatch.setattr(dl, "HubClient", lambda **kw: hub.client())
    result = runner.invoke(app, ["data", "download", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "made by `data synth`" in result.stderr and "--overwrite" in result.stderr
    assert hub.calls == [] and _digest(tmp_path) == before
