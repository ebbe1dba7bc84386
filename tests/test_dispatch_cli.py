"""CLI exit codes and output shapes of dispatch/status/logs/cancel/fetch."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.remote import home
from dispatch.registry import Registry, RunRecord
from dispatch.status import RunStatus

runner = CliRunner()


def _add(run_id: str, status: RunStatus, reason: str | None = None) -> None:
    with Registry.at(home()) as reg:
        record = RunRecord(run_id=run_id, backend="local", label="densenet", status=status, failure_reason=reason)
        reg.add(dataclasses.replace(record, meta={"model": "densenet"}))


def test_status_empty_is_ok() -> None:
    out = runner.invoke(app, ["status", "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout) == []
    assert runner.invoke(app, ["status"]).exit_code == 0


def test_status_table_and_json_list() -> None:
    _add("densenet-20260101-0000-aaaa", RunStatus.COMPLETE)
    _add("densenet-20260101-0000-bbbb", RunStatus.ERROR, "train failed with exit code 1")
    out = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "densenet-20260101-0000-bbbb" in out.stdout and "exit code 1" in out.stdout
    data = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert {d["run_id"] for d in data} == {"densenet-20260101-0000-aaaa", "densenet-20260101-0000-bbbb"}


def test_status_exit_codes_follow_the_run() -> None:
    _add("ok", RunStatus.COMPLETE)
    _add("bad", RunStatus.ERROR, "boom")
    _add("stopped", RunStatus.CANCELLED)
    assert runner.invoke(app, ["status", "ok"]).exit_code == 0
    assert runner.invoke(app, ["status", "bad"]).exit_code == 1
    assert runner.invoke(app, ["status", "stopped"]).exit_code == 1
    detail = json.loads(runner.invoke(app, ["status", "bad", "--json"]).stdout)
    assert {"run_id", "status", "backend", "model", "failure_reason"} <= set(detail)
    assert runner.invoke(app, ["status", "ok", "--watch", "--json"]).exit_code == 0


def test_unknown_run_is_bad_input() -> None:
    for args in (["status", "nope"], ["logs", "nope"], ["cancel", "nope"], ["fetch", "--run", "nope"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 2, args
        assert "no run 'nope' in the registry — list runs with `chexvision status`" in out.stderr


def test_bad_usage_exits_2(tmp_path: object) -> None:
    assert runner.invoke(app, ["dispatch", "train", "--model", "resnet", "--backend", "local"]).exit_code == 2
    out = runner.invoke(app, ["dispatch", "train", "--model", "densenet", "--dry-run"])
    assert out.exit_code == 2 and "--dry-run needs --out" in out.stderr
    out = runner.invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "moon"])
    assert out.exit_code == 2 and "unknown backend" in out.stderr
    out = runner.invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "local", "--data", "nowhere"])
    assert out.exit_code == 2 and "not a data source" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "synthetic:x"], "is not synthetic[:IMAGES[:SIZE]]"),
        (["--data", "synthetic:10:64:3"], "is not synthetic[:IMAGES[:SIZE]]"),
        (["--data", "synthetic:0"], "is not synthetic[:IMAGES[:SIZE]]"),
        (["--data", "kaggle:owner/"], "is not kaggle:OWNER/SLUG"),
        (["--split-scheme", "random"], "unknown split scheme 'random' — choose one of: official, chexnet, patient"),
        (["--time-budget", "0"], "is not a positive number of hours"),
        (["--set", "hub.token=hf_" + "x" * 34], "a --set value looks like a Hugging Face token"),
        (["--data", "kaggle:owner/slug"], "the local backend cannot read a Kaggle dataset — use --backend kaggle"),
        (["--gpu", "a100"], "the local backend uses this machine's GPUs"),
    ],
)
def test_bad_request_is_refused_before_anything_runs(args: list[str], message: str) -> None:
    out = runner.invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "local", *args])
    assert out.exit_code == 2 and message in out.stderr
    assert "hf_xxxx" not in out.output  # a secret is never echoed back
    assert json.loads(runner.invoke(app, ["status", "--json"]).stdout) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=abc", "config key 'data.batch_size'"),
        ("data.batch_sise=8", "unknown config key 'data.batch_sise'"),
        ("optim.lr", "is not key=value"),
    ],
)
def test_every_override_is_checked_against_the_schema_before_bundling(override: str, message: str) -> None:
    out = runner.invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "local", "--set", override])
    assert out.exit_code == 2 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not (home() / "kernels").exists() and runner.invoke(app, ["status", "--json"]).stdout.strip() == "[]"


def test_status_json_shows_the_chexvision_view() -> None:
    _add("densenet-20260101-0000-cccc", RunStatus.COMPLETE)
    with Registry.at(home()) as reg:
        reg.update("densenet-20260101-0000-cccc", summary={"best_val_auc": 0.875}, handle={"dir": "/x"})
    [data] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert data["model"] == "densenet" and data["best_val_auc"] == 0.875 and data["location"] == "/x"
    assert "0.8750" in runner.invoke(app, ["status"], env={"COLUMNS": "200"}).stdout


def test_data_sources() -> None:
    from chexvision.data.download import REPO_ID, REVISION
    from chexvision.remote import parse_data_source

    assert parse_data_source(None, "kaggle") == {"kind": "hf", "repo_id": REPO_ID, "revision": REVISION}
    assert parse_data_source("hf:me/xray", "kaggle")["revision"] == "main"  # never another repo's pinned sha
    assert parse_data_source("hf:me/xray@abc", "kaggle")["revision"] == "abc"
    assert parse_data_source("synthetic:400", "local") == {"kind": "synthetic", "images": 400, "size": 64, "seed": 0}


def test_fetch_refuses_a_running_run() -> None:
    _add("live", RunStatus.SUBMITTING)
    out = runner.invoke(app, ["fetch", "--run", "live", "--no-publish"])
    assert out.exit_code == 2 and "still submitting" in out.stderr


def test_names_come_from_the_library() -> None:
    """Dispatch validates against the model registry and the config's split schemes: no copies that could drift."""
    from chexvision import remote
    from chexvision.data.splits import SPLIT_SCHEMES
    from chexvision.errors import UnknownName
    from chexvision.models import list_models

    assert remote.SPLIT_SCHEMES is SPLIT_SCHEMES
    with pytest.raises(UnknownName) as err:
        remote.validate_request(remote.TrainRequest(model="vgg"))
    assert sorted(err.value.valid) == sorted(list_models())
