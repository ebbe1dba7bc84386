from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.build import MANIFEST_NAME, build_shards
from chexvision.data.metadata import load_metadata
from chexvision.data.shards import ShardIndex
from chexvision.errors import BadInputError

runner = CliRunner()
RGBA = "00000100_000.png"  # one of the 4 RGBA PNGs among the samples
SAMPLES = [RGBA, "00000129_000.png", "00000211_000.png", "00000282_000.png", "00000284_000.png"]
SIXTEEN_BIT = "00000001_000.png"  # a real NIH name (in the metadata), written here as a 16-bit non-square PNG
CORRUPT = "00000002_000.png"
UNKNOWN = "99999999_000.png"  # a valid image that the metadata does not list


@pytest.fixture
def images(tmp_path: Path, sample_images_dir: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "images_001").mkdir(parents=True)
    for name in SAMPLES:
        shutil.copy(sample_images_dir / name, folder / "images_001" / name)
    ramp = np.linspace(0, 4095, 300 * 280, dtype=np.uint16).reshape(300, 280)  # 12-bit range, as in DICOM exports
    assert cv2.imwrite(str(folder / SIXTEEN_BIT), ramp)
    (folder / CORRUPT).write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    shutil.copy(sample_images_dir / SAMPLES[1], folder / UNKNOWN)
    return folder


