"""CLI exit codes and output shapes of dispatch/status/logs/cancel/fetch."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from chexvision.cli.main import app
from dispatch.registry import Registry, RunRecord
from dispatch.status import RunStatus

runner = CliRunner()


def _add(run_id: str, status: RunStatus, reason: str | None = None) -> None:
    with Registry.open() as reg:
        reg.add(RunRecord(run_id=run_id, backend="local", model="densenet", status=status, failure_reason=reason))


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


def test_fetch_refuses_a_running_run() -> None:
    _add("live", RunStatus.SUBMITTING)
    out = runner.invoke(app, ["fetch", "--run", "live", "--no-publish"])
    assert out.exit_code == 2 and "still submitting" in out.stderr
