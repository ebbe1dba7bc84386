"""Per-class calibration: Brier and slope/intercept against scikit-learn, ECE and bin counts on a hand-built case,
Platt scaling per class against the offset a class weight leaves, and the report saying when scaling did not help."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from chexvision.evaluate.calibration import (
    brier_score,
    calibration_slope_intercept,
    calibration_summary,
    expected_calibration_error,
    fit_platt,
    logit,
    per_class_calibration,
    reliability_curve,
)
from chexvision.evaluate.predictions import Predictions, score_predictions
from chexvision.evaluate.report import calibration_notes, calibration_rows, render_report
from chexvision.labels import LABELS


def _miscalibrated(n: int, slope: float, intercept: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from sigmoid(intercept + slope * logit(p)): p has exactly that calibration slope/intercept."""
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(-1.0, 1.5, n))
    y = (rng.random(n) < expit(intercept + slope * logit(p))).astype(float)
    return y, p


def test_brier_matches_sklearn() -> None:
    y, p = _miscalibrated(500, 0.7, -0.4, 0)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)


@pytest.mark.parametrize(("slope", "intercept"), [(1.0, 0.0), (0.5, -1.0), (1.8, 0.7)])
def test_slope_and_intercept_match_an_unpenalised_sklearn_fit(slope: float, intercept: float) -> None:
    y, p = _miscalibrated(4000, slope, intercept, 1)
    # no penalty (C = inf): the maximum-likelihood fit the slope and intercept are defined by
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logit(p)[:, None], y)
    got = calibration_slope_intercept(y, p)
    assert got is not None
    assert got[0] == pytest.approx(reference.coef_[0, 0], abs=1e-5)
    assert got[1] == pytest.approx(reference.intercept_[0], abs=1e-5)
    assert got[0] == pytest.approx(slope, abs=0.25) and got[1] == pytest.approx(intercept, abs=0.25)


def test_slope_is_none_without_a_finite_fit() -> None:
    assert calibration_slope_intercept(np.zeros(5), np.linspace(0.1, 0.5, 5)) is None  # one outcome
    assert calibration_slope_intercept(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) is None  # separated
    assert calibration_slope_intercept(np.array([0, 1, 0, 1]), np.full(4, 0.3)) is None  # constant


def test_ece_and_bin_counts_hand_built() -> None:
    # 10 bins. 0.05 x3 (y 0,0,1) -> bin 0; 0.1 exactly -> bin 1 (as in the ECE); 0.95 x2 (y 1,1) -> bin 9.
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.05, 0.1, 0.95, 0.95])
    # |1 - 0.15| + |0 - 0.1| + |2 - 1.9| = 0.85 + 0.1 + 0.1 = 1.05, over 6
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(1.05 / 6)
    curve = reliability_curve(y, p, n_bins=10)
    assert curve["bins"] == [0, 1, 9] and curve["counts"] == [3, 1, 2]
    assert curve["fraction_positive"] == pytest.approx([1 / 3, 0.0, 1.0])
    assert curve["mean_predicted"] == pytest.approx([0.05, 0.1, 0.95])
    gaps = np.abs(np.array(curve["fraction_positive"]) - curve["mean_predicted"]) * curve["counts"]
    assert gaps.sum() / len(y) == pytest.approx(expected_calibration_error(y, p, n_bins=10))  # diagram = number


