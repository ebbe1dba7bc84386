"""The evaluation report: one self-contained HTML page (figures inlined as base64 PNG) and a Markdown twin.

Figures (`chexvision.evaluate.figures`): ROC and precision-recall curves, reliability diagrams before/after
temperature scaling with bin counts, per-class reliability, per-class AUROC bars with their bootstrap CIs, and
Grad-CAM overlays. Tables: the summary (its columns are the metrics table's evaluation rows,
`chexvision.evaluate.metrics.METRICS`), per-class AUROC, per-class calibration (ECE, Brier, slope, intercept; ECE
after the temperature and after per-class Platt scaling), and, when several runs are evaluated on the same images,
DeLong's test per class with Holm's correction for every pair. Where thresholds and temperature were fitted comes
from each score's `fitted_on`. Both documents are rendered from Jinja templates in `templates/` with
`StrictUndefined`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from chexvision.evaluate import figures
from chexvision.evaluate.calibration import MIN_PLATT_CLASS
from chexvision.evaluate.metrics import TEST, Metric, Threshold, metrics_for
from chexvision.evaluate.predictions import Predictions
from chexvision.evaluate.references import reference_sections
from chexvision.evaluate.significance import per_class_delong
from chexvision.evaluate.subgroup_report import subgroup_sections
from chexvision.files import atomic_write_text
from chexvision.labels import LABELS

__all__ = [
    "calibration_rows",
    "delong_rows",
    "fitted_on_text",
    "format_estimate",
    "format_p",
    "render_report",
    "summary_columns",
    "summary_rows",
    "write_report",
]


def format_estimate(value: float | None, ci: Sequence[float] | None = None) -> str:
    """`0.812 [0.790, 0.833]`: a metric with its interval, as every table of the evaluation shows it."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def format_p(p: float | None) -> str:
    """A p-value for a table: three decimals, or scientific notation below 0.001 (DeLong's can be 1e-30)."""
    if p is None:
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def delong_rows(delong: dict[str, Any], a: str = "A", b: str = "B") -> list[list[str]]:
    """Display rows of a `per_class_delong` result: class, positives, AUROC a, AUROC b, a - b, p, p (Holm), and
    whether the difference survives Holm's correction (`{a} higher`, `{b} higher` or `no`)."""
    rows = []
    for label, r in delong["per_class"].items():
        if r is None:
            rows.append([label, "-", "n/a", "n/a", "n/a", "n/a", "n/a", "not tested (< 2 positives or negatives)"])
            continue
        verdict = (f"{a} higher" if r["diff"] > 0 else f"{b} higher") if r["significant"] else "no"
        cells = [_num(r["auc_a"]), _num(r["auc_b"]), f"{r['diff']:+.3f}", format_p(r["p_value"]), format_p(r["p_holm"])]
        rows.append([label, str(r["positives"]), *cells, verdict])
    return rows


def fitted_on_text(score: dict[str, Any]) -> str:
    """Where a score's thresholds and temperature were fitted, as a phrase ("the validation split")."""
    fitted = str(score.get("fitted_on", "validation"))
    phrases = {"validation": "the validation split", "evaluated set": "the evaluated images themselves (optimistic)"}
    return phrases.get(fitted, fitted)


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
            undefined = label in (s.get("classes_not_defined") or ())  # not labelled by the data set
            cells.append("not defined" if undefined else format_estimate(s["per_class_auc"][label], ci))
        positives = (
            "-" if label in (scores[0][1].get("classes_not_defined") or ()) else scores[0][1]["positives"][label]
        )
        rows.append({"label": label, "positives": positives, "cells": cells})
    return [name for name, _ in scores], rows


def _plain_scores(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, s) for n, v, s in _scores(results) if v == "plain"]


def _figures(results: dict[str, Any], preds: dict[str, dict[str, Predictions]]) -> list[tuple[str, str, bytes]]:
    plain = {name: by_key["plain"] for name, by_key in preds.items()}
    scores = _plain_scores(results)
    first_name, first = scores[0]
    n_bins = first["calibration"]["n_bins"]
    where = fitted_on_text(first)
    out = [
        ("roc", "ROC curves", figures.curve_figure(plain, "roc")),
        ("pr", "Precision-recall curves", figures.curve_figure(plain, "pr")),
        (
            "reliability",
            f"Reliability diagrams (temperature fitted on {where})",  # the figure's key says what is hollow
            figures.reliability_figure(scores, n_bins),
        ),
    ]
    if "per_class" in first["calibration"]:
        png = figures.per_class_reliability_figure(first_name, first["calibration"]["per_class"], n_bins)
        out.append(("reliability_per_class", f"Per-class reliability: {first_name}", png))
    tagged = [(f"{n}{' +TTA' if v == 'tta' else ''}", s) for n, v, s in _scores(results)]
    out.append(("per_class_auc", "Per-class AUROC", figures.bars_figure(tagged)))
    return out


def _lowest(options: dict[str, float | None]) -> str:
    """The first option with the lowest ECE: on a tie the simpler one (unscaled, then temperature, then Platt)."""
    best = "unscaled"
    for name, value in options.items():
        if value is not None and value < (options[best] or 0.0) - 1e-12:
            best = name
    return best


