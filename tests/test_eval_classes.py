"""Data sets that define only some of the 14 classes (issue 11 item 10): dataset.json `"classes"` and per-class
1/0/blank label columns; undefined (image, class) pairs are never scored as negatives. Every number is checked
against scikit-learn on the defined rows (and the bootstrap against explicit patient resamples)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.classes import classes_mask, dataset_classes, defined_classes, read_class_columns
from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import bootstrap_classification, bootstrap_samples, percentile_interval
from chexvision.evaluate.metrics import classification_metrics
from chexvision.evaluate.predictions import predictions_from_csv, score_predictions
from chexvision.labels import LABELS

runner = CliRunner()
DEFINED = ("Atelectasis", "Cardiomegaly", "Effusion", "Edema", "Consolidation", "Pneumothorax")


def test_dataset_json_classes() -> None:
    assert dataset_classes({}) == LABELS
    got = dataset_classes({"classes": ["pleural thickening", "Effusion", "prob_Atelectasis"]})
    assert got == ("Atelectasis", "Effusion", "Pleural_Thickening")  # NIH spelling, LABELS order
    for bad in ([], "Effusion", ["Effusion", "Lung Lesion"], [1]):
        with pytest.raises(BadInputError, match="classes"):
            dataset_classes({"classes": bad}, "x/dataset.json")
    assert classes_mask(LABELS, 3) is None
    mask = classes_mask(DEFINED, 2)
    assert mask is not None and mask.shape == (2, 14)
    assert [n for k, n in enumerate(LABELS) if mask[0, k]] == sorted(DEFINED, key=LABELS.index)
    assert defined_classes(mask) == (sorted(DEFINED, key=LABELS.index), [n for n in LABELS if n not in DEFINED])
    assert defined_classes(None) == (list(LABELS), [])


def test_per_class_columns_one_zero_blank() -> None:
    frame = pd.DataFrame({"image": ["a", "b", "c"], "Effusion": [1, 0, None], "Pleural Thickening": [0, None, 1]})
    y, defined = read_class_columns(frame, "labels.csv")
    assert defined is not None
    e, t = LABELS.index("Effusion"), LABELS.index("Pleural_Thickening")
    np.testing.assert_array_equal(y[:, e], [1, 0, 0])
    np.testing.assert_array_equal(defined[:, e], [True, True, False])
    np.testing.assert_array_equal(defined[:, t], [True, False, True])
    assert defined.sum() == 4  # every other class has no column: undefined everywhere
    with pytest.raises(BadInputError, match=r"'Effusion' holds '-1' \(line 3\)"):
        read_class_columns(pd.DataFrame({"Effusion": [1, -1]}), "labels.csv")  # CheXpert's uncertain: map it first


def _case(seed: int = 0, n: int = 400) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y14 = (rng.random((n, 14)) < 0.25).astype(np.float32)
    p14 = np.clip(0.3 * y14 + 0.7 * rng.random((n, 14)), 0, 1)
    defined = np.zeros((n, 14), dtype=bool)
    for name in DEFINED:
        defined[:, LABELS.index(name)] = True
    defined[rng.random(n) < 0.3, LABELS.index("Edema")] = False  # a class defined for only some images
    y14[~defined] = 0  # what a reader stores in an undefined cell
    ybin = (y14.sum(axis=1) > 0).astype(np.float32)
    pids = rng.integers(0, n // 3, n)
    return y14, p14, ybin, p14.max(axis=1), pids, defined


def test_classification_metrics_score_only_defined_rows() -> None:
    y14, p14, ybin, pbin, _, defined = _case()
    got = classification_metrics(y14, p14, ybin, pbin, defined)
    expected = {}
    for k, name in enumerate(LABELS):
        rows = defined[:, k]
        if not rows.any():
            assert got["per_class_auc"][name] is None and got["per_class_auprc"][name] is None
            continue
        expected[name] = roc_auc_score(y14[rows, k], p14[rows, k])
        assert got["per_class_auc"][name] == pytest.approx(expected[name], abs=1e-12)
        assert got["per_class_auprc"][name] == pytest.approx(
            average_precision_score(y14[rows, k], p14[rows, k]), abs=1e-12
        )
        assert got["positives"][name] == int(y14[rows, k].sum())
    assert got["macro_auc"] == pytest.approx(np.mean(list(expected.values())), abs=1e-12)
    assert got["classes_scored"] == sorted(DEFINED, key=LABELS.index)
    assert got["classes_not_defined"] == [n for n in LABELS if n not in DEFINED]
    assert got["images_per_class"]["Edema"] == int(defined[:, LABELS.index("Edema")].sum()) < len(y14)
    # scoring undefined cells as negatives would change Edema's AUROC: it is not what happens
    e = LABELS.index("Edema")
    assert got["per_class_auc"]["Edema"] != pytest.approx(roc_auc_score(y14[:, e], p14[:, e]), abs=1e-6)
    plain = classification_metrics(y14, p14, ybin, pbin)
    assert plain["classes_scored"] == list(LABELS) and plain["classes_not_defined"] == []


def test_bootstrap_with_class_mask_matches_explicit_resamples() -> None:
    y14, p14, ybin, pbin, pids, defined = _case(1, 240)
    n, seed = 30, 3
    got = bootstrap_classification(y14, p14, ybin, pbin, pids, n=n, seed=seed, defined=defined)
    per_class: dict[str, list[float]] = {name: [] for name in DEFINED}
    macros = []
    for idx in bootstrap_samples(pids, n, seed):
        values = []
        for name in DEFINED:
            k = LABELS.index(name)
            rows = idx[defined[idx, k]]
            ok = 0 < y14[rows, k].sum() < len(rows)
            per_class[name].append(roc_auc_score(y14[rows, k], p14[rows, k]) if ok else np.nan)
            values.append(per_class[name][-1])
        macros.append(np.nanmean(values))
    for name in LABELS:
        if name in DEFINED:
            np.testing.assert_allclose(got["per_class_auc"][name], percentile_interval(per_class[name]), atol=1e-12)
        else:
            assert got["per_class_auc"][name] is None
    np.testing.assert_allclose(got["macro_auc"], percentile_interval(macros), atol=1e-12)
    assert got["degenerate_replicates"] == {}  # classes no image defines are not "degenerate": they are absent


def _external(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """An external-style data set: 6 classes labelled, Edema blank for some images, no NIH names."""
    y14, p14, _, _, pids, defined = _case(2, 150)
    names = [f"ext_{i:04d}.jpg" for i in range(len(y14))]
    labels = pd.DataFrame({"filename": names, "patient_id": pids})
    for name in DEFINED:
        k = LABELS.index(name)
        labels[name] = np.where(defined[:, k], y14[:, k], np.nan)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    preds = pd.DataFrame({"filename": names, **{f"prob_{n}": p14[:, k] for k, n in enumerate(LABELS)}})
    preds.to_csv(tmp_path / "preds.csv", index=False)
    return tmp_path / "preds.csv", tmp_path / "labels.csv", labels


def test_predictions_csv_with_per_class_labels(tmp_path: Path) -> None:
    pred_csv, labels_csv, labels = _external(tmp_path)
    preds = predictions_from_csv(pred_csv, labels_csv)
    assert preds.defined is not None and preds.defined.sum(axis=0)[LABELS.index("Hernia")] == 0
    score = score_predictions(preds, bootstrap=0)
    assert score["classes_not_defined"] == [n for n in LABELS if n not in DEFINED]
    assert set(score["calibration"]["per_class"]["classes"]) <= set(DEFINED)
    edema = labels["Edema"].notna().to_numpy()
    p = pd.read_csv(pred_csv)["prob_Edema"].to_numpy()
    assert score["per_class_auc"]["Edema"] == pytest.approx(roc_auc_score(labels["Edema"][edema], p[edema]), abs=1e-12)

    result = runner.invoke(app, ["evaluate", "--predictions", str(pred_csv), "--labels", str(labels_csv),
                                 "--bootstrap", "10", "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["classes_scored"] == sorted(DEFINED, key=LABELS.index)
    assert doc["classes_not_defined"] == score["classes_not_defined"]
    assert doc["per_class_auc"]["Hernia"] is None and doc["macro_auc"] == pytest.approx(score["macro_auc"])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Not defined by this data set" in report and "| Hernia |" in report and "not defined" in report


def test_run_mode_reads_dataset_json_classes(tmp_path: Path) -> None:
    from chexvision.evaluate.evaluation import _with_dataset_classes

    y14, p14, ybin, pbin, pids, _ = _case(3, 20)
    from chexvision.evaluate.predictions import Predictions

    preds = {"plain": Predictions([f"{i}.png" for i in range(20)], pids, y14, ybin, p14, pbin)}
    assert _with_dataset_classes(preds, tmp_path)["plain"].defined is None  # no dataset.json: all 14
    (tmp_path / "dataset.json").write_text(json.dumps({"source": "chexpert", "classes": list(DEFINED)}))
    got = _with_dataset_classes(preds, tmp_path)["plain"]
    assert got.defined is not None and got.defined.all(axis=0).sum() == len(DEFINED)
    assert score_predictions(got, bootstrap=0)["classes_not_defined"] == [n for n in LABELS if n not in DEFINED]
    (tmp_path / "dataset.json").write_text(json.dumps({"classes": ["Lung Lesion"]}))
    with pytest.raises(BadInputError, match="Lung Lesion"):
        _with_dataset_classes(preds, tmp_path)


def test_calibration_leaves_undefined_labels_out() -> None:
    """A class blank for some images is calibrated on the images that label it; the pooled head on defined cells."""
    from chexvision.evaluate.calibration import brier_score, expected_calibration_error, fit_temperature, logit
    from chexvision.evaluate.predictions import Predictions

    y14, p14, ybin, pbin, pids, defined = _case(seed=3, n=600)
    names = [f"{i}.png" for i in range(len(y14))]
    test = Predictions(names, pids, y14, ybin, p14, pbin, defined=defined)
    val_y, val_p, val_ybin, val_pbin, val_pids, val_defined = _case(seed=4, n=600)
    val = Predictions(names, val_pids, val_y, val_ybin, val_p, val_pbin, defined=val_defined)
    cal = score_predictions(test, val, bootstrap=0)["calibration"]

    edema = LABELS.index("Edema")
    on = defined[:, edema]
    row = cal["per_class"]["classes"]["Edema"]
    assert row["positives"] == int(y14[on, edema].sum())
    assert row["ece"] == pytest.approx(expected_calibration_error(y14[on, edema], p14[on, edema], 15))
    assert row["brier"] == pytest.approx(brier_score(y14[on, edema], p14[on, edema]))
    assert row["brier"] != pytest.approx(brier_score(y14[:, edema], p14[:, edema]))  # blanks are no negatives
    t = fit_temperature(logit(val_p[val_defined]), val_y[val_defined])  # the pooled head: defined cells only
    assert cal["multi"]["temperature"] == pytest.approx(t)
    assert "Hernia" not in cal["per_class"]["classes"] or "Hernia" in DEFINED
