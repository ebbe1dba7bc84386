"""The study noun: `chexvision study run FILE`, `resume NAME`, `status [NAME]`, `cancel NAME` — the CLI skin over
`chexvision.study` (the study file, the queue, continuation, evaluation, report, publishing).

Nothing heavy at import, and `study run` without --wait and `study status` never load torch: evaluation happens
only when the driver finishes a completed run (`--wait`, `study resume`). Human lines go to stderr (also the
progress while waiting: epoch, loss, AUC, ETA per run); `--json` goes to stdout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from chexvision.study.driver import Queue
    from chexvision.study.state import StudyState

study_app = typer.Typer(
    help="Studies: models x seeds on a backend, continued, evaluated, compared and published as one command.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout.")]
NameArg = Annotated[str, typer.Argument(help="The study's name (its file's `name`).", show_default=False)]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Stay and drive the study to the end (fetch, evaluate, publish, report).")
]
PollOpt = Annotated[
    float | None,
    typer.Option("--poll", min=0.2, help="Seconds between passes while waiting (default: 2 local, 60 remote)."),
]


def driver_poll(state: StudyState) -> float:
    from chexvision.study.driver import default_poll

    return default_poll(state.spec)


def _err(line: str) -> None:
    typer.echo(line, err=True)


def status_json(state: StudyState) -> dict[str, Any]:
    """The documented shape: {"name", "state", "runs": [{model, seed, run_id, status, chain, test_macro_auc}],
    "report"}."""
    return {
        "name": state.name,
        "state": state.state,
        "runs": [
            {
                "model": r.model,
                "seed": r.seed,
                "run_id": r.run_id,
                "status": str(r.phase),
                "chain": list(r.chain),
                "test_macro_auc": r.test_macro_auc,
            }
            for r in state.runs
        ],
        "report": (state.report or {}).get("markdown"),
    }


def _run_line(run: Any, progress: Any) -> str:
    from chexvision.study.state import Phase

    head = f"{run.key:<14} {run.phase!s:<11} {run.run_id or '-':<32}"
    if progress is not None:
        auc = "n/a" if progress.val_macro_auc is None else f"{progress.val_macro_auc:.3f}"
        eta = int(progress.eta_seconds)
        return (
            f"{head} epoch {progress.epoch}/{progress.total_epochs}  loss {progress.train_loss:.4f}  "
            f"val AUC {auc}  ETA {eta // 60}m{eta % 60:02d}s"
        )
    if run.phase is Phase.DONE:
        auc = "n/a" if run.test_macro_auc is None else f"{run.test_macro_auc:.4f}"
        return f"{head} test macro AUC {auc}" + (f"  published {run.published['repo_id']}" if run.published else "")
    if run.error:
        return f"{head} {run.error}"
    if run.waiting:
        return f"{head} waiting: {run.waiting}"
    return head


class _Printer:
    """Prints a run's line whenever it changes (phase, epoch, waiting reason); the queue line when it changes."""

    def __init__(self) -> None:
        self.shown: dict[str, str] = {}
        self.queue: str | None = None

    def __call__(self, state: StudyState, queue: Queue | None = None) -> None:
        from chexvision.study.driver import progress_of

        for run in state.runs:
            line = _run_line(run, progress_of(run))
            if self.shown.get(run.key) != line:
                _err(line)
                self.shown[run.key] = line
        if queue is not None:
            text = f"queue: {queue.active} of {queue.limit} active" + (f"; {queue.waiting}" if queue.waiting else "")
            if text != self.queue and queue.waiting:
                _err(text)
            self.queue = text


def _left_line(state: StudyState) -> str:
    """`study smoke: running — 1 of 2 runs done, 1 running, 0 queued, 0 failed`: what is left."""
    from collections import Counter

    counts = Counter(str(r.phase) for r in state.runs)
    going = counts["running"] + counts["dispatching"] + counts["finishing"]
    return (
        f"study {state.name}: {state.state} — {counts['done']} of {len(state.runs)} runs done, {going} running, "
        f"{counts['queued']} queued, {counts['failed']} failed"
    )


def _finish_lines(state: StudyState) -> None:
    _err(_left_line(state))
    if state.report:
        _err(f"report: {state.report['markdown']} (HTML: {state.report['html']}, summary: {state.report['summary']})")
    if state.published_report:
        _err(f"report published: {state.published_report}")
    if not state.runs or all(r.phase.is_terminal() for r in state.runs):
        return
    _err(f"next: chexvision study status {state.name} --watch   (or `chexvision study resume {state.name} --wait`)")