def _best_of(row: dict[str, Any]) -> str:
    """Which probabilities had the lowest ECE on the evaluated images: unscaled, temperature or Platt."""
    return _lowest({"unscaled": row["ece"], "temperature": row["ece_temperature"], "Platt": row["ece_platt"]})


def calibration_rows(score: dict[str, Any]) -> list[list[str]]:
    """Per-class calibration of one score: class, positives, ECE, Brier, slope, intercept, ECE after the shared
    temperature, ECE after per-class Platt scaling, and which of the three is lowest here."""
    cal = score["calibration"]
    rows = []
    for label, r in cal["per_class"]["classes"].items():
        cells = [_num(r["ece"]), _num(r["brier"]), _num(r["slope"], ".2f"), _num(r["intercept"], "+.2f")]
        cells += [_num(r["ece_temperature"]), _num(r["ece_platt"]) if r["platt_fitted"] else "not fitted"]
        rows.append([label, str(r["positives"]), *cells, _best_of(r)])
    for head, name in (("multi", "14 labels, pooled"), ("binary", "binary head")):
        h = cal[head]
        cells = [_num(h["ece_before"]), _num(h["brier_before"]), _num(h["slope_before"], ".2f")]
        platt = "not fitted" if head == "multi" else "-"  # Platt is per class: the binary head has none
        cells += [
            _num(h["intercept_before"], "+.2f"),
            _num(h["ece_after"]),
            _num(h.get("ece_platt")) if h.get("ece_platt") is not None else platt,
        ]
        best = _lowest({"unscaled": h["ece_before"], "temperature": h["ece_after"], "Platt": h.get("ece_platt")})
        rows.append([name, "", *cells, best])
    return rows


def calibration_notes(score: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain sentences, `warn` for those that say a temperature did not help (then the unscaled probabilities are
    the better calibrated ones and the scaled ones must not be read as an improvement)."""
    cal, where = score["calibration"], fitted_on_text(score)
    notes = []
    for head, what in (("binary", "the binary head"), ("multi", "the 14 labels pooled")):
        h = cal[head]
        if not h.get("helped", h["ece_after"] < h["ece_before"]):
            text = (
                f"Temperature scaling (T = {h['temperature']:.2f}, fitted on {where}) did not lower the ECE of {what} "
                f"({h['ece_before']:.3f} unscaled, {h['ece_after']:.3f} scaled): read the unscaled probabilities, "
                "not the scaled ones."
            )
            notes.append({"text": text, "warn": True})
    classes = (cal.get("per_class") or {}).get("classes") or {}
    if classes:
        worse = sum(not r["temperature_helped"] for r in classes.values())
        fitted = [r for r in classes.values() if r["platt_fitted"]]
        text = (
            f"The shared temperature did not lower the ECE of {worse} of {len(classes)} classes. "
            if worse
            else "The shared temperature lowered the ECE of every class. "
        )
        if fitted:
            helped = sum(bool(r["platt_helped"]) for r in fitted)
            text += f"Per-class Platt scaling, fitted on {where} for {len(fitted)} classes, lowered it for {helped}."
        else:
            text += (
                f"Per-class Platt scaling was fitted for no class: each has fewer than {MIN_PLATT_CLASS} positives "
                f"or negatives in {where}."
            )
        notes.append({"text": text, "warn": False})
    return notes


def _delong_tables(preds: dict[str, dict[str, Predictions]]) -> list[dict[str, Any]]:
    """DeLong + Holm for every pair of evaluated runs (not the ensemble, which contains them) on the same images."""
    runs = [(name, by_key["plain"]) for name, by_key in preds.items() if name != "ensemble"]
    tables = []
    for (name_a, a), (name_b, b) in combinations(runs, 2):
        if a.filenames != b.filenames:
            continue  # not the same images: the paired test does not apply
        delong = per_class_delong(a.y14, a.p14, b.p14)
        tables.append({"a": name_a, "b": name_b, "result": delong, "rows": delong_rows(delong, name_a, name_b)})
    return tables


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
    scores = _plain_scores(results)
    context = {
        "fitted_on": fitted_on_text(scores[0][1]),
        "n_bins": scores[0][1]["calibration"]["n_bins"],
        "min_platt": MIN_PLATT_CLASS,
        "calibration": [
            {"model": name, "rows": calibration_rows(s), "notes": calibration_notes(s)}
            for name, s in scores
            if "per_class" in s["calibration"]
        ],
        "delong": _delong_tables(preds),
        "results": results,
        "summary_columns": [header for header, _ in summary_columns()],
        "summary": summary_rows(results),
        "columns": columns,
        "per_class": per_class,
        "any_na": any(cell == "n/a" for row in per_class for cell in row["cells"]),  # else no n/a footnote
        "figures": figures,
        "cams": cams,
        "localization": _localization_rows(results),
        "subgroups": subgroup_sections(_plain_scores(results), figure_dir),  # chexvision.evaluate.subgroup_report
        "references": reference_sections(_plain_scores(results)),  # chexvision.evaluate.references
        "not_defined": ", ".join(scores[0][1].get("classes_not_defined") or []),  # data set's undefined classes
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
