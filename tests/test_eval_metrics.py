"""Evaluation metrics: checked against scikit-learn on random data and against hand-computed small cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from chexvision.engine.metrics import validation_metrics
from chexvision.evaluate.bootstrap import (
    bootstrap_classification,
    bootstrap_samples,
    paired_bootstrap,
    patient_groups,
)
from chexvision.evaluate.calibration import expected_calibration_error, fit_temperature, reliability_curve
from chexvision.evaluate.metrics import (
    METRICS,
    TEST,
    VAL,
    Threshold,
    auprc,
    auroc,
    binary_head_metrics,
    classification_metrics,
    flat_metrics,
    get_metric,
    macro,
    metrics_for,
)
from chexvision.evaluate.predictions import Predictions, score_predictions
from chexvision.evaluate.thresholds import metrics_at_threshold, sensitivity_threshold, youden_threshold
from chexvision.labels import LABELS

# The scikit-learn documentation example: AUROC 0.75, average precision 0.8333.
Y_HAND = np.array([0, 0, 1, 1])
P_HAND = np.array([0.1, 0.4, 0.35, 0.8])


def _random_problem(n: int = 300, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y14 = (rng.random((n, 14)) < 0.2).astype(np.float32)
    y14[:, 13] = 0  # Hernia: no positives -> undefined
    p14 = np.clip(0.3 * y14 + rng.random((n, 14)) * 0.7, 0, 1)
    ybin = (y14.sum(1) > 0).astype(np.float32)
    pbin = p14.max(1)
    pids = rng.integers(0, n // 3, size=n)
    return y14, p14, ybin, pbin, pids


def test_hand_built_auc_and_ap() -> None:
    assert auroc(Y_HAND, P_HAND) == pytest.approx(0.75)
    assert auprc(Y_HAND, P_HAND) == pytest.approx(0.8333333)


def test_classification_metrics_match_sklearn_and_skip_undefined_classes() -> None:
    y14, p14, ybin, pbin, _ = _random_problem()
    m = classification_metrics(y14, p14, ybin, pbin)
    per_class = m["per_class_auc"]
    assert isinstance(per_class, dict)
    assert list(per_class) == list(LABELS)
    assert per_class["Hernia"] is None
    expected = [roc_auc_score(y14[:, k], p14[:, k]) for k in range(13)]
    assert [per_class[name] for name in LABELS[:13]] == pytest.approx(expected)
    assert m["macro_auc"] == pytest.approx(np.mean(expected))
    ap = m["per_class_auprc"]
    assert isinstance(ap, dict)
    assert ap["Effusion"] == pytest.approx(average_precision_score(y14[:, 2], p14[:, 2]))
    assert m["binary_auc"] == pytest.approx(roc_auc_score(ybin, pbin))
    assert macro([None, None]) is None


def test_thresholds_on_hand_built_case() -> None:
    # ROC points (thr: tpr, fpr): 0.8: .5,0  0.4: .5,.5  0.35: 1,.5  0.1: 1,1 -> J is .5 first at 0.8
    assert youden_threshold(Y_HAND, P_HAND) == pytest.approx(0.8)
    assert sensitivity_threshold(Y_HAND, P_HAND, 0.95) == pytest.approx(0.35)
    at = metrics_at_threshold(Y_HAND, P_HAND, 0.35)  # predictions 0,1,1,1
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (2, 1, 1, 0)
    assert at["sensitivity"] == 1.0
    assert at["specificity"] == 0.5
    assert at["f1"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="both positive and negative"):
        youden_threshold(np.ones(3), np.ones(3))


def test_ece_hand_built_and_reliability_curve() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.9, 0.6])
    # bins of width 0.1: |0-0.1|*1 + |1-0.6|*1 + |0.5-0.9|*2 = 1.3, over 4 samples
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(0.325)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0
    curve = reliability_curve(y, p, n_bins=10)
    assert curve["fraction_positive"] == pytest.approx([0.0, 1.0, 0.5])
    assert curve["mean_predicted"] == pytest.approx([0.1, 0.6, 0.9])


def test_temperature_scaling_recovers_known_temperature_and_lowers_ece() -> None:
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    overconfident = 3.0 * true_logits
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.08)
    before = expected_calibration_error(y, 1 / (1 + np.exp(-overconfident)))
    after = expected_calibration_error(y, 1 / (1 + np.exp(-overconfident / t)))
    assert after < before / 3


def test_bootstrap_resamples_whole_patients_and_is_seeded() -> None:
    pids = np.array([5, 5, 5, 7, 9, 9])
    groups = patient_groups(pids)
    assert sorted(map(len, groups)) == [1, 2, 3]
    for idx in bootstrap_samples(pids, 20, seed=3):
        counts = np.bincount(pids[idx], minlength=10)
        assert counts[5] % 3 == 0 and counts[9] % 2 == 0
    first = [i.tolist() for i in bootstrap_samples(pids, 5, seed=3)]
    again = [i.tolist() for i in bootstrap_samples(pids, 5, seed=3)]
    assert first == again


def test_bootstrap_intervals_contain_the_estimate() -> None:
    y14, p14, ybin, pbin, pids = _random_problem()
    point = classification_metrics(y14, p14, ybin, pbin)
    ci = bootstrap_classification(y14, p14, ybin, pbin, pids, n=40, seed=0)
    interval = ci["macro_auc"]
    assert isinstance(interval, list)
    lo, hi = interval
    assert lo < point["macro_auc"] < hi
    per_class = ci["per_class_auc"]
    assert isinstance(per_class, dict)
    assert per_class["Hernia"] is None
    assert per_class["Atelectasis"][0] <= per_class["Atelectasis"][1]
    assert ci["binary_auc"] is not None


def test_paired_bootstrap_detects_a_better_model() -> None:
    y14, p14, _, _, pids = _random_problem(seed=2)
    noise = np.random.default_rng(0).random(p14.shape)
    worse = 0.5 * p14 + 0.5 * noise
    result = paired_bootstrap(y14, p14, worse, pids, n=25, seed=0)
    assert result["diff"] > 0  # type: ignore[operator]
    assert result["p_value"] is not None and result["p_value"] < 0.05  # type: ignore[operator]
    same = paired_bootstrap(y14, p14, p14, pids, n=10, seed=0)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0


def _predictions(seed: int) -> Predictions:
    y14, p14, ybin, pbin, pids = _random_problem(seed=seed)
    names = [f"{i:08d}_000.png" for i in range(len(y14))]
    return Predictions(names, pids, y14, ybin, p14, pbin)


def test_metrics_table_keys_are_unique_and_model_index_entries_distinct() -> None:
    keys = [m.key for m in METRICS]
    assert len(keys) == len(set(keys))
    indexed = [m.model_index for m in METRICS if m.model_index]
    assert len(indexed) == len(set(indexed))  # one (type, config) per metric on the card
    assert all(set(m.splits) <= {VAL, TEST} and m.splits for m in METRICS)
    assert get_metric("binary_f1").threshold is Threshold.HALF
    assert get_metric("binary_f1_youden").threshold is Threshold.YOUDEN
    assert get_metric("binary_f1_youden").column == "binary F1 @ Youden"
    with pytest.raises(KeyError, match="binary_f1_youden"):
        get_metric("f1")


def test_training_computes_exactly_the_tables_validation_metrics() -> None:
    y14, p14, ybin, pbin, _ = _random_problem()
    val = validation_metrics(p14, pbin, y14, ybin)
    scalars = {k for k, v in val.items() if not isinstance(v, dict)}
    assert scalars == {m.key for m in metrics_for(VAL)}
    assert val["binary_f1"] == pytest.approx(metrics_at_threshold(ybin, pbin, 0.5)["f1"])  # one meaning per key


def test_evaluation_computes_every_table_metric_and_its_ci() -> None:
    score = score_predictions(_predictions(0), _predictions(1), bootstrap=5, seed=0)
    for metric in metrics_for(TEST):
        assert isinstance(score[metric.key], float), metric.key
        assert (metric.key in score["ci"]) == metric.ci, metric.key
    scalar_cis = {k for k, v in score["ci"].items() if isinstance(v, list)}
    assert scalar_cis == {m.key for m in METRICS if m.ci}
    flat = flat_metrics(score)
    assert flat["macro_auc_ci"] == score["ci"]["macro_auc"] and "binary_f1_ci" not in flat
    assert set(flat) == {m.key for m in metrics_for(TEST)} | {f"{m.key}_ci" for m in METRICS if m.ci}


def test_binary_f1_at_half_and_at_youden_are_two_keys() -> None:
    # at 0.5 the predictions are 0,0,0,1 (F1 2/3); at 0.35 they are 0,1,1,1 (F1 0.8)
    point = metrics_at_threshold(Y_HAND, P_HAND, 0.35)
    points = {"youden": point, "sensitivity_0.95": point}
    m = binary_head_metrics(Y_HAND, P_HAND, points, {"binary": {"ece_before": 0.2, "ece_after": 0.1}})
    assert m["binary_f1"] == pytest.approx(2 / 3) and m["binary_f1_youden"] == pytest.approx(0.8)
    assert (m["binary_sensitivity_target"], m["binary_specificity_target"]) == (1.0, 0.5)
    assert (m["ece_binary"], m["ece_binary_scaled"]) == (0.2, 0.1)
    none = binary_head_metrics(Y_HAND, P_HAND, {}, {})  # validation with one class: no operating point
    assert none["binary_f1_youden"] is None and none["binary_f1"] == pytest.approx(2 / 3)
