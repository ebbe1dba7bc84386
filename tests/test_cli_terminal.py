"""The CLI as a terminal user meets it: one name per option, both run-id forms, --json on read commands, help
without Python type names, tables that fit 80 columns without folding a word, `status --watch` progress."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from chexvision.cli import _runs_view as view
from chexvision.cli.main import app
from chexvision.remote import home, run_progress
from chexvision.rundir import epoch_log_line
from dispatch.registry import Registry, RunRecord
from dispatch.status import RunStatus

runner = CliRunner()
LONG_REASON = "train failed with exit code 1: CUDA out of memory while allocating the DenseNet-121 activations"
RUN_DIR = "/home/someone/.chexvision/runs/seresnet-20261126-0912-3fa1-with-a-deliberately-long-folder-name"


def _add(run_id: str, status: RunStatus, model: str = "densenet", reason: str | None = None, **extra: Any) -> None:
    record = RunRecord(run_id=run_id, backend="local", label=model, status=status, failure_reason=reason)
    with Registry.at(home()) as reg:
        reg.add(dataclasses.replace(record, meta={"model": model}, **extra))


def _record(run_id: str) -> RunRecord:
    with Registry.at(home()) as reg:
        return reg.get(run_id)


def _epoch(epoch: int, seconds: float, auc: float | None) -> dict[str, Any]:
    return {"epoch": epoch, "phase": 1, "lr": 1e-3, "train_loss": 0.5 / epoch, "val_loss": 0.6, "val_macro_auc": auc,
            "val_binary_auc": auc, "val_binary_f1": 0.4, "seconds": seconds, "images_per_second": 250.0}  # fmt: skip


def _console(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, highlight=False, color_system=None, legacy_windows=False), buf


# --- help, names, version, completion -----------------------------------------------------------------------------

COMMANDS = [["train"], ["status"], ["logs"], ["cancel"], ["fetch"], ["predict"], ["publish"], ["models"],
            ["dispatch", "train"], ["data", "splits"], ["data", "build"], ["data", "download"], ["data", "eda"],
            ["data", "synth"], ["bench", "train"], ["bench", "loader"], ["evaluate"], ["cam"], ["compare"],
            ["export"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_no_python_type_names(command: list[str]) -> None:
    out = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "<bool>" not in out.stdout and "<list[" not in out.stdout


def test_version_and_completion() -> None:
    from chexvision import __version__

    out = runner.invoke(app, ["--version"])
    assert out.exit_code == 0 and out.stdout.strip() == f"chexvision {__version__}"
    root = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    assert "--install-completion" in root and "--show-completion" in root and "--version" in root


def test_one_name_per_option_old_names_hidden_but_accepted(tmp_path: Path) -> None:
    for command in (["data", "splits"], ["data", "eda"]):
        text = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout
        assert "--split-scheme" in text and "--scheme " not in text
    bench = runner.invoke(app, ["bench", "train", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--batch-size" in bench and "--batch " not in bench
    new = runner.invoke(app, ["data", "splits", "--split-scheme", "chexnet", "--json"])
    old = runner.invoke(app, ["data", "splits", "--scheme", "chexnet", "--json"])
    assert new.exit_code == old.exit_code == 0 and json.loads(new.stdout) == json.loads(old.stdout)
    assert json.loads(new.stdout)["scheme"] == "chexnet"


def test_read_commands_have_json() -> None:
    for command in (["logs"], ["data", "build"], ["data", "download"], ["status"], ["cancel"], ["fetch"]):
        assert "--json" in runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).stdout, command


# --- the run id: an argument or --run, on all four ----------------------------------------------------------------


def test_run_id_as_argument_or_option() -> None:
    _add("densenet-20260101-0000-aaaa", RunStatus.COMPLETE)
    rid = "densenet-20260101-0000-aaaa"
    for args in (["status", rid, "--json"], ["status", "--run", rid, "--json"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0 and json.loads(out.stdout)["run_id"] == rid, args
    for form in ([rid], ["--run", rid]):
        assert json.loads(runner.invoke(app, ["logs", *form, "--json"]).stdout)["run_id"] == rid
        assert json.loads(runner.invoke(app, ["cancel", *form, "--json"]).stdout)["run_id"] == rid
        fetched = runner.invoke(app, ["fetch", *form, "--no-publish"])
        assert "run directory" in fetched.stderr and rid in fetched.stderr  # reached the run (which has no outputs)
    both = runner.invoke(app, ["logs", rid, "--run", "other"])
    assert both.exit_code == 2 and "two run ids" in both.stderr
    none = runner.invoke(app, ["logs"])
    assert none.exit_code == 2 and "no run id" in none.stderr


def test_cancel_a_finished_run_changes_nothing() -> None:
    _add("done", RunStatus.COMPLETE)
    out = runner.invoke(app, ["cancel", "done"])
    assert out.exit_code == 0 and "already finished (complete); nothing to cancel" in out.stderr
    assert _record("done").status == RunStatus.COMPLETE and _record("done").finished_at is None
    assert json.loads(runner.invoke(app, ["cancel", "done", "--json"]).stdout)["cancelled"] is False


def test_logs_json_has_the_log_and_its_progress() -> None:
    _add("densenet-20260101-0000-dddd", RunStatus.COMPLETE)
    log = "\n".join(epoch_log_line(_epoch(e, 10.0, 0.6 + e / 100), 3, True) for e in (1, 2, 3)) + "\n"
    from chexvision import remote

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(remote, "run_logs", lambda run_id: log)
        data = json.loads(runner.invoke(app, ["logs", "densenet-20260101-0000-dddd", "--json"]).stdout)
    assert data["log"] == log and data["status"] == "complete"
    assert data["progress"]["epoch"] == 3 and data["progress"]["total_epochs"] == 3
    assert data["progress"]["val_macro_auc"] == 0.63 and data["progress"]["eta_seconds"] == 0


# --- status --json: typed -----------------------------------------------------------------------------------------


def _no_json_strings(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _no_json_strings(v)
    elif isinstance(value, list):
        for v in value:
            _no_json_strings(v)
    elif isinstance(value, str) and value[:1] in "[{":
        with pytest.raises(ValueError):
            json.loads(value)


def test_status_json_fields_are_typed() -> None:
    _add("r1", RunStatus.COMPLETE, started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:10:00Z",
         summary={"best_val_auc": 0.8}, hub_repo="chexvision-densenet", hub_revision="r1", hub_tag="r1")  # fmt: skip
    [data] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    _no_json_strings(data)
    assert data["elapsed_seconds"] == 600 and data["best_val_auc"] == 0.8
    assert isinstance(data["meta"], dict) and isinstance(data["command"], list)


def test_fetch_records_a_revision_not_a_path() -> None:
    from chexvision.cli import runs as runs_cli

    source = Path(runs_cli.__file__).read_text()
    assert "revision=result.tag" in source and "revision=str(hub_dir)" not in source


# --- 80 and 120 columns -------------------------------------------------------------------------------------------


def _table_records() -> list[RunRecord]:
    _add("densenet-20261126-0912-3fa1", RunStatus.COMPLETE, summary={"best_val_auc": 0.8123},
         started_at="2026-11-26T09:13:00Z", finished_at="2026-11-26T10:01:07Z")  # fmt: skip
    _add("seresnet-20261126-1015-b7c2", RunStatus.ERROR, model="seresnet", reason=LONG_REASON)
    _add("densenet-20261127-0800-0c0d", RunStatus.RUNNING, started_at="2026-11-27T08:01:00Z")
    with Registry.at(home()) as reg:
        return reg.list()


def _freeze_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The view's `datetime.now` stands still from here on: the table and the columns it is checked against
    show the same ages (else an age can tick over to the next second between the two)."""
    frozen = datetime.now(UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(frozen.timestamp(), tz)

    monkeypatch.setattr(view, "datetime", Frozen)


@pytest.mark.parametrize("width", [80, 120])
def test_status_table_fits_the_terminal_without_splitting_a_word(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    records = _table_records()
    _freeze_clock(monkeypatch)
    console, buf = _console(width)
    view.print_table(records, console)
    text = buf.getvalue()
    table_lines = [line for line in text.splitlines() if LONG_REASON not in line]  # a reason: one soft-wrapped line
    assert max(len(line) for line in table_lines) <= width
    shown = dict(view.fitting_columns(records, width))
    assert {"run id", "status", "model", "val AUC"} <= set(shown)
    for cells in shown.values():
        for cell in cells:
            assert cell in text, (cell, text)  # whole: never `dens enet`, `loca l`
    for word in ("densenet", "seresnet", "local", "0.8123", "complete", "running"):
        assert re.search(rf"\b{word}\b", text)
    assert "failure reason" not in text and "reas on" not in text
    assert f"seresnet-20261126-1015-b7c2: {LONG_REASON}\n" in text  # whole, below the table


def test_status_table_has_no_failure_column_and_shows_all_columns_at_120() -> None:
    records = _table_records()
    assert [name for name, _ in view.fitting_columns(records, 120)] == [name for name, _, _ in view.COLUMNS]
    assert len(view.fitting_columns(records, 80)) >= 5


def test_status_cli_at_80_columns() -> None:
    _table_records()
    out = runner.invoke(app, ["status"], env={"COLUMNS": "80"})
    assert out.exit_code == 0
    assert "densenet-20261126-0912-3fa1" in out.stdout and "dens enet" not in out.stdout


def test_status_detail_keeps_paths_whole_and_the_log_tail_outside_tables() -> None:
    _add("seresnet-20261126-0912-3fa1", RunStatus.ERROR, model="seresnet", reason=LONG_REASON, output_dir=RUN_DIR)
    record = _record("seresnet-20261126-0912-3fa1")
    synth_table = "\n".join(["┏━━━━━━━┳━━━━━━━━┓", "┃ label ┃ images ┃", "┡━━━━━━━╇━━━━━━━━┩"]
                            + [f"│ L{i:<4} │ {i:>6} │" for i in range(25)] + ["└───────┴────────┘"])  # fmt: skip
    log = synth_table + "\n" + epoch_log_line(_epoch(1, 9.0, 0.55), 2, True) + "\nTraceback: boom\n"
    console, buf = _console(80)
    view.print_detail(record, log, console)
    text = buf.getvalue()
    assert RUN_DIR in text and LONG_REASON in text  # one line each, the terminal wraps them
    tail = text.split("last log lines", 1)[1].strip().splitlines()
    assert tail[0].startswith("epoch 1/2") and tail[-1] == "Traceback: boom"


# --- status --watch: progress from train.log ----------------------------------------------------------------------


def test_progress_from_real_epoch_lines() -> None:
    lines = [epoch_log_line(_epoch(1, 40.0, 0.61), 10, True), epoch_log_line(_epoch(2, 44.0, None), 10, False)]
    progress = run_progress("starting\n[rank0] " + "\n".join(lines) + "\n")
    assert progress is not None
    assert (progress.epoch, progress.total_epochs, progress.val_macro_auc, progress.best) == (2, 10, None, False)
    assert progress.train_loss == 0.25 and progress.seconds_per_epoch == 42.0 and progress.eta_seconds == 8 * 42.0
    assert run_progress("installing\nno epochs yet\n") is None


def test_progress_from_the_kernel_log_that_train_prints_without_a_tty() -> None:
    from chexvision.cli.train import _summary

    log = "[chexvision 10:37:45] train: python -m chexvision train ...\n" + "\n".join(
        _summary({**_epoch(e, 0.6, 0.54), "val_loss": 1.9}, 3) for e in (1, 2)
    )
    progress = run_progress(log)
    assert progress is not None and (progress.epoch, progress.total_epochs, progress.val_macro_auc) == (2, 3, 0.54)
    assert progress.seconds_per_epoch == pytest.approx(0.6) and progress.eta_seconds == pytest.approx(0.6)


def test_progress_from_a_real_run_directory_log(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    from chexvision.rundir import TRAIN_LOG

    run = make_run_dir(tmp_path / "run")
    progress = run_progress((run / TRAIN_LOG).read_text())
    assert progress is not None and progress.epoch == progress.total_epochs == 3 and progress.best


def test_status_watch_prints_epoch_loss_auc_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    from chexvision import remote

    _add("densenet-20261127-0800-0c0d", RunStatus.RUNNING)
    base = _record("densenet-20261127-0800-0c0d")
    states = [(RunStatus.RUNNING, 0), (RunStatus.RUNNING, 1), (RunStatus.RUNNING, 2), (RunStatus.COMPLETE, 4)]
    logs: list[str] = []

    def fake_watch(run_id: str, **kwargs: Any) -> Any:
        for status, epochs in states:
            logs.append(
                "\n".join(epoch_log_line(_epoch(e, 30.0, 0.6 + e / 100), 4, True) for e in range(1, epochs + 1))
            )
            yield dataclasses.replace(base, status=status)

    monkeypatch.setattr(remote, "watch_run", fake_watch)
    monkeypatch.setattr(remote, "run_logs", lambda run_id: logs[-1])
    out = runner.invoke(app, ["status", "densenet-20261127-0800-0c0d", "--watch"])
    assert out.exit_code == 0
    assert "densenet-20261127-0800-0c0d: running, no epoch finished yet" in out.stderr
    assert "epoch 1/4, loss 0.5000, val AUC 0.6100 (best), 30 s/epoch, ETA 1m30s" in out.stderr
    assert "epoch 2/4, loss 0.2500, val AUC 0.6200 (best), 30 s/epoch, ETA 1m00s" in out.stderr
    assert "complete, epoch 4/4" in out.stderr and "ETA" not in out.stderr.splitlines()[-1]


def test_status_watch_without_a_run_id_prints_each_going_runs_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    from chexvision import remote

    _add("seresnet-20261126-0700-0a0a", RunStatus.COMPLETE, model="seresnet")
    _add("densenet-20261127-0800-0c0d", RunStatus.RUNNING)
    old, new = _record("seresnet-20261126-0700-0a0a"), _record("densenet-20261127-0800-0c0d")
    polls = [(RunStatus.RUNNING, 1), (RunStatus.RUNNING, 1), (RunStatus.RUNNING, 2), (RunStatus.COMPLETE, 3)]
    epochs_done: list[int] = []

    def fake_watch_runs(**kwargs: Any) -> Any:
        for status, epochs in polls:
            epochs_done.append(epochs)
            yield [old, dataclasses.replace(new, status=status)]

    def fake_logs(run_id: str) -> str:
        assert run_id == new.run_id, "a run that had ended before the watch began is not followed"
        return "\n".join(epoch_log_line(_epoch(e, 30.0, 0.6), 3, True) for e in range(1, epochs_done[-1] + 1))

    monkeypatch.setattr(remote, "watch_runs", fake_watch_runs)
    monkeypatch.setattr(remote, "run_logs", fake_logs)
    out = runner.invoke(app, ["status", "--watch"], env={"COLUMNS": "80"})
    assert out.exit_code == 0, out.output
    lines = [line for line in out.stderr.splitlines() if line.startswith(new.run_id)]
    assert len(lines) == 3, lines  # one line per change of epoch or status, not per poll
    assert "running, epoch 1/3" in lines[0] and "ETA 1m00s" in lines[0]
    assert lines[-1].startswith(f"{new.run_id}: complete, epoch 3/3")
    assert old.run_id not in out.stderr and old.run_id in out.stdout  # the final table lists both


# --- small surprises ----------------------------------------------------------------------------------------------


def test_bare_model_name_resolves_in_the_default_hub_folder(tmp_path: Path) -> None:
    from chexvision.hub import default_hub_dir
    from chexvision.hub.resolve import in_default_hub

    assert in_default_hub("chexvision-densenet") == "chexvision-densenet"  # nothing there: unchanged (a clear error)
    (default_hub_dir() / "chexvision-densenet").mkdir(parents=True)
    assert in_default_hub("chexvision-densenet") == str(default_hub_dir() / "chexvision-densenet")
    assert in_default_hub("chexvision-densenet@run1") == f"{default_hub_dir() / 'chexvision-densenet'}@run1"
    assert in_default_hub("owner/chexvision-densenet") == "owner/chexvision-densenet"
    assert in_default_hub(str(tmp_path)) == str(tmp_path)


def test_no_single_model_suggested_after_synthetic_data(tmp_path: Path) -> None:
    out = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "d"), "--images", "20", "--size", "32"],
                        env={"COLUMNS": "200"})  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "--model {densenet|seresnet}" in out.stdout and "--model densenet " not in out.stdout


