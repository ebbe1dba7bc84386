from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.metadata import load_metadata
from chexvision.data.shards import ShardRow, encode_png, write_shard
from chexvision.data.splits import SPLIT_SCHEMES, check_disjoint, make_split, patient_ids, split_summary
from chexvision.errors import BadInputError
from chexvision.labels import LABELS

runner = CliRunner()


@pytest.fixture(scope="module")
def nih_names() -> list[str]:
    return load_metadata()["filename"].tolist()


def _patients(names: list[str], idx: np.ndarray) -> set[int]:
    return set(patient_ids([names[i] for i in idx]).tolist())


def test_official_split_matches_the_nih_lists(nih_names: list[str]) -> None:
    start = time.perf_counter()
    split = make_split(nih_names, "official", seed=0)
    assert time.perf_counter() - start < 3.0
    assert len(split["train"]) + len(split["val"]) == 86_524
    assert len(split["test"]) == 25_596
    # validation is about 10% of the train+val patients, carved by patient
    trainval_patients = _patients(nih_names, np.concatenate([split["train"], split["val"]]))
    val_share = len(_patients(nih_names, split["val"])) / len(trainval_patients)
    assert 0.09 < val_share < 0.11
    for part in split.values():
        assert part.dtype == np.int64


def test_chexnet_split_matches_the_lists(nih_names: list[str]) -> None:
    split = make_split(nih_names, "chexnet")
    assert [len(split[k]) for k in ("train", "val", "test")] == [78_468, 11_219, 22_433]
    assert split.dropped == 0


def test_chexnet_drops_and_counts_names_in_no_list() -> None:
    names = ["00000001_000.png", "00000010_000.png", "90000001_000.png", "90000002_000.png"]
    split = make_split(names, "chexnet")
    assert split.dropped == 2
    assert split["train"].tolist() == [0] and split["test"].tolist() == [1]


@pytest.mark.parametrize("scheme", SPLIT_SCHEMES)
def test_every_scheme_is_patient_disjoint_and_covers_the_images(nih_names: list[str], scheme: str) -> None:
    split = make_split(nih_names, scheme, seed=3)
    parts = [split[k] for k in ("train", "val", "test")]
    assigned = np.concatenate(parts)
    assert len(np.unique(assigned)) == len(assigned) == len(nih_names) - split.dropped
    for a in range(3):
        for b in range(a + 1, 3):
            assert not _patients(nih_names, parts[a]) & _patients(nih_names, parts[b])


def test_patient_scheme_is_70_10_20_by_patient_and_seeded(nih_names: list[str]) -> None:
    split = make_split(nih_names, "patient", seed=0)
    total = len(set(patient_ids(nih_names).tolist()))
    shares = [len(_patients(nih_names, split[k])) / total for k in ("train", "val", "test")]
    assert shares == pytest.approx([0.7, 0.1, 0.2], abs=0.01)
    again = make_split(nih_names, "patient", seed=0)
    other = make_split(nih_names, "patient", seed=1)
    assert np.array_equal(split["test"], again["test"])
    assert not np.array_equal(split["test"], other["test"])


def test_official_puts_unlisted_names_in_train_val() -> None:
    names = [f"9000{i:04d}_000.png" for i in range(40)] + ["00000003_000.png"]  # the last is official test
    split = make_split(names, "official", seed=0)
    assert split["test"].tolist() == [40]
    # outside the NIH patient list, validation is exactly the patients whose seeded hash falls below 0.1
    expected_val = [i for i in range(40) if _hash01(0, 90000000 + i) < 0.1]
    assert split["val"].tolist() == expected_val and len(expected_val) == 5
    assert split["train"].tolist() == [i for i in range(40) if i not in expected_val]


def _hash01(seed: int, patient: int) -> float:
    """The documented rule, computed independently: sha256(f"{seed}:{id}")'s first 8 bytes over 2**64."""
    return int(hashlib.sha256(f"{seed}:{patient}".encode()).hexdigest()[:16], 16) / 2**64


def test_a_leak_is_an_error_naming_count_and_patient() -> None:
    names = ["00000005_000.png", "00000005_001.png", "00000006_000.png"]
    leaky = {"train": np.array([0, 2]), "val": np.array([1]), "test": np.array([], dtype=np.int64)}
    with pytest.raises(BadInputError) as err:
        check_disjoint(names, leaky)
    assert "1 patients" in err.value.message and "patient 5" in err.value.message


def test_unknown_scheme_and_names_without_patient_ids_are_bad_input() -> None:
    with pytest.raises(BadInputError) as err:
        make_split(["00000001_000.png"], "random")
    assert "official, chexnet, patient" in (err.value.hint or "")
    with pytest.raises(BadInputError, match=r"scan\.png"):
        make_split(["00000001_000.png", "scan.png"], "patient")


def test_split_summary_counts_images_patients_and_prevalence() -> None:
    names = ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    labels = ["Effusion", "Effusion|Mass", "No Finding"]
    split = {"train": np.array([0, 1]), "val": np.array([2]), "test": np.array([], dtype=np.int64)}
    summary = split_summary(names, labels, split)
    assert summary["train"]["images"] == 2 and summary["train"]["patients"] == 1
    assert summary["train"]["prevalence"]["Effusion"] == 1.0
    assert summary["train"]["prevalence"]["Mass"] == 0.5
    assert summary["test"] == {"images": 0, "patients": 0, "prevalence": dict.fromkeys(LABELS, 0.0)}


def test_cli_json_over_the_shipped_metadata() -> None:
    result = runner.invoke(app, ["data", "splits", "--scheme", "official", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["scheme"] == "official"
    assert set(out["splits"]) == {"train", "val", "test"}
    assert out["splits"]["test"]["images"] == 25_596
    assert set(out["splits"]["train"]["prevalence"]) == set(LABELS)


def test_cli_over_a_data_dir_and_rich_table(tmp_path: Path) -> None:
    img = encode_png(np.zeros((8, 8), dtype=np.uint8))
    rows = [ShardRow(f"9000{i:04d}_000.png", "Mass" if i % 3 else "No Finding", img) for i in range(30)]
    write_shard(tmp_path / "data" / "data-00000-of-00001.parquet", rows)
    result = runner.invoke(app, ["data", "splits", "--scheme", "patient", "--data", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sum(part["images"] for part in out["splits"].values()) == 30
    table = runner.invoke(app, ["data", "splits", "--scheme", "patient", "--data", str(tmp_path)])
    assert table.exit_code == 0 and "prevalence" in table.stdout


def test_cli_unknown_scheme_exits_2_listing_schemes() -> None:
    result = runner.invoke(app, ["data", "splits", "--scheme", "bogus"])
    assert result.exit_code == 2
    assert "official, chexnet, patient" in result.stderr


def test_cli_over_shards_with_a_bad_label_skips_the_row_or_fails_with_strict(tmp_path: Path) -> None:
    img = encode_png(np.zeros((8, 8), dtype=np.uint8))
    rows = [ShardRow(f"9000{i:04d}_000.png", "Covid19" if i == 4 else "Mass", img) for i in range(30)]
    write_shard(tmp_path / "data" / "data-00000-of-00001.parquet", rows)
    args = ["data", "splits", "--scheme", "patient", "--data", str(tmp_path), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert sum(part["images"] for part in out["splits"].values()) == 29
    assert all(part["prevalence"]["Mass"] in (0.0, 1.0) for part in out["splits"].values())  # no label moved
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 2 and "row 4 (90000004_000.png)" in strict.stderr and "'Covid19'" in strict.stderr
