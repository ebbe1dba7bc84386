"""Smoke study benchmark: wall clock of `chexvision study run studies/smoke.toml --wait`, start-up included.

Each round runs, as subprocesses exactly as a user would, in a fresh $CHEXVISION_HOME:

    study:     chexvision study run studies/smoke.toml --wait        (queue, 2 local runs, fetch, evaluate, publish,
                                                                        report)
    baseline:  chexvision data synth ... ; chexvision train ... x 2    (the same two trainings by hand, same preset,
                                                                        overrides, data; no dispatch/eval/publish)

interleaved (study, baseline, study, baseline, ...), so the difference is the study's own cost (local dispatch,
per-run data preparation, evaluation with its bootstrap, publishing, the report) measured under the same load.
Prints one JSON object. Target (issue 12): the study < 180 s on 2 CPU cores.

    .venv/bin/python benchmarks/smoke_study.py [--rounds 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "smoke.toml"
TARGET_SECONDS = 180.0


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def study_round(work: Path) -> dict[str, Any]:
    home = work / "home"
    env = {**os.environ, "CHEXVISION_HOME": str(home), "CI": "1"}
    seconds = _timed([sys.executable, "-m", "chexvision", "study", "run", str(STUDY), "--wait", "--poll", "1"], env)
    state = json.loads((home / "studies" / "smoke" / "study.json").read_text())
    aucs = {r["model"]: r["test_macro_auc"] for r in state["runs"]}
    return {"seconds": round(seconds, 1), "state": state["state"], "test_macro_auc": aucs}


def baseline_round(work: Path) -> dict[str, Any]:
    """The same trainings by hand: synthetic data as the study's source says, then `train` per model."""
    spec = tomllib.loads(STUDY.read_text())
    _, images, size = spec["data"]["source"].split(":")
    env = {**os.environ, "CI": "1"}
    cli = [sys.executable, "-m", "chexvision"]
    data = work / "data"
    started = time.perf_counter()
    subprocess.run([*cli, "data", "synth", "--out", str(data), "--images", images, "--size", size],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    for model in spec["models"]:
        sets = [a for item in model.get("set", []) for a in ("--set", item)]
        sets += ["--set", f"seed={spec['seeds'][0]}", "--split-scheme", spec["data"]["split_scheme"]]
        cmd = [*cli, "train", "--model", model["name"], "--preset", model["preset"], "--data", str(data),
               "--out", str(work / model["name"]), *sets]  # fmt: skip
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    base = args.work or Path(tempfile.mkdtemp(prefix="chexvision-smoke-study-"))
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        load = os.getloadavg()[0]
        study = study_round(base / f"study-{i}")
        baseline = baseline_round(base / f"baseline-{i}")
        rounds.append({"load_average_1m_before": round(load, 2), "study": study, "baseline": baseline})
    study_s = [r["study"]["seconds"] for r in rounds]
    result = {
        "command": f"chexvision study run {STUDY.relative_to(ROOT)} --wait",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "rounds": rounds,
        "study_median_seconds": statistics.median(study_s),
        "baseline_median_seconds": statistics.median(r["baseline"]["seconds"] for r in rounds),
        "target_seconds": TARGET_SECONDS,
        "meets_target": statistics.median(study_s) < TARGET_SECONDS,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
