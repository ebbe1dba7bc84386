"""Patient-bootstrap speed: the vectorised bootstrap against the per-replicate scikit-learn baseline, same run.

    python benchmarks/bootstrap_speed.py [--images 22433] [--patients 2800] [--replicates 1000] [--seed 0]
                                         [--cli] [--skip-baseline]

Synthetic scores for `--images` images of `--patients` patients at the NIH prevalences (scores stored as float32,
like a model's, so there are ties). Times, in CPU seconds of this process, (1) the 14-class AUROC + AUPRC bootstrap
of `chexvision.evaluate.bootstrap.bootstrap_classification` and of `baseline_bootstrap_classification` below, and
(2) the paired bootstrap of `compare` against `baseline_paired_bootstrap`, interleaved (baseline, ours, ours) and
checks the intervals are identical. With `--cli`, also the wall time of `chexvision evaluate --predictions ...
--bootstrap B` and of the same command with `--bootstrap 0`. Prints JSON.

The baselines are the implementation `bootstrap.py` had before it was vectorised, kept here verbatim (and used by
tests/test_eval_bootstrap.py as the reference): one scikit-learn call per replicate on the resampled images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from chexvision.engine.metrics import auprc, auroc
from chexvision.evaluate.bootstrap import bootstrap_classification, bootstrap_samples, paired_bootstrap
from chexvision.evaluate.bootstrap import percentile_interval as _interval
from chexvision.labels import LABELS

# NIH ChestX-ray14 prevalences (Data_Entry_2017, all images), in LABELS order.
PREVALENCE = (0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013, 0.047, 0.042, 0.021, 0.022, 0.015, 0.030, 0.002)


def _per_class(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    yb = y > 0.5
    n_pos = yb.sum(axis=0)
    defined = (n_pos > 0) & (n_pos < len(yb))
    out = np.full(y.shape[1], np.nan)
    if defined.any():
        fn = roc_auc_score if metric == "auc" else average_precision_score
        out[defined] = np.atleast_1d(fn(yb[:, defined], p[:, defined], average=None))
    return out


def _as_list(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def baseline_replicates(
    y14: np.ndarray, p14: np.ndarray, ybin: np.ndarray, pbin: np.ndarray, pids: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[float | None], list[float | None]]:
    """The old loop: per-class AUROC [n, 14], AUPRC [n, 14], binary AUROC and AUPRC of each resample."""
    auc_rep, ap_rep, bin_auc, bin_ap = [], [], [], []
    for idx in bootstrap_samples(pids, n, seed):
        auc_rep.append(_per_class("auc", y14[idx], p14[idx]))
        ap_rep.append(_per_class("auprc", y14[idx], p14[idx]))
        bin_auc.append(auroc(ybin[idx], pbin[idx]))
        bin_ap.append(auprc(ybin[idx], pbin[idx]))
    return np.array(auc_rep), np.array(ap_rep), bin_auc, bin_ap


def baseline_bootstrap_classification(
    y14: np.ndarray, p14: np.ndarray, ybin: np.ndarray, pbin: np.ndarray, pids: np.ndarray, n: int, seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:  # fmt: skip
    """The old `bootstrap_classification` (its macro drops a class undefined in a replicate: nanmean)."""
    auc_rep, ap_rep, bin_auc, bin_ap = baseline_replicates(y14, p14, ybin, pbin, pids, n, seed)
    out: dict[str, Any] = {"n": n, "alpha": alpha, "seed": seed, "unit": "patient"}
    for key, reps in (("auc", auc_rep), ("auprc", ap_rep)):
        keep = np.isfinite(_per_class(key, y14, p14))
        with np.errstate(all="ignore"):
            macros = np.nanmean(np.where(keep, reps, np.nan), axis=1) if keep.any() else np.array([])
        out[f"macro_{key}"] = _as_list(_interval(list(macros), alpha))
        out[f"per_class_{key}"] = {
            name: _as_list(_interval(list(reps[:, k]), alpha)) if keep[k] else None for k, name in enumerate(LABELS)
        }
    out["binary_auc"] = _as_list(_interval([v for v in bin_auc if v is not None], alpha))
    out["binary_auprc"] = _as_list(_interval([v for v in bin_ap if v is not None], alpha))
    return out


def baseline_paired_bootstrap(
    y14: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, pids: np.ndarray, n: int, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """The old `paired_bootstrap`."""
    keep = np.isfinite(_per_class("auc", y14, p_a))

    def macro(y: np.ndarray, p: np.ndarray) -> float:
        vals = _per_class("auc", y, p)[keep]
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

    diffs = [macro(y14[idx], p_a[idx]) - macro(y14[idx], p_b[idx]) for idx in bootstrap_samples(pids, n, seed)]
    arr = np.asarray([d for d in diffs if np.isfinite(d)])
    p_value = min(1.0, 2.0 * min(float(np.mean(arr <= 0)), float(np.mean(arr >= 0)))) if arr.size else None
    return {"diff": macro(y14, p_a) - macro(y14, p_b), "ci": _as_list(_interval(list(arr), alpha)), "p_value": p_value}


def synthetic_problem(images: int, patients: int, seed: int) -> dict[str, np.ndarray]:
    """NIH prevalences, images spread over the patients at random, float32 scores that separate the classes a little."""
    rng = np.random.default_rng(seed)
    pids = np.sort(rng.integers(0, patients, size=images))
    y14 = (rng.random((images, 14)) < np.array(PREVALENCE)).astype(np.float32)
    logits = rng.normal(size=(images, 14)) + 1.2 * y14
    p14 = (1 / (1 + np.exp(-logits + 2))).astype(np.float32).astype(np.float64)
    pbin = p14.max(axis=1)
    p_b = np.clip(p14 + rng.normal(0, 0.05, p14.shape), 0, 1).astype(np.float32).astype(np.float64)
    return {"y14": y14, "p14": p14, "ybin": (y14.sum(1) > 0).astype(np.float32), "pbin": pbin, "pids": pids, "p_b": p_b}


def _cpu(fn: Any, *args: Any, **kw: Any) -> tuple[float, Any]:
    start = time.process_time()
    value = fn(*args, **kw)
    return time.process_time() - start, value


def _same(a: Any, b: Any, tol: float = 1e-12) -> bool:
    if isinstance(a, dict):
        return all(_same(a[k], b[k], tol) for k in a if k in b)
    if isinstance(a, list | tuple) and a and isinstance(a[0], float | int):
        return len(a) == len(b) and bool(np.allclose(a, b, rtol=0, atol=tol))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    return bool(a == b)


def _write_csvs(prob: dict[str, np.ndarray], folder: Path) -> tuple[Path, Path]:
    import pandas as pd

    names = [f"{pid:08d}_{i:03d}.png" for i, pid in enumerate(prob["pids"])]
    labels = ["|".join(n for k, n in enumerate(LABELS) if row[k]) or "No Finding" for row in prob["y14"]]
    pd.DataFrame({"Image Index": names, "Finding Labels": labels, "Patient ID": prob["pids"]}).to_csv(
        folder / "labels.csv", index=False
    )
    frame = pd.DataFrame({"Image Index": names, **{f"prob_{n}": prob["p14"][:, k] for k, n in enumerate(LABELS)}})
    frame.to_csv(folder / "predictions.csv", index=False)
    return folder / "predictions.csv", folder / "labels.csv"


def _cli_seconds(pred: Path, labels: Path, replicates: int) -> float:
    cmd = [sys.executable, "-m", "chexvision", "evaluate", "--predictions", str(pred), "--labels", str(labels),
           "--bootstrap", str(replicates), "--json"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=22433)
    parser.add_argument("--patients", type=int, default=2800)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cli", action="store_true", help="also time `chexvision evaluate --predictions`")
    parser.add_argument("--skip-baseline", action="store_true", help="time only ours (no baseline, no check)")
    args = parser.parse_args(argv)
    prob = synthetic_problem(args.images, args.patients, args.seed)
    y14, p14, ybin, pbin, pids, p_b = (prob[k] for k in ("y14", "p14", "ybin", "pbin", "pids", "p_b"))
    n, seed = args.replicates, args.seed
    result: dict[str, Any] = {"images": args.images, "patients": len(np.unique(pids)), "replicates": n}
    ties = int(sum(len(c) - len(np.unique(c)) for c in p14.T))
    result["tied_scores"] = ties
    ours_runs = []
    if not args.skip_baseline:
        result["baseline_cpu_s"], old = _cpu(baseline_bootstrap_classification, y14, p14, ybin, pbin, pids, n, seed)
    for _ in range(2):
        seconds, new = _cpu(bootstrap_classification, y14, p14, ybin, pbin, pids, n, seed)
        ours_runs.append(seconds)
    result["ours_cpu_s"] = min(ours_runs)
    if not args.skip_baseline:
        result["identical"] = _same(old, new) and new["degenerate_replicates"] == {}
        result["speedup"] = result["baseline_cpu_s"] / result["ours_cpu_s"]
        result["paired_baseline_cpu_s"], old_p = _cpu(baseline_paired_bootstrap, y14, p14, p_b, pids, n, seed)
    result["paired_ours_cpu_s"], new_p = _cpu(paired_bootstrap, y14, p14, p_b, pids, n, seed)
    if not args.skip_baseline:
        result["paired_identical"] = _same(old_p, new_p)
        result["paired_speedup"] = result["paired_baseline_cpu_s"] / result["paired_ours_cpu_s"]
    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            pred, labels = _write_csvs(prob, Path(tmp))
            result["cli_bootstrap_0_s"] = _cli_seconds(pred, labels, 0)
            result[f"cli_bootstrap_{n}_s"] = _cli_seconds(pred, labels, n)
            result["cli_ratio"] = result[f"cli_bootstrap_{n}_s"] / result["cli_bootstrap_0_s"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
