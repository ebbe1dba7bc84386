"""A study on Kaggle, against the fake client at the HTTP boundary (tests/fakes/kaggle.py); everything above it is
real: the study driver, remote, dispatch, the Kaggle backend, fetch, evaluation and publishing.

Covers: the 2-session limit holding a third run in the queue, a quota refusal, a run that stops at its time
budget and is continued (one logical run, its chain recorded) then fetched, evaluated and published with its test
results, and a killed `study run` resumed without pushing anything twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.kaggle import FakeKaggle
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus
from typer.testing import CliRunner

from chexvision import remote
from chexvision.cli.main import app
from chexvision.study import driver
from chexvision.study.spec import parse_study
from chexvision.study.state import Phase, StudyState


def _spec(tmp_path: Path, seeds: list[int], **evaluation: Any) -> Any:
    doc = {
        "name": "k", "seeds": seeds,
        "models": [{"name": "densenet", "preset": "smoke"}],
        "data": {"source": "hf", "split_scheme": "patient"},
        "backend": {"name": "kaggle", "time_budget": 1.0, "max_sessions": 3},
        "evaluation": {"bootstrap": 20, "subgroups": "none", "device": "cpu", **evaluation},
        "publish": {"target": "folder", "hub_dir": str(tmp_path / "hub")},
    }  # fmt: skip
    return parse_study(doc, "k.toml")


def _pushes(fake: FakeKaggle) -> list[str]:
    return [r.slug for r in fake.requests_named("save_kernel")]


def test_two_sessions_at_once_hold_the_third_run_in_the_queue(fake_kaggle: FakeKaggle, tmp_path: Path) -> None:
    driver.start_study(_spec(tmp_path, [0, 1, 2]))
    state, queue = driver.advance("k", finish=False)
    assert len(_pushes(fake_kaggle)) == 2 and (queue.active, queue.limit) == (2, 2)
    phases = [r.phase for r in state.runs]
    assert phases == [Phase.RUNNING, Phase.RUNNING, Phase.QUEUED]
    assert state.runs[2].waiting == "capacity: 2 of 2 kaggle runs active"
    driver.advance("k", finish=False)  # the two still run: nothing more goes out, nothing goes out twice
    assert len(_pushes(fake_kaggle)) == 2
    result = CliRunner().invoke(app, ["study", "status", "k", "--json"])
    doc = json.loads(result.stdout)
    assert [r["status"] for r in doc["runs"]] == ["running", "running", "queued"] and doc["state"] == "running"


def test_a_quota_refusal_keeps_the_runs_queued(fake_kaggle: FakeKaggle, tmp_path: Path) -> None:
    fake_kaggle.quota_left = timedelta(0)
    driver.start_study(_spec(tmp_path, [0, 1]))
    state, queue = driver.advance("k", finish=False)
    assert _pushes(fake_kaggle) == [] and not remote.list_runs(refresh=False)
    assert all(r.phase is Phase.QUEUED and "quota used up" in (r.waiting or "") for r in state.runs)
    assert queue.waiting and "quota" in queue.waiting
    fake_kaggle.quota_left = timedelta(hours=20)  # the weekly reset: the next pass dispatches
    state, _ = driver.advance("k", finish=False)
    assert len(_pushes(fake_kaggle)) == 2 and all(r.phase is Phase.RUNNING for r in state.runs)


def _serve_run_dir(fake: FakeKaggle, run_dir: Path, marker: dict[str, Any]) -> None:
    """The fake's outputs become a real run directory (as the kernel leaves it) plus the status marker."""
    names = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file())
    fake.pages = [[*names, "chexvision-status.json"]]
    fake.marker = marker

    def download(url: str, dest: Path, offset: int = 0) -> None:
        name = url.removeprefix("https://fake/")
        body = json.dumps(marker).encode() if name == "chexvision-status.json" else (run_dir / name).read_bytes()
        with open(dest, "ab" if offset else "wb") as out:
            out.write(body[offset:])

    fake.download = download  # type: ignore[method-assign]


