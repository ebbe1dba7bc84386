"""NIH straight from Kaggle's copy (`--data kaggle:nih-chest-xrays/data`) and raw NIH folders on the local backend.

The job mounts the data set and builds our shards from its PNGs with the shipped v2020 labels before training. The
main test renders the real kernel for such a job and runs it here against a folder laid out exactly like the Kaggle
data set (`datasets/<owner>/<slug>/images_0NN/images/*.png` and the 2017 CSVs and lists), built from real sample
X-rays under real NIH file names, whose `Data_Entry_2017.csv` says something else: the run must come out with the
v2020 labels and say so in run.json.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from chexvision import remote as runs
from chexvision.cli.main import app
from chexvision.data.build import LABELS_RESOURCE, SHIPPED_LABELS, read_labels_resource, shipped_labels
from chexvision.data.metadata import load_metadata, load_split_list, resource_path
from chexvision.data.shards import ShardIndex
from dispatch.job import DataSource

NIH = "nih-chest-xrays/data"
N_TRAIN_VAL, N_TEST = 20, 6  # real NIH names (distinct patients) from each official list


def _names() -> list[str]:
    """Real NIH file names, one per patient: some of the official test list, the rest of train_val."""
    test = set(load_split_list("official_test"))
    meta = load_metadata().drop_duplicates("patient_id")
    in_test = meta["filename"].isin(test)
    return [*meta.loc[~in_test, "filename"][:N_TRAIN_VAL], *meta.loc[in_test, "filename"][:N_TEST]]


def _kaggle_nih_layout(root: Path, sample_images_dir: Path) -> tuple[Path, list[str]]:
    """`root/datasets/nih-chest-xrays/data` as Kaggle mounts the NIH release, from real X-rays (copied, renamed)."""
    mount = root / "datasets" / "nih-chest-xrays" / "data"
    samples = sorted(sample_images_dir.glob("*.png"))[:5]
    names = _names()
    for i, (name, sample) in enumerate(zip(names, itertools.cycle(samples), strict=False)):
        folder = mount / f"images_{1 + i % 2:03d}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(sample, folder / name)
    # The mirror's own 2017 CSV, with labels the v2020 metadata does not give them: it must not be read.
    pd.DataFrame({"Image Index": names, "Finding Labels": "Hernia", "Patient ID": 1}).to_csv(
        mount / "Data_Entry_2017.csv", index=False
    )
    (mount / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h]\n")
    test = set(load_split_list("official_test"))
    (mount / "test_list.txt").write_text("".join(f"{n}\n" for n in names if n in test))
    (mount / "train_val_list.txt").write_text("".join(f"{n}\n" for n in names if n not in test))
    return mount, names


def test_the_compact_labels_equal_the_shipped_csv() -> None:
    path = resource_path(LABELS_RESOURCE)
    assert path is not None, "regenerate it: python scripts/nih_labels_resource.py"
    compact = read_labels_resource(path).set_index("filename")
    full = load_metadata().set_index("filename").loc[compact.index]
    assert len(compact) == len(load_metadata()) == 112_120
    for column in ("labels", "patient_id", "age", "sex", "view"):
        assert (compact[column].astype(str) == full[column].astype(str)).all(), column


def test_a_kaggle_nih_job_mounts_builds_then_trains() -> None:
    data = runs.parse_data_source(f"kaggle:{NIH}", "kaggle")
    assert data == {"kind": "kaggle", "dataset": NIH, "layout": "nih-png"}
    job = runs.build_job(runs.TrainRequest(model="densenet"), data, "densenet-x")
    assert job.data == DataSource("kaggle-dataset", NIH, data)  # mounted: no download step
    build, train = job.steps
    assert build.argv[:5] == ("{python}", "-m", "chexvision", "data", "build")
    assert build.argv[build.argv.index("--images") + 1] == "{data}"
    assert build.argv[build.argv.index("--out") + 1] == runs.BUILT_DATA == "{scratch}/shards"
    assert build.argv[build.argv.index("--workers") + 1] == "0"  # every CPU
    assert train.argv[train.argv.index("--data") + 1] == runs.BUILT_DATA and train.distributed
    # Another Kaggle dataset is read as shards, as before.
    other = runs.parse_data_source("kaggle:me/my-shards", "kaggle")
    assert other["layout"] == "shards"
    [step] = runs.build_job(runs.TrainRequest(model="densenet"), other, "densenet-y").steps
    assert step.argv[step.argv.index("--data") + 1] == "{data}"


def test_a_local_folder_is_looked_at(tmp_path: Path, sample_images_dir: Path) -> None:
    raw = tmp_path / "raw" / "images_001" / "images"
    raw.mkdir(parents=True)
    shutil.copy(next(sample_images_dir.glob("*.png")), raw)
    assert runs.parse_data_source(str(tmp_path / "raw"), "local")["layout"] == "nih-png"
    (tmp_path / "shards" / "data").mkdir(parents=True)
    (tmp_path / "shards" / "data" / "data-00000-of-00001.parquet").write_bytes(b"")
    (tmp_path / "shards" / "preview.png").write_bytes(b"")  # shards win over a stray PNG
    assert runs.parse_data_source(str(tmp_path / "shards"), "local")["layout"] == "shards"


def test_only_a_build_job_ships_the_labels(tmp_path: Path) -> None:
    out = tmp_path / "k"
    result = runs.dispatch_train(
        runs.TrainRequest(model="densenet", backend="kaggle", data=f"kaggle:{NIH}"), dry_run_out=out
    )
    assert result.script_size < 1_000_000
    hf = runs.dispatch_train(
        runs.TrainRequest(model="densenet", backend="kaggle", data="hf"), dry_run_out=tmp_path / "h"
    )
    assert hf.bundle_size < result.bundle_size
    bundle = runs.job_sources(runs.repo_root(), build=True)
    assert LABELS_RESOURCE in bundle.only[runs.RESOURCES]
    assert LABELS_RESOURCE not in runs.job_sources(runs.repo_root()).only[runs.RESOURCES]


def test_build_falls_back_to_the_compact_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote bundle has no CSV: the compact copy gives the same rows (what the kernel test relies on)."""
    import chexvision.data.build as build

    monkeypatch.setattr(build, "resource_path", lambda name: None if name.endswith(".csv.gz") else resource_path(name))
    df = shipped_labels()
    assert len(df) == 112_120 and set(df.columns) >= {"filename", "labels", "patient_id"}