def test_cam_takes_model_like_predict_and_keeps_the_run_dir_form(tmp_path: Path) -> None:
    from chexvision.cli.hub import cam_model_dir
    from chexvision.errors import BadInputError

    run, image = tmp_path / "run", tmp_path / "x.png"
    run.mkdir()
    assert cam_model_dir(None, [run, image]) == (run, [image])  # cam RUN_DIR IMAGE...
    assert cam_model_dir(str(run), [image]) == (run, [image])  # cam --model SPEC IMAGE...
    with pytest.raises(BadInputError, match="no model given"):
        cam_model_dir(None, [image])


def test_dispatch_dry_run_says_its_run_id_is_not_registered(tmp_path: Path) -> None:
    out = runner.invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "local", "--dry-run",
                              "--out", str(tmp_path / "kernel")])  # fmt: skip
    assert out.exit_code == 0, out.output
    run_id = out.stdout.strip()
    assert f"the run id {run_id} is not registered" in " ".join(out.stderr.split())
    assert json.loads(runner.invoke(app, ["status", "--json"]).stdout) == []


def test_data_build_json(tmp_path: Path, sample_images_dir: Path) -> None:
    import shutil

    images = tmp_path / "images"
    images.mkdir()
    for name in ("00000129_000.png", "00000211_000.png"):
        shutil.copy(sample_images_dir / name, images / name)
    out = runner.invoke(app, ["data", "build", "--images", str(images), "--out", str(tmp_path / "d"), "--size", "32",
                              "--workers", "1", "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["images"] == 2 and data["size"] == 32 and data["corrupt"] == [] and len(data["shards"]) == 1
    assert set(data) >= {"out_dir", "clahe", "built_shards", "resumed_shards", "not_in_metadata", "seconds"}
