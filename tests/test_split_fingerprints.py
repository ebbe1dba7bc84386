"""Stable splits (issue 11 item 1): a patient's split depends on (scheme, seed, patient id) only, and run.json
records each split's fingerprint that `evaluate` checks.

The two figures of the issue are rebuilt from the shipped metadata: with the folder-dependent rule, a folder missing
the metadata's first 1,000 images put 15,078 of its 21,745 `patient`-scheme test images on training patients, and
a folder with 10% of the images dropped at random (`default_rng(1).random(n) >= 0.1`) put 6,837 of its 7,637
`official` validation images in training. Both must now be zero, with exactly the full data set's assignment.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.metadata import load_metadata, load_split_list
from chexvision.data.splits import (
    NIH_PATIENTS,
    fingerprint,
    make_split,
    nih_trainval_patients,
    patient_ids,
    split_fingerprints,
    unit_hash,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def nih_names() -> np.ndarray:
    return np.asarray(load_metadata()["filename"].tolist(), dtype=object)


def _assignment(names: np.ndarray, scheme: str, seed: int = 0) -> dict[str, str]:
    split = make_split(list(names), scheme, seed=seed)
    return {str(names[i]): part for part, idx in split.items() for i in idx}


@pytest.mark.parametrize("scheme", ["patient", "official", "chexnet"])
def test_a_subset_of_the_metadata_gets_exactly_the_full_assignment(nih_names: np.ndarray, scheme: str) -> None:
    full = _assignment(nih_names, scheme)
    keep = np.random.default_rng(1).random(len(nih_names)) >= 0.1
    for subset in (nih_names[1000:], nih_names[keep]):
        sub = _assignment(subset, scheme)
        assert sub == {name: full[name] for name in sub}


def test_missing_first_1000_images_leak_no_test_image_onto_training_patients(nih_names: np.ndarray) -> None:
    full = make_split(list(nih_names), "patient", seed=0)
    train_patients = set(patient_ids(list(nih_names[full["train"]])).tolist())
    subset = nih_names[1000:]
    test = subset[make_split(list(subset), "patient", seed=0)["test"]]
    leaked = sum(p in train_patients for p in patient_ids(list(test)).tolist())
    assert leaked == 0  # the folder-dependent rule: 15,078 of 21,745
    assert len(test) == 22_417  # the full set's test images minus those among the first 1,000


def test_dropping_10_percent_leaks_no_official_validation_image(nih_names: np.ndarray) -> None:
    full = make_split(list(nih_names), "official", seed=0)
    train = set(nih_names[full["train"]])
    keep = np.random.default_rng(1).random(len(nih_names)) >= 0.1
    subset = nih_names[keep]
    val = subset[make_split(list(subset), "official", seed=0)["val"]]
    assert sum(name in train for name in val) == 0  # the folder-dependent rule: 6,837 of 7,637
    assert set(val) == set(nih_names[full["val"]]) & set(subset)


def test_official_validation_is_a_seeded_tenth_of_the_nih_train_val_patients(nih_names: np.ndarray) -> None:
    listed = np.unique(patient_ids(load_split_list("official_train_val")))
    test_patients = np.unique(patient_ids(load_split_list("official_test")))
    # the list the rule draws from: the train_val list's patients = every NIH patient id minus the test patients
    assert np.array_equal(nih_trainval_patients(), listed) and len(listed) == 28_008
    assert np.array_equal(listed, np.setdiff1d(np.arange(1, NIH_PATIENTS + 1), test_patients))
    assert set(load_metadata()["patient_id"].astype(int)) == set(range(1, NIH_PATIENTS + 1))
    split = make_split(list(nih_names), "official", seed=0)
    val_patients = np.unique(patient_ids(list(nih_names[split["val"]])))
    expected = np.sort(np.random.default_rng(0).permutation(listed)[: round(len(listed) * 0.1)])
    assert np.array_equal(val_patients, expected) and len(val_patients) == 2_801


def test_patient_hash_is_sha256_of_seed_and_id_and_thresholds_are_70_80() -> None:
    pids = np.array([1, 12345, 30805, 90000017])
    for seed in (0, 7):
        expected = [int(hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:16], 16) / 2**64 for p in pids]
        assert unit_hash(seed, pids).tolist() == expected
    names = [f"{p:08d}_000.png" for p in range(1, 400)]
    u = unit_hash(3, np.arange(1, 400))
    split = make_split(names, "patient", seed=3)
    assert split["train"].tolist() == np.flatnonzero(u < 0.7).tolist()
    assert split["val"].tolist() == np.flatnonzero((u >= 0.7) & (u < 0.8)).tolist()
    assert split["test"].tolist() == np.flatnonzero(u >= 0.8).tolist()


def test_fingerprint_is_the_sha256_of_the_sorted_base_names() -> None:
    names = ["b/00000002_000.png", "00000001_000.png"]
    digest = hashlib.sha256(b"00000001_000.png\n00000002_000.png").hexdigest()
    assert fingerprint(names) == {"count": 2, "sha256": digest}
    assert fingerprint([]) == {"count": 0, "sha256": hashlib.sha256(b"").hexdigest()}
    split = {"train": np.array([1]), "val": np.array([0]), "test": np.array([], dtype=np.int64)}
    fps = split_fingerprints(names, split)
    assert fps["train"]["sha256"] == hashlib.sha256(b"00000001_000.png").hexdigest() and fps["test"]["count"] == 0


TRAIN = ["--model", "seresnet", "--preset", "smoke", "--device", "cpu", "--set", "data.workers=0",
         "--set", "data.size=64", "--set", "data.batch_size=32", "--set", "cpu_threads=1",
         "--set", "model.kwargs.widths=[8, 16, 32, 64]", "--set", "schedule.epochs=1"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data, run): one real epoch of a tiny SE-ResNet on 120 synthetic images, trained through the CLI."""
    from chexvision.data.synthetic import write_synthetic

    base = tmp_path_factory.mktemp("fingerprints")
    write_synthetic(base / "data", 120, 64, 4)
    result = runner.invoke(app, ["train", "--data", str(base / "data"), "--out", str(base / "run"), *TRAIN])
    assert result.exit_code == 0, result.output
    return base / "data", base / "run"