def test_build_writes_one_channel_shards_with_metadata(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[tuple[int, int]] = []
    result = build_shards(images, out, size=64, workers=1, shard_size=4, progress=lambda d, t: seen.append((d, t)))
    assert result.images == 6  # 5 samples + the 16-bit one; corrupt and unknown skipped
    assert result.not_in_metadata == [UNKNOWN]
    assert [Path(f).name for f, _ in result.corrupt] == [CORRUPT]
    assert [p.name for p in result.shards] == ["data-00000-of-00002.parquet", "data-00001-of-00002.parquet"]
    assert seen[-1] == (7, 7)

    index = ShardIndex.open(out)
    assert sorted(index.filenames) == sorted([*SAMPLES, SIXTEEN_BIT])
    assert index.filenames == sorted(index.filenames)  # deterministic order
    meta = load_metadata().set_index("filename")
    for i, name in enumerate(index.filenames):
        img = index.read_image(i)
        assert img.shape == (64, 64) and img.dtype == np.uint8
        assert index.labels[i] == meta.loc[name, "labels"]
        assert index.extra["patient_id"][i] == meta.loc[name, "patient_id"]
        assert index.extra["view"][i] == meta.loc[name, "view"]
    wide = index.read_image(index.filenames.index(SIXTEEN_BIT))
    assert int(wide.max()) - int(wide.min()) > 200  # the 12-bit range was stretched, not truncated to black

    info = json.loads((out / "dataset.json").read_text())
    assert info["source"] == "nih-build" and info["default_split_scheme"] == "official"
    assert info["size"] == 64 and info["clahe"] is True


def test_rebuild_resumes_and_redoes_only_missing_shards(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_shards(images, out, size=32, workers=1, shard_size=2)
    again = build_shards(images, out, size=32, workers=1, shard_size=2)
    assert (again.built_shards, again.resumed_shards) == (0, 4)
    assert [Path(f).name for f, _ in again.corrupt] == [CORRUPT]  # still reported from the manifest
    (out / "data" / "data-00001-of-00004.parquet").unlink()
    third = build_shards(images, out, size=32, workers=1, shard_size=2)
    assert (third.built_shards, third.resumed_shards) == (1, 3)
    assert len(ShardIndex.open(out)) == 6
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert set(manifest["shards"]) == {f"data-0000{i}-of-00004.parquet" for i in range(4)}


def test_changed_settings_with_overwrite_rebuild_everything_and_drop_stale_shards(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_shards(images, out, size=32, workers=1, shard_size=2)
    clahe = ShardIndex.open(out).read_image(0)
    result = build_shards(images, out, size=32, workers=1, shard_size=4, clahe=False, overwrite=True)
    assert result.built_shards == 2 and result.resumed_shards == 0
    assert sorted(p.name for p in (out / "data").glob("*.parquet")) == [
        "data-00000-of-00002.parquet",
        "data-00001-of-00002.parquet",
    ]
    plain = ShardIndex.open(out).read_image(0)
    assert not np.array_equal(clahe, plain)
    assert json.loads((out / "dataset.json").read_text())["clahe"] is False


def test_strict_stops_at_the_corrupt_file(images: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as err:
        build_shards(images, tmp_path / "out", size=32, workers=1, strict=True)
    assert CORRUPT in err.value.message


def test_images_without_metadata_only_is_bad_input(tmp_path: Path, sample_images_dir: Path) -> None:
    folder = tmp_path / "unknown"
    folder.mkdir()
    shutil.copy(sample_images_dir / SAMPLES[0], folder / UNKNOWN)
    with pytest.raises(BadInputError, match="in the metadata"):
        build_shards(folder, tmp_path / "out", size=32, workers=1)


def test_metadata_override_supplies_labels(tmp_path: Path, sample_images_dir: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(sample_images_dir / SAMPLES[0], folder / UNKNOWN)
    csv = tmp_path / "meta.csv"
    csv.write_text(f"Image Index,Finding Labels\n{UNKNOWN},Hernia\n")
    build_shards(folder, tmp_path / "out", size=32, workers=1, metadata=csv)
    index = ShardIndex.open(tmp_path / "out")
    assert (index.filenames, index.labels) == ([UNKNOWN], ["Hernia"])


def test_cli_build_in_parallel_reports_skips(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["data", "build", "--images", str(images), "--out", str(out), "--size", "32"]
    result = runner.invoke(app, [*args, "--workers", "2", "--shard-size", "3"])
    assert result.exit_code == 0, result.output
    assert UNKNOWN in result.stdout and CORRUPT in result.stdout
    assert len(ShardIndex.open(out)) == 6
    strict = runner.invoke(app, [*args, "--strict", "--workers", "1", "--no-clahe", "--overwrite"])
    assert strict.exit_code == 2
    assert CORRUPT in strict.stderr


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_other_settings_are_refused_naming_them_and_nothing_changes(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_shards(images, out, size=48, workers=1, shard_size=4)
    before = _digest(out)
    with pytest.raises(BadInputError) as err:
        build_shards(images, out, size=32, workers=1, shard_size=4)
    assert "size 48 (asked 32)" in err.value.message and "--overwrite" in (err.value.hint or "")
    assert _digest(out) == before
    again = build_shards(images, out, size=48, workers=1, shard_size=4)  # the same settings: nothing to do
    assert (again.built_shards, again.resumed_shards) == (0, 2)
    assert _digest(out) == before


def test_build_into_another_data_set_is_refused_unless_overwrite(images: Path, tmp_path: Path) -> None:
    from chexvision.data.synthetic import write_synthetic

    out = tmp_path / "out"
    write_synthetic(out, 6, 32, seed=0)
    before = _digest(out)
    with pytest.raises(BadInputError, match=r"holds synthetic data \(made by `data synth`, not `data build`\)"):
        build_shards(images, out, size=32, workers=1)
    assert _digest(out) == before
    build_shards(images, out, size=32, workers=1, overwrite=True)
    assert not (out / "bbox.csv").exists()  # the synthetic set's files are gone, not mixed in
    assert json.loads((out / "dataset.json").read_text())["source"] == "nih-build"
    assert len(ShardIndex.open(out)) == 6


def test_labels_changed_in_the_metadata_rebuild_their_shard(tmp_path: Path, sample_images_dir: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in SAMPLES[:2]:
        shutil.copy(sample_images_dir / name, folder / name)
    csv = tmp_path / "meta.csv"
    csv.write_text(f"Image Index,Finding Labels\n{SAMPLES[0]},Hernia\n{SAMPLES[1]},Mass\n")
    build_shards(folder, tmp_path / "out", size=32, workers=1, shard_size=1, metadata=csv)
    csv.write_text(f"Image Index,Finding Labels\n{SAMPLES[0]},Hernia\n{SAMPLES[1]},Edema\n")
    result = build_shards(folder, tmp_path / "out", size=32, workers=1, shard_size=1, metadata=csv)
    assert (result.built_shards, result.resumed_shards) == (1, 1)
    assert ShardIndex.open(tmp_path / "out").labels == ["Hernia", "Edema"]
