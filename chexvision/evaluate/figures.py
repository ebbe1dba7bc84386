"""The evaluation report's figures (matplotlib, Agg), each returned as PNG bytes.

ROC and precision-recall curves, reliability diagrams with a strip of bin counts under each curve, per-class
reliability small multiples, and per-class AUROC bars with their bootstrap CIs. A reliability bin with fewer than
`MIN_BIN_COUNT` images is drawn hollow and left off the line: its observed frequency is mostly noise.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from chexvision.evaluate.calibration import MIN_BIN_COUNT
from chexvision.evaluate.predictions import Predictions
from chexvision.labels import LABELS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["bars_figure", "curve_figure", "per_class_reliability_figure", "reliability_figure"]

Scores = Sequence[tuple[str, dict[str, Any]]]


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curve_figure(preds: dict[str, Predictions], kind: str) -> bytes:
    """ROC (`kind="roc"`) or precision-recall curves: the first model's 14 labels, and every model's binary head."""
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


def _draw_curve(ax: Axes, curve: dict[str, list[Any]], color: str, marker: str, label: str, ms: float = 4) -> None:
    """Solid markers joined by a line for bins with enough images; hollow, unjoined markers for near-empty ones."""
    x, y = np.asarray(curve["mean_predicted"]), np.asarray(curve["fraction_positive"])
    full = np.asarray(curve["counts"]) >= MIN_BIN_COUNT
    ax.plot(x[full], y[full], marker=marker, color=color, ms=ms, lw=1.2, label=label)
    ax.plot(x[~full], y[~full], ls="none", marker=marker, ms=ms, mfc="none", mec=color, alpha=0.7, clip_on=False)


def _draw_counts(ax: Axes, curves: Sequence[tuple[dict[str, list[Any]], str]], n_bins: int) -> None:
    """Images per bin on a log scale, one bar series per curve, side by side within each bin."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    width = 1.0 / n_bins / len(curves)
    for j, (curve, color) in enumerate(curves):
        left = np.asarray(curve["bins"]) / n_bins + j * width
        ax.bar(left, curve["counts"], width=width, align="edge", color=color, alpha=0.75)
    top = max((max(c["counts"]) for c, _ in curves if c["counts"]), default=1)
    ax.set_yscale("log")
    ax.set_ylim(0.6, max(top, MIN_BIN_COUNT) * 2.5)  # a bin of one image still shows as a stub
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=4))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.axhline(MIN_BIN_COUNT, color="k", lw=0.6, ls=":")
    ax.set(xlim=(0, 1), xlabel="mean predicted probability")
    ax.set_ylabel("images", fontsize=8)
    ax.tick_params(labelsize=7)


def _reliability_panel(ax: Axes, strip: Axes, cal: dict[str, Any], n_bins: int, title: str) -> None:
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    _draw_curve(ax, cal["curve_before"], "C0", "o", f"unscaled: ECE {cal['ece_before']:.3f}")
    verdict = "" if cal.get("helped", cal["ece_after"] < cal["ece_before"]) else " (worse)"
    label = f"T = {cal['temperature']:.2f}: ECE {cal['ece_after']:.3f}{verdict}"
    _draw_curve(ax, cal["curve_after"], "C1", "s", label)
    ax.set(title=title, xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="observed frequency")
    ax.tick_params(labelbottom=False)
    ax.legend(fontsize=8, loc="upper left")
    _draw_counts(strip, [(cal["curve_before"], "C0"), (cal["curve_after"], "C1")], n_bins)


def reliability_figure(scores: Scores, n_bins: int) -> bytes:
    """Binary head and pooled 14 labels of each model, before/after its temperature, with bin counts under each."""
    import matplotlib.pyplot as plt

    # a plain grid with fixed gaps: constrained layout collapses the count strips once there are several models
    fig = plt.figure(figsize=(11, 5.6 * len(scores)))
    ratios = [4, 1.2, 0.55] * len(scores)  # curve, count strip, gap for the next model's titles
    grid = fig.add_gridspec(3 * len(scores) - 1, 2, height_ratios=ratios[:-1], hspace=0.08, wspace=0.22)
    for row, (name, s) in enumerate(scores):
        for col, head in enumerate(("binary", "multi")):
            ax, strip = fig.add_subplot(grid[3 * row, col]), fig.add_subplot(grid[3 * row + 1, col])
            title = "binary head" if head == "binary" else "14 labels, pooled"
            _reliability_panel(ax, strip, s["calibration"][head], n_bins, f"{name}: {title}")
    return _png(fig)


def per_class_reliability_figure(name: str, per_class: dict[str, Any], n_bins: int) -> bytes:
    """Small multiples: each class's reliability curve, unscaled and after Platt scaling (where fitted), with bin
    counts under it and the calibration slope and intercept in its title."""
    import matplotlib.pyplot as plt

    cols, rows = 5, 3
    fig = plt.figure(figsize=(16, 10.5), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    for k, label in enumerate(LABELS):
        r, c = divmod(k, cols)
        ax, strip = fig.add_subplot(grid[2 * r, c]), fig.add_subplot(grid[2 * r + 1, c])
        row = per_class["classes"].get(label)
        if row is None:  # a class the data set does not define (chexvision.data.classes): nothing to draw
            ax.set_title(f"{label}\n", fontsize=8)
            ax.text(0.5, 0.5, "not defined\nby the data set", ha="center", va="center", transform=ax.transAxes)
            for a in (ax, strip):
                a.set(xticks=[], yticks=[])
                a.spines[:].set_visible(False)
            continue
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        _draw_curve(ax, row["curve"], "C0", "o", f"unscaled: ECE {row['ece']:.3f}", ms=3)
        curves = [(row["curve"], "C0")]
        if row.get("curve_platt"):
            _draw_curve(ax, row["curve_platt"], "C2", "^", f"Platt: ECE {row['ece_platt']:.3f}", ms=3)
            curves.append((row["curve_platt"], "C2"))
        slope = "n/a" if row["slope"] is None else f"{row['slope']:.2f}"
        intercept = "n/a" if row["intercept"] is None else f"{row['intercept']:+.2f}"
        ax.set_title(f"{label} ({row['positives']} pos)\nslope {slope}, intercept {intercept}", fontsize=8)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02))
        ax.tick_params(labelsize=7, labelbottom=False)
        ax.legend(fontsize=6.5, loc="upper left")
        _draw_counts(strip, curves, n_bins)
        strip.set_xlabel("")
    fig.suptitle(f"{name}: per-class reliability, unscaled and after per-class Platt scaling where fitted; "
                 "images per bin under each", fontsize=10)  # fmt: skip
    return _png(fig)


def bars_figure(scores: Scores) -> bytes:
    """Per-class AUROC bars with their patient-bootstrap CIs, one series per model."""
    import matplotlib.pyplot as plt

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
