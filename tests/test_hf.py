"""The one Hugging Face adapter (`chexvision.hf`): one translation rule for `data download` and `hub` alike.

A repo or revision that does not exist is bad input (exit 2); refused access, throttling, 5xx and the network are a
remote failure (exit 3). Both paths are driven through a fake standing where `HfApi` would send HTTP.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pytest
from huggingface_hub import errors as hf_errors
from typer.testing import CliRunner

from chexvision.cli._errors import render_error
from chexvision.cli.main import app
from chexvision.data import download as dl
from chexvision.errors import BadInputError, RemoteError, RemoteNotFoundError
from chexvision.hf import HubCall, HubClient, translate


def _http(cls: type[Exception], code: int) -> Exception:
    response = httpx2.Response(code, request=httpx2.Request("GET", "https://huggingface.co/api/models/a/b"))
    return cls(f"{code} Client Error", response=response)  # type: ignore[call-arg]


class FailingApi:
    """Every HfApi method the adapter calls raises `failure`."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.failure

        return fail


CALL = HubCall("downloading from", "alice/cxr", repo_id="alice/cxr")


@pytest.mark.parametrize(
    ("failure", "kind", "code"),
    [
        (_http(hf_errors.RepositoryNotFoundError, 404), RemoteNotFoundError, 2),
        (_http(hf_errors.RevisionNotFoundError, 404), RemoteNotFoundError, 2),
        (hf_errors.EntryNotFoundError("no such file"), RemoteNotFoundError, 2),
        (_http(hf_errors.GatedRepoError, 403), RemoteError, 3),
        (_http(hf_errors.HfHubHTTPError, 401), RemoteError, 3),
        (_http(hf_errors.HfHubHTTPError, 503), RemoteError, 3),
        (hf_errors.LocalEntryNotFoundError("not cached"), RemoteError, 3),
        (hf_errors.OfflineModeIsEnabled("offline"), RemoteError, 3),
        (ConnectionResetError("reset"), RemoteError, 3),
        (hf_errors.LocalTokenNotFoundError("no token"), BadInputError, 2),
    ],
)
def test_translate_one_rule(failure: Exception, kind: type[Exception], code: int) -> None:
    err = translate(failure, CALL)
    assert isinstance(err, kind) and err.exit_code == code  # type: ignore[attr-defined]
    if isinstance(err, RemoteError | RemoteNotFoundError):
        assert err.service == "Hugging Face Hub"
    line, exit_code = render_error(err) or ("", 0)
    assert exit_code == code and "\n" not in line


def test_translate_leaves_our_bugs_alone() -> None:
    bug = KeyError("a bug")
    assert translate(bug, CALL) is bug


@pytest.mark.parametrize(("code", "exit_code"), [(404, 2), (403, 3), (500, 3)])
def test_hub_and_download_exit_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, exit_code: int
) -> None:
    failure = _http(hf_errors.HfHubHTTPError, code)
    # the hub path: HubClient over a failing HfApi
    with pytest.raises((RemoteError, RemoteNotFoundError)) as hub_err:
        HubClient(api=FailingApi(failure)).download("alice/cxr", revision="v1", filenames=["config.json"])
    assert hub_err.value.exit_code == exit_code and "alice/cxr" in hub_err.value.message
    # the data path: `chexvision data download` over the same failing HfApi (retries sleep into a list)
    client = HubClient(api=FailingApi(failure), sleep=lambda s: None)
    monkeypatch.setattr(dl, "HubClient", lambda **kw: client)
    result = CliRunner().invoke(app, ["data", "download", "--out", str(tmp_path / "nih"), "--repo", "me/none"])
    assert result.exit_code == exit_code, result.output
    assert result.stderr.startswith("error: ") and "me/none" in result.stderr and f"HTTP {code}" in result.stderr


def test_retry_then_success_returns_the_value() -> None:
    calls: list[int] = []

    def snapshot_download(**kwargs: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _http(hf_errors.HfHubHTTPError, 429)
        return str(kwargs["local_dir"])

    sleeps: list[float] = []
    client = HubClient(api=SimpleNamespace(snapshot_download=snapshot_download), sleep=sleeps.append)
    out = client.download_dataset("a/b", "rev", Path("x"), allow_patterns=["*"], call=CALL, retries=3, backoff_s=1.0)
    assert out == Path("x") and len(calls) == 3 and sleeps == [1.0, 2.0]