def _run_kernel(script: Path, root: Path, input_root: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DISPATCH_KERNEL_INPUT": str(input_root),
        "DISPATCH_KERNEL_WORKING": str(root / "working"),
        "DISPATCH_KERNEL_SCRATCH": str(root / "scratch"),
        "DISPATCH_KERNEL_SKIP_INSTALL": "1",
        "DISPATCH_KERNEL_SKIP_PROBES": "1",
    }
    env.pop("PYTHONPATH", None)  # the kernel puts its unpacked bundle first, as on Kaggle
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600, cwd=root)


@pytest.mark.slow
def test_the_rendered_kernel_trains_on_a_kaggle_nih_layout(tmp_path: Path, sample_images_dir: Path) -> None:
    mount, names = _kaggle_nih_layout(tmp_path / "input", sample_images_dir)
    request = runs.TrainRequest(
        model="seresnet",
        backend="kaggle",
        preset="smoke",
        data=f"kaggle:{NIH}",
        overrides=("schedule.epochs=1", "data.workers=0", "data.batch_size=8"),
    )
    result = runs.dispatch_train(request, dry_run_out=tmp_path / "kernel")
    script = tmp_path / "kernel" / "train.py"
    assert "'kind': 'kaggle-dataset'" in script.read_text()

    proc = _run_kernel(script, tmp_path, tmp_path / "input")
    log = proc.stdout + proc.stderr
    marker = json.loads((tmp_path / "working" / "chexvision-status.json").read_text())
    assert proc.returncode == 0 and marker["status"] == "complete", log[-4000:]
    assert f"data: Kaggle dataset {NIH} at {mount}" in log
    assert f"building shards: 0/{len(names)} images" in log  # plain progress lines: the log is not a terminal
    assert f"building shards: {len(names)}/{len(names)} images (100.0 %)" in log

    built = tmp_path / "scratch" / "shards"
    assert json.loads((built / "dataset.json").read_text())["labels"] == SHIPPED_LABELS
    index = ShardIndex.open(built)
    v2020 = load_metadata().set_index("filename")["labels"]
    assert sorted(index.filenames) == sorted(names)
    assert index.labels == [v2020[n] for n in index.filenames]  # the v2020 labels, not the mount's CSV ("Hernia")
    run = json.loads((tmp_path / "working" / "run.json").read_text())
    assert run["run_id"] == result.run_id and run["status"] == "complete"
    assert run["dataset"]["labels"] == SHIPPED_LABELS and run["dataset"]["source"] == "nih-build"
    assert sum(run["dataset"]["counts"].values()) == len(names)


def test_the_kernel_bundle_lacks_the_csv_but_has_the_labels(tmp_path: Path) -> None:
    """What the kernel test above exercises: the bundle's resources are the compact labels, not the 1 MB CSV."""
    from dispatch.bundle import build_bundle

    bundle = build_bundle(runs.job_sources(runs.repo_root(), build=True))
    names = set(zipfile.ZipFile(__import__("io").BytesIO(bundle.data)).namelist())
    assert f"{runs.RESOURCES}/{LABELS_RESOURCE}" in names
    assert f"{runs.RESOURCES}/Data_Entry_2017_v2020.csv.gz" not in names


def test_local_backend_builds_a_raw_folder(tmp_path: Path, sample_images_dir: Path) -> None:
    """`--data DIR` of raw NIH PNGs on the local backend: the same build step, shown by a dry run."""
    mount, _ = _kaggle_nih_layout(tmp_path / "input", sample_images_dir)
    out = CliRunner().invoke(
        app,
        ["dispatch", "train", "--model", "densenet", "--backend", "local", "--data", str(mount), "--dry-run",
         "--out", str(tmp_path / "k"), "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout.strip().splitlines()[-1])["data"]
    assert data == {"kind": "dir", "path": str(mount.resolve()), "layout": "nih-png"}
    text = (tmp_path / "k" / "train.py").read_text()
    assert "'data build'" in text and "'{scratch}/shards'" in text and "'kind': 'local-dir'" in text


@pytest.mark.parametrize(("every_s", "lines"), [(0.0, 3), (3600.0, 2)])
def test_progress_in_a_log_is_plain_lines(every_s: float, lines: int) -> None:
    """Not a terminal (a kernel's log): the first call, then at most one line per `every_s`, and the last."""
    import io

    from rich.console import Console

    from chexvision.cli._progress import progress_reporter

    buffer = io.StringIO()
    with progress_reporter("building shards", Console(file=buffer), every_s=every_s) as progress:
        for done in (0, 500, 1000):
            progress(done, 1000)
    out = buffer.getvalue().splitlines()
    assert len(out) == lines and out[0] == "building shards: 0/1,000 images (0.0 %)"
    assert out[-1].startswith("building shards: 1,000/1,000 images (100.0 %), ") and "images/s" in out[-1]
    if lines == 3:
        assert "left" in out[1]