def _exit_code(state: StudyState) -> int:
    from chexvision.study.state import Phase

    return 1 if any(r.phase is Phase.FAILED for r in state.runs) else 0


def _drive_or_pass(name: str, wait: bool, poll: float | None, finish: bool, as_json: bool) -> StudyState:
    from chexvision.study import driver

    printer = _Printer()
    if wait:
        state = driver.drive(name, poll=poll, on_pass=None if as_json else printer)
    else:
        state, queue = driver.advance(name, finish=finish)
        if not as_json:
            printer(state, queue)
    return state


def run(
    file: Annotated[Path, typer.Argument(help="The study file, e.g. studies/smoke.toml.", show_default=False)],
    wait: WaitOpt = False,
    poll: PollOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create (or continue) the study of FILE and dispatch what the backend allows now; --wait drives it to the end.

    Re-running it continues where it stopped: nothing is dispatched twice, nothing finished is redone."""
    from chexvision.study import driver
    from chexvision.study.spec import load_study

    spec = load_study(file)
    state = driver.start_study(spec)
    _err(f"study {spec.name}: {len(state.runs)} runs ({len(spec.models)} models x {len(spec.seeds)} seeds) "
         f"on {spec.backend.name}")  # fmt: skip
    state = _drive_or_pass(spec.name, wait, poll, finish=False, as_json=as_json)
    _output(state, as_json)


def resume(name: NameArg, wait: WaitOpt = False, poll: PollOpt = None, as_json: JsonOpt = False) -> None:
    """One pass over the study NAME: follow, continue, fetch + evaluate + publish, dispatch, report; --wait: to the end.

    What the scheduled workflow runs every 3 hours."""
    state = _drive_or_pass(name, wait, poll, finish=True, as_json=as_json)
    _output(state, as_json)


def _output(state: StudyState, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(status_json(state)))
    else:
        _finish_lines(state)
    raise typer.Exit(_exit_code(state))


def status(
    name: Annotated[str | None, typer.Argument(help="One study (default: all).", show_default=False)] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until the study's sessions end: epoch, loss, AUC, ETA per run.")
    ] = False,
    poll: PollOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Each run's state, chain and test AUC; the queue and why it waits; the report once written."""
    from chexvision import remote
    from chexvision.study.state import StudyState, list_studies

    home = remote.home()
    if name is None:
        states = [StudyState.load(home, n) for n in list_studies(home)]
        if as_json:
            typer.echo(json.dumps([status_json(s) for s in states]))
        elif not states:
            _err("no studies yet — start one with `chexvision study run studies/smoke.toml --wait`")
        for state in states if not as_json else []:
            _err(f"{state.name:<20} {state.state:<10} {sum(r.phase.is_terminal() for r in state.runs)}"
                 f"/{len(state.runs)} runs ended")  # fmt: skip
        return
    state = StudyState.load(home, name)
    if watch:
        state = _watch(name, poll, quiet=as_json)
    elif not as_json:
        _Printer()(state)
        _finish_lines(state)
    if as_json:
        typer.echo(json.dumps(status_json(state)))


def _sessions_going(state: StudyState) -> bool:
    from chexvision import remote
    from chexvision.study.state import Phase

    going = False
    for run in state.runs:
        if run.phase is Phase.RUNNING and run.run_id:
            going |= not remote.get_run(run.run_id).status.is_terminal()
    return going


def _watch(name: str, poll: float | None, *, quiet: bool) -> StudyState:
    """Print changes until every session of the study ended (another process drives it: --wait, resume, CI)."""
    from chexvision import remote
    from chexvision.study.state import StudyState

    printer = _Printer()
    while True:
        state = StudyState.load(remote.home(), name)
        if not quiet:
            printer(state)
        if state.cancelled or state.state in ("complete", "failed") or not _sessions_going(state):
            if not quiet:
                _finish_lines(state)
            return state
        time.sleep(poll or driver_poll(state))


def cancel(name: NameArg, as_json: JsonOpt = False) -> None:
    """Cancel the study's running sessions and stop its queue (`study run` again to start it anew)."""
    from chexvision.study import driver

    state, cancelled = driver.cancel_study(name)
    if as_json:
        typer.echo(json.dumps({**status_json(state), "cancelled_runs": cancelled}))
        return
    _err(f"study {name} cancelled; runs stopped: {', '.join(cancelled) or 'none were running'}")


def register(app: typer.Typer) -> None:
    """Add `chexvision study run|resume|status|cancel` to the root `app`."""
    study_app.command("run")(run)
    study_app.command("resume")(resume)
    study_app.command("status")(status)
    study_app.command("cancel")(cancel)
    app.add_typer(study_app, name="study")
