"""The evaluation report: one self-contained HTML page (figures inlined as base64 PNG) and a Markdown twin.

Figures (matplotlib, Agg): ROC and precision-recall curves, reliability diagrams before/after temperature
scaling, per-class AUROC bars with their bootstrap CIs, and Grad-CAM overlays. The summary table's columns are the
metrics table's evaluation rows (`chexvision.evaluate.metrics.METRICS`). Both documents are rendered from Jinja
templates in `templates/` with `StrictUndefined`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from chexvision.evaluate.metrics import TEST, Metric, Threshold, metrics_for
from chexvision.evaluate.predictions import Predictions
from chexvision.files import atomic_write_text
from chexvision.labels import LABELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["format_estimate", "render_report", "summary_columns", "summary_rows", "write_report"]


def format_estimate(value: float | None, ci: Sequence[float] | None = None) -> str:
    """`0.812 [0.790, 0.833]`: a metric with its interval, as every table of the evaluation shows it."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _scores(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(model name, variant, score) for every run and the ensemble, plain then TTA."""
    out = []
    models = dict(results["runs"])
    if "ensemble" in results:
        models["ensemble"] = results["ensemble"]
    for name, entry in models.items():
        for variant in ("plain", "tta"):
            if variant in entry:
                out.append((name, variant, entry[variant]))
    return out


def summary_columns() -> list[tuple[str, tuple[Metric, ...]]]:
    """The summary's metric columns, from the metrics table: (header, metrics shown in that column).

    A threshold-free metric has a column of its own; the metrics at one threshold share one (`binary @ Youden`).
    """
    columns: dict[str, list[Metric]] = {}
    for m in metrics_for(TEST):
        if m.threshold is Threshold.NONE:
            header = m.label + (" [95% CI]" if m.ci else "")
        else:
            header = f"binary @ {m.threshold.label}"
        columns.setdefault(header, []).append(m)
    return [(header, tuple(ms)) for header, ms in columns.items()]


def _summary_cell(score: dict[str, Any], metrics: tuple[Metric, ...]) -> str:
    ci = score.get("ci") or {}
    if len(metrics) == 1 and metrics[0].threshold is Threshold.NONE:
        m = metrics[0]
        return format_estimate(score.get(m.key), ci.get(m.key) if m.ci else None)
    if all(score.get(m.key) is None for m in metrics):
        return "n/a"  # no operating point (validation had one class)
    return ", ".join(f"{m.label} {format_estimate(score.get(m.key))}" for m in metrics)


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, variant): the table's metrics as display strings, one per `summary_columns` column."""
    columns = summary_columns()
    return [
        {
            "model": name,
            "variant": "TTA" if variant == "tta" else "plain",
            "cells": [_summary_cell(score, metrics) for _, metrics in columns],
        }
        for name, variant, score in _scores(results)
    ]


