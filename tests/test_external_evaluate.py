"""`chexvision evaluate` of a run trained on NIH over an external folder (issue 15 item 3): every image is scored
as one external test set, each class only on the images that label it (the shards' per-image `classes`), and the
result goes to its own metrics.json section, never over the run's NIH `test`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from support.reliability import check_clean_error, invoke
from test_external_build import CHEXPERT_HEADER, chexpert_row, write_chexpert


@pytest.mark.slow  # a real `evaluate`: predictions, bootstrap, report with its figures
def test_nih_run_on_chexpert_scores_all_images_and_only_labelled_cells(
    tmp_path: Path, make_run_dir: Callable[..., Path]
) -> None:
    rng = np.random.default_rng(0)
    values = ("1.0", "0.0", "-1.0", "")
    rows = [
        chexpert_row(n, 1, 1, **{c: values[int(rng.integers(4))] for c in CHEXPERT_HEADER[6:]}, **{"No Finding": ""})
        for n in range(1, 25)
    ]
    images, labels = write_chexpert(tmp_path, rows)
    data = tmp_path / "chexpert-built"
    built = invoke(["data", "build", "--source", "chexpert", "--images", str(images), "--labels", str(labels),
                    "--out", str(data), "--size", "64", "--workers", "1"])  # fmt: skip
    assert built.exit_code == 0, built.stdout + built.stderr
    run = make_run_dir(tmp_path / "run", run_id="run", model="seresnet")  # the `official` NIH split
    out = tmp_path / "eval"
    result = invoke(["evaluate", str(run), "--data", str(data), "--bootstrap", "5", "--cam-samples", "0",
                     "--out", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["n_images"] == 24 and doc["fitted_on"].startswith("test, 2-fold cross-fitted")
    assert doc["classes_not_defined"] == ["Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis",
                                          "Pleural_Thickening", "Hernia"]  # fmt: skip
    truth = pd.read_csv(data / "labels.csv").set_index("filename")
    preds = pd.read_csv(next((out / "predictions").glob("*.csv"))).set_index("filename")
    for label in ("Effusion", "Edema", "Atelectasis"):
        y = truth.loc[preds.index, label]
        on = y.notna().to_numpy()
        assert 0 < on.sum() < len(y)  # blank and uncertain cells exist and are left out
        expected = roc_auc_score(y[on], preds[f"prob_{label}"][on])
        assert doc["per_class_auc"][label] == pytest.approx(expected)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "external_chexpert" in metrics and "test" not in metrics  # the NIH test section is never overwritten
    line = check_clean_error(invoke(["evaluate", str(run), "--data", str(data), "--split", "val", "--out",
                                     str(tmp_path / "e2")]))  # fmt: skip
    assert "all of it is test data" in line
