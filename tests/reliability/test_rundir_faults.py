"""Run-directory faults, tried as a user would (issue 10, defects 4, 7 and 9).

- tampered files: a run directory records the sha256 of every file it writes (run.json "files"); predict,
  evaluate and publish refuse a file that changed since, with exit 2 and the file named, whatever the folder is (a
  run directory, a published `--hub-dir` snapshot);
- a resumed run with a changed config is refused, naming the keys, before anything is written;
- a full disk while training (an injected ENOSPC at the checkpoint writer) is one line naming the folder and the
  space to free (exit 1), leaves run.json `error` with that reason and the directory whole at its last epoch, no
  temporary file behind, and `--resume` after freeing space finishes the run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chexvision.rundir import (
    CONFIG_JSON,
    HISTORY_JSON,
    LAST_CKPT,
    METRICS_JSON,
    RUN_JSON,
    TRAIN_LOG,
    WEIGHTS,
    check_files,
)

ExpectCleanError = Callable[..., str]  # tests/reliability/conftest.py's fixture

TRAIN = ["--model", "seresnet", "--preset", "smoke", "--device", "cpu", "--set", "data.workers=0",
         "--set", "data.size=64", "--set", "data.batch_size=32", "--set", "cpu_threads=1",
         "--set", "model.kwargs.widths=[8, 16, 32, 64]"]  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def invoke(args: Sequence[str]) -> Outcome:
    from typer.testing import CliRunner

    from chexvision.cli.main import app

    result = CliRunner().invoke(app, list(args))
    return Outcome(result.exit_code, result.stdout, result.stderr)


def _digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, run): one real epoch of a tiny SE-ResNet at 64 px, trained through the CLI."""
    from chexvision.data.synthetic import write_synthetic

    base = tmp_path_factory.mktemp("faults")
    write_synthetic(base / "data", 120, 64, 4)
    run = base / "run"
    outcome = invoke(["train", "--data", str(base / "data"), "--out", str(run), *TRAIN, "--set", "schedule.epochs=1"])
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr
    return base / "data", run


@pytest.fixture
def run_copy(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained[1], tmp_path / "run"))


def _flip(path: Path, count: int = 1000) -> None:
    """Flip the last `count` bytes (a new file: hard links to other snapshots keep the original)."""
    data = bytearray(path.read_bytes())
    data[-count:] = bytes(b ^ 0xFF for b in data[-count:])
    path.unlink()
    path.write_bytes(bytes(data))


