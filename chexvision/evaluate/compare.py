"""`chexvision compare`: the head-to-head table of evaluated runs, a paired bootstrap of macro AUROC, and DeLong's
test per class with Holm's correction.

Each run must have been evaluated (`chexvision evaluate RUN --data D`): its metrics.json `test` section gives the
numbers and points at the per-image predictions, which the paired tests use on the images both runs were scored on.

The macro difference is tested by the paired patient bootstrap (images of one patient are correlated); each class
by DeLong's test for two correlated ROC curves (`chexvision.evaluate.significance`), with Holm's step-down
correction across the classes tested, so "which classes differ" holds at the family-wise level `alpha`.

A bootstrap p-value has a resolution of 1/B: when no replicate difference lies on the far side of zero the
estimate is 0, which is not a p-value anyone should read as zero. The JSON keeps the computed number (`p_value`:
0.0) and adds `p_value_upper_bound` (1/B in that case, else null); the Markdown prints `< 0.001` (B = 1000).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import paired_bootstrap
from chexvision.evaluate.report import delong_rows, format_estimate
from chexvision.evaluate.significance import per_class_delong
from chexvision.files import atomic_write_text
from chexvision.labels import LABELS, label_matrix
from chexvision.rundir import METRICS_JSON, RunInfo, read_run_dir

__all__ = ["compare_runs", "comparison_markdown", "run_summary", "write_comparison"]


def _num_params(info: RunInfo, test: dict[str, Any]) -> int | None:
    if test.get("num_params"):
        return int(test["num_params"])
    model = info.config.get("model")
    if not model:
        return None
    from chexvision.models import count_parameters

    return count_parameters(model["name"], **dict(model.get("kwargs") or {}))


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Name, model, parameters, epochs to best and the evaluated test numbers of one run."""
    info = read_run_dir(Path(run_dir), required=())
    test = info.metrics.get("test")
    if not test:
        raise BadInputError(
            f"{info.run_dir} has no test evaluation in {METRICS_JSON}",
            f"run `chexvision evaluate {info.run_dir} --data DIR` first",
        )
    ci = test.get("ci") or {}
    return {
        "name": info.run_id,
        "run_dir": str(info.run_dir),
        "model": info.run.get("model") or (info.config.get("model") or {}).get("name"),
        "num_params": _num_params(info, test),
        "epochs_to_best": info.history.get("best_epoch"),
        "epochs_run": len(info.history.get("epochs") or []),
        "macro_auc": test.get("macro_auc"),
        "macro_auc_ci": ci.get("macro_auc"),
        "binary_auc": test.get("binary_auc"),
        "binary_auc_ci": ci.get("binary_auc"),
        "binary_f1_youden": test.get("binary_f1_youden"),
        "per_class_auc": test.get("per_class_auc") or {},
        "tta_macro_auc": (test.get("tta") or {}).get("macro_auc"),
        "n_images": test.get("n_images"),
        "predictions": test.get("predictions"),
        "data": test.get("data"),
    }


def _load_predictions(summary: dict[str, Any]) -> pd.DataFrame:
    path = Path(summary["predictions"] or "")
    if not path.is_file():
        raise BadInputError(
            f"the test predictions of {summary['name']} ({path}) are missing",
            f"re-run `chexvision evaluate {summary['run_dir']} --data DIR`",
        )
    return pd.read_csv(path).drop_duplicates("filename").set_index("filename")


def _paired(a: dict[str, Any], b: dict[str, Any], n: int, seed: int, alpha: float) -> dict[str, Any]:
    fa, fb = _load_predictions(a), _load_predictions(b)
    common = fa.index.intersection(fb.index)
    if len(common) == 0:
        raise BadInputError(
            f"{a['name']} and {b['name']} were evaluated on no common image",
            "evaluate both on the same --data and --split",
        )
    fa, fb = fa.loc[common], fb.loc[common]
    cols = [f"prob_{name}" for name in LABELS]
    y14 = label_matrix(list(fa["labels"].astype(str)))
    p_a, p_b = fa[cols].to_numpy(np.float64), fb[cols].to_numpy(np.float64)
    pair: dict[str, Any] = {"a": a["name"], "b": b["name"], "n_images": len(common)}
    if n > 0:
        pair.update(paired_bootstrap(y14, p_a, p_b, fa["patient_id"].to_numpy(), n, seed))
        replicates = int(pair.get("replicates") or n)  # replicates with a finite difference
        pair["p_value_upper_bound"] = 1.0 / replicates if pair["p_value"] == 0.0 else None
    pair["delong"] = per_class_delong(y14, p_a, p_b, alpha)
    return pair


