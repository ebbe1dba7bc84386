from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

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


def _csv(tmp_path: Path, label: str = "Mass") -> Path:
    csv = tmp_path / "meta.csv"
    lines = ["Image Index,Finding Labels"] + [
        f"9000{i:04d}_000.png,{label if i % 2 else 'No Finding'}" for i in range(40)
    ]
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_cli_refuses_to_replace_another_report_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "eda"
    args = ["data", "eda", "--metadata", str(_csv(tmp_path)), "--out", str(out), "--scheme", "patient"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0  # the same report again: recomputed in place
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = runner.invoke(app, [*args, "--seed", "1"])
    assert other.exit_code == 2 and "seed 0 (asked 1)" in other.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert runner.invoke(app, [*args, "--seed", "1", "--overwrite"]).exit_code == 0


def test_cli_never_writes_a_report_into_a_data_set(tmp_path: Path) -> None:
    from chexvision.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "d", 40, 32, seed=0)
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(
            app, ["data", "eda", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "d"), *extra]
        )
        assert result.exit_code == 2 and "not an EDA report" in result.stderr
    assert not (tmp_path / "d" / "eda.md").exists()


def test_cli_bad_label_in_a_csv_is_one_line_naming_it(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["data", "eda", "--metadata", str(_csv(tmp_path, "Covid19")), "--out", str(tmp_path / "e")]
    )
    assert result.exit_code == 2 and "line 3 (90000001_000.png)" in result.stderr and "'Covid19'" in result.stderr
    assert not (tmp_path / "e").exists()


def test_cli_shard_rows_with_bad_labels_are_skipped_or_fatal_with_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    img = encode_png(np.zeros((8, 8), dtype=np.uint8))
    rows = [ShardRow(f"9000{i:04d}_000.png", "no finding" if i == 7 else "Effusion", img) for i in range(40)]
    write_shard(tmp_path / "d" / "data" / "data-00000-of-00001.parquet", rows)
    args = ["data", "eda", "--data", str(tmp_path / "d"), "--scheme", "patient", "--json"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["groups"]["all"]["images"] == 39
    assert "row 7 (90000007_000.png)" in caplog.text and "'No Finding'" in caplog.text  # stderr outside pytest
    strict = runner.invoke(app, [*args, "--out", str(tmp_path / "s"), "--strict"])
    assert strict.exit_code == 2 and "row 7" in strict.stderr and not (tmp_path / "s").exists()


def test_a_report_from_before_the_record_is_recognised(tmp_path: Path) -> None:
    out = tmp_path / "eda"
    args = ["data", "eda", "--metadata", str(_csv(tmp_path)), "--out", str(out), "--scheme", "patient"]
    assert runner.invoke(app, args).exit_code == 0
    (out / ".chexvision.json").unlink()
    assert runner.invoke(app, [*args, "--seed", "2"]).exit_code == 0


@pytest.fixture(scope="module")
def nih_stats(metadata: pd.DataFrame) -> dict[str, Any]:
    from chexvision.data.eda import compute_stats

    return compute_stats(metadata, "official")


def test_label_frequency_is_on_a_log_axis_that_shows_hernia(nih_stats: dict[str, Any]) -> None:
    from chexvision.data.eda import draw_figures

    ax = draw_figures(nih_stats)["label_frequency.png"].axes[0]
    assert ax.get_xscale() == "log"
    hernia = min(100 * nih_stats["groups"][g]["label_frequency"]["Hernia"] for g in ("train", "val", "test"))
    lo, hi = ax.get_xlim()
    assert 0 < lo < hernia / 2 and hi >= 100  # the rarest bar spans at least a factor of two on screen
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert "Hernia (227)" in ticks


def test_conditional_cooccurrence_rows_mean_other_labels_per_image() -> None:
    from chexvision.data.eda import compute_stats, conditional_cooccurrence

    labels = ["Mass|Nodule", "Mass", "Mass|Nodule|Effusion", "Nodule", "No Finding", "Effusion"]
    df = pd.DataFrame({"filename": [f"{9000_0000 + i}_000.png" for i in range(len(labels))], "labels": labels})
    co = compute_stats(df, "patient")["groups"]["all"]["cooccurrence"]
    cond = conditional_cooccurrence(co)
    mass, nodule, effusion = (LABELS.index(x) for x in ("Mass", "Nodule", "Effusion"))
    assert cond[mass, nodule] == pytest.approx(2 / 3)  # 2 of the 3 Mass images also have a Nodule
    assert cond[nodule, mass] == pytest.approx(2 / 3)
    assert cond[effusion, mass] == pytest.approx(1 / 2)
    assert np.isnan(cond[LABELS.index("Hernia")]).all()  # a label that never occurs has no row
    assert np.allclose(np.diag(cond)[[mass, nodule, effusion]], 1.0)
    off = np.nansum(cond, axis=1) - 1.0  # each row without its diagonal
    per_image = [len(x.split("|")) for x in labels]
    for k, name in ((mass, "Mass"), (nodule, "Nodule"), (effusion, "Effusion")):
        others = [n - 1 for n, x in zip(per_image, labels, strict=True) if name in x.split("|")]
        assert off[k] == pytest.approx(np.mean(others))


def test_cooccurrence_plot_shows_cell_values_and_a_labelled_colour_bar(nih_stats: dict[str, Any]) -> None:
    from chexvision.data.eda import conditional_cooccurrence, draw_figures

    fig = draw_figures(nih_stats)["cooccurrence.png"]
    heat, bar = fig.axes
    assert "row label" in bar.get_ylabel()
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in heat.texts}
    assert len(cells) == 14 * 13  # every off-diagonal cell carries its value
    cond = 100 * conditional_cooccurrence(nih_stats["groups"]["all"]["cooccurrence"])
    i, j = LABELS.index("Edema"), LABELS.index("Infiltration")
    assert float(cells[(i, j)]) == pytest.approx(cond[i, j], abs=0.5)


def _overlaps(a: Any, b: Any) -> bool:
    return bool(a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5)


def test_every_split_panel_has_a_legend_that_covers_no_data(nih_stats: dict[str, Any], tmp_path: Path) -> None:
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.lines import Line2D

    from chexvision.data.eda import draw_figures

    for name, fig in draw_figures(nih_stats).items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. a layout that could not be applied
            fig.savefig(tmp_path / name, dpi=60)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()  # extents below are those of the laid-out figure
        renderer = canvas.get_renderer()
        for ax in fig.axes:
            if not ax.patches and not ax.lines:
                continue  # the colour bar
            if name == "cooccurrence.png":
                continue
            legend = ax.get_legend()
            assert legend is not None, f"{name}: panel {ax.get_title()!r} has no legend"
            box = legend.get_window_extent(renderer)
            for patch in ax.patches:
                assert not _overlaps(box, patch.get_window_extent(renderer)), f"{name}: {ax.get_title()!r}"
            for line in ax.lines:
                assert isinstance(line, Line2D)
                for x, y in ax.transData.transform(line.get_xydata()):
                    assert not box.contains(x, y), f"{name}: {ax.get_title()!r}"
