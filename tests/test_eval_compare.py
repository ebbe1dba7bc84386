"""`chexvision compare`'s per-class tests: DeLong's test against a slow reference written from the definition,
Holm's step-down correction on hand-built p-values, and the bootstrap p-value below its resolution (p < 1/B)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from chexvision.evaluate.compare import compare_runs, comparison_markdown
from chexvision.evaluate.predictions import Predictions
from chexvision.evaluate.significance import delong_components, delong_test, holm_adjust, per_class_delong
from chexvision.labels import LABELS
from chexvision.rundir import RunDir


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _delong_by_definition(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(AUC_a, AUC_b, var(AUC_a - AUC_b)) with explicit loops over positives and negatives (DeLong 1988, eq. 4-5)."""
    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]
    m, n = len(pos), len(neg)
    v10 = [[sum(_psi(s[i], s[j]) for j in neg) / n for i in pos] for s in (a, b)]
    v01 = [[sum(_psi(s[i], s[j]) for i in pos) / m for j in neg] for s in (a, b)]
    auc = [sum(v) / m for v in v10]

    def cov(v: list[list[float]], r: int, s: int, count: int) -> float:
        mean_r, mean_s = sum(v[r]) / count, sum(v[s]) / count
        return sum((v[r][k] - mean_r) * (v[s][k] - mean_s) for k in range(count)) / (count - 1)

    s10 = [[cov(v10, r, s, m) for s in (0, 1)] for r in (0, 1)]
    s01 = [[cov(v01, r, s, n) for s in (0, 1)] for r in (0, 1)]
    var = (s10[0][0] + s10[1][1] - 2 * s10[0][1]) / m + (s01[0][0] + s01[1][1] - 2 * s01[0][1]) / n
    return auc[0], auc[1], var


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_the_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(60) < 0.35).astype(int)
    a = np.round(0.8 * y + rng.normal(0, 0.6, 60), 1)  # rounded: many ties, within and across classes
    b = np.round(0.3 * y + 0.5 * a + rng.normal(0, 0.6, 60), 1)  # correlated with a, as two models on one image
    auc_a, auc_b, var = _delong_by_definition(y, a, b)
    got = delong_test(y, a, b)
    assert got["auc_a"] == pytest.approx(auc_a, abs=1e-12) and got["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert got["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert got["se"] == pytest.approx(np.sqrt(var), rel=1e-10)
    z = (auc_a - auc_b) / np.sqrt(var)
    assert got["z"] == pytest.approx(z, rel=1e-10)
    assert got["p_value"] == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)


def test_delong_components_of_a_hand_built_case() -> None:
    # positives 0.9, 0.5, 0.3 and negatives 0.5, 0.1: positive 0.5 ties negative 0.5 (1/2); positive 0.3 beats 0.1 only
    y = np.array([1, 1, 1, 0, 0])
    s = np.array([0.9, 0.5, 0.3, 0.5, 0.1])
    auc, v10, v01 = delong_components(y, s)
    np.testing.assert_allclose(v10[0], [1.0, 0.75, 0.5])  # share of the 2 negatives each positive outranks
    np.testing.assert_allclose(v01[0], [0.5, 1.0])  # share of the 3 positives above each negative (ties 1/2)
    assert auc[0] == pytest.approx(0.75) == roc_auc_score(y, s)


def test_delong_auc_of_the_published_hanley_mcneil_ratings() -> None:
    # Hanley & McNeil, Radiology 1982, Table 1: 109 CT images rated 1-5 (58 normal, 51 abnormal), AUC 0.893.
    # Five rating levels: almost every comparison is a tie, which the midranks must count as 1/2. (Their SE, 0.032,
    # comes from an exponential approximation, not from DeLong's estimator, so it is not compared here.)
    negatives = np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2])
    positives = np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    y = np.r_[np.zeros(58), np.ones(51)]
    auc, _, _ = delong_components(y, np.r_[negatives, positives].astype(float))
    assert auc[0] == pytest.approx(0.893, abs=5e-4)


def test_delong_of_identical_models_is_no_difference() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.7, 0.4, 0.6, 0.2, 0.3])
    got = delong_test(y, s, s)
    assert got["diff"] == 0.0 and got["p_value"] == 1.0 and got["z"] is None
    with pytest.raises(ValueError, match="two positive"):
        delong_test(np.array([0, 0, 1]), s[:3], s[:3])


def test_holm_on_hand_built_p_values() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 0.5 * 2 = 1; then the running max; clipped at 1
    assert holm_adjust([]) == []


def test_per_class_delong_corrects_over_the_tested_classes_only() -> None:
    rng = np.random.default_rng(0)
    n = 400
    y14 = (rng.random((n, 14)) < 0.3).astype(np.float32)
    y14[:, 13] = 0
    y14[0, 13] = 1  # Hernia: one positive, cannot be tested
    good = y14 + rng.normal(0, 0.5, (n, 14))
    worse = good.copy()
    worse[:, 0] = rng.normal(0, 0.5, n)  # Atelectasis: B carries no signal
    result = per_class_delong(y14, good, worse, alpha=0.05)
    assert result["tested"] == 13 and result["per_class"]["Hernia"] is None
    assert result["significant"] == ["Atelectasis"]
    atelectasis = result["per_class"]["Atelectasis"]
    assert atelectasis["p_holm"] == pytest.approx(min(1.0, 13 * atelectasis["p_value"]))  # the smallest p: times m
    assert result["per_class"]["Effusion"]["p_value"] == 1.0  # identical scores


def _evaluated_run(make_run_dir: Callable[..., Path], path: Path, preds: Predictions) -> Path:
    run = make_run_dir(path, run_id=path.name, model="seresnet")
    csv = preds.write_csv(path / "eval" / "test.csv")
    RunDir(run).write_metrics_section("test", {"macro_auc": 0.7, "per_class_auc": {}, "predictions": str(csv)})
    return run


@pytest.mark.slow  # two tiny run directories (imports torch)
def test_compare_reports_p_below_resolution_and_the_holm_table(
    tmp_path: Path, make_run_dir: Callable[..., Path]
) -> None:
    rng = np.random.default_rng(0)
    n = 240
    y14 = (rng.random((n, 14)) < 0.3).astype(np.float32)
    pids = np.arange(n) // 2
    names = [f"{i:08d}_000.png" for i in range(n)]
    strong = np.clip(0.5 * y14 + 0.5 * rng.random((n, 14)), 0, 1)  # nearly separates every class
    weak = rng.random((n, 14))
    ybin = (y14.sum(1) > 0).astype(np.float32)
    a = _evaluated_run(make_run_dir, tmp_path / "a", Predictions(names, pids, y14, ybin, strong, strong.max(1)))
    b = _evaluated_run(make_run_dir, tmp_path / "b", Predictions(names, pids, y14, ybin, weak, weak.max(1)))
    result = compare_runs([a, b], bootstrap=50, seed=0)
    pair = result["pairs"][0]
    assert pair["p_value"] == 0.0 and pair["p_value_upper_bound"] == pytest.approx(1 / 50)
    text = comparison_markdown(result)
    assert "< 0.02 |" in text and "| 0.000 |" not in text
    assert pair["delong"]["tested"] == 14 and set(pair["delong"]["significant"]) == set(LABELS)
    assert "Differences that survive Holm's correction: Atelectasis" in text
