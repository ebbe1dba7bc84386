from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.eda import run_eda
from chexvision.data.metadata import load_metadata
from chexvision.data.shards import ShardRow, encode_png, write_shard
from chexvision.labels import LABELS

runner = CliRunner()


@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    return load_metadata()


def test_full_metadata_report_in_a_few_seconds(metadata: pd.DataFrame, tmp_path: Path) -> None:
    start = time.perf_counter()
    result = run_eda(metadata, tmp_path, split_scheme="official")
    assert time.perf_counter() - start < 15.0  # ~2 s alone; generous for a shared CI machine
    groups = result.stats["groups"]
    assert groups["all"]["images"] == 112_120
    assert groups["test"]["images"] == 25_596
    assert groups["all"]["label_counts"]["Hernia"] == 227
    for label in [*LABELS, "No Finding"]:
        assert groups["all"]["label_counts"][label] == sum(
            groups[s]["label_counts"][label] for s in ("train", "val", "test")
        )
    co = np.array(groups["all"]["cooccurrence"])
    assert co.shape == (14, 14) and (co == co.T).all()
    assert np.diag(co).tolist() == [groups["all"]["label_counts"][lb] for lb in LABELS]
    assert sum(groups["all"]["labels_per_image"].values()) == 112_120
    assert sum(groups["all"]["images_per_patient"]["buckets"].values()) == groups["all"]["patients"]
    assert set(groups["all"]["view"]) == {"PA", "AP"}
    text = result.report.read_text()
    assert "| Hernia |" in text
    for plot in result.plots:
        assert plot.stat().st_size > 1000
        assert f"]({plot.name})" in text


def test_cli_with_a_metadata_csv(tmp_path: Path) -> None:
    csv = tmp_path / "meta.csv"
    lines = ["Image Index,Finding Labels,Patient Age,Patient Gender,View Position"]
    lines += [f"9000{i:04d}_000.png,{'Mass' if i % 2 else 'No Finding'},{20 + i},M,PA" for i in range(40)]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eda"
    result = runner.invoke(
        app, ["data", "eda", "--metadata", str(csv), "--out", str(out), "--scheme", "patient", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["groups"]["all"]["images"] == 40
    assert (out / "eda.md").is_file()


def test_cli_with_a_shard_folder_uses_its_default_scheme(tmp_path: Path) -> None:
    img = encode_png(np.zeros((8, 8), dtype=np.uint8))
    rows = [ShardRow(f"9000{i:04d}_00{i % 3}.png", "Effusion" if i % 4 else "No Finding", img) for i in range(60)]
    write_shard(tmp_path / "data" / "data-00000-of-00001.parquet", rows)
    (tmp_path / "dataset.json").write_text(json.dumps({"source": "synthetic", "default_split_scheme": "patient"}))
    result = runner.invoke(app, ["data", "eda", "--data", str(tmp_path), "--out", str(tmp_path / "eda")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "eda" / "eda.md").read_text()
    assert "`patient`" in text and "| unknown |" in text  # no sex/view columns in these shards


def test_cli_rejects_both_sources(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "eda", "--data", str(tmp_path), "--metadata", str(tmp_path / "m.csv"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "--data" in result.stderr
