from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chexvision.data.shards import (
    ImageDecodeError,
    ShardIndex,
    ShardRow,
    decode_image,
    encode_png,
    find_shards,
    write_shard,
)
from chexvision.errors import BadInputError


def _gray(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _published_shard(path: Path, names: list[str], labels: list[str]) -> None:
    """A shard in the exact schema of the published HF data set: RGB PNG bytes in an `image` struct."""
    images = []
    for i, name in enumerate(names):
        rgb = np.repeat(_gray(i)[:, :, None], 3, axis=2)
        ok, buf = cv2.imencode(".png", rgb)
        assert ok
        images.append({"bytes": buf.tobytes(), "path": name})
    table = pa.table(
        {
            "image": pa.array(images, type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
            "labels": pa.array(labels, type=pa.string()),
            "filename": pa.array(names, type=pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)


def test_reads_published_hf_schema(tmp_path: Path) -> None:
    names = ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    labels = ["Cardiomegaly", "Cardiomegaly|Emphysema", "No Finding"]
    _published_shard(tmp_path / "data" / "train-00000-of-00012.parquet", names, labels)
    index = ShardIndex.open(tmp_path)
    assert index.filenames == names
    assert index.labels == labels
    assert index.extra == {}
    for i in range(3):
        img = index.read_image(i)
        assert img.dtype == np.uint8 and img.shape == (32, 32)
        np.testing.assert_array_equal(img, _gray(i))  # RGB with equal channels -> the same gray
    assert [len(g) for g in index.row_groups()] == [2, 1]


def test_round_trip_our_format_with_metadata(tmp_path: Path) -> None:
    rows = [
        ShardRow(
            f"9000000{i}_000.png",
            "Mass" if i % 2 else "No Finding",
            encode_png(_gray(i)),
            i,
            40 + i,
            "F",
            "PA",
        )
        for i in range(5)
    ]
    assert write_shard(tmp_path / "data" / "data-00000-of-00001.parquet", rows, row_group_size=2) == 5
    index = pickle.loads(pickle.dumps(ShardIndex.open(tmp_path)))  # DataLoader workers receive a pickled index
    assert len(index) == 5
    assert index.extra["age"] == [40, 41, 42, 43, 44]
    np.testing.assert_array_equal(index.read_image(4), _gray(4))
    assert index.shard_of(3) == (tmp_path / "data" / "data-00000-of-00001.parquet", 3)
    assert not list((tmp_path / "data").glob(".*tmp"))  # atomic write leaves no temp file


def test_corrupt_image_names_shard_and_row(tmp_path: Path) -> None:
    rows = [
        ShardRow("90000000_000.png", "Mass", encode_png(_gray(0))),
        ShardRow("90000001_000.png", "Mass", b"junk"),
    ]
    write_shard(tmp_path / "s.parquet", rows)
    index = ShardIndex.open(tmp_path)
    with pytest.raises(ImageDecodeError, match=r"s\.parquet row 1 \(90000001_000\.png\)"):
        index.read_image(1)


def test_decode_rgba_and_16_bit() -> None:
    gray = _gray(1)
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    np.testing.assert_array_equal(decode_image(cv2.imencode(".png", rgba)[1].tobytes()), gray)
    deep = gray.astype(np.uint16) * 16  # a 12-bit image stored in 16 bits
    out = decode_image(cv2.imencode(".png", deep)[1].tobytes())
    assert out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    assert np.corrcoef(out.ravel(), gray.ravel())[0, 1] > 0.99
    with pytest.raises(ImageDecodeError):
        decode_image(b"\x89PNG\r\n\x1a\n truncated")


def test_missing_column_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no Parquet shards"):
        ShardIndex.open(tmp_path)
    pq.write_table(pa.table({"filename": ["a.png"], "labels": ["Mass"]}), tmp_path / "x.parquet")
    assert find_shards(tmp_path) == [tmp_path / "x.parquet"]
    with pytest.raises(BadInputError, match="lacks column"):
        ShardIndex.open(tmp_path)


def _labelled_shard(path: Path, labels: list[str | None]) -> list[str]:
    """A shard whose image k is a constant grey level 10 * k; returns the file names."""
    names = [f"{90000000 + k:08d}_000.png" for k in range(len(labels))]
    rows = [
        ShardRow(name, text, encode_png(np.full((8, 8), 10 * k, np.uint8)))  # type: ignore[arg-type]
        for k, (name, text) in enumerate(zip(names, labels, strict=True))
    ]
    write_shard(path, rows, row_group_size=2)
    return names


def test_rows_with_bad_labels_are_left_out_without_shifting_labels(tmp_path: Path) -> None:
    labels = ["Mass", "Covid19", "No Finding", "no finding", "Effusion|Mass", None]
    names = _labelled_shard(tmp_path / "data" / "data-00000-of-00001.parquet", labels)
    index = ShardIndex.open(tmp_path)
    assert index.labels == ["Mass", "No Finding", "Effusion|Mass"]
    assert index.filenames == [names[0], names[2], names[4]]
    assert [int(index.read_image(i)[0, 0]) for i in range(len(index))] == [0, 20, 40]  # images stay with labels
    assert [index.shard_of(i)[1] for i in range(len(index))] == [0, 2, 4]
    assert [(b.row, b.filename) for b in index.bad_labels] == [(1, names[1]), (3, names[3]), (5, names[5])]
    assert "'Covid19'" in index.bad_labels[0].problem and "No Finding" in index.bad_labels[1].problem
    assert sum(len(g) for g in index.row_groups()) == 3


def test_bad_label_with_strict_names_shard_row_and_label(tmp_path: Path) -> None:
    _labelled_shard(tmp_path / "data" / "data-00000-of-00001.parquet", ["Mass", "Hernia", "Covid19"])
    with pytest.raises(BadInputError) as err:
        ShardIndex.open(tmp_path, strict=True)
    assert "data-00000-of-00001.parquet row 2 (90000002_000.png)" in err.value.message
    assert "'Covid19'" in err.value.message
