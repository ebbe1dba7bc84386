"""The Python API: `chexvision.load(spec).predict(image)`, operating-point decisions, the dataset for a plain loop.

`import chexvision` stays cheap (no torch); the predictor gives exactly the numbers `chexvision predict --json`
prints; decisions are the abnormal probability against the thresholds evaluation wrote into metrics.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import chexvision
from chexvision.cli.main import app
from chexvision.errors import BadInputError
from chexvision.inference.predictor import Predictor, operating_points
from chexvision.labels import LABELS
from chexvision.rundir import RUN_JSON, RunDir

OPERATING_POINTS = {
    "youden": {"threshold": 0.5, "sensitivity": 0.8, "specificity": 0.7},
    "sensitivity_0.95": {"threshold": 0.25, "sensitivity": 0.95, "specificity": 0.3},
}


def evaluated_run(src: Path, dst: Path, points: dict[str, Any] | None = None) -> Path:
    """A copy of `src` whose metrics.json has a test section with operating points, as `chexvision evaluate`
    writes one (through RunDir, so the recorded hashes stay right)."""
    shutil.copytree(src, dst)
    section = {"macro_auc": 0.7, "fitted_on": "validation", "operating_points": points or OPERATING_POINTS}
    RunDir(dst).write_metrics_section("test", section)
    return dst


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("api") / "run")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (80, 80), dtype=np.uint8), (7, 7), 2)
    path = tmp_path_factory.mktemp("img") / "chest.png"
    assert cv2.imwrite(str(path), gray)
    return path


def test_import_chexvision_imports_no_torch() -> None:
    code = "import sys, chexvision; chexvision.load; assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_predict_matches_the_cli_json(run_dir: Path, image: Path) -> None:
    predictor = chexvision.load(str(run_dir), device="cpu")
    assert isinstance(predictor, chexvision.Predictor)
    p = predictor.predict(image)
    assert list(p.probabilities) == list(LABELS) == list(predictor.labels)
    assert all(0.0 < v < 1.0 for v in p.probabilities.values()) and 0.0 < p.abnormal < 1.0
    res = CliRunner().invoke(app, ["predict", str(image), "--model", str(run_dir), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-12)
    assert row["abnormal"] == pytest.approx(p.abnormal, abs=1e-12)
    # an array and a path of the same picture give the same numbers; so does a Path given as str
    same = predictor.predict(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE))
    assert same.probabilities == pytest.approx(p.probabilities, abs=1e-12)
    assert predictor(str(image)).abnormal == pytest.approx(p.abnormal, abs=1e-12)


def test_no_operating_points_means_no_decisions_and_says_so(run_dir: Path, image: Path) -> None:
    predictor = chexvision.load(run_dir, device="cpu")
    assert predictor.operating_points == {} and predictor.predict(image).decisions == {}
    assert predictor.operating_points_note is not None and "none recorded" in predictor.operating_points_note
    assert predictor.describe()["operating_points"] == {}


def test_decisions_compare_the_abnormal_probability_with_the_recorded_thresholds(
    run_dir: Path, image: Path, tmp_path: Path
) -> None:
    p_abnormal = chexvision.load(run_dir, device="cpu").predict(image).abnormal
    # thresholds just above and just below this image's probability: one call each way, by hand
    points = {"youden": {"threshold": p_abnormal + 1e-6}, "sensitivity_0.9": {"threshold": p_abnormal - 1e-6}}
    folder = evaluated_run(run_dir, tmp_path / "evaluated", points)
    predictor = chexvision.load(folder, device="cpu")
    decisions = predictor.predict(image).decisions
    assert decisions == {
        "youden": {"threshold": pytest.approx(p_abnormal + 1e-6), "abnormal": False},
        "sensitivity_0.9": {"threshold": pytest.approx(p_abnormal - 1e-6), "abnormal": True},
    }
    assert predictor.operating_points_note is None
    assert predictor.operating_points["youden"].fitted_on == "validation"
    assert predictor.operating_points["sensitivity_0.9"].title == "sensitivity >= 0.9"


def test_operating_points_prefer_the_test_section_and_skip_empty_ones() -> None:
    val_eval = {"fitted_on": "val, 2-fold", "operating_points": {"youden": {"threshold": 0.3}}}
    assert operating_points({"test": {"operating_points": {}}, "val_eval": val_eval})["youden"].section == "val_eval"
    both = {"test": {"operating_points": {"youden": {"threshold": 0.6}}}, "val_eval": val_eval}
    assert operating_points(both)["youden"].threshold == 0.6
    assert operating_points({"val": {"macro_auc": 0.7}}) == {}


def test_predict_many_decodes_every_image_before_computing(run_dir: Path, image: Path, tmp_path: Path) -> None:
    predictor = Predictor.__new__(Predictor)  # never reaches the model: the bad file fails first
    with pytest.raises(BadInputError, match=r"missing\.png"):
        Predictor.predict_many(predictor, [image, tmp_path / "missing.png"])


def test_predictor_takes_rgb_and_16_bit_arrays(run_dir: Path, image: Path) -> None:
    predictor = chexvision.load(run_dir, device="cpu")
    gray = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    assert gray is not None
    want = predictor.predict(gray).abnormal
    assert predictor.predict(np.dstack([gray] * 3)).abnormal == pytest.approx(want, abs=1e-9)
    assert predictor.predict(gray.astype(np.uint16) * 257).abnormal == pytest.approx(want, abs=1e-9)
    with pytest.raises(BadInputError, match="shape"):
        predictor.predict(np.zeros((2, 3, 4, 5), np.uint8))


def test_synthetic_training_is_reported(run_dir: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(run_dir, tmp_path / "synthetic")
    run = json.loads((folder / RUN_JSON).read_text())
    run["dataset"]["source"] = "synthetic"
    (folder / RUN_JSON).write_text(json.dumps(run))
    predictor = chexvision.load(folder, device="cpu")
    assert predictor.synthetic and predictor.describe()["trained_on"] == "synthetic"
    assert not chexvision.load(run_dir, device="cpu").synthetic


def test_dataset_class_in_a_plain_pytorch_loop(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from chexvision.data import ChestXrayDataset, collate
    from chexvision.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", 60, 32, 2)
    parts = {s: ChestXrayDataset(tmp_path / "data", split=s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in parts.values()) == 60  # the patient split covers every image once
    assert not set(parts["train"].filenames) & set(parts["test"].filenames)
    images, labels, abnormal = next(iter(DataLoader(parts["train"], batch_size=8, collate_fn=collate)))
    assert images.shape == (8, 1, 32, 32) and labels.shape == (8, 14) and abnormal.shape == (8,)
    assert (abnormal == (labels.sum(1) > 0).float()).all()
    first = next(iter(parts["val"].loader(batch_size=4)))
    assert first[0].shape[1:] == (1, 32, 32)
    assert collate([None])[0].shape == (0, 1, 0, 0)  # the documented default: every sample failed
