"""CLI start-up latency: median wall time of `chexvision --help` and `chexvision status` against `python -c pass`.

Each command runs N times in a fresh process (after one warm-up run, so the page cache is warm), in a temporary
CHEXVISION_HOME holding a registry with a few finished runs (status answers from the registry, no network).
The target (DESIGN §5, issue 4): under 0.5 s on a 2-core machine. Usage:

    .venv/bin/python benchmarks/cli_latency.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5


def _chexvision() -> list[str]:
    script = Path(sys.executable).parent / "chexvision"
    return [str(script)] if script.exists() else [sys.executable, "-m", "chexvision"]


def _time(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def _seed_registry(env: dict[str, str]) -> None:
    code = (
        "from chexvision.remote import home\n"
        "from dispatch.registry import Registry, RunRecord\n"
        "with Registry.at(home()) as reg:\n"
        "    for i in range(5):\n"
        "        reg.add(RunRecord(run_id=f'densenet-20261126-0000-{i:04x}', backend='local', label='densenet',"
        " status='complete', summary={'best_val_auc': 0.8}, meta={'model': 'densenet'}))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs per command")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="chexvision-latency-"))
    env = dict(os.environ, CHEXVISION_HOME=str(home), KAGGLE_CONFIG_DIR=str(home / "kaggle"))
    try:
        _seed_registry(env)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "chexvision --help": [*_chexvision(), "--help"],
            "chexvision status": [*_chexvision(), "status"],
        }
        results = {}
        for name, cmd in commands.items():
            times = _time(cmd, env, args.runs)
            results[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    baseline = results["python -c pass"]["median_s"]
    for r in results.values():
        r["over_baseline_s"] = r["median_s"] - baseline
        r["under_target"] = r["median_s"] < TARGET_S
    report = {"runs": args.runs, "cpus": os.cpu_count(), "python": sys.version.split()[0], "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.runs} runs each, {os.cpu_count()} CPUs, python {report['python']}; target < {TARGET_S} s")
    for name, r in results.items():
        flag = "ok" if r["under_target"] else "SLOW"
        print(
            f"  {name:<20} median {r['median_s']:.3f} s  (+{r['over_baseline_s']:.3f} s over python)"
            f"  min {r['min_s']:.3f}  max {r['max_s']:.3f}  {flag}"
        )


if __name__ == "__main__":
    main()
