"""The report's subgroup section: a forest plot and the rows and sentences of its tables.

The forest plot (matplotlib, Agg) has one row per subgroup (grouped by attribute, image and abnormal counts in the
row label) and two panels: macro AUROC with its patient-bootstrap CI, and the underdiagnosis rate with its CI; a
dashed line marks the whole evaluated set. The subgroups of each attribute's largest gap are drawn in colour.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["forest_figure", "gap_sentence", "subgroup_rows", "subgroup_sections"]

_TITLES = {"sex": "Sex", "age": "Age band", "view": "View"}
_HIGH, _LOW, _PLAIN = "#c0392b", "#2166ac", "#444444"


def _estimate(value: float | None, ci: Sequence[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _rows(subgroups: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    """(attribute, subgroup or "" for the attribute's header row, its entry) top to bottom; empty subgroups left
    out."""
    rows: list[tuple[str, str, dict[str, Any] | None]] = []
    for attribute in subgroups["attributes"]:
        rows.append((attribute, "", None))
        rows += [(attribute, name, g) for name, g in subgroups[attribute].items() if g["images"]]
    return rows


def _whiskers(
    ax: Axes, y: float, value: float | None, ci: Sequence[float] | None, color: str, hollow: bool = False
) -> None:
    if value is None:
        return
    if ci:
        # a percentile interval need not hold the point (small samples): draw the interval as it is
        ax.plot([ci[0], ci[1]], [y, y], color=color, lw=1.6, solid_capstyle="butt", alpha=0.5 if hollow else 1)
        ax.plot([ci[0], ci[1]], [y, y], "|", color=color, ms=7, alpha=0.5 if hollow else 1)
    ax.plot([value], [y], "o", color=color, ms=6, zorder=3, mfc="white" if hollow else color)


def _rate_limits(sub: dict[str, Any], rows: list[tuple[str, str, dict[str, Any] | None]]) -> tuple[float, float]:
    """The rate panel's x range: the rates and intervals shown, padded, within [0, 1] (on NIH-sized sets the
    intervals are a few hundredths wide and would vanish on the whole 0-1 axis)."""
    values = [v for _, _, g in rows if g for v in (g["underdiagnosis_rate"], *(g["underdiagnosis_ci"] or ()))]
    values = [v for v in (*values, sub["overall"]["underdiagnosis_rate"]) if v is not None]
    if not values:
        return -0.02, 1.02
    lo, hi = min(values), max(values)
    pad = max(0.02, 0.08 * (hi - lo))
    return max(-0.02, lo - pad), min(1.02, hi + pad)


def forest_figure(name: str, score: dict[str, Any]) -> bytes:
    """Forest plot of one score's `subgroups`: macro AUROC and underdiagnosis rate per subgroup, with 95 % CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = score["subgroups"]
    rows = _rows(sub)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 1.3 + 0.36 * len(rows)), sharey=True, gridspec_kw={"wspace": 0.06}
    )
    labels = []
    for i, (attribute, group, g) in enumerate(rows):
        y = -i
        if g is None:
            gap = sub["largest_gap"].get(attribute)
            labels.append(_TITLES[attribute])
            if gap:
                verdict = "CIs overlap" if gap["ci_overlap"] else "CIs do not overlap"
                if gap["ci_overlap"] is None:
                    verdict = "no CIs"
                text = f"largest gap {gap['highest']} - {gap['lowest']}: {gap['difference']:+.3f} ({verdict})"
            else:
                text = f"no gap: fewer than two subgroups with {sub['min_gap_abnormal']}+ abnormal images"
            color = _HIGH if gap and gap["ci_overlap"] is False else _PLAIN
            right.annotate(text, (0.99, y), xycoords=("axes fraction", "data"), ha="right", va="center", fontsize=8,
                           color=color, bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 1})  # fmt: skip
            continue
        labels.append(f"{group}  ({g['images']} images, {g['abnormal']} abnormal)")
        gap = sub["largest_gap"].get(attribute) or {}
        color = _HIGH if group == gap.get("highest") else _LOW if group == gap.get("lowest") else _PLAIN
        _whiskers(left, y, g["macro_auc"], g["macro_auc_ci"], _PLAIN)
        small = g["abnormal"] < sub["min_gap_abnormal"]
        _whiskers(right, y, g["underdiagnosis_rate"], g["underdiagnosis_ci"], color, hollow=small)
    ys = -np.arange(len(rows))
    left.set_yticks(ys, labels)
    for tick, (_, group, _) in zip(left.get_yticklabels(), rows, strict=True):
        if not group:
            tick.set_fontweight("bold")
    macro_all, overall = score.get("macro_auc"), sub["overall"]["underdiagnosis_rate"]
    if macro_all is not None:
        left.axvline(macro_all, color="k", lw=0.8, ls="--")
    left.axvline(0.5, color="k", lw=0.6, ls=":")
    if overall is not None:
        right.axvline(overall, color="k", lw=0.8, ls="--")
    decision = sub["decision"]
    threshold = "n/a" if decision["threshold"] is None else f"threshold {decision['threshold']:.3f}"
    if decision["fold_thresholds"]:
        threshold = "thresholds " + " / ".join(f"{t:.3f}" for t in decision["fold_thresholds"]) + " (cross-fitted)"
    left.set(title="macro AUROC (95% CI)", ylim=(ys[-1] - 0.7, 0.7))
    left.set_xlabel(f"macro AUROC; dashed: all images ({_estimate(macro_all)}), dotted: chance", fontsize=9)
    right.set(title="underdiagnosis rate (95% CI)", xlim=_rate_limits(sub, rows))
    right.set_xlabel(
        f"share of abnormal images called normal; dashed: all images ({_estimate(overall)})\n"
        f"red / blue: highest / lowest of the largest gap; hollow: fewer than {sub['min_gap_abnormal']} abnormal",
        fontsize=9,
    )
    for ax in (left, right):
        ax.grid(axis="x", lw=0.4, alpha=0.5)
        for i, (_, group, _) in enumerate(rows):
            if not group and i:
                ax.axhline(-i + 0.5, color="#bbbbbb", lw=0.6)
    fig.suptitle(f"{name}: subgroups; binary decision at the Youden {threshold}, fitted on "
                 f"{_fitted_on(decision)}", fontsize=10)  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def subgroup_rows(score: dict[str, Any]) -> list[list[str]]:
    """Table rows: attribute, subgroup, images, patients, abnormal, macro AUROC [CI], binary AUROC, underdiagnosis
    rate [CI] (missed / abnormal)."""
    sub, rows = score["subgroups"], []
    for attribute in sub["attributes"]:
        for group, g in sub[attribute].items():
            rate = _estimate(g["underdiagnosis_rate"], g["underdiagnosis_ci"])
            if g["missed"] is not None and g["abnormal"]:
                rate += f" ({g['missed']}/{g['abnormal']})"
            cells = [str(g["images"]), str(g["patients"]), str(g["abnormal"])]
            cells += [_estimate(g["macro_auc"], g["macro_auc_ci"]), _estimate(g["binary_auc"]), rate]
            rows.append([_TITLES[attribute], group, *cells])
    return rows


