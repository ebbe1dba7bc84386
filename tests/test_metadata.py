from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from chexvision.data.metadata import (
    COLUMNS,
    load_metadata,
    load_split_list,
    metadata_from_shards,
)
from chexvision.data.shards import ShardRow, encode_png, write_shard
from chexvision.errors import BadInputError
from chexvision.labels import label_matrix


def test_shipped_metadata_loads_fast_with_normalised_columns() -> None:
    start = time.perf_counter()
    df = load_metadata()
    seconds = time.perf_counter() - start
    assert seconds < 2.0
    assert len(df) == 112_120
    assert tuple(df.columns) == COLUMNS
    first = df.iloc[1]
    assert first["filename"] == "00000001_001.png"
    assert first["labels"] == "Cardiomegaly|Emphysema"
    assert (first["patient_id"], first["age"], first["sex"], first["view"], first["follow_up"]) == (
        1,
        58,
        "M",
        "PA",
        1,
    )
    assert df["filename"].is_unique
    assert set(df["view"].unique()) == {"PA", "AP"}


def test_minimal_csv_derives_patient_id_and_leaves_the_rest_missing(tmp_path: Path) -> None:
    csv = tmp_path / "mini.csv"
    csv.write_text("Image Index,Finding Labels\n00012345_003.png,Effusion|Mass\n00000007_000.png,No Finding\n")
    df = load_metadata(csv)
    assert df["patient_id"].tolist() == [12345, 7]
    assert df["labels"].tolist() == ["Effusion|Mass", "No Finding"]
    assert df["age"].isna().all()


def test_gzipped_csv_is_read(tmp_path: Path) -> None:
    csv = tmp_path / "mini.csv.gz"
    with gzip.open(csv, "wt") as fh:
        fh.write("Image Index,Finding Labels,Patient Age\n00000003_000.png,Hernia,81\n")
    assert load_metadata(csv)["age"].tolist() == [81]


def test_missing_column_names_column_and_file(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("Image Index,Patient Age\n00000001_000.png,57\n")
    with pytest.raises(BadInputError) as err:
        load_metadata(csv)
    assert "Finding Labels" in err.value.message
    assert str(csv) in err.value.message


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        load_metadata(tmp_path / "nope.csv")


def test_shipped_split_lists_have_the_published_sizes() -> None:
    sizes = {
        "official_train_val": 86_524,
        "official_test": 25_596,
        "chexnet_train": 78_468,
        "chexnet_val": 11_219,
        "chexnet_test": 22_433,
    }
    for name, size in sizes.items():
        names = load_split_list(name)
        assert len(names) == size
        assert names[0].endswith(".png")


def test_missing_split_list_names_file_and_other_scheme(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as err:
        load_split_list("chexnet_val", directory=tmp_path)
    assert "chexnet_val.txt.gz" in err.value.message
    assert "official" in (err.value.hint or "")


def test_unknown_split_list_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="unknown split list"):
        load_split_list("kaggle")


def test_label_matrix_matches_the_label_strings() -> None:
    m = label_matrix(["No Finding", "Effusion|Atelectasis", "Pleural Thickening", "Effusion|Atelectasis"])
    assert m.shape == (4, 14) and m.dtype == np.float32
    assert m[0].sum() == 0
    assert m[1, 0] == 1 and m[1, 2] == 1 and m[1].sum() == 2
    assert m[2, 12] == 1
    assert label_matrix([]).shape == (0, 14)


def test_metadata_from_shards_reads_stored_columns(tmp_path: Path) -> None:
    img = encode_png(np.zeros((8, 8), dtype=np.uint8))
    rows = [
        ShardRow("00000010_000.png", "Mass", img, patient_id=10, age=40, sex="F", view="PA"),
        ShardRow("00000011_000.png", "No Finding", img, patient_id=11, age=None, sex="M", view="AP"),
    ]
    write_shard(tmp_path / "data" / "data-00000-of-00001.parquet", rows)
    df = metadata_from_shards(tmp_path)
    assert df["filename"].tolist() == ["00000010_000.png", "00000011_000.png"]
    assert df["patient_id"].tolist() == [10, 11]
    assert df["sex"].tolist() == ["F", "M"]
    assert df["age"].isna().tolist() == [False, True]


@pytest.mark.parametrize("label", ["Covid19", "no finding", "Mass|effusion"])
def test_csv_with_a_bad_label_names_file_line_and_label(tmp_path: Path, label: str) -> None:
    csv = tmp_path / "meta.csv"
    csv.write_text(f"Image Index,Finding Labels\n00000001_000.png,Mass\n00000002_000.png,{label}\n")
    with pytest.raises(BadInputError) as err:
        load_metadata(csv)
    assert f"{csv} line 3 (00000002_000.png)" in err.value.message
    assert repr(label.split("|")[-1]) in err.value.message


def test_metadata_from_shards_skips_bad_labels_or_fails_when_strict(tmp_path: Path) -> None:
    img = encode_png(np.zeros((8, 8), np.uint8))
    rows = [ShardRow("00000001_000.png", "Mass", img), ShardRow("00000002_000.png", "Covid19", img)]
    write_shard(tmp_path / "x.parquet", rows)
    assert metadata_from_shards(tmp_path)["labels"].tolist() == ["Mass"]
    with pytest.raises(BadInputError, match=r"x\.parquet row 1"):
        metadata_from_shards(tmp_path, strict=True)
