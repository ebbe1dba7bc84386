"""`chexvision data transcode`: published RGB PNG shards -> our one-channel JPEG shards with CLAHE, once.

The input is a tiny folder laid out like `data download` leaves the published set (HF `data/*.parquet` with the
`image` struct of RGB PNG bytes, `labels`, `filename`, and the dataset.json download writes), from real X-rays.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.download import REPO_ID, REVISION
from chexvision.data.shards import ShardIndex, decode_image, read_dataset_meta
from chexvision.data.transcode import MANIFEST_NAME, transcode_shards
from chexvision.data.transforms import apply_clahe, resolve_clahe
from chexvision.errors import BadInputError

runner = CliRunner()


def _published(folder: Path, sample_images_dir: Path) -> list[np.ndarray]:
    """Two shards like the published set's: RGB PNG at the stored size, labels as text, no CLAHE."""
    grays = []
    rows: list[dict[str, object]] = []
    for path in sorted(sample_images_dir.glob("*.png"))[:5]:
        gray = cv2.resize(decode_image(path.read_bytes()), (64, 64), interpolation=cv2.INTER_AREA)
        ok, png = cv2.imencode(".png", cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
        assert ok
        grays.append(gray)
        rows.append(
            {"image": {"bytes": png.tobytes(), "path": path.name}, "labels": "No Finding", "filename": path.name}
        )
    rows[1]["image"] = {"bytes": b"not a png", "path": "broken.png"}  # the reader skips such a row; so do we
    (folder / "data").mkdir(parents=True)
    for name, part in (("train-00000-of-00002.parquet", rows[:3]), ("test-00000-of-00001.parquet", rows[3:])):
        pq.write_table(pa.Table.from_pylist(part), folder / "data" / name)
    info = {"source": "hf", "repo_id": REPO_ID, "revision": REVISION, "default_split_scheme": "official"}
    (folder / "dataset.json").write_text(json.dumps(info))
    return grays


def test_transcode_makes_one_channel_clahe_jpeg_shards(tmp_path: Path, sample_images_dir: Path) -> None:
    grays = _published(tmp_path / "hf", sample_images_dir)
    assert resolve_clahe("auto", read_dataset_meta(tmp_path / "hf"))  # the published set: CLAHE at every decode
    seen: list[tuple[int, int]] = []
    result = transcode_shards(tmp_path / "hf", tmp_path / "ours", workers=2, progress=lambda d, t: seen.append((d, t)))
    assert (result.images, result.shards, result.transcoded_shards, result.corrupt) == (4, 2, 2, 1)
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    meta = read_dataset_meta(tmp_path / "ours")
    assert meta["clahe"] is True and meta["channels"] == 1 and meta["image_format"] == "jpeg"
    assert (meta["source"], meta["repo_id"], meta["revision"]) == ("hf", REPO_ID, REVISION)  # provenance kept
    assert not resolve_clahe("auto", meta)  # the loader does not apply it again
    index = ShardIndex.open(tmp_path / "ours")
    assert index.read_image_bytes(0)[:2] == b"\xff\xd8"  # JPEG
    names = [p.name for p in sorted(sample_images_dir.glob("*.png"))[:5]]
    expected = {names[i]: apply_clahe(g) for i, g in enumerate(grays) if i != 1}  # what the loader would decode
    assert sorted(index.filenames) == sorted(expected)
    for i, name in enumerate(index.filenames):
        got = index.read_image(i)
        assert got.shape == (64, 64) and np.abs(got.astype(int) - expected[name].astype(int)).mean() < 2.0


def test_a_rerun_resumes_and_changes_nothing(tmp_path: Path, sample_images_dir: Path) -> None:
    _published(tmp_path / "hf", sample_images_dir)
    transcode_shards(tmp_path / "hf", tmp_path / "ours", workers=1)
    shard = tmp_path / "ours" / "data" / "test-00000-of-00001.parquet"
    before = shard.stat().st_mtime_ns
    (tmp_path / "ours" / "data" / "train-00000-of-00002.parquet").unlink()  # as if killed before this shard
    again = transcode_shards(tmp_path / "hf", tmp_path / "ours", workers=1)
    assert (again.transcoded_shards, again.resumed_shards, again.images) == (1, 1, 4)
    assert shard.stat().st_mtime_ns == before
    assert json.loads((tmp_path / "ours" / MANIFEST_NAME).read_text())["source"] == str((tmp_path / "hf").resolve())


def test_transcode_refuses_a_foreign_out_and_empty_input(tmp_path: Path, sample_images_dir: Path) -> None:
    _published(tmp_path / "hf", sample_images_dir)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match="holds something other than a transcode"):
        transcode_shards(tmp_path / "hf", tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    out = runner.invoke(app, ["data", "transcode", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "no Parquet shards" in out.output


def test_cli_transcode_prints_plain_progress_lines(tmp_path: Path, sample_images_dir: Path) -> None:
    _published(tmp_path / "hf", sample_images_dir)
    args = ["data", "transcode", "--data", str(tmp_path / "hf"), "--out", str(tmp_path / "o"), "--workers", "1"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "transcoding shards: 0/5 images" in out.output and "transcoding shards: 5/5 images (100.0 %)" in out.output
    assert "4 images in 2 shards" in out.output


def test_an_hf_job_downloads_transcodes_then_trains_on_the_result() -> None:
    from chexvision import remote

    data = remote.parse_data_source("hf", "kaggle")
    download, transcode, train = remote.build_job(remote.TrainRequest(model="densenet"), data, "densenet-x").steps
    assert download.name == "data download" and download.argv[download.argv.index("--out") + 1] == "{data}"
    assert transcode.argv[3:5] == ("data", "transcode")
    assert transcode.argv[transcode.argv.index("--data") + 1] == "{data}"
    assert transcode.argv[transcode.argv.index("--out") + 1] == remote.BUILT_DATA
    assert train.argv[train.argv.index("--data") + 1] == remote.BUILT_DATA
