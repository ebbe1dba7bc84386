"""Google 2019 radiologist-adjudicated labels (`--reference google2019`), checked against independent computations:
the shipped file re-read with the csv module, the finding mapping on a hand-built case, every AUROC against
scikit-learn on the same rows, the paired bootstrap against a loop over explicit patient resamples, and the CLI
over a predictions CSV naming real NIH images."""

from __future__ import annotations

import csv
import gzip
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.evaluate.bootstrap import bootstrap_samples, percentile_interval
from chexvision.evaluate.predictions import Predictions
from chexvision.evaluate.references import GOOGLE2019_MAPPING, finding_matrix, load_reference, score_reference
from chexvision.labels import LABELS, label_matrix, patient_id_from_filename

_RESOURCES = resources.files("chexvision.data").joinpath("resources")
_FILE = _RESOURCES.joinpath("google2019_nih-chest-xray-labels.csv.gz")
_FINDINGS = ("Pneumothorax", "Nodule or mass", "Airspace opacity")
runner = CliRunner()


def _shipped_rows() -> list[dict[str, str]]:
    with _FILE.open("rb") as fh, gzip.open(fh, "rt", newline="") as text:
        return list(csv.DictReader(text))


def test_shipped_file_parses_to_the_published_images() -> None:
    rows = _shipped_rows()
    ref = load_reference("google2019")
    # 1,962 test + 2,414 validation images of 1,695 patients (4,376; the "4,374" is a typo)
    assert len(ref.filenames) == len(rows) == 4376 == len(set(ref.filenames))
    assert {s: ref.sets.count(s) for s in set(ref.sets)} == {"test": 1962, "val": 2414}
    assert len({r["Patient ID"] for r in rows}) == 1695
    for j, finding in enumerate(ref.findings):
        assert int(ref.labels[:, j].sum()) == sum(r[finding] == "YES" for r in rows), finding
    assert int(ref.labels[:, ref.findings.index("Pneumothorax")].sum()) == 195 + 43
    # every test-set image is in NIH's official test list, no validation image is
    with _RESOURCES.joinpath("official_test.txt.gz").open("rb") as fh, gzip.open(fh, "rt") as text:
        official_test = {line.strip() for line in text}
    assert all((s == "test") == (f in official_test) for f, s in zip(ref.filenames, ref.sets, strict=True))


def test_mapping_on_a_hand_built_case() -> None:
    p14 = np.zeros((2, 14))
    p14[0, LABELS.index("Nodule")], p14[0, LABELS.index("Mass")] = 0.2, 0.7
    p14[0, LABELS.index("Edema")], p14[0, LABELS.index("Effusion")] = 0.4, 0.99  # Effusion is pleural: not airspace
    p14[1, LABELS.index("Pneumothorax")], p14[1, LABELS.index("Atelectasis")] = 0.3, 0.6
    got = finding_matrix(p14, GOOGLE2019_MAPPING, _FINDINGS)
    np.testing.assert_array_equal(got, [[0.0, 0.7, 0.4], [0.3, 0.0, 0.6]])
    y = label_matrix(["Mass|Effusion", "Infiltration"])
    np.testing.assert_array_equal(finding_matrix(y, GOOGLE2019_MAPPING, _FINDINGS), [[0, 1, 0], [0, 0, 1]])
    assert load_reference().scorable == _FINDINGS
    assert GOOGLE2019_MAPPING["Fracture"] == ()


def _predictions(names: list[str], seed: int) -> Predictions:
    """Random probabilities on real NIH names, with their real NIH labels and patient ids."""
    rng = np.random.default_rng(seed)
    meta = pd.read_csv(_RESOURCES.joinpath("Data_Entry_2017_v2020.csv.gz"), usecols=["Image Index", "Finding Labels"])
    labels = meta.set_index("Image Index").loc[names, "Finding Labels"].tolist()
    y14 = label_matrix(labels)
    p14 = np.clip(0.35 * y14 + rng.random((len(names), 14)) * 0.65, 0, 1)
    return Predictions(
        filenames=names,
        patient_ids=np.array([patient_id_from_filename(n) for n in names], dtype=np.int64),
        y14=y14,
        ybin=(y14.sum(axis=1) > 0).astype(np.float32),
        p14=p14,
        pbin=p14.max(axis=1),
    )


