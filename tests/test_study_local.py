"""A whole study on the local backend, end to end: both models, one seed, small variants on a few synthetic images,
a time budget so short that a session stops after one epoch and is continued; then fetch, evaluation,
publishing with test results, the report. Real training processes: the slowest test of the study suite (~1 min)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chexvision import remote
from chexvision.cli.main import app

STUDY = """
name = "e2e"
seeds = [0]

[[models]]
name = "seresnet"
preset = "smoke"
set = ["schedule.epochs=2", "data.workers=0"]

[[models]]
name = "densenet"
preset = "smoke"
set = ["schedule.epochs=1", "data.workers=0"]  # one epoch: done in its first session

[data]
source = "synthetic:200:64"
split_scheme = "patient"

[backend]
name = "local"
time_budget = 0.0001                # 0.36 s: a session stops after its first epoch (seresnet is continued)
max_concurrent = 2                  # both models train at once (the default local limit is 1): two cores

[evaluation]
bootstrap = 20
subgroups = "none"
device = "cpu"

[publish]
target = "folder"
hub_dir = "{hub}"
"""


def test_a_local_study_runs_continues_evaluates_publishes_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_KERNEL_SKIP_PROBES", "1")  # each kernel's torch version probe: ~3 s, not checked here
    hub = tmp_path / "hub"
    study = tmp_path / "e2e.toml"
    study.write_text(STUDY.format(hub=hub))
    result = CliRunner().invoke(app, ["study", "run", str(study), "--wait", "--poll", "0.5"])
    assert result.exit_code == 0, result.output
    assert "epoch 1/2" in result.stderr and "ETA" in result.stderr  # progress while it waits
    assert "report: " in result.stderr

    status = CliRunner().invoke(app, ["study", "status", "e2e", "--json"])
    doc = json.loads(status.stdout)
    assert doc["state"] == "complete" and doc["report"] and Path(doc["report"]).is_file()
    for run, epochs in zip(doc["runs"], (2, 1), strict=True):
        assert run["status"] == "done" and isinstance(run["test_macro_auc"], float)
        assert len(run["chain"]) == epochs and run["run_id"] == run["chain"][-1]  # seresnet: one continuation
        last = remote.get_run(run["run_id"], refresh=False)
        assert last.parent_run_id == (run["chain"][0] if epochs == 2 else None)
        assert last.hub_repo == f"chexvision-e2e-{run['model']}"
        history = json.loads((Path(last.output_dir or "") / "history.json").read_text())
        assert [e["epoch"] for e in history["epochs"]] == list(range(1, epochs + 1))  # the chain: one logical run
        card = (hub / f"chexvision-e2e-{run['model']}" / "README.md").read_text()
        assert "| test |" in card and f"{run['test_macro_auc']:.4f}" in card

    report = Path(doc["report"]).read_text()
    assert "seresnet vs densenet" in report and "macro AUROC, mean ± sd over seeds" in report
    assert (hub / "chexvision-e2e-report" / "report.html").is_file()

    again = CliRunner().invoke(app, ["study", "run", str(study), "--json"])  # idempotent: nothing redone
    assert again.exit_code == 0 and json.loads(again.stdout)["runs"] == doc["runs"]
    assert len(remote.list_runs(refresh=False)) == 3
