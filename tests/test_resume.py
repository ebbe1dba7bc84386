"""`--resume` continues exactly: a REAL training process is SIGKILLed after an epoch, resumed, and must end with
the same history (metrics, not seconds) and the same best weights as an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from chexvision.data.synthetic import write_synthetic
from chexvision.rundir import check_files

pytestmark = pytest.mark.slow  # three training processes: ~20-40 s on 2 shared cores

TIMING_KEYS = {"seconds", "images_per_second"}


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "chexvision", "train", "--model", "seresnet", "--data", str(data), "--out", str(out),
        "--preset", "smoke", "--device", "cpu", "--set", "schedule.epochs=3", "--set", "deterministic=true",
        "--set", "data.batch_size=16", "--set", "data.workers=1", "--set", "cpu_threads=1",
        "--set", "model.kwargs.widths=[8, 16, 32, 64]", *extra,
    ]  # fmt: skip


def _epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "history.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError):
        return 0


def _without_timing(history: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in history["epochs"]]


def test_killed_run_resumes_to_the_same_history(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_synthetic(data, 200, 64, 21)
    env = {**os.environ, "CI": "1"}

    # The uninterrupted run goes alongside the one that is killed (independent folders, same seed): two cores.
    full_log = tmp_path / "full.log"
    with full_log.open("wb") as log:
        full = subprocess.Popen(_train_cmd(data, tmp_path / "full"), env=env, stdout=log, stderr=log)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(data, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _epochs_done(killed) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = _epochs_done(killed)
    assert 1 <= done < 3, f"the run should die mid-way, it finished {done} epochs"
    assert json.loads((killed / "run.json").read_text())["status"] == "running"  # died without a word

    resumed = subprocess.run(_train_cmd(data, killed, "--resume", "--json"), env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["status"] == "complete"
    assert full.wait(timeout=300) == 0, full_log.read_text()[-3000:]

    full_history = json.loads((tmp_path / "full" / "history.json").read_text())
    killed_history = json.loads((killed / "history.json").read_text())
    assert _without_timing(killed_history) == _without_timing(full_history)
    assert killed_history["best_epoch"] == full_history["best_epoch"]
    full_w, killed_w = (
        load_file(str(tmp_path / "full" / "model.safetensors")),
        load_file(str(killed / "model.safetensors")),
    )
    assert all((full_w[k] == killed_w[k]).all() for k in full_w)
    run = json.loads((killed / "run.json").read_text())
    assert run["status"] == "complete" and run["resumes"] == 1
    check_files(killed)  # the kill may fall between the renames and run.json: the resume records what it continued
    assert not list(killed.glob(".*.tmp"))
