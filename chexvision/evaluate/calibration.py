"""Calibration: ECE, Brier score, calibration slope and intercept, reliability curves with bin counts, and the two
recalibrations fitted on validation (one temperature per head; Platt scaling per class).

ECE uses equal-width probability bins (default 15): sum over bins of |observed frequency - mean confidence|
weighted by the bin's share of samples, computed on positive-class probabilities (the pooled 14-label figure
pools the 14 columns).

Calibration slope and intercept (Cox 1958; Van Calster et al., J Clin Epidemiol 2016) are the coefficients of the
unpenalised logistic regression y ~ intercept + slope * logit(p), fitted jointly: slope 1 and intercept 0 for
calibrated probabilities, slope < 1 for overconfident ones (too extreme), intercept < 0 for probabilities that are
too high overall.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 chosen to minimise the binary
cross-entropy on the validation logits; it never changes a ranking, so AUROC is unaffected. It is reported before
and after, per head and per class, with `helped` saying whether it lowered the ECE on the evaluated images: when
it did not, the unscaled probabilities are the better calibrated ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit

from chexvision.labels import LABELS

__all__ = [
    "MIN_BIN_COUNT",
    "MIN_PLATT_CLASS",
    "PlattScaling",
    "brier_score",
    "calibration_slope_intercept",
    "calibration_summary",
    "expected_calibration_error",
    "fit_platt",
    "fit_temperature",
    "logit",
    "per_class_calibration",
    "reliability_curve",
]

MIN_BIN_COUNT = 10  # reliability bins with fewer samples are drawn hollow and left off the line: too noisy to read
MIN_PLATT_CLASS = 10  # Platt scaling needs at least this many validation positives AND negatives of a class


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse sigmoid, clipped so that probabilities of exactly 0 or 1 stay finite."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(q) - np.log1p(-q)


def _binary(y_true: np.ndarray) -> np.ndarray:
    return (np.asarray(y_true).ravel() > 0.5).astype(np.float64)


def _bin_stats(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, sum of p, sum of y) per equal-width bin; bin b holds b/n <= p < (b+1)/n, p = 1 the last bin."""
    y = _binary(y_true)
    p = np.clip(np.asarray(y_prob, dtype=np.float64).ravel(), 0.0, 1.0)
    if y.size == 0:
        raise ValueError("calibration of an empty set")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    return counts, np.bincount(bins, weights=p, minlength=n_bins), np.bincount(bins, weights=y, minlength=n_bins)


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> float:
    """ECE with `n_bins` equal-width bins on [0, 1]; a probability of exactly 1 falls in the last bin."""
    counts, conf, freq = _bin_stats(y_true, y_prob, n_bins)
    nonempty = counts > 0
    gaps = np.abs(freq[nonempty] - conf[nonempty])  # |sum(y) - sum(p)| = n_b * |acc_b - conf_b|
    return float(gaps.sum() / counts.sum())


