"""Calibration: expected calibration error, reliability curves, and temperature scaling fitted on validation.

ECE uses equal-width probability bins (default 15): sum over bins of |observed frequency - mean confidence|
weighted by the bin's share of samples, computed on positive-class probabilities (the multi-label head pools
its 14 columns).
Temperature scaling (Guo et al. 2017) divides the logits by one scalar T > 0 chosen to minimise the binary
cross-entropy on the validation logits; it never changes a ranking, so AUROC is unaffected.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.calibration import calibration_curve

__all__ = [
    "expected_calibration_error",
    "fit_temperature",
    "logit",
    "reliability_curve",
]


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse sigmoid, clipped so that probabilities of exactly 0 or 1 stay finite."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(q) - np.log1p(-q)


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> float:
    """ECE with `n_bins` equal-width bins on [0, 1]; a probability of exactly 1 falls in the last bin."""
    y = (np.asarray(y_true).ravel() > 0.5).astype(np.float64)
    p = np.asarray(y_prob, dtype=np.float64).ravel()
    if y.size == 0:
        raise ValueError("ECE of an empty set")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    conf = np.bincount(bins, weights=p, minlength=n_bins)
    freq = np.bincount(bins, weights=y, minlength=n_bins)
    nonempty = counts > 0
    gaps = np.abs(freq[nonempty] - conf[nonempty])  # |sum(y) - sum(p)| = n_b * |acc_b - conf_b|
    return float(gaps.sum() / y.size)


def reliability_curve(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> dict[str, list[float]]:
    """Observed frequency vs mean predicted probability per non-empty equal-width bin (scikit-learn)."""
    y = (np.asarray(y_true).ravel() > 0.5).astype(int)
    p = np.clip(np.asarray(y_prob, dtype=np.float64).ravel(), 0.0, 1.0)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    return {"mean_predicted": mean_pred.tolist(), "fraction_positive": frac_pos.tolist()}


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Scalar T minimising BCE(sigmoid(logits / T), y) on validation logits; log T searched in [-4, 4]."""
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = (np.asarray(y_true).ravel() > 0.5).astype(np.float64)
    if y.min() == y.max():
        return 1.0  # one class only: the NLL has no interior minimum worth trusting

    def nll(log_t: float) -> float:
        # the optimisation objective, not a reported metric: mean BCE in its overflow-free logaddexp form
        # (scikit-learn's log_loss validates its input on each of ~30 calls, which costs more than the sum)
        scaled = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

    result = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))
