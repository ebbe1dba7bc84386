"""The runs noun: `chexvision dispatch train`, `status`, `logs`, `cancel`, `fetch` — the CLI skin over
`chexvision.remote` (which builds the job and asks `dispatch`).

Nothing heavy at import (`--help` and `status` must answer fast): remote, dispatch, jinja2 and rich load inside
the commands. Human-readable lines go to stderr; the run id (or `--json`) goes to stdout for scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chexvision.cli import _runs_view as view

if TYPE_CHECKING:
    from dispatch.registry import RunRecord

JsonOpt = Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout.")]
RunIdArg = Annotated[
    str | None, typer.Argument(help="Run id, e.g. densenet-20261126-0912-3fa1 (or --run ID).", show_default=False)
]
RunOpt = Annotated[str | None, typer.Option("--run", help="The run id (the same as the argument).")]


def _one_run_id(argument: str | None, option: str | None, *, required: bool = True) -> str | None:
    """The run id given as the argument or as --run (both: they must agree)."""
    from chexvision.errors import BadInputError

    if argument and option and argument != option:
        raise BadInputError(f"two run ids: {argument!r} and --run {option!r}", "give the run id once")
    run_id = argument or option
    if run_id is None and required:
        raise BadInputError("no run id", "give it as the argument or as --run ID; list runs with `chexvision status`")
    return run_id


def _status_exit(r: RunRecord) -> int:
    return 1 if r.status.is_failure() else 0


def dispatch_train(
    model: Annotated[str, typer.Option("--model", help="densenet or seresnet.")],
    backend: Annotated[
        str | None,
        typer.Option("--backend", help="kaggle, local or skypilot (default: kaggle when credentials exist)."),
    ] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Preset name, e.g. smoke, kaggle-t4, full.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value (repeat).")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", help="hf[:REPO@REV] | synthetic[:N[:SIZE]] | kaggle:OWNER/SLUG | a folder (local backend)."
        ),
    ] = None,
    gpu: Annotated[
        str | None,
        typer.Option("--gpu", help="Accelerator: Kaggle t4x2 (default) or l4; SkyPilot NAME:COUNT, e.g. H100:8."),
    ] = None,
    nodes: Annotated[int, typer.Option("--nodes", help="Machines for multi-node DDP (SkyPilot).")] = 1,
    infra: Annotated[
        str | None, typer.Option("--infra", help="SkyPilot: aws | gcp | k8s | slurm/NAME | aws/REGION (default any).")
    ] = None,
    spot: Annotated[
        bool, typer.Option("--spot", help="SkyPilot: spot machines; a preempted run resumes by itself.")
    ] = False,
    output: Annotated[
        str | None,
        typer.Option("--output", help="SkyPilot: storage for run directories, e.g. s3://BUCKET/chexvision."),
    ] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", help="Stop training after H hours.")] = None,
    resume_from: Annotated[str | None, typer.Option("--resume-from", help="Continue this run's checkpoint.")] = None,
    split_scheme: Annotated[
        str | None, typer.Option("--split-scheme", help="official, chexnet or patient (default: the data's).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run ends; exit 1 if it failed.")] = False,
    as_json: JsonOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render the kernel folder only; push nothing.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Where --dry-run writes the kernel folder.")] = None,
) -> None:
    """Bundle the sources, render the kernel and start a training run; prints the run id."""
    from chexvision import remote
    from chexvision.errors import BadInputError

    if dry_run and out is None:
        raise BadInputError("--dry-run needs --out DIR", "e.g. --dry-run --out ./kernel")
    request = remote.TrainRequest(
        model=model,
        backend=backend,
        preset=preset,
        overrides=tuple(overrides or ()),
        data=data,
        gpu=gpu,
        time_budget=time_budget,
        resume_from=resume_from,
        split_scheme=split_scheme,
        nodes=nodes,
        infra=infra,
        spot=spot,
        output=output,
    )
    result = remote.dispatch_train(request, dry_run_out=out if dry_run else None)
    err = view.stderr()
    if result.notice:
        err.print(f"note: {result.notice}")
    title = result.backend_title
    limit = f"{title} limit {result.source_limit:,}" if result.source_limit else f"no {title} size limit"
    err.print(
        f"bundle {result.bundle_size:,} bytes ({result.bundle_files} files, sha256 {result.bundle_sha256[:12]}); "
        f"kernel script {result.script_size:,} bytes ({limit})"
    )
    if result.dry_run_dir is not None:
        err.print(
            f"dry run: kernel folder written to {result.dry_run_dir}; nothing pushed, and the run id "
            f"{result.run_id} is not registered (`status` will not know it)"
        )
    else:
        err.print(f"run {result.run_id} {result.status} on {result.backend} ({result.handle})")
        err.print(f"next: chexvision status {result.run_id} --watch")
    final = None
    if wait and result.dry_run_dir is None:
        for record in remote.watch_run(result.run_id):
            final = record
    if as_json:
        payload = result.to_json()
        if final is not None:
            payload.update(status=str(final.status), failure_reason=final.failure_reason)
        typer.echo(json.dumps(payload))
    else:
        typer.echo(result.run_id)
    if final is not None and final.status.is_failure():
        raise typer.Exit(1)


def status(
    run_id: Annotated[
        str | None, typer.Argument(help="One run's detail (default: a table of runs).", show_default=False)
    ] = None,
    run: RunOpt = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="Refresh until the run(s) end; one run: its epoch, loss, val AUC and ETA."),
    ] = False,
    as_json: JsonOpt = False,
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Move an unreadable run registry (runs.db) aside and start a new one."),
    ] = False,
) -> None:
    """Runs and their status. Exit code: 0 complete or running, 1 error or cancelled, 3 backend unreachable."""
    from chexvision import remote

    if repair:
        _repair_registry(as_json)
        return
    run_id = _one_run_id(run_id, run, required=False)
    if run_id is None:
        records = _watch_all(quiet=as_json) if watch else remote.list_runs()
        if as_json:
            typer.echo(json.dumps([view.record_json(r) for r in records]))
        elif not records:
            view.stderr().print("no runs yet — start one with `chexvision dispatch train --model densenet`")
        else:
            view.print_table(records)
        return
    record = _watch(run_id, quiet=as_json) if watch else remote.get_run(run_id)
    if as_json:
        typer.echo(json.dumps(view.record_json(record)))
    else:
        view.print_detail(record, remote.run_logs(run_id))
    raise typer.Exit(_status_exit(record))


def _watch(run_id: str, *, quiet: bool) -> RunRecord:
    """Poll the run; print a line whenever its status or its latest epoch changes (stderr, also without a TTY)."""
    from chexvision import remote

    err = view.stderr()
    last, shown = None, None
    for record in remote.watch_run(run_id, max_interval=30.0):  # each poll also reads the log
        progress = remote.run_progress(remote.run_logs(run_id)) if str(record.status) != "submitting" else None
        line = view.progress_line(record, progress)
        key = (record.status, progress.epoch if progress else None)
        if not quiet and key != shown:
            err.print(line, markup=False, soft_wrap=True)
            shown = key
        last = record
    assert last is not None
    return last


def _watch_all(*, quiet: bool) -> list[RunRecord]:
    """Poll every run until none is still going; print a line whenever a going run's status or epoch changes."""
    from chexvision import remote

    err = view.stderr()
    records: list[RunRecord] = []
    shown: dict[str, tuple[str, int | None]] = {}
    for records in remote.watch_runs(max_interval=30.0):
        for record in records:
            before = shown.get(record.run_id)
            if record.status.is_terminal() and (before is None or before[0] == str(record.status)):
                shown.setdefault(record.run_id, (str(record.status), None))  # ended already: the table says it
                continue
            going = str(record.status) != "submitting"
            progress = remote.run_progress(remote.run_logs(record.run_id)) if going else None
            key = (str(record.status), progress.epoch if progress else None)
            if not quiet and shown.get(record.run_id) != key:
                err.print(view.progress_line(record, progress), markup=False, soft_wrap=True)
            shown[record.run_id] = key
    return records