def _evaluate(run: Path, data: Path, out: Path) -> tuple[dict, str]:
    args = ["evaluate", str(run), "--data", str(data), "--out", str(out), "--bootstrap", "0", "--cam-samples", "0"]
    result = runner.invoke(app, [*args, "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


@pytest.mark.slow  # one real training epoch and two evaluations (~20 s)
def test_training_records_fingerprints_that_evaluate_reports(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from chexvision.data.shards import ShardIndex

    data, run = trained
    dataset = json.loads((run / "run.json").read_text())["dataset"]
    names = ShardIndex.open(data).filenames
    split = make_split(names, "patient", seed=0)
    assert dataset["split_rule"] == "patient-hash-v1" and dataset["seed"] == 0
    for part in ("train", "val", "test"):  # independent: hashlib over the sorted names of each split
        chosen = sorted(names[i] for i in split[part])
        expected = {"count": len(chosen), "sha256": hashlib.sha256("\n".join(chosen).encode()).hexdigest()}
        assert dataset["split_fingerprints"][part] == expected
        assert dataset["counts"][part] == len(chosen)
    doc, stderr = _evaluate(run, data, tmp_path / "eval")
    test = dataset["split_fingerprints"]["test"]
    assert doc["split"] == {"name": "test", **test, "matches_training": True}
    assert "warning" not in stderr
    recorded = json.loads((run / "metrics.json").read_text())["test"]["split"]  # the card reads it from here
    assert recorded == {"name": "test", **test, "matches_training": True}


@pytest.mark.slow
def test_a_partial_folder_scores_a_different_fingerprint_and_says_so(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from chexvision.data.shards import ShardIndex, ShardRow, write_shard

    data, run = trained
    index = ShardIndex.open(data)
    rows = [ShardRow(index.filenames[i], index.labels[i], index.read_image_bytes(i)) for i in range(10, len(index))]
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "dataset.json").write_text((data / "dataset.json").read_text())
    write_shard(tmp_path / "part" / "data" / "data-00000-of-00001.parquet", rows)
    doc, stderr = _evaluate(run, tmp_path / "part", tmp_path / "eval")
    recorded = json.loads((run / "run.json").read_text())["dataset"]["split_fingerprints"]["test"]
    kept = sorted(index.filenames[i] for i in make_split(index.filenames, "patient", seed=0)["test"] if i >= 10)
    assert doc["split"]["count"] == len(kept) < recorded["count"]
    assert doc["split"]["matches_training"] is False
    assert "is not the one run" in stderr


def test_an_older_run_without_fingerprints_warns_once(make_run_dir: Callable[..., Path], tmp_path: Path) -> None:
    from chexvision.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", 60, 64, 0)
    run = make_run_dir(tmp_path / "old", model="seresnet", split_scheme="patient")
    doc, stderr = _evaluate(run, tmp_path / "data", tmp_path / "eval")
    assert doc["split"]["matches_training"] is None and doc["split"]["count"] > 0
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "records no split fingerprints" in warnings[0]