def _forge_metrics(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["val"]["macro_auc"] = 0.99
    path.unlink()
    path.write_text(json.dumps(doc))


def _edit_seed(path: Path) -> None:
    text = path.read_text()
    assert '"seed": 0' in text
    path.write_text(text.replace('"seed": 0', '"seed": 1'))


def _image(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp_path / "xray.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (80, 80), dtype=np.uint8))
    return path


def _published(run: Path, tmp_path: Path) -> Path:
    hub = tmp_path / "hub"
    outcome = invoke(["publish", str(run), "--hub-dir", str(hub), "--repo", "cxr", "--revision-tag", "v1"])
    assert outcome.exit_code == 0, outcome.stderr
    return hub / "cxr"


# (case, the file to damage and how, the command given (run, data, tmp_path), the file named in the error)
Command = Callable[[Path, Path, Path], tuple[list[str], Path]]
TAMPERED: list[tuple[str, str, Callable[[Path], None], Command]] = [
    ("predict: weights flipped", WEIGHTS, _flip,
     lambda run, data, tmp: (["predict", "--model", str(run), str(_image(tmp))], run)),
    ("predict: config edited", CONFIG_JSON, _edit_seed,
     lambda run, data, tmp: (["predict", "--model", str(run), str(_image(tmp))], run)),
    ("evaluate: weights flipped", WEIGHTS, _flip,
     lambda run, data, tmp: (["evaluate", str(run), "--data", str(data), "--out", str(tmp / "eval"),
                              "--device", "cpu"], run)),
    ("publish: weights flipped", WEIGHTS, _flip,
     lambda run, data, tmp: (["publish", str(run), "--hub-dir", str(tmp / "hub")], run)),
    ("publish: val metrics forged", METRICS_JSON, _forge_metrics,
     lambda run, data, tmp: (["publish", str(run), "--hub-dir", str(tmp / "hub")], run)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "victim", "damage", "command"), TAMPERED, ids=[c[0] for c in TAMPERED])
def test_a_tampered_file_is_refused_naming_it(
    expect_clean_error: ExpectCleanError, trained: tuple[Path, Path], run_copy: Path, tmp_path: Path,
    name: str, victim: str, damage: Callable[[Path], None], command: Command,
) -> None:  # fmt: skip
    damage(run_copy / victim)
    args, folder = command(run_copy, trained[0], tmp_path)
    line = expect_clean_error(args, keep=[run_copy, tmp_path / "hub"], names=[victim, str(folder)])
    assert "sha256" in line


def test_a_tampered_hub_dir_snapshot_is_refused(
    expect_clean_error: ExpectCleanError, run_copy: Path, tmp_path: Path
) -> None:
    repo = _published(run_copy, tmp_path)
    snapshot = repo / ".revisions" / "v1"
    _flip(snapshot / WEIGHTS)
    expect_clean_error(["predict", "--model", f"{repo}@v1", str(_image(tmp_path))], keep=[repo, run_copy],
                       names=[WEIGHTS])  # fmt: skip
    assert invoke(["predict", "--model", str(repo), str(_image(tmp_path))]).exit_code == 0  # the head is intact


RESUME_CHANGES: list[tuple[str, list[str], list[str]]] = [
    ("image size", ["--set", "data.size=96"], ["data.size", "64", "96"]),
    ("learning rate and seed", ["--set", "optim.lr=0.5", "--set", "seed=7"], ["optim.lr", "seed"]),
    ("split scheme flag", ["--split-scheme", "chexnet"], ["data.split_scheme"]),
]


@pytest.mark.parametrize(("name", "extra", "named"), RESUME_CHANGES, ids=[c[0] for c in RESUME_CHANGES])
def test_resume_with_a_changed_config_is_refused_naming_the_keys(
    expect_clean_error: ExpectCleanError, trained: tuple[Path, Path], run_copy: Path, name: str, extra: list[str],
    named: list[str],
) -> None:  # fmt: skip
    args = ["train", "--data", str(trained[0]), "--out", str(run_copy), *TRAIN, "--resume", *extra]
    expect_clean_error(args, keep=[run_copy], names=[str(run_copy), *named])


def test_resume_may_extend_a_run_and_records_the_change(trained: tuple[Path, Path], run_copy: Path) -> None:
    patience = json.loads((run_copy / CONFIG_JSON).read_text())["schedule"]["patience"]
    args = ["train", "--data", str(trained[0]), "--out", str(run_copy), *TRAIN, "--resume"]
    outcome = invoke([*args, "--set", "schedule.epochs=2", "--set", f"schedule.patience={patience + 1}", "--json"])
    assert outcome.exit_code == 0, outcome.stderr
    run = json.loads((run_copy / RUN_JSON).read_text())
    assert run["status"] == "complete" and run["resumes"] == 1
    assert [c["changes"] for c in run["config_changes"]] == [
        {"schedule.epochs": [1, 2], "schedule.patience": [patience, patience + 1]}
    ]
    assert json.loads((run_copy / CONFIG_JSON).read_text())["schedule"]["epochs"] == 2
    check_files(run_copy)


def _disk_full_at(epoch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from chexvision.engine import checkpoint as ckpt_mod

    real = ckpt_mod.write_checkpoint

    def write(path: Path, state: dict[str, Any]) -> None:
        if state["epoch"] == epoch:
            path.write_bytes(b"\0" * 65536)  # part of the checkpoint lands, then no space is left
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, state)

    monkeypatch.setattr(ckpt_mod, "write_checkpoint", write)


def _files(run: Path, names: Sequence[str]) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in names}


def test_a_full_disk_is_one_line_and_leaves_the_last_epoch_whole(
    expect_clean_error: ExpectCleanError, trained: tuple[Path, Path], run_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    epoch_files = (WEIGHTS, LAST_CKPT, HISTORY_JSON, METRICS_JSON)
    before = _files(run_copy, epoch_files)
    args = ["train", "--data", str(trained[0]), "--out", str(run_copy), *TRAIN, "--resume",
            "--set", "schedule.epochs=2"]  # fmt: skip
    _disk_full_at(2, monkeypatch)
    line = expect_clean_error(args, exit_code=1, names=[str(run_copy), "disk full", "needs at least", "--resume"])

    assert _files(run_copy, epoch_files) == before  # epoch 1, whole: nothing one epoch ahead
    assert not [p.name for p in run_copy.iterdir() if p.name.endswith(".tmp")]
    run = json.loads((run_copy / RUN_JSON).read_text())
    assert run["status"] == "error" and run["reason"] in line
    check_files(run_copy)

    monkeypatch.undo()  # space freed
    snapshot = _digest(run_copy)
    outcome = invoke([*args, "--json"])
    assert outcome.exit_code == 0, outcome.stderr
    assert json.loads(outcome.stdout.strip().splitlines()[-1])["epochs"] == 2
    assert [e["epoch"] for e in json.loads((run_copy / HISTORY_JSON).read_text())["epochs"]] == [1, 2]
    assert json.loads((run_copy / RUN_JSON).read_text())["status"] == "complete"
    assert _digest(run_copy) != snapshot
    check_files(run_copy)


def test_resume_removes_a_crash_s_temporary_files(trained: tuple[Path, Path], run_copy: Path) -> None:
    stale = run_copy / f".{LAST_CKPT}.424242.tmp"
    stale.write_bytes(b"half a checkpoint")
    args = ["train", "--data", str(trained[0]), "--out", str(run_copy), *TRAIN, "--resume", "--json"]
    assert invoke(args).exit_code == 0
    assert not stale.exists() and "removed temporary files" in (run_copy / TRAIN_LOG).read_text()


def _mount_tmpfs(folder: Path, size: int, remount: bool = False) -> bool:
    import subprocess

    opts = f"{'remount,' if remount else ''}size={size}"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True, check=False)
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A folder on its own tmpfs (needs the right to mount: root outside a locked-down container, else skipped)."""
    import subprocess

    folder = tmp_path / "disk"
    folder.mkdir()
    if not _mount_tmpfs(folder, 1 << 20):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): the injected ENOSPC cases cover it")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def _pages(n: int) -> int:
    return -(-n // 4096) * 4096


def test_a_really_full_disk_keeps_the_last_epoch_and_resume_finishes_once_space_is_freed(
    expect_clean_error: ExpectCleanError, trained: tuple[Path, Path], small_disk: Path
) -> None:
    used = sum(_pages(p.stat().st_size) for p in trained[1].iterdir())
    ckpt = (trained[1] / LAST_CKPT).stat().st_size
    assert _mount_tmpfs(small_disk, used + 256 * 1024 + ckpt // 2, remount=True)  # room for all but half a ckpt
    run = Path(shutil.copytree(trained[1], small_disk / "run"))
    epoch_files = (WEIGHTS, LAST_CKPT, HISTORY_JSON, METRICS_JSON)
    before = _files(run, epoch_files)
    args = ["train", "--data", str(trained[0]), "--out", str(run), *TRAIN, "--resume", "--set", "schedule.epochs=2"]
    expect_clean_error(args, exit_code=1, names=[str(run), "disk full", "free now"])
    assert _files(run, epoch_files) == before and not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert json.loads((run / RUN_JSON).read_text())["status"] == "error"
    check_files(run)

    assert _mount_tmpfs(small_disk, 64 << 20, remount=True)  # space freed
    outcome = invoke([*args, "--json"])
    assert outcome.exit_code == 0, outcome.stderr
    assert [e["epoch"] for e in json.loads((run / HISTORY_JSON).read_text())["epochs"]] == [1, 2]
    check_files(run)
