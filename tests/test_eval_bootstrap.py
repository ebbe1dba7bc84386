"""The vectorised patient bootstrap against the per-replicate scikit-learn computation it replaced (kept verbatim in
benchmarks/bootstrap_speed.py), degenerate replicates, cross-fitting, the binary score's source, full-precision CSVs
and duplicate prediction rows."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import (
    _Replicates,
    _score_all,
    bootstrap_classification,
    bootstrap_samples,
    bootstrap_weights,
    paired_bootstrap,
    percentile_interval,
)
from chexvision.evaluate.crossfit import CROSS_FITTED, mean_of_folds, patient_folds
from chexvision.evaluate.predictions import BINARY_MAX, Predictions, predictions_from_csv, score_predictions
from chexvision.labels import LABELS


def _baseline() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bootstrap_speed.py"
    spec = importlib.util.spec_from_file_location("bootstrap_speed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BASE = _baseline()


def _problem(n: int = 240, seed: int = 0, decimals: int = 1, prevalence: float = 0.25) -> tuple[np.ndarray, ...]:
    """Scores rounded to `decimals` so that most images tie with others (ties are where rank sums go wrong)."""
    rng = np.random.default_rng(seed)
    y14 = (rng.random((n, 14)) < prevalence).astype(np.float32)
    p14 = np.round(np.clip(0.3 * y14 + 0.7 * rng.random((n, 14)), 0, 1), decimals)
    ybin = (y14.sum(1) > 0).astype(np.float32)
    pids = rng.integers(0, n // 4, size=n)
    return y14, p14, ybin, p14.max(1), pids


def _close(a: object, b: object) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict)
        for key in a:
            _close(a[key], b[key])
    elif isinstance(a, list):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    else:
        assert a == b


def test_weights_are_the_resamples_draw_counts() -> None:
    pids = np.array([7, 7, 3, 9, 9, 9, 4])
    groups = np.unique(pids)
    weights = np.concatenate(list(bootstrap_weights(len(groups), 11, seed=5, chunk=4)))
    for w, idx in zip(weights, bootstrap_samples(pids, 11, seed=5), strict=True):
        per_image = np.bincount(idx, minlength=len(pids))
        np.testing.assert_array_equal(per_image, w[np.searchsorted(groups, pids)])


@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_each_replicate_equals_sklearn_on_the_resampled_images(decimals: int) -> None:
    y14, p14, ybin, pbin, pids = _problem(decimals=decimals)
    y14[:, 13] = 0
    y14[:3, 13] = 1  # Hernia: 3 positive images, absent from some replicates (NaN in both)
    reps = _Replicates(pids)
    (auc, ap), (bin_auc, bin_ap) = _score_all(reps, [reps.columns(y14, p14), reps.columns(ybin, pbin)], 30, 1, None)
    old_auc, old_ap, old_bin_auc, old_bin_ap = BASE.baseline_replicates(y14, p14, ybin, pbin, pids, 30, 1)
    np.testing.assert_allclose(auc, old_auc, rtol=0, atol=1e-12)  # NaN where sklearn's class is undefined
    np.testing.assert_allclose(ap, old_ap, rtol=0, atol=1e-12)
    np.testing.assert_allclose(bin_auc[:, 0], np.array(old_bin_auc, dtype=float), rtol=0, atol=1e-12)
    np.testing.assert_allclose(bin_ap[:, 0], np.array(old_bin_ap, dtype=float), rtol=0, atol=1e-12)


def test_intervals_identical_to_the_old_implementation() -> None:
    y14, p14, ybin, pbin, pids = _problem(n=300, seed=3)
    y14[:, 13] = 0  # undefined on the full set: None everywhere, as before
    new = bootstrap_classification(y14, p14, ybin, pbin, pids, n=60, seed=4)
    old = BASE.baseline_bootstrap_classification(y14, p14, ybin, pbin, pids, 60, 4)
    assert new["degenerate_replicates"] == {} and new["complete_replicates"] == 60
    _close(old, new)
    assert new["per_class_auc"]["Hernia"] is None  # type: ignore[index]


def test_paired_bootstrap_identical_to_the_old_implementation() -> None:
    y14, p14, _, _, pids = _problem(n=300, seed=5)
    other = np.round(np.clip(p14 + np.random.default_rng(1).normal(0, 0.2, p14.shape), 0, 1), 1)
    new = paired_bootstrap(y14, p14, other, pids, n=50, seed=2)
    old = BASE.baseline_paired_bootstrap(y14, p14, other, pids, 50, 2)
    assert new["diff"] == pytest.approx(old["diff"], abs=1e-12) and new["p_value"] == old["p_value"]
    np.testing.assert_allclose(new["ci"], old["ci"], rtol=0, atol=1e-12)  # type: ignore[arg-type]
    assert new["replicates"] == 50


def test_a_replicate_without_positives_of_a_class_is_counted_and_its_macro_averages_the_rest() -> None:
    y14, p14, ybin, pbin, pids = _problem(n=200, seed=6)
    y14[:, 13] = 0
    y14[pids == pids[0], 13] = 1  # Hernia: one patient's images only
    n = 40
    missing = [not np.any(pids[idx] == pids[0]) for idx in bootstrap_samples(pids, n, seed=0)]
    ci = bootstrap_classification(y14, p14, ybin, pbin, pids, n=n, seed=0)
    assert ci["degenerate_replicates"] == {"Hernia": sum(missing)} and 0 < sum(missing) < n
    assert ci["complete_replicates"] == n - sum(missing)
    old_auc, *_ = BASE.baseline_replicates(y14, p14, ybin, pbin, pids, n, 0)
    macros = [row[:13].mean() if skip else row.mean() for row, skip in zip(old_auc, missing, strict=True)]
    assert ci["macro_auc"] == pytest.approx(percentile_interval(macros), abs=1e-12)
    old = BASE.baseline_bootstrap_classification(y14, p14, ybin, pbin, pids, n, 0)
    _close(old, ci)  # the intervals are still the old implementation's
    hernia = old_auc[~np.array(missing), 13]
    assert ci["per_class_auc"]["Hernia"] == pytest.approx(percentile_interval(hernia), abs=1e-12)  # type: ignore[index]


def test_progress_is_told_every_replicate_and_rich_progress_stays_out_of_the_library() -> None:
    y14, p14, ybin, pbin, pids = _problem(n=2000, seed=7)
    done: list[int] = []
    bootstrap_classification(y14, p14, ybin, pbin, pids, n=300, seed=0, advance=done.append)
    assert sum(done) == 300 and len(done) > 1  # chunked: several updates
    # the bars are the CLI's, made when a command runs (scikit-learn >= 1.9 imports rich.progress on its own)
    code = "import sys, chexvision.cli.evaluate; print('rich.progress' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def _preds(seed: int = 0, n: int = 240) -> Predictions:
    y14, p14, ybin, pbin, pids = _problem(n=n, seed=seed, decimals=6, prevalence=0.05)
    return Predictions([f"{pid:08d}_{i:03d}.png" for i, pid in enumerate(pids)], pids, y14, ybin, p14, pbin)


def test_without_validation_thresholds_and_temperature_are_cross_fitted_by_patient() -> None:
    test = _preds()
    folds = patient_folds(test.patient_ids, seed=0)
    for pid in np.unique(test.patient_ids):
        assert len(set(folds[test.patient_ids == pid])) == 1  # a patient never straddles the folds
    assert abs(int(folds.sum()) - len(folds) / 2) < len(folds) / 4
    score = score_predictions(test, None, bootstrap=0)
    assert score["fitted_on"] == f"test, {CROSS_FITTED}"
    youden = score["operating_points"]["youden"]
    assert len(youden["fold_thresholds"]) == 2
    lo, hi = sorted(youden["fold_thresholds"])
    decided = np.where(folds == 0, *youden["fold_thresholds"])  # each image gets the other half's threshold
    assert youden["tp"] == int(np.sum((test.pbin >= decided) & (test.ybin > 0.5)))
    assert lo <= youden["threshold"] <= hi
    assert len(score["calibration"]["fold_calibration"]) == 2
    assert score_predictions(test, _preds(1), bootstrap=0)["fitted_on"] == "validation"
    assert score_predictions(test, test, bootstrap=0, evaluated="validation")["fitted_on"].startswith("validation, ")


def test_fold_figures_are_image_weighted_means_and_counts_add_up() -> None:
    merged = mean_of_folds([{"ece": 0.1, "counts": [1, 2], "helped": True}, {"ece": 0.4, "counts": [3, 4],
                            "helped": False}], [1, 2])  # fmt: skip
    assert merged["ece"] == pytest.approx(0.3) and merged["counts"] == [4, 6] and merged["helped"] is False


def _write(tmp_path: Path, rows: list[tuple[str, float]], binary: bool = False) -> tuple[Path, Path]:
    frame = pd.DataFrame({"Image Index": [r[0] for r in rows], **{n: [r[1] for r in rows] for n in LABELS}})
    if binary:
        frame["prob_abnormal"] = [r[1] for r in rows]
    frame.to_csv(tmp_path / "p.csv", index=False)
    names = sorted({r[0] for r in rows})
    labels = ["Effusion" if i % 2 else "No Finding" for i in range(len(names))]
    pd.DataFrame({"Image Index": names, "Finding Labels": labels}).to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "p.csv", tmp_path / "m.csv"


def test_binary_source_is_named(tmp_path: Path) -> None:
    rows = [(f"{i:08d}_000.png", 0.1 * i) for i in range(6)]
    preds = predictions_from_csv(*_write(tmp_path, rows))
    assert preds.binary_source == BINARY_MAX
    assert score_predictions(preds, None, bootstrap=0)["binary_source"] == BINARY_MAX
    assert predictions_from_csv(*_write(tmp_path, rows, binary=True)).binary_source == "column prob_abnormal"


def test_exact_duplicates_warn_and_conflicting_ones_are_refused(tmp_path: Path) -> None:
    rows = [(f"{i:08d}_000.png", 0.1 * i) for i in range(6)]
    preds = predictions_from_csv(*_write(tmp_path, [*rows, rows[2]]))
    assert len(preds) == 6 and len(preds.warnings) == 1 and rows[2][0] in preds.warnings[0]
    with pytest.raises(BadInputError, match=rows[3][0]):
        predictions_from_csv(*_write(tmp_path, [*rows, (rows[3][0], 0.99)]))


def test_predictions_csv_round_trips_every_bit(tmp_path: Path) -> None:
    preds = _preds(n=40)
    preds.p14 = np.random.default_rng(0).random(preds.p14.shape) * 1e-3 + 0.123456  # equal at 6 digits
    path = preds.write_csv(tmp_path / "p.csv")
    back = pd.read_csv(path)
    np.testing.assert_array_equal(back[[f"prob_{n}" for n in LABELS]].to_numpy(), preds.p14)
    assert roc_auc_score(preds.y14[:, 0] > 0.5, back[f"prob_{LABELS[0]}"]) == roc_auc_score(
        preds.y14[:, 0] > 0.5, preds.p14[:, 0]
    )
