"""Refreshing runs from their backend (issue 10, defect 11): two refreshes at once never lose the newer status.

The backend is a scripted stand-in at the `Backend.poll` boundary; the registry and `dispatch.tracking` are real.
Interleaving is made exact: the first refresh's poll runs the whole second refresh before it answers, as a slow
Kaggle call does while `status` runs in another terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dispatch import tracking
from dispatch.backends.base import RemoteState
from dispatch.registry import Registry, RunRecord
from dispatch.status import RunStatus

RUN = "densenet-20260101-0000-abcd"


class ScriptedBackend:
    """Answers each poll with the next state; `during_poll` runs inside the first poll (the other refresh)."""

    def __init__(self, states: list[RemoteState], during_poll: Callable[[], Any] | None = None) -> None:
        self.states = states
        self.during_poll = during_poll
        self.live: Path | None = None

    def poll(self, record: RunRecord) -> RemoteState:
        if self.during_poll is not None:
            other, self.during_poll = self.during_poll, None
            other()
        return self.states.pop(0)

    def live_output(self, record: RunRecord) -> Path | None:
        return self.live


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with Registry.at(tmp_path) as reg:
        reg.add(RunRecord(run_id=RUN, backend="scripted", label="densenet", status=RunStatus.RUNNING))
    return tmp_path


def _use(monkeypatch: pytest.MonkeyPatch, backend: ScriptedBackend) -> None:
    monkeypatch.setattr(tracking, "get_backend", lambda name, home: backend)


def _stored(home: Path) -> RunRecord:
    with Registry.at(home) as reg:
        return reg.get(RUN)


def test_a_stale_refresh_does_not_turn_complete_into_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Refresh A read `running`, then asked the backend; meanwhile refresh B saw the run complete and wrote it.
    # A's answer is older (the process it looked for had just exited, before the marker was read): error.
    def refresh_b() -> None:
        assert tracking.get_run(home, RUN).status == RunStatus.COMPLETE

    # B (inside A's poll) gets the first answer, COMPLETE; A then gets ERROR.
    states = [RemoteState(RunStatus.COMPLETE), RemoteState(RunStatus.ERROR, "process vanished")]
    backend = ScriptedBackend(states, during_poll=refresh_b)
    _use(monkeypatch, backend)
    seen_by_a = tracking.get_run(home, RUN)
    assert seen_by_a.status == RunStatus.COMPLETE and seen_by_a.failure_reason is None
    stored = _stored(home)
    assert stored.status == RunStatus.COMPLETE and stored.failure_reason is None


def test_a_stale_refresh_does_not_overwrite_a_newer_summary(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summaries = iter([{"best_val_auc": 0.91}, {"best_val_auc": 0.80}])  # B reads epoch 9, A had read epoch 5

    def refresh_b() -> None:
        tracking.get_run(home, RUN, summarize=lambda folder: next(summaries))

    backend = ScriptedBackend([RemoteState(RunStatus.RUNNING), RemoteState(RunStatus.RUNNING)], refresh_b)
    backend.live = home
    _use(monkeypatch, backend)
    tracking.get_run(home, RUN, summarize=lambda folder: next(summaries))
    assert _stored(home).summary == {"best_val_auc": 0.91}


def test_a_later_refresh_still_records_progress(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The condition only stops stale writes: refreshes one after the other move the run forward."""
    backend = ScriptedBackend([RemoteState(RunStatus.RUNNING), RemoteState(RunStatus.COMPLETE)])
    backend.live = home
    _use(monkeypatch, backend)
    first = tracking.get_run(home, RUN, summarize=lambda folder: {"best_val_auc": 0.7})
    assert first.summary == {"best_val_auc": 0.7}
    second = tracking.get_run(home, RUN, summarize=lambda folder: {"best_val_auc": 0.8})
    assert second.status == RunStatus.COMPLETE and second.finished_at and second.summary == {"best_val_auc": 0.8}


def test_cancel_after_completion_keeps_complete(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cancel` raced by a refresh that saw the run complete: the run stays complete, never `cancelled`."""

    class Racing(ScriptedBackend):
        def cancel(self, record: RunRecord) -> RemoteState:
            with Registry.at(home) as reg:
                reg.update(RUN, status=RunStatus.COMPLETE)  # the other process's refresh, meanwhile
            return RemoteState(RunStatus.CANCELLED, "cancelled by the user")

    _use(monkeypatch, Racing([RemoteState(RunStatus.RUNNING)]))
    assert tracking.cancel_run(home, RUN).status == RunStatus.COMPLETE
    assert _stored(home).status == RunStatus.COMPLETE


def test_watch_runs_polls_until_every_run_has_ended(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`status --watch` with no run id: one list per poll, with the same backoff as one run, ending with the last."""
    with Registry.at(home) as reg:
        reg.add(RunRecord(run_id="old", backend="scripted", label="seresnet", status=RunStatus.COMPLETE))
    states = [RemoteState(RunStatus.RUNNING), RemoteState(RunStatus.RUNNING), RemoteState(RunStatus.COMPLETE)]
    _use(monkeypatch, ScriptedBackend(states))  # asked about the going run only
    sleeps: list[float] = []
    polls = list(tracking.watch_runs(home, interval=2.0, max_interval=3.0, sleep=sleeps.append))
    assert [sorted(str(r.status) for r in records) for records in polls] == [
        ["complete", "running"],
        ["complete", "running"],
        ["complete", "complete"],
    ]
    assert sleeps == [2.0, 3.0] and not states
    assert [r.run_id for r in tracking.wait_for_runs(home, sleep=sleeps.append)] == [r.run_id for r in polls[-1]]
