"""The study's head-to-head report: per-model seed ensembles, the comparison table, paired tests, references.

Inputs are what evaluation wrote for each finished run (its metrics.json test section and the per-image
predictions CSV it points at), so nothing is predicted again. Per model: the seeds' test macro AUC as mean +- sd,
and the ensemble (mean of the seeds' probabilities) scored by `score_predictions` with its patient-bootstrap CI
(the pooled CI; thresholds cross-fitted by patient on the evaluated split, as no validation predictions are kept).
Between the two models' ensembles: the paired patient bootstrap of the macro-AUROC difference and DeLong per
class with Holm's correction (`chexvision.evaluate.bootstrap` / `significance`, as `chexvision compare` does).
Rendered from `templates/report.{md,html}.j2`; `summary.json` holds every number.
"""

from __future__ import annotations

import json
import statistics
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import paired_bootstrap
from chexvision.evaluate.compare import run_summary
from chexvision.evaluate.predictions import Predictions, ensemble, score_predictions
from chexvision.evaluate.report import delong_rows, format_estimate, format_p
from chexvision.evaluate.significance import per_class_delong
from chexvision.files import atomic_write_text
from chexvision.hub.card import REFERENCES
from chexvision.labels import LABELS, label_matrix
from chexvision.study.state import LogicalRun, Phase, StudyState

__all__ = ["publish_report", "read_predictions", "study_summary", "write_study_report"]

REPORT_FILES = {"markdown": "report.md", "html": "report.html", "summary": "summary.json"}


def read_predictions(path: Path) -> Predictions:
    """A predictions CSV as evaluation writes it (`Predictions.write_csv`) read back, rows sorted by file name."""
    if not Path(path).is_file():
        raise BadInputError(f"predictions file {path} is missing", "finish the run again: `chexvision study resume`")
    frame = pd.read_csv(path).sort_values("filename", kind="stable").reset_index(drop=True)
    y14 = label_matrix([str(v) if isinstance(v, str) else "No Finding" for v in frame["labels"]]).astype(np.float32)
    return Predictions(
        filenames=[str(f) for f in frame["filename"]],
        patient_ids=frame["patient_id"].to_numpy(np.int64),
        y14=y14,
        ybin=(y14.max(axis=1) > 0.5).astype(np.float32),
        p14=frame[[f"prob_{label}" for label in LABELS]].to_numpy(np.float64),
        pbin=frame["prob_abnormal"].to_numpy(np.float64),
        source=str(path),
    )


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _model_block(state: StudyState, model: str, runs: list[LogicalRun]) -> tuple[dict[str, Any], Predictions]:
    summaries = [run_summary(Path(r.run_dir or "")) for r in runs]
    preds = [read_predictions(Path(s["predictions"] or "")) for s in summaries]
    ens = ensemble(preds) if len(preds) > 1 else preds[0]
    ev = state.spec.evaluation
    score = score_predictions(ens, None, bootstrap=ev.bootstrap, seed=ev.seed)
    aucs = [float(s["macro_auc"]) for s in summaries if isinstance(s["macro_auc"], int | float)]
    ci = score.get("ci") or {}
    block = {
        "model": model,
        "seeds": [r.seed for r in runs],
        "run_ids": [r.run_id for r in runs],
        "chains": [r.chain for r in runs],
        "num_params": summaries[0]["num_params"],
        "epochs_to_best": [s["epochs_to_best"] for s in summaries],
        "epochs_run": [s["epochs_run"] for s in summaries],
        "seed_macro_auc": aucs,
        "macro_auc_mean": statistics.fmean(aucs) if aucs else None,
        "macro_auc_sd": _sd(aucs),
        "seed_binary_auc": [s["binary_auc"] for s in summaries],
        "seed_binary_f1": [s["binary_f1_youden"] for s in summaries],
        "ensemble": {
            "macro_auc": score.get("macro_auc"),
            "macro_auc_ci": ci.get("macro_auc"),
            "binary_auc": score.get("binary_auc"),
            "binary_auc_ci": ci.get("binary_auc"),
            "binary_f1_youden": score.get("binary_f1_youden"),
            "per_class_auc": score.get("per_class_auc") or {},
            "fitted_on": score.get("fitted_on"),
            "n_images": len(ens),
        },
        "published": [r.published for r in runs],
    }
    return block, ens


def _pair(a: dict[str, Any], pa: Predictions, b: dict[str, Any], pb: Predictions, n: int, seed: int) -> dict[str, Any]:
    if pa.filenames != pb.filenames:
        raise BadInputError(
            f"{a['model']} and {b['model']} were evaluated on different images",
            "evaluate every run of the study on the same data ([evaluation] data)",
        )
    pair: dict[str, Any] = {"a": a["model"], "b": b["model"], "n_images": len(pa)}
    if n > 0:
        pair.update(paired_bootstrap(pa.y14, pa.p14, pb.p14, pa.patient_ids, n, seed))
    pair["delong"] = per_class_delong(pa.y14, pa.p14, pb.p14)
    return pair