def test_a_run_stopped_at_its_budget_is_continued_then_evaluated_and_published(
    fake_kaggle: FakeKaggle, tmp_path: Path, make_run_dir: Callable[..., Path]
) -> None:
    from chexvision.data.synthetic import write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, 60, 64, 0)
    driver.start_study(_spec(tmp_path, [0], data=str(data)))
    state, _ = driver.advance("k")
    first = state.runs[0].run_id
    assert first and state.runs[0].phase is Phase.RUNNING

    record = remote.get_run(first, refresh=False)
    fake_kaggle.status = KernelWorkerStatus.COMPLETE  # the session stopped at its time budget
    fake_kaggle.marker = {"status": "complete", "reason": record.job["outputs"]["incomplete_reason"]}
    fake_kaggle.pages = [["chexvision-status.json"]]
    state, _ = driver.advance("k")
    run = state.runs[0]
    assert run.phase is Phase.RUNNING and len(run.chain) == 2 and run.chain[0] == first
    second = run.chain[1]
    assert remote.get_run(second, refresh=False).parent_run_id == first  # a continuation: --resume-from first
    assert "--resume" in remote.get_run(second, refresh=False).command
    assert len(_pushes(fake_kaggle)) == 2

    served = make_run_dir(tmp_path / "served", run_id=second, split_scheme="patient")
    _serve_run_dir(fake_kaggle, served, {"status": "complete", "reason": None})
    state, _ = driver.advance("k")
    run = state.runs[0]
    assert run.phase is Phase.DONE, run.error
    assert run.chain == [first, second] and run.run_id == second and run.test_macro_auc is not None
    card = (tmp_path / "hub" / "chexvision-k-densenet" / "README.md").read_text()
    (test_row,) = [line for line in card.splitlines() if line.startswith("| test |")]
    assert f"{run.test_macro_auc:.4f}" in test_row and "n/a" not in test_row  # the card carries test results
    assert state.state == "complete" and state.report
    report = Path(state.report["markdown"]).read_text()
    assert "macro AUROC, seed ensemble" in report and second in report
    summary = json.loads(Path(state.report["summary"]).read_text())
    assert summary["models"][0]["chains"] == [[first, second]]
    assert (tmp_path / "hub" / "chexvision-k-report" / "README.md").is_file()
    driver.advance("k")  # done is done: nothing pushed, fetched or published again
    assert len(_pushes(fake_kaggle)) == 2


class _Killed(BaseException):
    """What SIGKILL looks like to the code after it: nothing runs past this point."""


@pytest.mark.parametrize("when", ["before the push", "after the push"])
def test_a_killed_study_run_resumes_without_duplicates(
    fake_kaggle: FakeKaggle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    real = remote.dispatch_train

    def killed(req: remote.TrainRequest, **kwargs: Any) -> remote.DispatchResult:
        if when == "after the push":
            real(req, **kwargs)
        raise _Killed

    driver.start_study(_spec(tmp_path, [0, 1]))
    monkeypatch.setattr(remote, "dispatch_train", killed)
    with pytest.raises(_Killed):
        driver.advance("k", finish=False)
    monkeypatch.setattr(remote, "dispatch_train", real)
    saved = StudyState.load(remote.home(), "k").runs[0]
    assert saved.phase is Phase.DISPATCHING and saved.pending_id
    assert len(_pushes(fake_kaggle)) == (1 if when == "after the push" else 0)

    result = CliRunner().invoke(app, ["study", "resume", "k", "--json"])  # or `study run` again
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [r["status"] for r in runs] == ["running", "running"]
    assert runs[0]["run_id"] == saved.pending_id  # the id chosen before the kill, pushed once
    assert len(_pushes(fake_kaggle)) == 2 and len(remote.list_runs(refresh=False)) == 2


def test_cancel_stops_the_sessions_and_the_queue(fake_kaggle: FakeKaggle, tmp_path: Path) -> None:
    driver.start_study(_spec(tmp_path, [0, 1, 2]))
    driver.advance("k", finish=False)
    result = CliRunner().invoke(app, ["study", "cancel", "k", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["cancelled_runs"]) == 2 and len(fake_kaggle.requests_named("delete_kernel")) == 2
    assert doc["state"] == "cancelled" and all(r["status"] == "cancelled" for r in doc["runs"])
    driver.advance("k")
    assert len(_pushes(fake_kaggle)) == 2  # a cancelled study dispatches nothing more


def test_status_watch_shows_the_queue_and_ends_when_the_sessions_end(fake_kaggle: FakeKaggle, tmp_path: Path) -> None:
    driver.start_study(_spec(tmp_path, [0, 1, 2]))
    driver.advance("k", finish=False)
    fake_kaggle.status = KernelWorkerStatus.ERROR  # both sessions fail: nothing is left running
    fake_kaggle.failure_message = "out of memory"
    result = CliRunner().invoke(app, ["study", "status", "k", "--watch", "--poll", "0.2"])
    assert result.exit_code == 0, result.output
    assert "waiting: capacity: 2 of 2 kaggle runs active" in result.stderr
    assert "0 of 3 runs done, 2 running, 1 queued" in result.stderr  # watch only watches: `resume` drives
    state, _ = driver.advance("k", finish=False)
    assert [r.phase for r in state.runs] == [Phase.FAILED, Phase.FAILED, Phase.RUNNING]
    assert "out of memory" in (state.runs[0].error or "") and len(_pushes(fake_kaggle)) == 3