def _per_class_rows(results: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    scores = [(f"{n}{' +TTA' if v == 'tta' else ''}", s) for n, v, s in _scores(results)]
    rows = []
    for label in LABELS:
        cells = []
        for _, s in scores:
            ci = (s.get("ci") or {}).get("per_class_auc", {}).get(label)
            cells.append(format_estimate(s["per_class_auc"][label], ci))
        rows.append({"label": label, "positives": scores[0][1]["positives"][label], "cells": cells})
    return [name for name, _ in scores], rows


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _curve_figure(preds: dict[str, Predictions], kind: str) -> bytes:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    first_name, first = next(iter(preds.items()))
    curve = roc_curve if kind == "roc" else precision_recall_curve
    for k, label in enumerate(LABELS):
        y = first.y14[:, k] > 0.5
        if 0 < y.sum() < len(y):
            a, b, _ = curve(y, first.p14[:, k])
            color = plt.get_cmap("tab20")(k)  # 14 curves: the default 10-colour cycle would repeat
            axes[0].plot(*((a, b) if kind == "roc" else (b, a)), lw=1, color=color, label=label)
    for name, p in preds.items():
        if 0 < p.ybin.sum() < len(p.ybin):
            a, b, _ = curve(p.ybin > 0.5, p.pbin)
            axes[1].plot(*((a, b) if kind == "roc" else (b, a)), lw=1.5, label=name)
    x_label, y_label = ("false positive rate", "true positive rate") if kind == "roc" else ("recall", "precision")
    for ax, title in ((axes[0], f"{first_name}: 14 labels"), (axes[1], "binary (abnormal)")):
        if kind == "roc":
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel=x_label, ylabel=y_label, title=title, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
    return _png(fig)


def _reliability_figure(results: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    scores = [(n, s) for n, v, s in _scores(results) if v == "plain"]
    fig, axes = plt.subplots(len(scores), 2, figsize=(10, 4.6 * len(scores)), squeeze=False, layout="constrained")
    for row, (name, s) in enumerate(scores):
        for col, head in enumerate(("binary", "multi")):
            cal, ax = s["calibration"][head], axes[row][col]
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            for when, style in (("before", "o-"), ("after", "s--")):
                c = cal[f"curve_{when}"]
                ece = cal[f"ece_{when}"]
                ax.plot(c["mean_predicted"], c["fraction_positive"], style, ms=3, label=f"{when}: ECE {ece:.3f}")
            title = "binary head" if head == "binary" else "14 labels, pooled"
            ax.set(title=f"{name}: {title} (T={cal['temperature']:.2f})", xlim=(0, 1), ylim=(0, 1))
            ax.set(xlabel="mean predicted probability", ylabel="observed frequency")
            ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def _bars_figure(results: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    scores = [(f"{n}{' +TTA' if v == 'tta' else ''}", s) for n, v, s in _scores(results)]
    fig, ax = plt.subplots(figsize=(13, 4.5))
    width = 0.8 / len(scores)
    x = np.arange(len(LABELS))
    for j, (name, s) in enumerate(scores):
        vals = np.array([np.nan if (v := s["per_class_auc"][lb]) is None else v for lb in LABELS])
        cis = (s.get("ci") or {}).get("per_class_auc", {})
        lo = np.array([vals[k] - cis[lb][0] if cis.get(lb) else 0.0 for k, lb in enumerate(LABELS)])
        hi = np.array([cis[lb][1] - vals[k] if cis.get(lb) else 0.0 for k, lb in enumerate(LABELS)])
        # a percentile interval need not contain the point estimate (small samples): no negative bars
        yerr = [np.clip(np.nan_to_num(lo), 0, None), np.clip(np.nan_to_num(hi), 0, None)]
        ax.bar(x + j * width - 0.4 + width / 2, vals, width, yerr=yerr, capsize=2, label=name)
    ax.axhline(0.5, color="k", lw=0.6, ls=":")
    ax.set_xticks(x, LABELS, rotation=35, ha="right")
    ax.set(ylabel="AUROC (95% CI)", ylim=(0, 1.05), title="Per-class AUROC with patient-bootstrap CIs")
    ax.legend(fontsize=8, ncol=min(4, len(scores)))
    return _png(fig)


def _figures(results: dict[str, Any], preds: dict[str, dict[str, Predictions]]) -> list[tuple[str, str, bytes]]:
    plain = {name: by_key["plain"] for name, by_key in preds.items()}
    return [
        ("roc", "ROC curves", _curve_figure(plain, "roc")),
        ("pr", "Precision-recall curves", _curve_figure(plain, "pr")),
        ("reliability", "Reliability diagrams (temperature fitted on validation)", _reliability_figure(results)),
        ("per_class_auc", "Per-class AUROC", _bars_figure(results)),
    ]


def _localization_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, entry in results["runs"].items():
        loc = entry.get("localization")
        if not loc or not loc["overall"].get("n"):
            continue
        for label, s in [("all", loc["overall"]), *loc["per_class"].items()]:
            cells = [f"{s['pointing']:.2f} ({s['pointing_chance']:.2f})"]
            cells += [f"{s[f'iobb@{t:g}']:.2f} ({s[f'iobb@{t:g}_chance']:.2f})" for t in loc["thresholds"]]
            rows.append({"model": name, "label": label, "n": s["n"], "cells": cells})
    return rows


def render_report(
    results: dict[str, Any], preds: dict[str, dict[str, Predictions]], figure_dir: Path
) -> tuple[str, str]:
    """(html, markdown) for an evaluation; figure PNGs are also written to `figure_dir` for the Markdown."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("chexvision.evaluate", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html.j2", "html"], default_for_string=False, default=False),
        keep_trailing_newline=True,
    )
    figure_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for key, title, png in _figures(results, preds):
        (figure_dir / f"{key}.png").write_bytes(png)
        figures.append({"title": title, "b64": base64.b64encode(png).decode(), "file": f"{figure_dir.name}/{key}.png"})
    cams = []
    for sample in results.get("cam_samples", []):
        path = Path(sample["path"])
        if path.is_file():
            cams.append({**sample, "b64": base64.b64encode(path.read_bytes()).decode(), "file": f"cam/{path.name}"})
    columns, per_class = _per_class_rows(results)
    first = next(iter(preds.values()))["plain"]
    context = {
        "results": results,
        "summary_columns": [header for header, _ in summary_columns()],
        "summary": summary_rows(results),
        "columns": columns,
        "per_class": per_class,
        "figures": figures,
        "cams": cams,
        "localization": _localization_rows(results),
        "thresholds": [f"{t:g}" for t in (0.1, 0.25, 0.5)],
        "n_images": len(first),
        "n_patients": len(np.unique(first.patient_ids)),
    }
    html = env.get_template("report.html.j2").render(**context)
    markdown = env.get_template("report.md.j2").render(**context)
    return html, markdown


def write_report(results: dict[str, Any], preds: dict[str, dict[str, Predictions]], out: Path) -> dict[str, Path]:
    """Write `report.html`, `report.md` and `figures/*.png` under `out`."""
    html, markdown = render_report(results, preds, out / "figures")
    paths = {"html": out / "report.html", "markdown": out / "report.md"}
    atomic_write_text(paths["html"], html)
    atomic_write_text(paths["markdown"], markdown)
    return paths