def _repair_registry(as_json: bool) -> None:
    from chexvision import remote

    path, moved = remote.repair_registry()
    if as_json:
        typer.echo(json.dumps({"registry": str(path), "moved_to": str(moved) if moved else None}))
    elif moved is None:
        view.stderr().print(f"the run registry {path} is readable (or absent); nothing to repair")
    else:
        view.stderr().print(f"moved the unreadable run registry to {moved}; a new empty registry starts at {path}")


def logs(
    run_id: RunIdArg = None,
    run: RunOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print JSON: {"run_id", "status", "log", "progress"} (not with --follow).')
    ] = False,
) -> None:
    """Print a run's log."""
    from chexvision import remote
    from chexvision.errors import BadInputError

    run_id = _one_run_id(run_id, run)
    assert run_id is not None
    if as_json:
        if follow:
            raise BadInputError("--json and --follow were both given", "--json prints the log so far, once")
        record, text = remote.get_run(run_id), remote.run_logs(run_id)
        progress = remote.run_progress(text)
        payload = {"run_id": run_id, "status": str(record.status), "log": text}
        typer.echo(json.dumps({**payload, "progress": progress.to_json() if progress else None}))
        return
    if follow:
        for chunk in remote.follow_logs(run_id):
            typer.echo(chunk, nl=False)
    else:
        typer.echo(remote.run_logs(run_id), nl=False)