def compare_runs(
    run_dirs: Sequence[Path], *, bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Summaries of every run and, for every pair, the paired bootstrap of macro AUROC(a) - macro AUROC(b)
    (`bootstrap` > 0) and the per-class DeLong tests with Holm's correction at family-wise level `alpha`."""
    if len(run_dirs) < 2:
        raise BadInputError("compare needs at least two runs", "pass two or more RUN_DIRs")
    summaries = [run_summary(Path(d)) for d in run_dirs]
    pairs = [_paired(a, b, bootstrap, seed, alpha) for a, b in combinations(summaries, 2)]
    return {"runs": summaries, "pairs": pairs, "bootstrap": bootstrap, "seed": seed, "alpha": alpha}


def comparison_markdown(result: dict[str, Any]) -> str:
    """The head-to-head table (rows = metrics, columns = runs) and the paired tests, as Markdown."""
    runs = result["runs"]
    head = "| | " + " | ".join(r["name"] for r in runs) + " |\n|---|" + "---|" * len(runs) + "\n"
    rows = [
        ("model", [str(r["model"]) for r in runs]),
        ("parameters", [f"{r['num_params']:,}" if r["num_params"] else "n/a" for r in runs]),
        ("epochs to best", [str(r["epochs_to_best"]) for r in runs]),
        ("test macro AUROC [95% CI]", [format_estimate(r["macro_auc"], r["macro_auc_ci"]) for r in runs]),
        ("test macro AUROC, TTA", [format_estimate(r["tta_macro_auc"]) for r in runs]),
        ("binary AUROC [95% CI]", [format_estimate(r["binary_auc"], r["binary_auc_ci"]) for r in runs]),
        ("binary F1 @ Youden (chosen on val)", [format_estimate(r["binary_f1_youden"]) for r in runs]),
        *[(f"AUROC {label}", [format_estimate(r["per_class_auc"].get(label)) for r in runs]) for label in LABELS],
    ]
    body = "".join(f"| {name} | " + " | ".join(cells) + " |\n" for name, cells in rows)
    text = "# Head-to-head comparison (test split)\n\n" + head + body
    bootstrapped = [p for p in result["pairs"] if "diff" in p]
    if bootstrapped:
        text += (
            f"\n## Paired bootstrap of the macro-AUROC difference ({result['bootstrap']} patient resamples)\n\n"
            "| A | B | images | AUROC(A) - AUROC(B) | 95% CI | p (two-sided) |\n|---|---|---|---|---|---|\n"
        )
        for p in bootstrapped:
            ci = p["ci"] or [float("nan")] * 2
            interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
            text += f"| {p['a']} | {p['b']} | {p['n_images']} | {p['diff']:+.4f} | {interval} | {_bootstrap_p(p)} |\n"
    for p in result["pairs"]:
        text += _delong_markdown(p)
    return text


def _bootstrap_p(pair: dict[str, Any]) -> str:
    if pair["p_value"] is None:
        return "n/a"
    if pair.get("p_value_upper_bound") is not None:
        return f"< {pair['p_value_upper_bound']:.2g}"  # no replicate crossed zero: below the resolution 1/B
    return f"{pair['p_value']:.3f}"


def _delong_markdown(pair: dict[str, Any]) -> str:
    delong = pair["delong"]
    text = (
        f"\n## Per-class AUROC: {pair['a']} vs {pair['b']} (DeLong, Holm-corrected over {delong['tested']} classes, "
        f"family-wise alpha {delong['alpha']:g})\n\n"
        "| class | positives | AUROC A | AUROC B | A - B | p | p (Holm) | differs |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    for row in delong_rows(delong):
        text += "| " + " | ".join(row) + " |\n"
    survivors = ", ".join(delong["significant"]) or "none"
    return text + f"\nDifferences that survive Holm's correction: {survivors}.\n"


def write_comparison(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """`compare.json`, `compare.md` and `compare.csv` (one row per run) under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "markdown": out / "compare.md", "csv": out / "compare.csv"}
    atomic_write_text(paths["json"], json.dumps(result, indent=2) + "\n")
    atomic_write_text(paths["markdown"], comparison_markdown(result))
    flat = [
        {k: v for k, v in r.items() if k != "per_class_auc"} | {f"auc_{k}": v for k, v in r["per_class_auc"].items()}
        for r in result["runs"]
    ]
    pd.DataFrame(flat).to_csv(paths["csv"], index=False)
    return paths
