"""Drive a study: dispatch its runs within the backend's limits, continue runs stopped at their time budget, and
finish each completed run (fetch, evaluate, publish); when all are done, write and publish the report.

`advance` is one idempotent pass under the study's lock: it may be killed at any point and called again (by `study
run`, `study resume`, or the scheduled workflow) and converges: a run id is chosen and saved before its push, so a
killed push is found again in the registry by that id, never pushed twice; a finished run is never redone.
Everything goes through `chexvision.remote` (dispatch, follow, fetch, cancel); nothing here prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision import remote
from chexvision.errors import BadInputError
from chexvision.study.spec import StudySpec
from chexvision.study.state import LogicalRun, Phase, StudyState, locked, study_dir

__all__ = ["Queue", "advance", "cancel_study", "default_poll", "drive", "start_study", "train_request"]

log = logging.getLogger(__name__)
LOCAL_DEFAULT_CONCURRENCY = 1  # one training process at a time on this machine unless the study file says more


@dataclass(frozen=True)
class Queue:
    """What one pass saw: runs active on the backend, the limit, and why queued runs wait."""

    active: int
    limit: int
    waiting: str | None


def train_request(spec: StudySpec, run: LogicalRun, run_id: str | None = None) -> remote.TrainRequest:
    """The `dispatch train` request of one session of `run` (a continuation when `run.resume_from` is set)."""
    entry = next(m for m in spec.models if m.name == run.model)
    return remote.TrainRequest(
        model=run.model, backend=spec.backend.name, preset=entry.preset,
        overrides=(*entry.overrides, f"seed={run.seed}"), data=spec.data, gpu=spec.backend.gpu,
        time_budget=spec.backend.time_budget, resume_from=run.resume_from, split_scheme=spec.split_scheme,
        run_id=run_id,
    )  # fmt: skip


def start_study(spec: StudySpec) -> StudyState:
    """Create the study (or take the re-read file into an existing one); every model request is validated first."""
    from dispatch.runs import backend_capabilities

    backend_capabilities(spec.backend.name)  # an unknown backend raises listing the valid ones
    for entry in spec.models:
        remote.validate_request(train_request(spec, LogicalRun(entry.name, spec.seeds[0])))
    home = remote.home()
    with locked(home, spec.name):
        try:
            state = StudyState.load(home, spec.name)
            state.with_spec(spec)
        except BadInputError:
            state = StudyState.new(spec)
        state.cancelled = False
        for run in state.runs:  # a cancelled study started again: its cancelled runs start afresh
            if run.phase is Phase.CANCELLED:
                run.phase, run.resume_from, run.pending_id, run.error = Phase.QUEUED, None, None, None
        state.save(home)
    return state


def _limit(spec: StudySpec) -> int:
    from dispatch.runs import backend_capabilities

    caps = backend_capabilities(spec.backend.name)
    default = caps.max_active_runs or LOCAL_DEFAULT_CONCURRENCY
    wanted = spec.backend.max_concurrent or default
    return min(wanted, caps.max_active_runs) if caps.max_active_runs else wanted


def _active_on_backend(backend: str) -> int:
    """Runs of this backend still going, the study's and any other (Kaggle's 2 sessions are per account)."""
    runs = remote.list_runs(refresh=True, limit=None)
    return sum(1 for r in runs if r.backend == backend and not r.status.is_terminal() and str(r.status) != "submitting")


def _incomplete(record: Any) -> bool:
    """A complete session that stopped at its time budget (the kernel's `incomplete` status marker)."""
    reason = (record.job.get("outputs") or {}).get("incomplete_reason")
    return bool(reason) and record.failure_reason == reason


def _follow(state: StudyState, run: LogicalRun) -> None:
    """Move a RUNNING run on from what the registry says of its last session."""
    from dispatch.errors import DispatchError

    assert run.run_id is not None
    try:
        record = remote.get_run(run.run_id)
    except DispatchError as exc:  # backend unreachable: try again next pass
        run.waiting = f"backend: {exc}"
        return
    run.waiting = None
    if not record.status.is_terminal():
        return
    if record.status.is_failure():
        run.phase, run.error = Phase.FAILED, f"{record.run_id} {record.status}: {record.failure_reason or ''}".strip()
    elif _incomplete(record):
        if len(run.chain) >= state.spec.backend.max_sessions:
            run.phase, run.error = Phase.FAILED, f"still incomplete after {len(run.chain)} sessions (max_sessions)"
        else:
            run.phase, run.resume_from = Phase.QUEUED, record.run_id  # continued by the next dispatch
    else:
        run.phase = Phase.FINISHING


def _dispatch(state: StudyState, run: LogicalRun) -> str | None:
    """Push the next session of `run` (its id chosen and saved first); None when pushed, else why it waits."""
    from chexvision.rundir import new_run_id
    from dispatch.errors import BackendUnavailableError

    if not (run.phase is Phase.DISPATCHING and run.pending_id):  # else: a killed push, not registered: same id
        run.phase, run.pending_id = Phase.DISPATCHING, new_run_id(run.model)
        state.save(remote.home())
    try:
        remote.dispatch_train(train_request(state.spec, run, run.pending_id))
    except BackendUnavailableError as exc:  # capacity or quota (preflight), throttling: wait, push later
        run.phase, run.pending_id = Phase.QUEUED, None
        run.waiting = f"{exc.message}"
        return run.waiting
    _pushed(run)
    return None


def _pushed(run: LogicalRun) -> None:
    assert run.pending_id is not None
    run.chain.append(run.pending_id)
    run.phase, run.pending_id, run.waiting, run.resume_from = Phase.RUNNING, None, None, None


def advance(name: str, *, finish: bool = True) -> tuple[StudyState, Queue]:
    """One pass: follow running sessions, dispatch what the backend allows, finish completed runs (when `finish`:
    fetch, evaluate, publish, and the report once all are done). Safe to kill and call again."""
    home = remote.home()
    with locked(home, name):
        state = StudyState.load(home, name)
        if state.cancelled:
            return state, Queue(0, 0, "cancelled")
        for run in state.runs:
            if run.phase is Phase.RUNNING:
                _follow(state, run)
        state.save(home)
        queue = _fill_queue(state)
        state.save(home)
        if finish:
            from chexvision.study import finish as finishing

            for run in state.runs:
                if run.phase is Phase.FINISHING:
                    finishing.finish_run(state, run)
                    state.save(home)
            ended = all(r.phase.is_terminal() for r in state.runs)
            if ended and state.report is None and any(r.phase is Phase.DONE for r in state.runs):
                finishing.finish_study(state)
                state.save(home)
        return state, queue


def _recover(run: LogicalRun) -> None:
    """A run a killed pass left DISPATCHING: pushed if the registry knows its id (then it runs), else not."""
    from dispatch.errors import UnknownRunError

    assert run.pending_id is not None
    try:
        remote.get_run(run.pending_id, refresh=False)
    except UnknownRunError:
        return  # never registered: `_dispatch` pushes it under the same id
    _pushed(run)


def _fill_queue(state: StudyState) -> Queue:
    for run in state.runs:
        if run.phase is Phase.DISPATCHING and run.pending_id:
            _recover(run)
    from dispatch.errors import BackendUnavailableError

    limit = _limit(state.spec)
    try:
        active = _active_on_backend(state.spec.backend.name)
    except BackendUnavailableError as exc:  # the backend cannot say what runs: dispatch nothing this pass
        return Queue(0, limit, f"backend: {exc.message}")
    waiting = None
    for run in state.runs:
        if run.phase not in (Phase.QUEUED, Phase.DISPATCHING):
            continue
        if active >= limit:
            waiting = f"capacity: {active} of {limit} {state.spec.backend.name} runs active"
            run.waiting = waiting
            continue
        reason = _dispatch(state, run)
        state.save(remote.home())
        if reason is not None:
            waiting = reason
            for other in state.runs:  # the backend refused: nothing else goes out on this pass either
                if other.phase is Phase.QUEUED:
                    other.waiting = reason
            break
        active += 1
    return Queue(active, limit, waiting)


def default_poll(spec: StudySpec) -> float:
    """Seconds between passes: a local run changes every few seconds; a remote API is asked once a minute."""
    from dispatch.runs import backend_capabilities

    return 60.0 if backend_capabilities(spec.backend.name).remote else 2.0


def drive(
    name: str, *, poll: float | None = None, on_pass: Callable[[StudyState, Queue], None] | None = None
) -> StudyState:
    """`advance` until every run is done and the report is written (or the study is cancelled)."""
    while True:
        state, queue = advance(name)
        if on_pass is not None:
            on_pass(state, queue)
        if state.cancelled or state.state in ("complete", "failed"):
            return state
        if state.state == "reporting":  # all runs ended, report not written (no run succeeded): stop here
            return state
        time.sleep(poll or default_poll(state.spec))


def cancel_study(name: str) -> tuple[StudyState, list[str]]:
    """Stop the queue and cancel the sessions that run; returns the state and the run ids cancelled."""
    home = remote.home()
    cancelled: list[str] = []
    with locked(home, name):
        state = StudyState.load(home, name)
        state.cancelled = True
        for run in state.runs:
            if run.phase is Phase.RUNNING and run.run_id:
                record = remote.get_run(run.run_id)
                if not record.status.is_terminal():
                    remote.cancel_run(run.run_id)
                    cancelled.append(run.run_id)
            if not run.phase.is_terminal():
                run.phase = Phase.CANCELLED
        state.save(home)
    return state, cancelled


def progress_of(run: LogicalRun) -> remote.RunProgress | None:
    """The latest epoch line of the run's current session (None before its first epoch)."""
    if run.phase is not Phase.RUNNING or not run.run_id:
        return None
    try:
        return remote.run_progress(remote.run_logs(run.run_id))
    except Exception:  # a log that cannot be read now is only a missing progress line
        return None


def iter_runs(state: StudyState) -> Iterator[LogicalRun]:
    yield from state.runs


def folder(name: str) -> Path:
    return study_dir(remote.home(), name)