def brier_score(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """Mean squared difference between the probability and the 0/1 outcome."""
    y = _binary(y_true)
    if y.size == 0:
        raise ValueError("Brier score of an empty set")
    return float(np.mean((np.asarray(y_prob, dtype=np.float64).ravel() - y) ** 2))


def reliability_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> dict[str, list[Any]]:
    """Per non-empty equal-width bin: mean predicted probability, observed frequency, sample count and bin index.

    The bins are the ECE's, so the diagram and the number agree bin for bin; `counts` lets a reader (and the
    diagram) tell a bin of 3 images from one of 3,000.
    """
    counts, conf, freq = _bin_stats(y_true, y_prob, n_bins)
    keep = np.flatnonzero(counts)
    return {
        "mean_predicted": (conf[keep] / counts[keep]).tolist(),
        "fraction_positive": (freq[keep] / counts[keep]).tolist(),
        "counts": [int(c) for c in counts[keep]],
        "bins": [int(b) for b in keep],
    }


def calibration_slope_intercept(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[float, float] | None:
    """(slope, intercept) of the unpenalised logistic fit y ~ a + b * logit(p), by Newton-Raphson.

    None when there is no finite maximum-likelihood fit: one outcome only, constant probabilities, or outcomes
    perfectly separated by the probability (the slope grows without bound).
    """
    y = _binary(y_true)
    x = logit(np.asarray(y_prob, dtype=np.float64).ravel())
    if y.size == 0 or y.min() == y.max() or np.ptp(x) == 0:
        return None
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    for _ in range(100):
        mu = expit(design @ beta)
        w = mu * (1 - mu)
        hessian = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e4:
            return None  # separation: the likelihood keeps rising along a direction
        if np.abs(step).max() < 1e-10:
            return float(beta[1]), float(beta[0])
    return None


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Scalar T minimising BCE(sigmoid(logits / T), y) on validation logits; log T searched in [-4, 4]."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = _binary(y_true)
    if y.min() == y.max():
        return 1.0  # one class only: the NLL has no interior minimum worth trusting

    def nll(log_t: float) -> float:
        # the optimisation objective, not a reported metric: mean BCE in its overflow-free logaddexp form
        # (scikit-learn's log_loss validates its input on each of ~30 calls, which costs more than the sum)
        scaled = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

    result = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


@dataclass(frozen=True)
class PlattScaling:
    """Per-class Platt scaling, p' = sigmoid(intercept + slope * logit(p)), fitted on validation.

    Why Platt per class rather than a temperature per class: the 14-label head is trained with a class weight
    pos_weight = negatives / positives (capped at 50), which lifts every logit of a rare class by about
    log(pos_weight). That is an offset, and a temperature, which only stretches or shrinks logits around p = 0.5,
    cannot remove an offset without distorting the spread (for a class predicted too high everywhere the best T
    makes the confident positives more extreme). The logistic recalibration has an intercept for the offset and a
    slope for the spread: the same two numbers the calibration slope/intercept report, so the fitted map is what
    undoes the measured miscalibration. Its cost is two parameters per class, which rare classes (NIH Hernia has a
    few dozen validation positives) estimate poorly: a class with fewer than `MIN_PLATT_CLASS` validation
    positives or negatives, no finite fit, or a slope <= 0 (which would reverse the ranking) is left unchanged
    (`fitted` False). With slope > 0 the map is increasing, so per-class AUROC is unchanged.
    """

    slope: np.ndarray  # [K]; 1 where not fitted
    intercept: np.ndarray  # [K]; 0 where not fitted
    fitted: np.ndarray  # bool [K]

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Recalibrated probabilities of `p` [N, K] (identity for the classes not fitted)."""
        out = expit(self.intercept + self.slope * logit(p))
        return np.where(self.fitted, out, np.asarray(p, dtype=np.float64))


def fit_platt(
    y_val: np.ndarray, p_val: np.ndarray, min_class: int = MIN_PLATT_CLASS, defined: np.ndarray | None = None
) -> PlattScaling:
    """Fit `PlattScaling` column by column on validation labels `y_val` and probabilities `p_val` [N, K], each
    column on the rows `defined` [N, K] marks as labelled (None: all rows)."""
    k = p_val.shape[1]
    slope, intercept, fitted = np.ones(k), np.zeros(k), np.zeros(k, dtype=bool)
    for j in range(k):
        rows = slice(None) if defined is None else defined[:, j]
        y = y_val[rows, j] > 0.5
        if min(int(y.sum()), int((~y).sum())) < min_class:
            continue
        fit = calibration_slope_intercept(y, p_val[rows, j])
        if fit is not None and fit[0] > 0:
            slope[j], intercept[j], fitted[j] = fit[0], fit[1], True
    return PlattScaling(slope, intercept, fitted)


def _describe(y: np.ndarray, p: np.ndarray, n_bins: int) -> dict[str, Any]:
    fit = calibration_slope_intercept(y, p)
    return {
        "ece": expected_calibration_error(y, p, n_bins),
        "brier": brier_score(y, p),
        "slope": None if fit is None else fit[0],
        "intercept": None if fit is None else fit[1],
    }


def calibration_summary(
    p_ref: np.ndarray, y_ref: np.ndarray, p_test: np.ndarray, y_test: np.ndarray, n_bins: int = 15
) -> dict[str, Any]:
    """One head (its columns pooled): temperature fitted on the reference (validation) set, and on the test set
    ECE, Brier score and calibration slope/intercept before and after, the reliability curves, and `helped`."""
    t = fit_temperature(logit(p_ref), y_ref)
    scaled = expit(logit(p_test) / t)  # overflow-free sigmoid
    before, after = _describe(y_test, p_test, n_bins), _describe(y_test, scaled, n_bins)
    return {
        "temperature": t,
        **{f"{key}_before": value for key, value in before.items()},
        **{f"{key}_after": value for key, value in after.items()},
        "helped": bool(after["ece"] < before["ece"]),
        "curve_before": reliability_curve(y_test, p_test, n_bins),
        "curve_after": reliability_curve(y_test, scaled, n_bins),
    }


def per_class_calibration(
    y_ref: np.ndarray,
    p_ref: np.ndarray,
    y_test: np.ndarray,
    p_test: np.ndarray,
    temperature: float,
    n_bins: int = 15,
    labels: Sequence[str] = LABELS,
    defined_ref: np.ndarray | None = None,
    defined_test: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per class on the test set: ECE, Brier, slope, intercept and the reliability curve of the raw probabilities;
    the ECE after the head's shared `temperature` and after `PlattScaling` fitted on the reference set.

    Returns `{"method": "platt", "classes": {label: row}, "pooled_ece_platt": float}`.
    """
    platt = fit_platt(y_ref, p_ref, defined=defined_ref)
    scaled_t = expit(logit(p_test) / temperature)
    scaled_p = platt.apply(p_test)
    mask = np.ones(np.shape(y_test), dtype=bool) if defined_test is None else np.asarray(defined_test, dtype=bool)
    rows = {}
    for k, label in enumerate(labels):
        if not mask[:, k].any():
            continue  # a class the evaluated images never label has no calibration
        on = mask[:, k]  # each class on the images that label it (`defined_test`, chexvision.data.classes)
        y, p = y_test[on, k], p_test[on, k]
        scaled_t_k, scaled_p_k = scaled_t[on, k], scaled_p[on, k]
        row = {"positives": int(np.count_nonzero(y > 0.5)), **_describe(y, p, n_bins)}
        row["ece_temperature"] = expected_calibration_error(y, scaled_t_k, n_bins)
        row["temperature_helped"] = bool(row["ece_temperature"] < row["ece"])
        row["platt_fitted"] = bool(platt.fitted[k])
        row["platt"] = (
            {"slope": float(platt.slope[k]), "intercept": float(platt.intercept[k])} if platt.fitted[k] else None
        )
        row["ece_platt"] = expected_calibration_error(y, scaled_p_k, n_bins) if platt.fitted[k] else None
        row["brier_platt"] = brier_score(y, scaled_p_k) if platt.fitted[k] else None
        row["platt_helped"] = bool(row["ece_platt"] < row["ece"]) if platt.fitted[k] else None
        row["curve"] = reliability_curve(y, p, n_bins)
        row["curve_platt"] = reliability_curve(y, scaled_p_k, n_bins) if platt.fitted[k] else None
        rows[label] = row
    return {
        "method": "platt",
        "classes": rows,
        "pooled_ece_platt": (
            expected_calibration_error(y_test[mask], scaled_p[mask], n_bins) if platt.fitted.any() else None
        ),
    }
