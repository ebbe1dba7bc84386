"""The evaluation report's figures (matplotlib Figure objects on the Agg canvas, no pyplot state), each returned
as PNG bytes.

ROC and precision-recall curves (14 labels told apart by colour and line style, legends outside the axes),
reliability diagrams with a strip of bin counts under each curve, per-class reliability small multiples, and
per-class AUROC as points with their bootstrap CIs on an axis that starts near the lowest interval, not at 0.
A reliability bin with fewer than `MIN_BIN_COUNT` images is drawn hollow and left off the line: its observed
frequency is mostly noise. Every figure uses constrained layout, so nothing overlaps and nothing is cut off.
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
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "LABEL_STYLES",
    "auroc_axis_floor",
    "bars_figure",
    "curve_figure",
    "per_class_reliability_figure",
    "reliability_figure",
]

Scores = Sequence[tuple[str, dict[str, Any]]]

# 14 labels, 14 (colour, line style) pairs: the ten tab10 colours solid, then four other colours dashed, so no
# two labels share both.
_DARK = ("#000000", "#393b79", "#637939", "#e7298a")  # black, navy, olive, magenta: unlike tab10
LABEL_STYLES: tuple[tuple[str, str], ...] = tuple([(f"C{k}", "-") for k in range(10)] + [(c, "--") for c in _DARK])
DPI = 90  # the report's figures: legible in the HTML page at 100% zoom, small enough to inline


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _outside_legend(ax: Axes, **kw: Any) -> None:
    """A legend to the right of the axes, where it covers no curve (none when nothing was drawn: a class the data
    set does not define has no curve)."""
    if not ax.get_legend_handles_labels()[0]:
        return
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kw)


def curve_figure(preds: dict[str, Predictions], kind: str) -> bytes:
    """ROC (`kind="roc"`) or precision-recall curves: the first model's 14 labels, and every model's binary head."""
    fig = _figure((13, 5.2))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1]})
    first_name, first = next(iter(preds.items()))
    curve = roc_curve if kind == "roc" else precision_recall_curve
    for k, label in enumerate(LABELS):
        y = first.y14[:, k] > 0.5
        if 0 < y.sum() < len(y):
            a, b, _ = curve(y, first.p14[:, k])
            color, style = LABEL_STYLES[k]
            axes[0].plot(*((a, b) if kind == "roc" else (b, a)), lw=1.2, color=color, ls=style, label=label)
    for j, (name, p) in enumerate(preds.items()):
        if 0 < p.ybin.sum() < len(p.ybin):
            a, b, _ = curve(p.ybin > 0.5, p.pbin)
            axes[1].plot(*((a, b) if kind == "roc" else (b, a)), lw=1.5, color=f"C{j % 10}", label=name)
    x_label, y_label = ("false positive rate", "true positive rate") if kind == "roc" else ("recall", "precision")
    for ax, title in ((axes[0], f"{first_name}: 14 labels"), (axes[1], "binary head (abnormal), per model")):
        if kind == "roc":
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel=x_label, ylabel=y_label, title=title, xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(lw=0.4, alpha=0.5)
        _outside_legend(ax, fontsize=8, handlelength=2.6)
    return _png(fig)


def _draw_curve(ax: Axes, curve: dict[str, list[Any]], color: str, marker: str, label: str, ms: float = 4) -> None:
    """Solid markers joined by a line for bins with enough images; hollow, unjoined markers for near-empty ones."""
    x, y = np.asarray(curve["mean_predicted"]), np.asarray(curve["fraction_positive"])
    full = np.asarray(curve["counts"]) >= MIN_BIN_COUNT
    ax.plot(x[full], y[full], marker=marker, color=color, ms=ms, lw=1.2, label=label)
    (hollow,) = ax.plot(x[~full], y[~full], ls="none", marker=marker, ms=ms, mfc="none", mec=color, alpha=0.7,
                        clip_on=False)  # fmt: skip
    hollow.set_in_layout(False)  # unclipped markers on the edge would make constrained layout collapse the axes


def _draw_counts(ax: Axes, curves: Sequence[tuple[dict[str, list[Any]], str]], n_bins: int) -> None:
    """Images per bin on a log scale, one bar series per curve, side by side within each bin."""
    from matplotlib.ticker import LogLocator, NullLocator, StrMethodFormatter

    width = 1.0 / n_bins / len(curves)
    for j, (curve, color) in enumerate(curves):
        left = np.asarray(curve["bins"]) / n_bins + j * width
        ax.bar(left, curve["counts"], width=width, align="edge", color=color, alpha=0.75)
    top = max((max(c["counts"]) for c, _ in curves if c["counts"]), default=1)
    ax.set_yscale("log")
    ax.set_ylim(0.6, max(top, MIN_BIN_COUNT) * 2.5)  # a bin of one image still shows as a stub
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=4))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.yaxis.set_minor_locator(NullLocator())  # unlabelled anyway; log minor ticks cost most of a figure's drawing
    ax.axhline(MIN_BIN_COUNT, color="k", lw=0.6, ls=":")
    ax.set(xlim=(0, 1), xlabel="mean predicted probability")
    ax.set_ylabel("images", fontsize=8)
    ax.tick_params(labelsize=7)


def _key_handles(curves: Sequence[tuple[str, str, str]]) -> list[Artist]:
    """Legend entries: each curve's marker and colour, then what hollow markers and the dotted lines mean."""
    from matplotlib.lines import Line2D

    handles: list[Artist] = [Line2D([], [], color=c, marker=m, ms=4, lw=1.2, label=text) for c, m, text in curves]
    handles.append(Line2D([], [], ls="none", marker="o", ms=4, mfc="none", mec="0.4",
                          label=f"hollow: bin of < {MIN_BIN_COUNT} images, not joined"))  # fmt: skip
    dotted = f"diagonal: calibrated; strip: {MIN_BIN_COUNT} images"
    handles.append(Line2D([], [], color="k", ls=":", lw=0.8, label=dotted))
    return handles


