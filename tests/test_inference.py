"""`chexvision.inference`: a model from a folder, the one preprocessing (CLAHE rule), prediction; no upward imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from chexvision.errors import BadInputError
from chexvision.inference.load import load_model_dir
from chexvision.inference.predict import predict_decoded, predict_images
from chexvision.inference.preprocess import eval_transform, trained_with_clahe
from chexvision.labels import LABELS
from chexvision.rundir import CONFIG_JSON, RUN_JSON, WEIGHTS


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("inference") / "run")


@pytest.mark.parametrize(
    ("aug_clahe", "source", "expected"),
    [("auto", "hf", True), ("auto", "synthetic", False), ("never", "hf", False), ("always", "synthetic", True)],
)
def test_preprocessing_repeats_the_training_clahe_decision(aug_clahe: str, source: str, expected: bool) -> None:
    config = {"data": {"size": 64, "mean": 0.5, "std": 0.25, "aug": {"clahe": aug_clahe}}}
    transform = eval_transform(config, {"source": source})
    assert (transform.size, transform.mean, transform.std, transform.clahe) == (64, 0.5, 0.25, expected)
    # What training recorded in run.json (images built with CLAHE, loader off) beats the config's mode.
    assert eval_transform(config, {"source": source, "clahe": not expected}).clahe is (not expected)


def _data_dir(path: Path, meta: dict[str, object]) -> Path:
    """A data folder whose dataset.json says `meta` (no shards needed to decide preprocessing)."""
    path.mkdir()
    (path / "dataset.json").write_text(json.dumps(meta))
    return path


def test_one_clahe_rule_for_shards_and_image_files(tmp_path: Path) -> None:
    config = {"data": {"size": 64}}
    trained = {"source": "nih-build", "clahe": True}
    baked = _data_dir(tmp_path / "baked", {"source": "nih-build", "clahe": True})
    raw = _data_dir(tmp_path / "raw", {"source": "hf"})
    assert eval_transform(config, trained, data_dir=baked).clahe is False  # the shards already have it
    assert eval_transform(config, trained, data_dir=raw).clahe is True  # the loader would have applied it
    assert eval_transform(config, trained).clahe is True  # image files never have it
    # a model that never saw CLAHE gets none, whatever data it is evaluated on
    assert eval_transform(config, {"source": "synthetic", "clahe": False}, data_dir=raw).clahe is False


def test_runs_without_a_recorded_decision_fall_back_to_the_data_they_are_given(tmp_path: Path) -> None:
    config = {"data": {"size": 64, "aug": {"clahe": "auto"}}}
    synthetic = _data_dir(tmp_path / "s", {"source": "synthetic"})
    assert trained_with_clahe(config, {}, {"source": "synthetic"}) is False
    assert eval_transform(config, {}, data_dir=synthetic).clahe is False
    assert trained_with_clahe(config, {}, {}) is True  # a folder without dataset.json: what the loader does
    assert trained_with_clahe(config, {}) is False  # image files and no source at all: assume none
    assert trained_with_clahe({"data": {"clahe": True}}) is True  # an explicit bool in config.json


def test_missing_size_is_bad_input() -> None:
    with pytest.raises(BadInputError, match=r"data\.size"):
        eval_transform({"data": {}})


def test_load_model_dir_reads_a_run_or_a_bare_model_folder(run_dir: Path, tmp_path: Path) -> None:
    loaded = load_model_dir(run_dir)
    assert not loaded.model.training and loaded.name == "densenet-20261126-0912-3fa1"
    assert loaded.dataset["clahe"] is False and loaded.num_params > 1000
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (CONFIG_JSON, WEIGHTS):
        shutil.copy(run_dir / name, bare / name)
    (bare / RUN_JSON).write_text("{not json")  # damaged provenance does not block the weights
    other = load_model_dir(bare)
    assert other.name == "bare" and other.dataset == {}
    (bare / WEIGHTS).unlink()
    with pytest.raises(BadInputError, match=WEIGHTS):
        load_model_dir(bare)


def test_predictions_are_probabilities_and_tta_is_a_second_view(run_dir: Path) -> None:
    loaded = load_model_dir(run_dir)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 80), dtype=np.uint8) for _ in range(3)]
    probs = predict_images(loaded.model, images, loaded.transform(), tta=True, batch_size=2)
    assert set(probs) == {"plain", "tta"} and probs["plain"].shape == (3, 15)
    assert ((probs["plain"] >= 0) & (probs["plain"] <= 1)).all() and not np.allclose(probs["plain"], probs["tta"])
    rows = predict_decoded(loaded, ["a", "b", "c"], images)
    assert [r.image for r in rows] == ["a", "b", "c"] and list(rows[0].probabilities) == list(LABELS)
    assert rows[1].abnormal == pytest.approx(probs["plain"][1, 14])


def test_inference_imports_neither_evaluate_nor_hub() -> None:
    code = (
        "import sys, chexvision.inference.load, chexvision.inference.predict, chexvision.inference.preprocess, "
        "chexvision.inference.images, chexvision.inference.tta; "
        "bad = [m for m in sys.modules if m.startswith(('chexvision.evaluate', 'chexvision.hub'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _flip_weights(folder: Path) -> None:
    weights = folder / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1000:] = bytes(b ^ 0xFF for b in data[-1000:])  # the header stays sound: the tensors are garbage
    weights.write_bytes(bytes(data))


def test_a_model_whose_files_changed_since_training_is_never_loaded(run_dir: Path, tmp_path: Path) -> None:
    from chexvision.rundir import FilesChangedError

    folder = Path(shutil.copytree(run_dir, tmp_path / "run"))
    _flip_weights(folder)
    with pytest.raises(FilesChangedError, match=WEIGHTS) as info:
        load_model_dir(folder)
    assert info.value.exit_code == 2
    (folder / RUN_JSON).unlink()  # nothing recorded (a bare model folder): only the structure can be checked
    assert load_model_dir(folder).model is not None


def test_a_hub_download_is_checked_against_the_hashes_it_came_with(run_dir: Path, tmp_path: Path) -> None:
    from chexvision.hub.resolve import MODEL_FILES, load_spec
    from chexvision.rundir import FilesChangedError

    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for name in MODEL_FILES:
        shutil.copy(run_dir / name, snapshot / name)

    class FakeHub:  # HubClient.download: the snapshot folder of the files asked for
        def download(self, repo_id: str, *, revision: str | None, filenames: tuple[str, ...]) -> Path:
            assert (repo_id, revision, set(filenames)) == ("alice/cxr", "v1", set(MODEL_FILES))
            return snapshot

    assert load_spec("alice/cxr@v1", client=FakeHub()).model is not None  # type: ignore[arg-type]
    _flip_weights(snapshot)  # damaged in transit or in the cache
    with pytest.raises(FilesChangedError, match=WEIGHTS):
        load_spec("alice/cxr@v1", client=FakeHub())  # type: ignore[arg-type]


def test_weights_that_do_not_fit_an_unrecorded_config_name_the_architecture(run_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in (CONFIG_JSON, WEIGHTS):  # no run.json: no hashes, so the architecture check is what catches it
        shutil.copy(run_dir / name, folder / name)
    config = json.loads((folder / CONFIG_JSON).read_text())
    config["model"]["kwargs"]["growth_rate"] = 4
    (folder / CONFIG_JSON).write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="does not match the architecture"):
        load_model_dir(folder)
