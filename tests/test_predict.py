"""`chexvision predict`: model from config.json + model.safetensors, any PNG/JPEG flavour, TTA, JSON, errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.errors import BadInputError
from chexvision.hub.resolve import load_model
from chexvision.labels import LABELS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("predict") / "run")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 96x96 picture as 8-bit gray PNG, 16-bit gray PNG, RGB PNG, RGBA PNG and RGB JPEG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (96, 96), dtype=np.uint8), (9, 9), 3)
    cv2.ellipse(gray, (30, 48), (14, 30), 0, 0, 360, 40, -1)
    gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX)  # type: ignore[call-overload]  # full range: 16-bit decoding stretches min..max
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    variants = {
        "gray8.png": gray,
        "gray16.png": gray.astype(np.uint16) * 257,
        "rgb.png": rgb,
        "rgba.png": np.dstack([rgb, np.full_like(gray, 255)]),
        "rgb.jpg": rgb,
    }
    out = {}
    for name, img in variants.items():
        path = folder / name
        params = [cv2.IMWRITE_JPEG_QUALITY, 100] if name.endswith(".jpg") else []
        assert cv2.imwrite(str(path), img, params)
        out[name] = path
    return out


def _predict(*args: str) -> Any:
    return CliRunner().invoke(app, ["predict", *args])


def test_predict_json_for_every_image_flavour(run_dir: Path, images: dict[str, Path]) -> None:
    res = _predict(*(str(p) for p in images.values()), "--model", str(run_dir), "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["image"] for r in rows] == [str(p) for p in images.values()]
    for row in rows:
        assert list(row["probabilities"]) == list(LABELS)
        assert all(0.0 <= p <= 1.0 for p in row["probabilities"].values())
        assert 0.0 <= row["abnormal"] <= 1.0
    by_name = {Path(r["image"]).name: r for r in rows}
    reference = by_name["gray8.png"]
    for name in ("gray16.png", "rgb.png", "rgba.png"):  # the same pixels once decoded: the same answer
        assert by_name[name]["probabilities"] == pytest.approx(reference["probabilities"], abs=1e-6)
        assert by_name[name]["abnormal"] == pytest.approx(reference["abnormal"], abs=1e-6)
    assert by_name["rgb.jpg"]["abnormal"] == pytest.approx(reference["abnormal"], abs=0.05)


def test_tta_averages_views_and_differs_from_plain(run_dir: Path, images: dict[str, Path]) -> None:
    image = str(images["gray8.png"])
    plain = json.loads(_predict(image, "--model", str(run_dir), "--json").stdout)[0]
    tta = json.loads(_predict(image, "--model", str(run_dir), "--json", "--tta").stdout)[0]
    assert tta["abnormal"] != plain["abnormal"]
    assert tta["abnormal"] == pytest.approx(plain["abnormal"], abs=0.2)


def test_table_output_lists_findings_and_abnormal(run_dir: Path, images: dict[str, Path]) -> None:
    res = _predict(str(images["rgb.png"]), "--model", str(run_dir))
    assert res.exit_code == 0, res.output
    assert "Pleural_Thickening" in res.stdout and "abnormal" in res.stdout


def test_unreadable_image_is_exit_2_naming_it(run_dir: Path, images: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"not an image")
    res = _predict(str(images["gray8.png"]), str(bad), "--model", str(run_dir))
    assert res.exit_code == 2
    assert str(bad) in res.stderr and res.stderr.startswith("error: ")
    missing = _predict(str(tmp_path / "nope.png"), "--model", str(run_dir))
    assert missing.exit_code == 2 and "nope.png" in missing.stderr


def test_model_folder_needs_only_config_and_safetensors(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run_dir / name, folder / name)
    model, config = load_model(str(folder))
    assert not model.training and config["data"]["size"] == 64


def test_weights_that_do_not_fit_the_config_are_bad_input(run_dir: Path, tmp_path: Path) -> None:
    # config.json + weights only: no run.json, whose sha256 record would catch the edit first
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run_dir / name, folder / name)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["kwargs"]["growth_rate"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="does not match"):
        load_model(str(folder))


def test_unknown_model_spec_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="neither a folder nor a Hub repo"):
        load_model(str(tmp_path / "missing" / "deep" / "path"))


def test_hub_model_offline_and_not_cached_is_exit_3_naming_a_local_folder(images: dict[str, Path]) -> None:
    res = _predict(str(images["gray8.png"]), "--model", "someone/chexvision-densenet@v1")  # real HfApi, offline
    assert res.exit_code == 3
    assert "someone/chexvision-densenet" in res.stderr and "--model" in res.stderr


def test_predict_defaults_to_auto_and_refuses_an_unknown_device(run_dir: Path, images: dict[str, Path]) -> None:
    """Issue 10 #12: `--device` is `auto` by default (the CPU here when there is no GPU); a bad name is one line."""
    import torch

    ok = CliRunner().invoke(app, ["predict", str(images["gray8.png"]), "--model", str(run_dir), "--json"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, ["predict", str(images["gray8.png"]), "--model", str(run_dir), "--device", "gpu"])
    assert bad.exit_code == 2 and bad.stderr.strip().splitlines() == [
        "error: unknown device 'gpu' — choose cpu, cuda or auto"
    ], bad.output
    if not torch.cuda.is_available():
        absent = CliRunner().invoke(app, ["predict", str(images["gray8.png"]), "--model", str(run_dir),
                                          "--device", "cuda"])  # fmt: skip
        assert absent.exit_code == 2, absent.output
        assert absent.exception is None or isinstance(absent.exception, SystemExit), repr(absent.exception)
        assert absent.stderr.startswith("error: device cuda asked for, but CUDA is not available"), absent.output


def test_predict_json_names_the_model_and_gives_decisions(
    run_dir: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    """Issue 16: every row says which model answered (spec, revision, run id) and the abnormal call at each
    operating point metrics.json records, against the same probability."""
    from chexvision.rundir import RunDir

    evaluated = shutil.copytree(run_dir, tmp_path / "evaluated")
    points = {"youden": {"threshold": 0.5}, "sensitivity_0.95": {"threshold": 0.0}}
    RunDir(evaluated).write_metrics_section("test", {"fitted_on": "validation", "operating_points": points})
    res = _predict(str(images["gray8.png"]), str(images["rgb.png"]), "--model", str(evaluated), "--json")
    assert res.exit_code == 0, res.output
    for row in json.loads(res.stdout):
        assert set(row["decisions"]) == {"youden", "sensitivity_0.95"}
        assert row["decisions"]["youden"] == {"threshold": 0.5, "abnormal": row["abnormal"] >= 0.5}
        assert row["decisions"]["sensitivity_0.95"]["abnormal"] is True
        model = row["model"]
        assert model["spec"] == str(evaluated) and model["run_id"] == "densenet-20261126-0912-3fa1"
        assert model["architecture"] == "densenet" and model["trained_on"] == "hf" and model["synthetic"] is False
        assert model["operating_points"]["youden"] == {"threshold": 0.5, "fitted_on": "validation",
                                                       "metrics_section": "test"}  # fmt: skip
    assert "synthetic" not in res.stderr
    table = _predict(str(images["gray8.png"]), "--model", str(evaluated))
    assert table.exit_code == 0, table.output
    assert "model densenet-20261126-0912-3fa1 (densenet) from" in table.stdout
    assert "at Youden (0.500)" in table.stdout and "at sensitivity >= 0.95" in table.stdout
    assert "chosen on validation" in table.stdout


def test_predict_without_operating_points_says_none(run_dir: Path, images: dict[str, Path]) -> None:
    res = _predict(str(images["gray8.png"]), "--model", str(run_dir), "--json")
    assert json.loads(res.stdout)[0]["decisions"] == {}
    table = _predict(str(images["gray8.png"]), "--model", str(run_dir))
    assert "operating points: none recorded" in table.stdout


def test_predict_warns_when_the_model_was_trained_on_synthetic_images(
    run_dir: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    folder = shutil.copytree(run_dir, tmp_path / "synthetic")
    run = json.loads((folder / "run.json").read_text())
    run["dataset"]["source"] = "synthetic"
    (folder / "run.json").write_text(json.dumps(run))
    for extra in ([], ["--json"]):
        res = _predict(str(images["gray8.png"]), "--model", str(folder), *extra)
        assert res.exit_code == 0, res.output
        assert res.stderr.startswith("warning: densenet-20261126-0912-3fa1 was trained on synthetic images"), res.stderr
    assert json.loads(res.stdout)[0]["model"]["synthetic"] is True  # stdout stays JSON


def test_predict_names_the_tag_and_commit_of_a_hub_dir_revision(
    run_dir: Path, images: dict[str, Path], tmp_path: Path
) -> None:
    from chexvision.hub.publish import publish_run

    result = publish_run(run_dir, repo_id="me/chexvision-densenet", hub_dir=tmp_path / "hub", tag="v1")
    res = _predict(str(images["gray8.png"]), "--model", result.model_spec, "--json")
    assert res.exit_code == 0, res.output
    model = json.loads(res.stdout)[0]["model"]
    assert model["revision"] == "v1" and model["commit"] == result.commit
