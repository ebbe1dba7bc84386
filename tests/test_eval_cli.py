"""`chexvision evaluate / compare / cam` end to end on synthetic data and tiny (untrained) runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.labels import LABELS, label_matrix

runner = CliRunner()


def _make_run(make_run_dir: Callable[..., Path], path: Path, seed: int) -> Path:
    """A tiny untrained SE-ResNet run on the synthetic data's `patient` split (the shared run-dir fixture)."""
    return make_run_dir(path, run_id=path.name, model="seresnet", seed=seed, split_scheme="patient")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    from chexvision.data.synthetic import write_synthetic

    base = tmp_path_factory.mktemp("eval")
    write_synthetic(base / "data", 90, 64, 0)
    _make_run(make_run_dir, base / "run-a", 0)
    _make_run(make_run_dir, base / "run-b", 1)
    return base


def _invoke(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def evaluated(workspace: Path) -> dict:
    return _invoke(
        "evaluate", str(workspace / "run-a"), str(workspace / "run-b"), "--data", str(workspace / "data"),
        "--tta", "--bootstrap", "8", "--localization", str(workspace / "data" / "bbox.csv"),
        "--out", str(workspace / "out"), "--device", "cpu", "--cam-samples", "1",
    )  # fmt: skip


@pytest.mark.slow  # evaluates two runs with TTA, bootstrap, localization and the report (~10-15 s)
def test_evaluate_runs_writes_metrics_report_and_ensemble(workspace: Path, evaluated: dict) -> None:
    assert set(evaluated["per_class_auc"]) == set(LABELS)
    assert isinstance(evaluated["macro_auc"], float) and isinstance(evaluated["binary_auc"], float)
    assert set(evaluated["runs"]) == {"run-a", "run-b"}
    assert evaluated["fitted_on"] == "validation" and evaluated["runs"]["run-a"]["binary_source"] == "binary head"
    assert evaluated["ensemble"]["macro_auc"] == evaluated["macro_auc"]
    run_a = evaluated["runs"]["run-a"]
    assert "tta" in run_a and "macro_auc" in run_a["tta"]
    assert run_a["localization"]["n"] > 0 and 0 <= run_a["localization"]["pointing"] <= 1
    out = workspace / "out"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and 'src="figures/' not in html
    assert "Per-class AUROC" in (out / "report.md").read_text()
    metrics = json.loads((workspace / "run-a" / "metrics.json").read_text())
    test_section = metrics["test"]
    assert test_section["macro_auc"] == pytest.approx(run_a["macro_auc"])
    assert metrics["val"]["macro_auc"] == 0.75  # training's section is kept
    preds = pd.read_csv(out / "predictions" / "run-a_test.csv")
    assert len(preds) == test_section["n_images"] and "prob_Pleural_Thickening" in preds
    ensemble = pd.read_csv(out / "predictions" / "ensemble_test.csv")
    other = pd.read_csv(out / "predictions" / "run-b_test.csv")
    np.testing.assert_allclose(ensemble["prob_Effusion"], (preds["prob_Effusion"] + other["prob_Effusion"]) / 2, 1e-4)


@pytest.mark.slow  # needs the evaluation above
def test_compare_gives_table_and_paired_test(workspace: Path, evaluated: dict) -> None:
    doc = _invoke("compare", str(workspace / "run-a"), str(workspace / "run-b"), "--out", str(workspace / "cmp"),
                  "--bootstrap", "8")  # fmt: skip
    assert [r["name"] for r in doc["runs"]] == ["run-a", "run-b"]
    assert doc["runs"][0]["epochs_to_best"] == 3 and doc["runs"][0]["num_params"] > 1000
    pair = doc["pairs"][0]
    assert pair["diff"] == pytest.approx(
        evaluated["runs"]["run-a"]["macro_auc"] - evaluated["runs"]["run-b"]["macro_auc"]
    )
    assert 0 <= pair["p_value"] <= 1
    assert "Paired bootstrap" in (workspace / "cmp" / "compare.md").read_text()


def test_evaluate_predictions_csv_from_any_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [f"{90000000 + i // 2:08d}_{i % 2:03d}.png" for i in range(60)]
    truth = ["Effusion|Mass" if i % 3 == 0 else ("Nodule" if i % 3 == 1 else "No Finding") for i in range(60)]
    truth[5] = "Atelectasis|Cardiomegaly|Infiltration|Pneumonia|Pneumothorax|Consolidation|Edema|Emphysema|Fibrosis"
    truth[7] = "Pleural_Thickening"
    truth[55] = "Hernia"  # outside the listed 50 images: no positive there
    pd.DataFrame({"Image Index": names, "Finding Labels": truth}).to_csv(tmp_path / "meta.csv", index=False)
    probs = rng.random((60, 14))
    columns = {("Pleural Thickening" if n == "Pleural_Thickening" else f"prob_{n}"): probs[:, k]
               for k, n in enumerate(LABELS)}  # fmt: skip
    pd.DataFrame({"Image Index": [f"images/{n}" for n in names], **columns}).to_csv(tmp_path / "p.csv", index=False)
    (tmp_path / "list.txt").write_text("\n".join(names[:50]) + "\n")
    doc = _invoke("evaluate", "--predictions", str(tmp_path / "p.csv"), "--labels", str(tmp_path / "meta.csv"),
                  "--images", str(tmp_path / "list.txt"), "--bootstrap", "5", "--out", str(tmp_path / "o"))  # fmt: skip
    y = label_matrix(truth[:50])
    assert doc["per_class_auc"]["Effusion"] == pytest.approx(roc_auc_score(y[:, 2], probs[:50, 2]))
    assert doc["per_class_auc"]["Hernia"] is None
    assert doc["binary_auc"] == pytest.approx(roc_auc_score(y.sum(1) > 0, probs[:50].max(1)))
    assert (tmp_path / "o" / "report.html").is_file()
    # no validation predictions: fitted on the test set by 2-fold patient cross-fitting, and said so everywhere
    assert doc["fitted_on"] == "test, 2-fold cross-fitted by patient"
    assert doc["binary_source"] == "max of the 14 finding probabilities"
    assert set(doc["degenerate_replicates"]) <= set(LABELS) and 0 <= doc["complete_replicates"] <= 5
    written = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert written["fitted_on"] == doc["fitted_on"] and written["binary_source"] == doc["binary_source"]
    assert next(iter(written["runs"].values()))["plain"]["fitted_on"] == doc["fitted_on"]


def test_errors_name_the_fix(workspace: Path, tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    result = runner.invoke(app, ["evaluate", str(workspace / "run-a")])
    assert result.exit_code == 2 and "--data" in result.output
    fresh = _make_run(make_run_dir, tmp_path / "fresh", 3)
    result = runner.invoke(app, ["compare", str(fresh), str(workspace / "run-a"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "chexvision evaluate" in result.output
    (tmp_path / "bad.csv").write_text("Image Index,Effusion\n90000000_000.png,0.5\n")
    result = runner.invoke(
        app, ["evaluate", "--predictions", str(tmp_path / "bad.csv"), "--labels", str(tmp_path / "bad.csv")]
    )
    assert result.exit_code == 2 and "lacks probability columns" in result.output


def test_cam_command_writes_overlays(workspace: Path, tmp_path: Path) -> None:
    from chexvision.data.shards import ShardIndex

    index = ShardIndex.open(workspace / "data")
    image = tmp_path / "x.png"
    image.write_bytes(index.read_image_bytes(0))
    out = str(tmp_path / "c")
    doc = _invoke("cam", str(workspace / "run-a"), str(image), "--label", "Pleural Thickening", "--out", out)
    assert [row["label"] for row in doc] == ["Pleural_Thickening"]
    assert Path(doc[0]["png"]).read_bytes()[:4] == b"\x89PNG"
    doc = _invoke(
        "cam", str(workspace / "run-a"), str(image), "--top", "2", "--out", str(tmp_path / "c"), "--device", "cpu"
    )
    assert len(doc) == 2
    by_spec = _invoke(
        "cam", "--model", str(workspace / "run-a"), str(image), "--top", "2", "--out", str(tmp_path / "m")
    )
    assert [row["label"] for row in by_spec] == [row["label"] for row in doc]  # --model SPEC: the same maps


def test_bad_prediction_and_label_files_are_one_line_errors(tmp_path: Path) -> None:
    names = [f"{90000000 + i:08d}_000.png" for i in range(6)]
    probs = {f"prob_{n}": [0.5] * 6 for n in LABELS}
    pd.DataFrame({"Image Index": names, **probs}).to_csv(tmp_path / "p.csv", index=False)
    truth = ["Effusion", "No Finding", "Effusion|Nodle", "No Finding", "Mass", "No Finding"]
    pd.DataFrame({"Image Index": names, "Finding Labels": truth}).to_csv(tmp_path / "typo.csv", index=False)
    result = runner.invoke(app, ["evaluate", "--predictions", str(tmp_path / "p.csv"), "--labels",
                                 str(tmp_path / "typo.csv")])  # fmt: skip
    assert result.exit_code == 2 and "line 4" in result.stderr and "'Nodle'" in result.stderr
    pd.DataFrame({"Image Index": names, **probs, "prob_Mass": ["0.5", "x", "0.1", "0", "1", "0.2"]}).to_csv(
        tmp_path / "text.csv", index=False
    )
    truth[2] = "Effusion|Nodule"
    pd.DataFrame({"Image Index": names, "Finding Labels": truth}).to_csv(tmp_path / "meta.csv", index=False)
    result = runner.invoke(app, ["evaluate", "--predictions", str(tmp_path / "text.csv"), "--labels",
                                 str(tmp_path / "meta.csv")])  # fmt: skip
    assert result.exit_code == 2 and "'prob_Mass'" in result.stderr and len(result.stderr.splitlines()) == 1


def test_cam_checks_label_top_and_images_before_loading(tmp_path: Path) -> None:
    missing_run = str(tmp_path / "no-run")  # never reached: input is checked first
    image = tmp_path / "x.png"
    image.write_bytes(b"not an image")
    for args, needle in (
        (["--label", "Nope"], "Effusion"),
        (["--top", "0"], "--top 1"),
        ([], str(image)),
    ):
        result = runner.invoke(app, ["cam", missing_run, str(image), *args])
        assert result.exit_code == 2 and needle in result.stderr, result.output
