"""The demo page under Streamlit's own test harness (`streamlit.testing.v1.AppTest`), and its pure functions.

The page runs `chexvision/demo/app.py` exactly as `chexvision demo` serves it, on tiny trained-format run
directories (tests/conftest.py): it opens on the first bundled NIH case, TTA toggles, uploads (PNG, DICOM, a corrupt
file, a compressed DICOM) answer on the page, and two models give an ensemble column.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from chexvision.demo.analysis import (
    ENSEMBLE,
    MODELS_ENV,
    analyse,
    decision_rows,
    decode_input,
    load_samples,
    model_rows,
    model_specs,
    probability_table,
)
from chexvision.errors import BadInputError
from chexvision.labels import LABELS

APP = Path(__file__).resolve().parents[1] / "chexvision" / "demo" / "app.py"
ROWS = [*LABELS, "abnormal (any finding)"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> dict[str, Path]:
    """An evaluated DenseNet (test AUC and operating points in metrics.json) and an SE-ResNet never evaluated."""
    from chexvision.rundir import RunDir

    base = tmp_path_factory.mktemp("demo-app")
    dense = make_run_dir(base / "densenet")
    points = {"youden": {"threshold": 0.4}, "sensitivity_0.95": {"threshold": 0.1}}
    section = {"macro_auc": 0.71, "binary_auc": 0.78, "fitted_on": "validation",
               "split": {"name": "test", "count": 20}, "operating_points": points}  # fmt: skip
    RunDir(dense).write_metrics_section("test", section)
    se = make_run_dir(base / "seresnet", run_id="seresnet-20261126-0913-aaaa", model="seresnet", seed=1)
    return {"densenet": dense, "seresnet": se}


def _app(monkeypatch: pytest.MonkeyPatch, *models: Path) -> AppTest:
    monkeypatch.setenv(MODELS_ENV, os.pathsep.join(str(m) for m in models))
    monkeypatch.setenv("CHEXVISION_DEMO_DEVICE", "cpu")
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    return at


def _table(at: AppTest) -> Any:
    (frame,) = [d.value for d in at.dataframe if list(d.value.index) == ROWS]
    return frame


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_page_opens_on_the_first_sample_with_14_probabilities(
    monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path]
) -> None:
    at = _app(monkeypatch, runs["densenet"])
    assert not at.exception and not _errors(at)
    table = _table(at)
    assert list(table.columns) == ["densenet-20261126-0912-3fa1"]
    assert ((table.to_numpy() >= 0) & (table.to_numpy() <= 1)).all()
    first = load_samples()[0]
    assert any(first.image_index in c.value and "Cardiomegaly" in c.value for c in at.caption)
    assert any("not for clinical use" in w.value for w in at.warning)
    assert at.metric[0].label.startswith("Abnormal probability (densenet-20261126-0912-3fa1")
    assert float(at.metric[0].value) == pytest.approx(table.iloc[-1, 0], abs=5e-4)
    decisions = "\n".join(m.value for m in at.markdown)
    assert "at Youden (p >= 0.400, chosen on validation)" in decisions
    assert "at sensitivity >= 0.95 (p >= 0.100" in decisions
    models = next(d.value for d in at.dataframe if "macro AUC" in d.value.columns)
    assert models["macro AUC"].iloc[0] == pytest.approx(0.71)
    assert "test, `official` split, 20 images" in models["measured on"].iloc[0]


def test_tta_toggles(monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path]) -> None:
    at = _app(monkeypatch, runs["densenet"])
    plain = _table(at).copy()
    at.toggle(key="tta").set_value(True).run()
    assert not at.exception
    assert at.metric[0].label.endswith(", TTA)")
    tta = _table(at)
    assert not np.allclose(plain.to_numpy(), tta.to_numpy())
    assert np.abs(plain.to_numpy() - tta.to_numpy()).max() < 0.2  # the same image, averaged over views
    at.toggle(key="tta").set_value(False).run()
    assert np.allclose(_table(at).to_numpy(), plain.to_numpy())


def test_another_sample_and_uploads(monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    at = _app(monkeypatch, runs["densenet"])
    at.selectbox(key="sample").set_value(2).run()
    assert any(load_samples()[2].image_index in c.value for c in at.caption)
    gray = cv2.imdecode(np.frombuffer(load_samples()[1].read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    ok, png16 = cv2.imencode(".png", gray.astype(np.uint16) * 257)
    assert ok
    at.file_uploader(key="upload").set_value(("scan16.png", png16.tobytes(), "image/png")).run()
    assert not at.exception and not _errors(at)
    assert any(s.value.endswith("scan16.png") for s in at.subheader)
    assert _table(at).shape == (15, 1)


def test_a_corrupt_upload_is_a_message_on_the_page(monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path]) -> None:
    at = _app(monkeypatch, runs["densenet"])
    at.file_uploader(key="upload").set_value(("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")).run()
    assert not at.exception
    (error,) = _errors(at)
    assert error.startswith("Cannot use this file: cannot read image broken.png")
    assert not [d for d in at.dataframe if list(d.value.index) == ROWS]  # nothing analysed


def test_dicom_uploads(monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path], tmp_path: Path) -> None:
    from pydicom.uid import JPEGLSLossless
    from test_dicom import _ramp, write_dicom

    at = _app(monkeypatch, runs["densenet"])
    window = write_dicom(tmp_path / "w.dcm", _ramp(12), photometric="MONOCHROME1", bits_stored=12,
                         WindowCenter=2048, WindowWidth=2048)  # fmt: skip
    at.file_uploader(key="upload").set_value(("w.dcm", window.read_bytes(), "application/dicom")).run()
    assert not at.exception and not _errors(at)
    assert any("DICOM MONOCHROME1 (inverted), window C 2048 / W 2048 applied" in c.value for c in at.caption)
    compressed = write_dicom(tmp_path / "c.dcm", _ramp(12), bits_stored=12, syntax=JPEGLSLossless)
    at.file_uploader(key="upload").set_value(("c.dcm", compressed.read_bytes(), "application/dicom")).run()
    assert not at.exception
    (error,) = _errors(at)
    assert "c.dcm is compressed as JPEG-LS Lossless" in error and "no installed decoder" in error


def test_two_models_give_an_ensemble_column(monkeypatch: pytest.MonkeyPatch, runs: dict[str, Path]) -> None:
    at = _app(monkeypatch, runs["densenet"], runs["seresnet"])
    assert not at.exception and not _errors(at)
    table = _table(at)
    assert list(table.columns) == ["densenet-20261126-0912-3fa1", "seresnet-20261126-0913-aaaa", ENSEMBLE]
    assert np.allclose(table[ENSEMBLE], table.iloc[:, :2].mean(axis=1))
    assert at.metric[0].label.startswith(f"Abnormal probability ({ENSEMBLE}")
    assert "seresnet-20261126-0913-aaaa**: no operating points recorded" in "\n".join(m.value for m in at.markdown)


def test_no_model_or_a_bad_one_is_a_message_on_the_page(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MODELS_ENV, "")
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and "no model given" in _errors(at)[0]
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "nowhere" / "model"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and _errors(at)[0].startswith("Cannot load the models: model ")


# --- the pure functions behind the page -----------------------------------------------------------------------


def test_the_bundled_samples_are_small_real_xrays_with_nih_labels() -> None:
    import cv2

    samples = load_samples()
    assert len(samples) == 4
    assert samples[0].labels == ("Cardiomegaly",)
    for s in samples:
        data = s.read_bytes()
        assert len(data) < 100_000
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img.shape == (512, 512) and img.std() > 20  # a real radiograph, not a flat picture
        assert set(s.labels) <= set(LABELS)
        assert s.image_index.endswith(".png") and s.sex in ("F", "M")


def test_model_specs_split_on_pathsep() -> None:
    assert model_specs(f"a/b@v1{os.pathsep} {os.pathsep}/runs/x") == ["a/b@v1", "/runs/x"]
    with pytest.raises(BadInputError, match="no model given"):
        model_specs("")


def test_decode_input_reads_rgba_and_refuses_empty_or_corrupt() -> None:
    from PIL import Image

    rgba = np.zeros((40, 30, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    decoded = decode_input("x.png", buf.getvalue())
    assert decoded.pixels.shape == (40, 30) and decoded.pixels.dtype == np.uint8 and "PNG 30x40" in decoded.note
    with pytest.raises(BadInputError, match="empty"):
        decode_input("e.png", b"")
    with pytest.raises(BadInputError, match=r"cannot read image c\.jpg"):
        decode_input("c.jpg", b"\xff\xd8\xff garbage")


def test_analysis_of_an_ensemble(runs: dict[str, Path]) -> None:
    from chexvision.hub.resolve import load_predictor

    predictors = [load_predictor(str(runs[m]), device="cpu") for m in ("densenet", "seresnet")]
    sample = load_samples()[0]
    result = analyse(predictors, decode_input(sample.image_index, sample.read_bytes()), top_k=2)
    table = probability_table(result.row)
    assert list(table.index) == ROWS and table.shape == (15, 3)
    assert result.cams is not None and result.cams.shape == (2, 64, 64)
    assert result.cams.min() >= 0 and result.cams.max() == pytest.approx(1.0, abs=1e-6)
    top = table[ENSEMBLE].iloc[:14].sort_values(ascending=False, kind="stable").index[:2]
    assert list(result.cam_labels) == list(top)
    rows = decision_rows(predictors, result.row)
    assert [(r["model"], r["operating point"]) for r in rows] == [
        ("densenet-20261126-0912-3fa1", "Youden"),
        ("densenet-20261126-0912-3fa1", "sensitivity >= 0.95"),
        ("seresnet-20261126-0913-aaaa", "none recorded"),
    ]
    youden = rows[0]
    assert youden["call"] == ("ABNORMAL" if youden["p(abnormal)"] >= 0.4 else "normal")
    cards = model_rows(predictors, result.row.members)
    assert cards[0]["macro AUC"] == pytest.approx(0.71) and cards[0]["abnormal AUC"] == pytest.approx(0.78)
    assert cards[1]["measured on"].startswith("validation, `official` split")  # never evaluated: training's val