def _reliability_panel(axes: Sequence[Axes], cal: dict[str, Any], n_bins: int, title: str) -> None:
    """Curve, count strip and key (an axes-free cell under the strip, so the legend covers nothing)."""
    ax, strip, key = axes
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    before = f"unscaled: ECE {cal['ece_before']:.3f}"
    verdict = "" if cal.get("helped", cal["ece_after"] < cal["ece_before"]) else " (worse)"
    after = f"T = {cal['temperature']:.2f}: ECE {cal['ece_after']:.3f}{verdict}"
    _draw_curve(ax, cal["curve_before"], "C0", "o", before)
    _draw_curve(ax, cal["curve_after"], "C1", "s", after)
    ax.set(title=title, xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="observed frequency")
    ax.tick_params(labelbottom=False)
    _draw_counts(strip, [(cal["curve_before"], "C0"), (cal["curve_after"], "C1")], n_bins)
    key.set_axis_off()
    handles = _key_handles([("C0", "o", before), ("C1", "s", after)])
    legend = key.legend(handles=handles, loc="upper center", ncol=2, fontsize=8, frameon=False, borderaxespad=0.0)
    legend.set_in_layout(False)  # the key's cell is sized for it; laid out, it would squeeze the curves


def reliability_figure(scores: Scores, n_bins: int) -> bytes:
    """Binary head and pooled 14 labels of each model, before/after its temperature, with bin counts under each:
    one row per model, its name once above the row."""
    fig = _figure((11, 6.2 * len(scores)))
    rows = fig.subfigures(len(scores), 1, squeeze=False)[:, 0]  # each model's row lays out on its own
    for sub, (name, s) in zip(rows, scores, strict=True):
        sub.suptitle(name, fontsize=11, fontweight="bold")
        grid = sub.add_gridspec(3, 2, height_ratios=[4, 1.2, 0.55])
        for col, head in enumerate(("binary", "multi")):
            ax = sub.add_subplot(grid[0, col])
            axes = (ax, sub.add_subplot(grid[1, col], sharex=ax), sub.add_subplot(grid[2, col]))
            title = "binary head" if head == "binary" else "14 labels, pooled"
            _reliability_panel(axes, s["calibration"][head], n_bins, title)
    return _png(fig)


def _class_title(label: str, row: dict[str, Any]) -> str:
    slope = "n/a" if row["slope"] is None else f"{row['slope']:.2f}"
    intercept = "n/a" if row["intercept"] is None else f"{row['intercept']:+.2f}"
    ece = f"ECE {row['ece']:.3f}" + (f", Platt {row['ece_platt']:.3f}" if row.get("curve_platt") else "")
    return f"{label} ({row['positives']} pos): {ece}\nslope {slope}, intercept {intercept}"


