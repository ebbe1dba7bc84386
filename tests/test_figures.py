"""The evaluation report's figures and `chexvision evaluate`'s terminal summary: drawn without matplotlib warnings
(a layout that could not be applied is one), the AUROC axis fitted to the data, 14 labels told apart, and a summary
that fits an 80-column terminal without cutting a model name or a number."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from chexvision.evaluate import figures
from chexvision.evaluate.predictions import Predictions, score_predictions
from chexvision.labels import LABELS


def _predictions(seed: int, n: int = 240, signal: float = 1.5) -> Predictions:
    """Probabilities that carry `signal` about labels drawn at NIH-like rates (every class has positives)."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.08, 0.3, len(LABELS))
    y14 = (rng.random((n, len(LABELS))) < rates).astype(np.float32)
    logits = signal * (2 * y14 - 1) + rng.normal(0, 1.2, y14.shape) - 1.0
    p14 = 1 / (1 + np.exp(-logits))
    ybin = (y14.max(axis=1) > 0).astype(np.float32)
    pbin = 1 / (1 + np.exp(-(signal * (2 * ybin - 1) + rng.normal(0, 1.0, n))))
    names = [f"{90000000 + i:08d}_000.png" for i in range(n)]
    return Predictions(names, np.arange(n, dtype=np.int64), y14, ybin, p14.astype(np.float64), pbin)


@pytest.fixture(scope="module")
def scored() -> tuple[dict[str, Predictions], list[tuple[str, dict[str, Any]]]]:
    preds = {name: _predictions(seed) for seed, name in enumerate(("densenet-20261201-1222-1a5e", "seresnet-b", "ens"))}
    val = {name: _predictions(10 + k) for k, name in enumerate(preds)}
    scores = [(name, score_predictions(p, val[name], bootstrap=20, seed=0)) for name, p in preds.items()]
    return preds, scores


def _no_warnings(draw: Any) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied", tight_layout, glyph warnings...
        png = draw()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return png


def test_every_report_figure_draws_without_warnings(scored: Any) -> None:
    preds, scores = scored
    n_bins = scores[0][1]["calibration"]["n_bins"]
    for kind in ("roc", "pr"):
        _no_warnings(lambda kind=kind: figures.curve_figure(preds, kind))
    _no_warnings(lambda: figures.bars_figure(scores))
    per_class = scores[0][1]["calibration"]["per_class"]
    _no_warnings(lambda: figures.per_class_reliability_figure(scores[0][0], per_class, n_bins))
    for k in (1, 3):  # several models used to collapse the grid (hollow markers outside the axes)
        png = _no_warnings(lambda k=k: figures.reliability_figure(scores[:k], n_bins))
        width, height = Image.open(io.BytesIO(png)).size
        assert height > 0.9 * width * k * 5.9 / 11  # each model keeps its full row: nothing squeezed


def test_auroc_axis_starts_below_the_lowest_interval_not_at_zero() -> None:
    assert figures.auroc_axis_floor([0.91, 0.84, 0.97, float("nan")]) == pytest.approx(0.75)
    assert figures.auroc_axis_floor([0.80]) == pytest.approx(0.75)
    assert figures.auroc_axis_floor([0.52, 0.61]) == pytest.approx(0.45)
    assert figures.auroc_axis_floor([0.02]) == 0.0
    assert figures.auroc_axis_floor([]) == 0.0
    for low in np.linspace(0.0, 1.0, 41):  # always a margin below the lowest whisker
        floor = figures.auroc_axis_floor([float(low)])
        assert floor <= low and (floor == 0.0 or low - floor >= 0.05 - 1e-9)


def test_fourteen_labels_have_fourteen_distinct_styles() -> None:
    assert len(figures.LABEL_STYLES) == len(LABELS) == len(set(figures.LABEL_STYLES))
    solid = [c for c, style in figures.LABEL_STYLES if style == "-"]
    assert len(solid) == len(set(solid))  # no colour repeats among one line style


def _evaluate_result() -> dict[str, Any]:
    """What `_evaluate_runs` returns for two runs and their ensemble, with TTA (the shapes `brief` gives)."""

    def doc(auc: float) -> dict[str, Any]:
        return {"macro_auc": auc, "macro_auc_ci": [auc - 0.013, auc + 0.009], "binary_auc": auc + 0.05,
                "binary_auc_ci": [auc + 0.04, auc + 0.06], "binary_f1": 0.929, "binary_f1_youden": 0.926,
                "ece_binary": 0.056, "ece_binary_scaled": 0.032, "tta": {"macro_auc": auc + 0.003}}  # fmt: skip

    runs = {"densenet-20261201-1222-1a5e": doc(0.920), "seresnet-20261201-1226-020a": doc(0.937)}
    out = "/home/someone/.chexvision/runs/densenet-20261201-1222-1a5e/eval-test-with-a-long-folder-name"
    return {**doc(0.944), "name": "ensemble", "runs": runs, "ensemble": doc(0.944), "out": out,
            "report": f"{out}/report.html"}  # fmt: skip


def test_evaluate_summary_fits_80_columns_without_cutting_a_word() -> None:
    from chexvision.cli.evaluate import _print_summary

    result = _evaluate_result()
    buf = io.StringIO()
    console = Console(file=buf, width=80, highlight=False, color_system=None, legacy_windows=False)
    _print_summary(result, console)
    text = buf.getvalue()
    table_lines = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines and all(len(line) <= 80 for line in table_lines)
    assert "…" not in text
    for name in [*result["runs"], "ensemble"]:
        assert sum(name in line for line in table_lines) == 1  # each model named once, whole
    for value in ("0.920 [0.907, 0.929]", "0.994 [0.984, 1.004]", "0.926", "0.032", "0.947"):
        assert value in text, value
    for label in ("macro AUROC [95% CI]", "binary ECE, scaled", "TTA macro AUROC"):
        assert sum(line.startswith(f"│ {label} ") for line in table_lines) == 2  # once per table, unfolded
    assert result["report"] in text.replace("\n", "")  # soft-wrapped: the terminal wraps a long path, rich does not


def test_evaluate_summary_keeps_models_side_by_side_when_they_fit() -> None:
    from chexvision.cli.evaluate import summary_tables

    result = _evaluate_result()
    assert len(summary_tables(result, 200)) == 1
    assert len(summary_tables(result, 80)) == 2
    single = {k: v for k, v in result.items() if k not in ("runs", "ensemble")}
    (table,) = summary_tables(single, 80)
    assert [c.header for c in table.columns] == ["metric", "ensemble"]


def test_report_has_the_n_a_footnote_only_when_a_cell_says_n_a(tmp_path: Any) -> None:
    from chexvision.evaluate.report import render_report

    def html_of(test: Predictions) -> str:
        score = score_predictions(test, _predictions(11), bootstrap=0)
        results = {"split": "test", "data": "d", "evaluated_at": "now", "bootstrap": 0, "seed": 0,
                   "runs": {"m": {"plain": score}}}  # fmt: skip
        html, markdown = render_report(results, {"m": {"plain": test}}, tmp_path / "figures")
        assert ("n/a: no positive" in html) == ("n/a: no positive" in markdown)
        return html

    full = _predictions(3)
    assert "n/a: no positive" not in html_of(full)
    no_hernia = _predictions(3)
    no_hernia.y14[:, LABELS.index("Hernia")] = 0.0  # no positive: its AUROC is n/a
    assert "n/a: no positive" in html_of(no_hernia)