def gap_sentence(attribute: str, gap: dict[str, Any] | None, min_abnormal: int) -> dict[str, Any]:
    """One sentence on an attribute's largest underdiagnosis gap; `warn` when the two intervals do not overlap."""
    title = _TITLES[attribute]
    if gap is None:
        text = f"{title}: fewer than two subgroups with at least {min_abnormal} abnormal images; no gap computed."
        return {"text": text, "warn": False}
    high = _estimate(gap["highest_rate"], gap["highest_ci"])
    low = _estimate(gap["lowest_rate"], gap["lowest_ci"])
    text = f"{title}: highest underdiagnosis {gap['highest']} {high}, lowest {gap['lowest']} {low}; "
    text += f"gap {gap['difference']:.3f}. "
    if gap["ci_overlap"] is None:
        text += "No intervals (run with --bootstrap)."
    elif gap["ci_overlap"]:
        text += "The 95% intervals overlap: no clear gap (which does not show there is none)."
    else:
        text += "The 95% intervals do not overlap: a gap to look into."
    return {"text": text, "warn": gap["ci_overlap"] is False}


def _fitted_on(decision: dict[str, Any]) -> str:
    fitted = str(decision.get("fitted_on") or "n/a")
    return "the validation split" if fitted == "validation" else fitted


def subgroup_sections(scores: Sequence[tuple[str, dict[str, Any]]], figure_dir: Path) -> list[dict[str, Any]]:
    """Template context of each score that has subgroups: sentences, table rows, and the forest plot (written to
    `figure_dir` for the Markdown, inlined for the HTML)."""
    sections = []
    for i, (name, score) in enumerate(scores):
        sub = score.get("subgroups")
        if not sub or not sub["attributes"]:
            continue
        png = forest_figure(name, score)
        key = "subgroups" if i == 0 else f"subgroups_{i}"
        (figure_dir / f"{key}.png").write_bytes(png)
        decision, overall = sub["decision"], sub["overall"]
        by_source: dict[str, list[str]] = {}
        for attribute, source in sub["sources"].items():
            by_source.setdefault(source, []).append(attribute)
        sources = "; ".join(f"{', '.join(attrs)} from {src}" for src, attrs in by_source.items())
        unknown = ", ".join(f"{n} without {a}" for a, n in sub["unknown"].items() if n)
        sections.append(
            {
                "model": name,
                "threshold": _estimate(decision["threshold"]),
                "folds": decision["fold_thresholds"],
                "fitted_on": _fitted_on(decision),
                "binary_source": decision["binary_source"],
                "overall": _estimate(overall["underdiagnosis_rate"]),
                "abnormal": overall["abnormal"],
                "sources": sources,
                "unknown": unknown or "none",
                "gaps": [gap_sentence(a, sub["largest_gap"][a], sub["min_gap_abnormal"]) for a in sub["attributes"]],
                "rows": subgroup_rows(score),
                "min_abnormal": sub["min_gap_abnormal"],
                "figure": {"b64": base64.b64encode(png).decode(), "file": f"{figure_dir.name}/{key}.png"},
            }
        )
    return sections
