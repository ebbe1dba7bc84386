"""Exploratory data analysis of NIH-style metadata, per patient-disjoint split (`chexvision data eda`).

`run_eda` computes label frequencies, label co-occurrence, labels per image, age / sex / view distributions and
images per patient for every split and for all images, writes PNG plots (matplotlib, Agg, no pyplot state) and
an `eda.md` report rendered from `templates/eda.md.j2`. Statistics are vectorised: the full 112,120-row
metadata takes a few seconds, most of it drawing the plots.
"""

from __future__ import annotations

import importlib.resources
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from chexvision.data.outdir import prepare_out
from chexvision.data.splits import SPLIT_NAMES, make_split, patient_ids
from chexvision.errors import BadInputError
from chexvision.labels import LABELS, NO_FINDING, label_matrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["AGE_BINS", "EdaResult", "compute_stats", "conditional_cooccurrence", "draw_figures", "run_eda"]

AGE_BINS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 200)  # years; the last bin is 90+
_PATIENT_BUCKETS = ((1, 1), (2, 5), (6, 10), (11, 20), (21, 50), (51, 10**9))  # images per patient, inclusive
_GROUPS = ("all", *SPLIT_NAMES)


@dataclass
class EdaResult:
    """Where the report went and the numbers in it (`stats` is JSON-serialisable)."""

    out_dir: Path
    report: Path
    plots: list[Path] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _counts(values: pd.Series) -> dict[str, int]:
    counts = values.astype("string").fillna("unknown").value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def _age_histogram(ages: pd.Series) -> dict[str, int]:
    values = pd.to_numeric(ages, errors="coerce").dropna().to_numpy(dtype=float)
    hist, _ = np.histogram(values, bins=AGE_BINS)
    names = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(AGE_BINS[:-1])] + [f"{AGE_BINS[-2]}+"]
    return {name: int(n) for name, n in zip(names, hist, strict=True)}


def _group_stats(part: pd.DataFrame, matrix: np.ndarray, pids: np.ndarray) -> dict[str, Any]:
    n = len(part)
    positives = matrix.sum(axis=0)
    no_finding = int((matrix.sum(axis=1) == 0).sum())
    per_image = np.bincount(matrix.sum(axis=1).astype(np.int64), minlength=1)
    per_patient = np.unique(pids, return_counts=True)[1] if n else np.zeros(0, dtype=np.int64)
    ages = pd.to_numeric(part["age"], errors="coerce").dropna()
    return {
        "images": n,
        "patients": len(per_patient),
        "label_counts": {**{lb: int(c) for lb, c in zip(LABELS, positives, strict=True)}, NO_FINDING: no_finding},
        "label_frequency": {
            **{lb: float(c) / max(n, 1) for lb, c in zip(LABELS, positives, strict=True)},
            NO_FINDING: no_finding / max(n, 1),
        },
        "cooccurrence": (matrix.T @ matrix).astype(np.int64).tolist(),
        "labels_per_image": {str(k): int(v) for k, v in enumerate(per_image)},
        "age": {
            "mean": round(float(ages.mean()), 2) if len(ages) else None,
            "median": float(ages.median()) if len(ages) else None,
            "missing": int(n - len(ages)),
            "histogram": _age_histogram(part["age"]),
        },
        "sex": _counts(part["sex"]),
        "view": _counts(part["view"]),
        "images_per_patient": {
            "mean": round(float(per_patient.mean()), 3) if len(per_patient) else None,
            "median": float(np.median(per_patient)) if len(per_patient) else None,
            "max": int(per_patient.max()) if len(per_patient) else None,
            "buckets": {
                (f"{lo}" if lo == hi else f"{lo}+" if hi >= 10**9 else f"{lo}-{hi}"): int(
                    ((per_patient >= lo) & (per_patient <= hi)).sum()
                )
                for lo, hi in _PATIENT_BUCKETS
            },
        },
    }