def _sample(n_test: int, n_val: int, seed: int = 0) -> list[str]:
    ref = load_reference()
    rng = np.random.default_rng(seed)
    test = [f for f, s in zip(ref.filenames, ref.sets, strict=True) if s == "test"]
    val = [f for f, s in zip(ref.filenames, ref.sets, strict=True) if s == "val"]
    return [*rng.choice(test, n_test, replace=False), *rng.choice(val, n_val, replace=False)]


def _expected(names: list[str], preds: Predictions) -> tuple[dict[str, float], dict[str, float]]:
    """sklearn AUROCs vs the adjudicated and the NIH labels, the score and the truths built here independently."""
    rows = {r["Image Index"]: r for r in _shipped_rows()}
    at = {n: i for i, n in enumerate(preds.filenames)}
    idx = [at[n] for n in names]
    ref_auc, nih_auc = {}, {}
    for finding in _FINDINGS:
        cols = [LABELS.index(c) for c in GOOGLE2019_MAPPING[finding]]
        score = preds.p14[idx][:, cols].max(axis=1)
        ref_auc[finding] = roc_auc_score([rows[n][finding] == "YES" for n in names], score)
        nih_auc[finding] = roc_auc_score(preds.y14[idx][:, cols].max(axis=1), score)
    return ref_auc, nih_auc


def test_aucs_equal_sklearn_on_the_same_rows_pooled_and_per_set() -> None:
    names = _sample(300, 300)
    outside = ["00000001_000.png", "00000003_000.png"]  # NIH images without adjudicated labels: not scored
    preds = _predictions(names + outside, 1)
    got = score_reference(preds, bootstrap=0)
    assert got["images"] == 600 and got["sets"] == ["test", "val"] and "ci" not in got
    assert got["not_scorable"] == {"Fracture": "no NIH class"}
    ref_auc, nih_auc = _expected(names, preds)
    for finding in _FINDINGS:
        assert got["per_finding_auc"][finding] == pytest.approx(ref_auc[finding], abs=1e-12)
        assert got["nih_label_auc"][finding] == pytest.approx(nih_auc[finding], abs=1e-12)
        assert got["gap"][finding] == pytest.approx(ref_auc[finding] - nih_auc[finding], abs=1e-12)
    for set_id, part in (("test", names[:300]), ("val", names[300:])):
        ref_auc, nih_auc = _expected(part, preds)
        block = got["per_set"][set_id]
        assert block["images"] == 300
        for finding in _FINDINGS:
            assert block["per_finding_auc"][finding] == pytest.approx(ref_auc[finding], abs=1e-12)
            assert block["nih_label_auc"][finding] == pytest.approx(nih_auc[finding], abs=1e-12)
    only_test = score_reference(preds, sets=["test"], bootstrap=0)
    assert only_test["images"] == 300 and list(only_test["per_set"]) == ["test"]
    assert only_test["per_finding_auc"] == got["per_set"]["test"]["per_finding_auc"]