def cancel(run_id: RunIdArg = None, run: RunOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a run (Kaggle: deletes the run's kernel version; local: terminates its process group).

    A run that already ended is left as it is (exit 0)."""
    from chexvision import remote

    run_id = _one_run_id(run_id, run)
    assert run_id is not None
    before = remote.get_run(run_id)
    finished = before.status.is_terminal()
    record = before if finished else remote.cancel_run(run_id)
    if as_json:
        typer.echo(json.dumps({**view.record_json(record), "cancelled": not finished}))
    elif finished:
        view.stderr().print(f"{record.run_id} already finished ({record.status}); nothing to cancel")
    else:
        view.stderr().print(f"{record.run_id}: {record.status}")


def fetch(
    run_id: RunIdArg = None,
    run: RunOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Target folder (default $CHEXVISION_HOME/runs/<id>).")
    ] = None,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Only download and verify; publish nothing.")
    ] = False,
    repo: Annotated[
        str | None, typer.Option("--repo", help="Hub model repo (default <hf user>/chexvision-<model>).")
    ] = None,
    hub_dir: Annotated[
        Path | None, typer.Option("--hub-dir", help="Publish into this folder instead of the Hub (offline).")
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="Create the Hub repo public (default private).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download a finished run's outputs, verify the run directory, record it, then publish it.

    Publishing goes to the Hub when a token is configured (or --repo is given), else to --hub-dir, else to the
    folder $CHEXVISION_HOME/hub with a notice. The HF token never leaves this machine.
    """
    from chexvision import remote

    run = _one_run_id(run_id, run)
    assert run is not None
    result = remote.fetch_run(run, out)
    published = None if no_publish else _publish_fetched(result.run_id, result.run_dir, repo, hub_dir, public)
    if as_json:
        payload: dict[str, Any] = {
            "run_id": result.run_id,
            "run_dir": str(result.run_dir),
            "files": [str(f) for f in result.files],
            "missing_optional": result.missing_optional,
            "best_val_auc": result.best_val_auc,
            "published": published,
        }
        typer.echo(json.dumps(payload))
        return
    err = view.stderr()
    err.print(f"{len(result.files)} files in {result.run_dir} — verified")
    if result.missing_optional:
        err.print(f"note: missing optional files: {', '.join(result.missing_optional)}")
    if published:
        state = "published" if published["changed"] else "already published, unchanged"
        err.print(f"{state}: {published['url']} (tag {published['tag']}, commit {published['commit'][:12]})")
    typer.echo(str(result.run_dir))


def _publish_fetched(
    run_id: str, run_dir: Path, repo: str | None, hub_dir: Path | None, public: bool
) -> dict[str, Any]:
    from chexvision import remote
    from chexvision.hub import default_hub_dir, hub_ready, publish_run

    if hub_dir is None and repo is None and not hub_ready():
        hub_dir = default_hub_dir()
        view.stderr().print(
            f"note: no Hugging Face token, publishing to the folder {hub_dir} "
            "(`hf auth login` or HF_TOKEN to publish to the Hub; --no-publish to skip)"
        )
    result = publish_run(run_dir, repo_id=repo, hub_dir=hub_dir, private=not public)
    remote.record_publication(
        run_id, repo=result.repo_id, revision=result.tag, commit=result.commit, tag=result.tag
    )  # a revision (the run's tag), not the folder: `repo_id` already says where
    return {
        "repo_id": result.repo_id,
        "commit": result.commit,
        "tag": result.tag,
        "url": result.url,
        "changed": result.changed,
    }


def register(app: typer.Typer, dispatch_app: typer.Typer) -> None:
    """Add `status`, `logs`, `cancel`, `fetch` to the root `app` and `train` to `dispatch_app`."""
    dispatch_app.command("train")(dispatch_train)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("cancel")(cancel)
    app.command("fetch")(fetch)