def _with_columns(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("filename", "labels"):
        if col not in df.columns:
            raise BadInputError(f"EDA input has no {col!r} column", "pass `load_metadata()` output or shards")
    out = df.reset_index(drop=True).copy()
    for col in ("age", "sex", "view"):
        if col not in out.columns:
            out[col] = pd.NA
    return out


def compute_stats(df: pd.DataFrame, split_scheme: str = "official", seed: int = 0) -> dict[str, Any]:
    """All EDA numbers for `df` (columns filename, labels, and optionally age, sex, view), per split and overall."""
    df = _with_columns(df)
    filenames = df["filename"].astype(str).tolist()
    split = make_split(filenames, split_scheme, seed)
    matrix = label_matrix(df["labels"].astype(str).tolist())
    pids = patient_ids(filenames)
    all_idx = np.arange(len(df), dtype=np.int64)
    groups = {"all": all_idx, **{name: split[name] for name in SPLIT_NAMES}}
    return {
        "split_scheme": split_scheme,
        "seed": seed,
        "dropped": int(getattr(split, "dropped", 0)),
        "labels": list(LABELS),
        "groups": {g: _group_stats(df.iloc[idx], matrix[idx], pids[idx]) for g, idx in groups.items()},
    }


def run_eda(
    df: pd.DataFrame,
    out_dir: Path,
    split_scheme: str = "official",
    seed: int = 0,
    *,
    source: str = "a DataFrame",
    overwrite: bool = False,
) -> EdaResult:
    """Compute the statistics, draw the plots and write `out_dir/eda.md`.

    `source` names the input (recorded with scheme and seed): `out_dir` follows `chexvision.data.outdir`, so a
    report of another source, scheme or seed is not replaced unless `overwrite`, and no other files ever are.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    stats = compute_stats(df, split_scheme, seed)  # bad input fails before the folder is touched
    prepare_out(out_dir, "eda", {"source": source, "scheme": split_scheme, "seed": seed}, overwrite=overwrite)
    plots = _draw_plots(stats, out_dir)
    report = out_dir / "eda.md"
    report.write_text(_render(stats, plots), encoding="utf-8")
    return EdaResult(out_dir, report, plots, stats, time.perf_counter() - start)


def _render(stats: dict[str, Any], plots: list[Path]) -> str:
    import jinja2

    template_text = (importlib.resources.files("chexvision.data") / "templates" / "eda.md.j2").read_text("utf-8")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["pct"] = lambda x: f"{100.0 * x:.2f}%"
    return env.from_string(template_text).render(
        stats=stats,
        groups=_GROUPS,
        labels=LABELS,
        label_rows=[*LABELS, NO_FINDING],
        plots=[p.name for p in plots],
    )


def _draw_plots(stats: dict[str, Any], out_dir: Path) -> list[Path]:
    paths: list[Path] = []
    for name, fig in draw_figures(stats).items():
        fig.savefig(out_dir / name, dpi=90)
        paths.append(out_dir / name)
    return paths


def draw_figures(stats: dict[str, Any]) -> dict[str, Figure]:
    """The report's figures by file name, drawn from `compute_stats` output (not yet saved)."""
    groups = stats["groups"]
    splits = [g for g in SPLIT_NAMES if groups[g]["images"]]
    return {
        "label_frequency.png": _plot_label_frequency(groups, splits, stats["split_scheme"]),
        "cooccurrence.png": _plot_cooccurrence(groups),
        "distributions.png": _plot_distributions(groups, splits),
        "sex_view.png": _plot_sex_view(groups, splits),
    }


def conditional_cooccurrence(cooccurrence: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """P(column label | row label): images with both labels over images with the row's label (a count matrix
    whose diagonal is each label's count, as `compute_stats` gives it). A row whose label never occurs is NaN.

    Off the diagonal, a row sums to the mean number of *other* labels an image with the row's label carries.
    """
    co = np.asarray(cooccurrence, dtype=float)
    counts = np.diag(co)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[:, None] > 0, co / counts[:, None], np.nan)


def _figure(figsize: tuple[float, float]) -> Figure:
    # Figure objects without pyplot: no global state, the Agg canvas is picked from the .png suffix. Constrained
    # layout keeps the legends placed outside the axes inside the saved image.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))


def _legend_with_headroom(ax: Any, top: float, *, log: bool = False) -> None:
    """A one-row legend in the top right of `ax`, above the data: the y axis is stretched so the tallest bar or
    point ends below the legend's row (its bottom is at most ~80% of the height)."""
    ax.set_ylim(top=top * (8.0 if log else 1.35))
    ax.legend(loc="upper right", ncol=3, fontsize=9, frameon=False, handlelength=1.2, columnspacing=1.0)


def _plot_label_frequency(groups: dict[str, Any], splits: list[str], scheme: str) -> Figure:
    fig = _figure((9, 6))
    ax = fig.add_subplot()
    rows = [*LABELS, NO_FINDING]
    y = np.arange(len(rows))
    height = 0.8 / max(len(splits), 1)
    smallest = 100.0
    for k, g in enumerate(splits):
        freq = np.array([100.0 * groups[g]["label_frequency"][lb] for lb in rows])
        smallest = min(smallest, float(freq[freq > 0].min(initial=100.0)))
        ax.barh(y + k * height, freq, height=height, label=g)
    counts = groups["all"]["label_counts"]
    ax.set_yticks(y + height * (len(splits) - 1) / 2, [f"{lb} ({counts[lb]:,})" for lb in rows])
    ax.invert_yaxis()
    # a log axis: Hernia (0.2% of NIH images) and No Finding (54%) on one plot, each bar readable
    ax.set_xscale("log")
    ax.set_xlim(10 ** np.floor(np.log10(smallest / 3)), 100)  # the rarest bar still spans a factor of 3
    _percent_axis(ax.xaxis)
    ax.grid(axis="x", which="major", lw=0.5, alpha=0.5)
    ax.set_axisbelow(True)
    ax.set_xlabel("images with the label (% of the split, log scale); brackets: count over all images")
    ax.set_title(f"Label frequency per split ({scheme} scheme)")
    ax.legend(title="split", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _plot_cooccurrence(groups: dict[str, Any]) -> Figure:
    fig = _figure((9.5, 8.2))
    ax = fig.add_subplot()
    co = np.asarray(groups["all"]["cooccurrence"], dtype=float)
    cond = 100.0 * conditional_cooccurrence(co)
    np.fill_diagonal(cond, np.nan)  # P(A | A) = 100% says nothing; the row label's count is on its tick
    off = cond[np.isfinite(cond)]
    vmax = float(off.max()) if off.size and off.max() > 0 else 100.0
    from matplotlib import colormaps

    cmap = colormaps["Blues"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(cond), cmap=cmap, vmin=0.0, vmax=vmax)
    for i, j in itertools.product(range(len(LABELS)), repeat=2):
        value = cond[i, j]
        if np.isfinite(value):
            text = f"{value:.0f}" if value >= 9.5 else f"{value:.1f}"
            color = "white" if value > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    counts = np.diag(co).astype(int)
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(LABELS)), [f"{lb} ({n:,})" for lb, n in zip(LABELS, counts, strict=True)])
    ax.set_xlabel("column label (also present); grey diagonal: the row label itself")
    ax.set_ylabel("row label (images with it)")
    ax.set_title("Label co-occurrence, all images: P(column | row), % of the row label's images")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("images with the row label that also have the column label (%)")
    return fig