def test_paired_bootstrap_matches_explicit_patient_resamples() -> None:
    names = _sample(150, 0, seed=2)
    preds = _predictions(names, 3)
    n, seed = 25, 7
    got = score_reference(preds, bootstrap=n, seed=seed)["ci"]
    rows = {r["Image Index"]: r for r in _shipped_rows()}
    for finding in _FINDINGS:
        cols = [LABELS.index(c) for c in GOOGLE2019_MAPPING[finding]]
        score = preds.p14[:, cols].max(axis=1)
        y_ref = np.array([rows[x][finding] == "YES" for x in names])
        y_nih = preds.y14[:, cols].max(axis=1) > 0.5
        refs, nihs = [], []
        for idx in bootstrap_samples(preds.patient_ids, n, seed):  # the same draws, as explicit image lists
            ok = 0 < y_ref[idx].sum() < len(idx) and 0 < y_nih[idx].sum() < len(idx)
            refs.append(roc_auc_score(y_ref[idx], score[idx]) if ok else np.nan)
            nihs.append(roc_auc_score(y_nih[idx], score[idx]) if ok else np.nan)
        gap = np.array(refs) - np.array(nihs)
        for key, values in (("per_finding_auc", refs), ("nih_label_auc", nihs), ("gap", gap)):
            expected = percentile_interval(values)
            assert expected is not None
            np.testing.assert_allclose(got[key][finding], expected, atol=1e-12, err_msg=f"{key} {finding}")


def test_no_overlap_is_reported_not_an_error() -> None:
    got = score_reference(_predictions(["00000001_000.png", "00000001_001.png"], 0), bootstrap=10)
    assert got["images"] == 0 and "none of the 2 evaluated images" in got["note"]


def test_cli_predictions_with_reference(tmp_path: Path) -> None:
    names = _sample(40, 40, seed=4)
    preds = _predictions(names, 5)
    frame = pd.DataFrame({"Image Index": names, **{f"prob_{n}": preds.p14[:, k] for k, n in enumerate(LABELS)}})
    frame.to_csv(tmp_path / "p.csv", index=False)
    labels = str(_RESOURCES.joinpath("Data_Entry_2017_v2020.csv.gz"))
    args = ["evaluate", "--predictions", str(tmp_path / "p.csv"), "--labels", labels, "--bootstrap", "20"]
    result = runner.invoke(app, [*args, "--reference", "google2019", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["reference"]
    assert doc["name"] == "google2019" and doc["images"] == 80 and set(doc["per_set"]) == {"test", "val"}
    ref_auc, nih_auc = _expected(names, preds)
    for finding in _FINDINGS:
        assert doc["per_finding_auc"][finding] == pytest.approx(ref_auc[finding], abs=1e-9)
        assert doc["nih_label_auc"][finding] == pytest.approx(nih_auc[finding], abs=1e-9)
        lo, hi = doc["ci"]["per_finding_auc"][finding]
        assert lo <= hi
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert next(iter(metrics["runs"].values()))["plain"]["reference"]["images"] == 80
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Radiologist-adjudicated labels" in report and "Nodule or mass" in report
    bad = runner.invoke(app, [*args, "--reference", "chexpert2020"])
    assert bad.exit_code == 2 and "unknown reference" in bad.output
    bad = runner.invoke(app, [*args, "--reference", "google2019", "--reference-set", "train"])
    assert bad.exit_code == 2 and "has no set train" in bad.output


def test_run_mode_hook_scores_each_prediction_kind(tmp_path: Path) -> None:
    from chexvision.evaluate.evaluation import EvalOptions, _score_pair

    names = _sample(60, 0, seed=6)
    plain, tta = _predictions(names, 7), _predictions(names, 8)
    opts = EvalOptions(data_dir=tmp_path, bootstrap=0, reference="google2019")
    scores = _score_pair({"plain": plain, "tta": tta}, {"plain": plain}, opts)
    for key, preds in (("plain", plain), ("tta", tta)):
        ref_auc, _ = _expected(names, preds)
        assert scores[key]["reference"]["images"] == 60
        assert scores[key]["reference"]["per_finding_auc"] == pytest.approx(ref_auc, abs=1e-12)
    assert (
        "reference"
        not in _score_pair({"plain": plain}, {"plain": plain}, EvalOptions(data_dir=tmp_path, bootstrap=0))["plain"]
    )