def per_class_reliability_figure(name: str, per_class: dict[str, Any], n_bins: int) -> bytes:
    """Small multiples: each class's reliability curve, unscaled and after Platt scaling (where fitted), with bin
    counts under it and its ECE, calibration slope and intercept in its title; the 15th cell holds the key."""
    from matplotlib.figure import Figure

    cols, rows = 5, 3
    # Fixed margins, not constrained layout: 28 small axes made the layout pass half of an evaluation's drawing time
    # (every panel's title is two 8-pt lines; the gaps below are sized for them and for the strips' tick labels).
    fig = Figure(figsize=(16, 10.5))
    grid = fig.add_gridspec(rows, cols, left=0.04, right=0.99, bottom=0.05, top=0.90, wspace=0.22, hspace=0.42)
    for k, label in enumerate(LABELS):
        r, c = divmod(k, cols)
        cell = grid[r, c].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)  # a curve and its strip, close
        ax = fig.add_subplot(cell[0])
        strip = fig.add_subplot(cell[1], sharex=ax)
        row = per_class["classes"].get(label)
        if row is None:  # a class the data set does not define (chexvision.data.classes): nothing to draw
            ax.set_title(f"{label}\n", fontsize=8)
            ax.text(0.5, 0.5, "not defined\nby the data set", ha="center", va="center", transform=ax.transAxes)
            for a in (ax, strip):
                a.set(xticks=[], yticks=[])
                a.spines[:].set_visible(False)
            continue
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        _draw_curve(ax, row["curve"], "C0", "o", "unscaled", ms=3)
        curves = [(row["curve"], "C0")]
        if row.get("curve_platt"):
            _draw_curve(ax, row["curve_platt"], "C2", "^", "Platt", ms=3)
            curves.append((row["curve_platt"], "C2"))
        ax.set_title(_class_title(label, row), fontsize=8)
        ax.set(xlim=(0, 1), ylim=(-0.02, 1.02))
        ax.tick_params(labelsize=7, labelbottom=False)
        _draw_counts(strip, curves, n_bins)
        strip.set_xlabel("")
    key = fig.add_subplot(grid[rows - 1, cols - 1])  # the cell 14 classes leave free
    key.set_axis_off()
    handles = _key_handles([("C0", "o", "unscaled"), ("C2", "^", "after per-class Platt scaling")])
    key.legend(handles=handles, loc="center", fontsize=9, frameon=False, title="key", title_fontsize=9)
    axes_text = "x: mean predicted probability\ny: observed frequency\nunder each curve: images per bin (log)"
    key.text(0.5, 0.02, axes_text, ha="center", va="bottom", fontsize=8, transform=key.transAxes)
    fig.suptitle(f"{name}: per-class reliability, unscaled and after per-class Platt scaling where fitted", fontsize=11)
    return _png(fig)


def auroc_axis_floor(values: Sequence[float]) -> float:
    """The AUROC axis's lower end: 0.05 below the lowest point or interval end, on a 0.05 step, never under 0.
    AUROCs of 0.8-1.0 on an axis from 0 are bars of nearly equal height; their differences are what matters."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return 0.0
    return max(0.0, float(np.floor((min(finite) - 0.05) / 0.05 + 1e-9) * 0.05))


def bars_figure(scores: Scores) -> bytes:
    """Per-class AUROC as points with their patient-bootstrap 95% CIs, one series per model side by side."""
    fig = _figure((13, 4.8))
    ax = fig.add_subplot()
    n = len(scores)
    step = min(0.8 / n, 0.25)
    x = np.arange(len(LABELS))
    lows: list[float] = []
    for j, (name, s) in enumerate(scores):
        vals = np.array([np.nan if (v := s["per_class_auc"][lb]) is None else v for lb in LABELS], dtype=float)
        cis = (s.get("ci") or {}).get("per_class_auc", {})
        lo = np.array([cis[lb][0] if cis.get(lb) else np.nan for lb in LABELS], dtype=float)
        hi = np.array([cis[lb][1] if cis.get(lb) else np.nan for lb in LABELS], dtype=float)
        # a percentile interval need not contain the point estimate (small samples): no negative whiskers
        yerr = np.vstack([np.clip(np.nan_to_num(vals - lo), 0, None), np.clip(np.nan_to_num(hi - vals), 0, None)])
        xs = x + (j - (n - 1) / 2) * step
        ax.errorbar(xs, vals, yerr=yerr, fmt="o", ms=5, color=f"C{j % 10}", ecolor=f"C{j % 10}", elinewidth=1.4,
                    capsize=3, label=name)  # fmt: skip
        lows += [*vals.tolist(), *lo.tolist()]
    floor = auroc_axis_floor(lows)
    if floor < 0.5:
        ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance (0.5)")
    ax.set_xticks(x, LABELS, rotation=35, ha="right")
    ax.set_xlim(-0.6, len(LABELS) - 0.4)
    ax.set(ylabel="AUROC (95% CI)", ylim=(floor, 1.0 + 0.01), title="Per-class AUROC with patient-bootstrap CIs")
    ax.grid(axis="y", lw=0.4, alpha=0.6)
    ax.set_axisbelow(True)
    _outside_legend(ax, fontsize=8)
    return _png(fig)