def _weighted_head(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two classes whose logits are lifted by log(pos_weight), as the class-weighted loss leaves them."""
    rng = np.random.default_rng(seed)
    true = rng.normal(-3.0, 1.5, (n, 2))
    y = (rng.random((n, 2)) < expit(true)).astype(np.float32)
    return y, expit(true + np.log([20.0, 8.0]))


def test_platt_per_class_removes_the_class_weight_offset_where_temperature_cannot() -> None:
    y_val, p_val = _weighted_head(6000, 0)
    y_test, p_test = _weighted_head(6000, 1)
    platt = fit_platt(y_val, p_val)
    assert platt.fitted.all()
    np.testing.assert_allclose(platt.intercept, -np.log([20.0, 8.0]), atol=0.25)
    scaled = platt.apply(p_test)
    head = calibration_summary(p_val, y_val, p_test, y_test, 15)
    for k in range(2):
        assert roc_auc_score(y_test[:, k], scaled[:, k]) == pytest.approx(roc_auc_score(y_test[:, k], p_test[:, k]))
        ece_platt = expected_calibration_error(y_test[:, k], scaled[:, k])
        assert ece_platt < expected_calibration_error(y_test[:, k], p_test[:, k]) / 4
    rows = per_class_calibration(y_val, p_val, y_test, p_test, head["temperature"], 15, labels=["A", "B"])
    for row in rows["classes"].values():
        assert row["platt_fitted"] and row["platt_helped"]
        assert row["ece_platt"] < row["ece_temperature"] / 2  # a temperature cannot move an offset


def test_platt_leaves_a_class_with_few_validation_positives_unchanged() -> None:
    y_val, p_val = _weighted_head(400, 2)
    y_val[:, 1] = 0
    y_val[:5, 1] = 1  # 5 positives: below the minimum
    platt = fit_platt(y_val, p_val)
    assert not platt.fitted[1]
    np.testing.assert_array_equal(platt.apply(p_val)[:, 1], p_val[:, 1])


def test_temperature_that_does_not_help_is_reported_as_such() -> None:
    # validation overconfident (T ~ 3 fitted), the evaluated set calibrated: the temperature makes it worse
    rng = np.random.default_rng(3)
    z_val, z_test = rng.normal(0, 2, 5000), rng.normal(0, 2, 5000)
    y_val = (rng.random(5000) < expit(z_val)).astype(float)
    y_test = (rng.random(5000) < expit(z_test)).astype(float)
    head = calibration_summary(expit(3 * z_val), y_val, expit(z_test), y_test, 15)
    assert head["temperature"] > 2 and head["ece_after"] > head["ece_before"] and head["helped"] is False
    score = {"calibration": {"binary": head, "multi": {**head, "helped": True}}, "fitted_on": "validation"}
    notes = calibration_notes(score)
    assert len(notes) == 1 and notes[0]["warn"] and "did not lower the ECE of the binary head" in notes[0]["text"]
    assert "read the unscaled probabilities" in notes[0]["text"]


def _predictions(seed: int, n: int = 400) -> Predictions:
    rng = np.random.default_rng(seed)
    y14 = (rng.random((n, 14)) < 0.25).astype(np.float32)
    p14 = expit(2.0 * (y14 - 0.5) + rng.normal(0, 1.0, (n, 14)) + 1.0)  # too high overall
    ybin = (y14.sum(1) > 0).astype(np.float32)
    names = [f"{seed}{i:07d}_000.png" for i in range(n)]
    return Predictions(names, rng.integers(0, n // 2, n), y14, ybin, p14, p14.max(1))


def test_score_and_report_carry_per_class_calibration(tmp_path: Path) -> None:
    test, val = _predictions(0), _predictions(1)
    score = score_predictions(test, val, bootstrap=0)
    per_class = score["calibration"]["per_class"]["classes"]
    assert set(per_class) == set(LABELS)
    effusion = per_class["Effusion"]
    k = LABELS.index("Effusion")
    assert effusion["brier"] == pytest.approx(brier_score_loss(test.y14[:, k], test.p14[:, k]))
    assert effusion["intercept"] < 0 and effusion["platt_fitted"] and effusion["platt_helped"]
    assert sum(effusion["curve"]["counts"]) == len(test)
    rows = calibration_rows(score)
    assert [r[0] for r in rows] == [*LABELS, "14 labels, pooled", "binary head"]
    results = {"split": "test", "data": "d", "evaluated_at": "now", "bootstrap": 0, "seed": 0,
               "runs": {"m": {"plain": score}}}  # fmt: skip
    html, markdown = render_report(results, {"m": {"plain": test}}, tmp_path / "figures")
    assert "Calibration per class: m" in markdown and "fitted on\nthe validation split" in markdown
    assert (tmp_path / "figures" / "reliability_per_class.png").stat().st_size > 10_000
    assert "ECE, Platt per class" in html
    crossfit = {**results, "runs": {"m": {"plain": {**score, "fitted_on": "test, 2-fold cross-fitted by patient"}}}}
    _, markdown = render_report(crossfit, {"m": {"plain": test}}, tmp_path / "figures")
    assert "fitted on\ntest, 2-fold cross-fitted by patient" in markdown and "validation split" not in markdown
