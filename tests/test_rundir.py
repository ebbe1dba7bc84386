"""`chexvision.rundir`: the writer's run.json (identity, parent, provenance), the typed reader, verification."""

from __future__ import annotations

import errno
import hashlib
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
    CONFIG_JSON,
    HASHED_FILES,
    HISTORY_JSON,
    LAST_CKPT,
    METRICS_JSON,
    RESUME_CHANGEABLE,
    RUN_JSON,
    TRAIN_LOG,
    WEIGHTS,
    DiskFullError,
    FilesChangedError,
    RunDir,
    RunDirInvalidError,
    changed_files,
    check_files,
    check_resume_config,
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


# --- integrity: run.json "files", atomic commits, the resume config rule ----------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_write_records_the_sha256_of_its_file(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    path = make_run_dir(tmp_path / "run", test_metrics=True)
    files = json.loads((path / RUN_JSON).read_text())["files"]
    assert set(files) == set(HASHED_FILES) and RUN_JSON not in files and TRAIN_LOG not in files
    assert all(files[name] == _sha(path / name) for name in HASHED_FILES)
    RunDir(path).write_metrics_section("test", {"macro_auc": 0.9})  # what `chexvision evaluate` adds: re-recorded
    assert json.loads((path / RUN_JSON).read_text())["files"][METRICS_JSON] == _sha(path / METRICS_JSON)
    check_files(path)


def test_a_changed_file_is_refused_naming_it(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    path = make_run_dir(tmp_path / "run")
    weights = path / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1000:] = bytes(b ^ 0xFF for b in data[-1000:])  # the header stays sound: only the hash can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(FilesChangedError, match=re.escape(WEIGHTS)) as info:
        verify_run_dir(path)
    assert info.value.exit_code == 2 and info.value.names == [WEIGHTS]
    assert changed_files(path, read_run_dir(path).run, names=(CONFIG_JSON,)) == []
    (path / METRICS_JSON).write_text('{"val": {"macro_auc": 0.99}}\n')  # a forged section is never carried over
    with pytest.raises(FilesChangedError, match=METRICS_JSON):
        RunDir(path).write_metrics_section("test", {"macro_auc": 0.5})


def _full_disk_writer(partial: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(partial)  # some bytes land, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_full_disk_leaves_the_last_complete_write_and_no_temporary_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    _start(run, "seresnet-a")
    run.write_history([{"epoch": 1}], 1, 0.5)
    before = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(DiskFullError) as info:
        run.commit({HISTORY_JSON: run.history_doc([{"epoch": 1}, {"epoch": 2}], 2, 0.6),
                    LAST_CKPT: _full_disk_writer(b"x" * 5000)})  # fmt: skip
    assert str(run.path) in info.value.message and "needs at least" in info.value.message
    assert info.value.needed and info.value.needed >= 5000 and info.value.exit_code == 1
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == before  # nothing renamed, no .tmp left


def test_status_is_recorded_in_place_when_the_disk_is_still_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chexvision.rundir.write as write_mod

    run = RunDir(tmp_path / "run")
    _start(run, "seresnet-a")

    def full(path: Path, data: Any, **_: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write_mod, "write_json_atomic", full)
    run.set_status("error", "disk full writing somewhere")
    assert json.loads(run.run_json.read_text())["reason"] == "disk full writing somewhere"


def test_resume_removes_stale_temporary_files_and_records_what_it_continues_from(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    _start(run, "seresnet-a")
    run.write_history([{"epoch": 1}], 1, 0.5)
    (run.path / ".last.ckpt.99999.tmp").write_bytes(b"half a checkpoint")  # a crash's leftover
    run.history_json.write_text(
        json.dumps(run.history_doc([{"epoch": 1}, {"epoch": 2}], 2, 0.6))
    )  # killed pre-run.json
    assert run.adopt_files() == [HISTORY_JSON]
    assert not list(run.path.glob("*.tmp"))
    check_files(run.path)  # raises if any recorded hash were stale
    assert "removed temporary files" in run.log.read_text()


def test_a_resume_may_change_only_when_to_stop_and_where_to_run(tmp_path: Path) -> None:
    old = {"schedule": {"epochs": 3, "patience": 5}, "data": {"size": 64, "workers": 2}, "preset": "smoke"}
    new = {"schedule": {"epochs": 8, "patience": 5}, "data": {"size": 64, "workers": 0}, "preset": "full"}
    assert check_resume_config(tmp_path, old, new) == {"data.workers": [2, 0], "schedule.epochs": [3, 8]}
    with pytest.raises(BadInputError, match=r"data\.size 64 -> 96") as info:
        check_resume_config(tmp_path, old, {**new, "data": {"size": 96, "workers": 2}})
    assert "schedule.epochs" in (info.value.hint or "")
    assert set(RESUME_CHANGEABLE) >= {"schedule.epochs", "schedule.patience"}

    run = RunDir(tmp_path / "run")
    run.start(run_id="a", model="seresnet", preset="smoke", config=old, dataset=DATASET, env=ENV)
    run.start(run_id="a", model="seresnet", preset="smoke", config=new, dataset=DATASET, env=ENV)
    changes = json.loads(run.run_json.read_text())["config_changes"]
    assert [c["changes"] for c in changes] == [{"data.workers": [2, 0], "schedule.epochs": [3, 8]}]
    before = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(BadInputError, match=r"data\.size"):
        run.start(run_id="a", model="seresnet", preset="smoke", config={**new, "data": {"size": 96}}, dataset=DATASET,
                  env=ENV)  # fmt: skip
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == before  # refused before any write