def _plot_distributions(groups: dict[str, Any], splits: list[str]) -> Figure:
    fig = _figure((13, 3.8))
    axes = fig.subplots(1, 3)
    width = 0.8 / max(len(splits), 1)
    tops = [0.0, 0.0, 0.0]
    for k, g in enumerate(splits):
        per = groups[g]["labels_per_image"]
        n = max(groups[g]["images"], 1)
        share = np.array([100.0 * v / n for v in per.values()])
        keep = share > 0  # a log axis: a count of zero has no point
        axes[0].plot(np.array([int(x) for x in per])[keep], share[keep], marker="o", ms=4, label=g)
        hist = groups[g]["age"]["histogram"]
        ages = [100.0 * v / n for v in hist.values()]
        axes[1].bar(np.arange(len(hist)) + k * width, ages, width=width, label=g)
        buckets = groups[g]["images_per_patient"]["buckets"]
        npat = max(groups[g]["patients"], 1)
        patients = [100.0 * v / npat for v in buckets.values()]
        axes[2].bar(np.arange(len(buckets)) + k * width, patients, width=width, label=g)
        tops = [max(tops[0], float(share.max(initial=0.0))), max(tops[1], *ages), max(tops[2], *patients)]
    offset = width * (len(splits) - 1) / 2
    axes[0].set_yscale("log")
    _percent_axis(axes[0].yaxis)
    axes[0].set(xlabel="labels per image", ylabel="share of images (log scale)", title="Labels per image")
    hist_names = list(groups["all"]["age"]["histogram"])
    axes[1].set_xticks(np.arange(len(hist_names)) + offset, hist_names, rotation=45)
    axes[1].set(xlabel="age (years)", ylabel="share of images", title="Patient age")
    bucket_names = list(groups["all"]["images_per_patient"]["buckets"])
    axes[2].set_xticks(np.arange(len(bucket_names)) + offset, bucket_names)
    axes[2].set(xlabel="images per patient", ylabel="share of patients", title="Images per patient")
    for ax in axes[1:]:
        _percent_axis(ax.yaxis)
    for ax, top, log in zip(axes, tops, (True, False, False), strict=True):
        _legend_with_headroom(ax, max(top, 1e-3), log=log)
    return fig


def _plot_sex_view(groups: dict[str, Any], splits: list[str]) -> Figure:
    fig = _figure((9, 3.4))
    axes = fig.subplots(1, 2)
    width = 0.8 / max(len(splits), 1)
    for ax, key in zip(axes, ("sex", "view"), strict=True):
        names = list(groups["all"][key])
        top = 0.0
        for k, g in enumerate(splits):
            n = max(groups[g]["images"], 1)
            values = [100.0 * groups[g][key].get(name, 0) / n for name in names]
            ax.bar(np.arange(len(names)) + k * width, values, width=width, label=g)
            top = max(top, *values)
        ax.set_xticks(np.arange(len(names)) + width * (len(splits) - 1) / 2, names)
        ax.set(ylabel="share of images", title="Sex" if key == "sex" else "View position")
        _percent_axis(ax.yaxis)
        _legend_with_headroom(ax, max(top, 1e-3))
    return fig
