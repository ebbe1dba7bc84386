"""`chexvision.rundir`: the writer's run.json (identity, parent, provenance), the typed reader, verification."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chexvision.errors import BadInputError
from chexvision.rundir import (
    HISTORY_JSON,
    METRICS_JSON,
    RUN_JSON,
    WEIGHTS,
    RunDir,
    RunDirInvalidError,
    new_run_id,
    read_run_dir,
    read_safetensors_header,
    utc_now,
    verify_run_dir,
)

ENV: dict[str, Any] = {"python": "3.11", "torch": "2.5", "cuda": None, "gpus": []}
DATASET = {"source": "synthetic", "split_scheme": "patient", "counts": {"train": 1}, "clahe": False}


def _start(run: RunDir, run_id: str) -> dict[str, Any]:
    run.start(run_id=run_id, model="seresnet", preset="smoke", config={"model": {"name": "seresnet"}}, dataset=DATASET,
              env=ENV)  # fmt: skip
    return json.loads(run.run_json.read_text())


def test_module_is_torch_free() -> None:
    code = "import sys, chexvision.rundir; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_ids_and_times() -> None:
    assert re.fullmatch(r"densenet-\d{8}-\d{4}-[0-9a-f]{4}", new_run_id("densenet"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc_now())


def test_dispatch_provenance_lands_in_run_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_GIT_SHA", "0123abcd")
    monkeypatch.setenv("DISPATCH_BUNDLE_SHA256", "f" * 64)
    run = _start(RunDir(tmp_path / "run"), "seresnet-a")
    assert (run["git_sha"], run["bundle_sha256"]) == ("0123abcd", "f" * 64)
    assert run["parent_run_id"] is None and run["status"] == "running" and run["resumes"] == 0
    monkeypatch.delenv("DISPATCH_GIT_SHA")
    monkeypatch.delenv("DISPATCH_BUNDLE_SHA256")
    monkeypatch.setenv("CHEXVISION_GIT_SHA", "old-name")  # still accepted
    assert _start(RunDir(tmp_path / "other"), "seresnet-b")["git_sha"] == "old-name"


def test_a_new_run_id_over_a_run_is_a_child_and_the_same_id_a_resume(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    parent = _start(run, "seresnet-parent")
    run.set_status("incomplete", "time_budget")
    again = _start(run, "seresnet-parent")
    assert (again["run_id"], again["resumes"], again["started_at"]) == ("seresnet-parent", 1, parent["started_at"])
    assert again["parent_run_id"] is None and "reason" not in again
    child = _start(run, "seresnet-child")
    assert (child["run_id"], child["parent_run_id"], child["resumes"]) == ("seresnet-child", "seresnet-parent", 0)
    assert _start(run, "seresnet-child")["parent_run_id"] == "seresnet-parent"  # resuming the child keeps the link
    assert "continues seresnet-parent" in run.log.read_text()


def test_reader_gives_typed_run_of_a_written_directory(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    path = make_run_dir(tmp_path / "run", run_id="densenet-x", test_metrics=True, split_scheme="patient")
    info = read_run_dir(path)
    assert (info.run_id, info.model_name, info.split_scheme, info.parent_run_id) == ("densenet-x", "densenet",
                                                                                     "patient", None)  # fmt: skip
    assert info.run["status"] == "complete" and info.run["git_sha"] == "abc1234"
    assert info.history["best_epoch"] == 3 and info.metrics["val"]["epoch"] == 3 and "test" in info.metrics
    assert info.metrics["val"]["macro_auc"] == info.history["best_val_macro_auc"]
    assert info.dataset["clahe"] is False and info.weights == path / WEIGHTS
    assert verify_run_dir(path) == []
    assert sum(1 for _ in read_safetensors_header(path / WEIGHTS)) > 10


def test_reader_and_verification_name_what_is_wrong(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    with pytest.raises(BadInputError, match="not found"):
        read_run_dir(tmp_path / "nope")
    path = make_run_dir(tmp_path / "run")
    (path / HISTORY_JSON).unlink()
    with pytest.raises(BadInputError, match=HISTORY_JSON):
        read_run_dir(path, required=(HISTORY_JSON,))
    (path / RUN_JSON).write_text("[1, 2]")
    with pytest.raises(BadInputError, match="not a JSON object"):
        read_run_dir(path)
    assert read_run_dir(path, strict=False).run == {}
    (path / METRICS_JSON).write_text("{")
    weights = path / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(RunDirInvalidError) as info:
        verify_run_dir(path)
    problems = " ".join(info.value.problems)
    assert HISTORY_JSON in problems and METRICS_JSON in problems and "does not match its header" in problems
    with pytest.raises(BadInputError, match=r"missing\.safetensors"):
        read_safetensors_header(tmp_path / "missing.safetensors")