def study_summary(state: StudyState) -> dict[str, Any]:
    """Every number of the report: per model (seeds, ensemble) and per pair of models (paired tests)."""
    done = [r for r in state.runs if r.phase is Phase.DONE]
    models = [m.name for m in state.spec.models if any(r.model == m.name for r in done)]
    blocks, ens = {}, {}
    for model in models:
        blocks[model], ens[model] = _model_block(state, model, [r for r in done if r.model == model])
    ev = state.spec.evaluation
    pairs = [_pair(blocks[a], ens[a], blocks[b], ens[b], ev.bootstrap, ev.seed) for a, b in combinations(models, 2)]
    return {
        "name": state.name,
        "split": ev.split,
        "split_scheme": state.spec.split_scheme,
        "data": state.spec.data,
        "backend": state.spec.backend.name,
        "bootstrap": ev.bootstrap,
        "models": list(blocks.values()),
        "pairs": pairs,
        "failed": [
            {"model": r.model, "seed": r.seed, "error": r.error} for r in state.runs if r.phase is not Phase.DONE
        ],
        "references": list(REFERENCES),
    }


def _estimate(value: Any, ci: Any = None) -> str:
    return format_estimate(float(value), ci) if isinstance(value, int | float) else "n/a"


def _mean_sd(block: dict[str, Any]) -> str:
    mean, sd = block["macro_auc_mean"], block["macro_auc_sd"]
    if mean is None:
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}" if sd is not None else f"{mean:.3f} (one seed)"


def _table(summary: dict[str, Any]) -> dict[str, Any]:
    """The comparison table: one row per quantity, one column per model (the original deck's layout)."""
    models = summary["models"]

    def row(name: str, cells: list[str]) -> dict[str, Any]:
        return {"name": name, "cells": cells}

    rows = [
        row("parameters", [f"{m['num_params']:,}" if m["num_params"] else "n/a" for m in models]),
        row("seeds", [", ".join(map(str, m["seeds"])) for m in models]),
        row("epochs to best (per seed)", [", ".join(map(str, m["epochs_to_best"])) for m in models]),
        row("macro AUROC, mean ± sd over seeds", [_mean_sd(m) for m in models]),
        row("macro AUROC, seed ensemble [95% CI]",
            [_estimate(m["ensemble"]["macro_auc"], m["ensemble"]["macro_auc_ci"]) for m in models]),
        row("binary AUROC, ensemble [95% CI]",
            [_estimate(m["ensemble"]["binary_auc"], m["ensemble"]["binary_auc_ci"]) for m in models]),
        row("binary F1 @ Youden, ensemble", [_estimate(m["ensemble"]["binary_f1_youden"]) for m in models]),
        *[row(f"AUROC {label}", [_estimate(m["ensemble"]["per_class_auc"].get(label)) for m in models])
          for label in LABELS],
    ]  # fmt: skip
    return {"columns": [m["model"] for m in models], "rows": rows}


def _pair_context(pair: dict[str, Any]) -> dict[str, Any]:
    ci = pair.get("ci")
    return {
        "a": pair["a"], "b": pair["b"], "n_images": pair["n_images"],
        "diff": f"{pair['diff']:+.4f}" if "diff" in pair else None,
        "ci": f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "n/a",
        "p": format_p(pair.get("p_value")),
        "delong": delong_rows(pair["delong"], pair["a"], pair["b"]),
        "tested": pair["delong"]["tested"], "survivors": ", ".join(pair["delong"]["significant"]) or "none",
    }  # fmt: skip


def _render(summary: dict[str, Any]) -> tuple[str, str]:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("chexvision.study", "templates"), undefined=StrictUndefined,
        autoescape=select_autoescape(["html.j2"], default_for_string=False, default=False), keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
    )  # fmt: skip
    context = {
        "s": summary, "table": _table(summary), "pairs": [_pair_context(p) for p in summary["pairs"]],
        "fitted_on": next((m["ensemble"]["fitted_on"] for m in summary["models"]), None),
    }  # fmt: skip
    return env.get_template("report.md.j2").render(**context), env.get_template("report.html.j2").render(**context)


def write_study_report(state: StudyState, out: Path) -> dict[str, Path]:
    """`report.md`, `report.html` and `summary.json` under `out`."""
    summary = study_summary(state)
    markdown, html = _render(summary)
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / name for kind, name in REPORT_FILES.items()}
    atomic_write_text(paths["markdown"], markdown)
    atomic_write_text(paths["html"], html)
    atomic_write_text(paths["summary"], json.dumps(summary, indent=2, default=_jsonable) + "\n")
    return paths


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def publish_report(state: StudyState, out: Path) -> str:
    """Publish the report beside the models: a `<study>-report` repo (README.md = the Markdown report), in the hub
    folder or on the Hub (private unless the study says public). Returns where it went."""
    from chexvision.study.target import publish_target

    hub_dir = publish_target(state)
    repo = state.spec.repo_for("report")
    files = {"README.md": out / REPORT_FILES["markdown"], "report.html": out / REPORT_FILES["html"],
             "summary.json": out / REPORT_FILES["summary"]}  # fmt: skip
    if hub_dir is not None:
        import shutil

        target = hub_dir / repo
        target.mkdir(parents=True, exist_ok=True)
        for name, path in files.items():
            shutil.copyfile(path, target / name)
        return str(target)
    from chexvision.hf import HubClient

    client = HubClient()
    repo_id = repo if "/" in repo else f"{client.whoami()}/{repo}"
    client.ensure_repo(repo_id, private=not state.spec.publishing.public)
    message = f"Study {state.name}: head-to-head report"
    client.commit(repo_id, files, deletes=[], message=message, description=message)
    return f"https://huggingface.co/{repo_id}"
