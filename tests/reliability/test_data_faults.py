"""Bad data inputs and `--out` folders that already hold something: every refusal a one-line error, nothing lost.

Issue 10, defects 3 (a shard row with an unknown or wrongly cased label) and 6 (silent overwrites by the data
commands). Each refusal goes through `expect_clean_error`, which also checks that what was there is byte-identical
after; the accepted cases (a bad label skipped without --strict, the same parameters again, --overwrite) check
their own outcome and the same digest where nothing should change.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.reliability import ExpectCleanError, invoke, tree_digest

FAST = ["--preset", "smoke", "--set", "data.workers=0", "--set", "data.batch_size=32", "--set", "cpu_threads=1"]
TRAIN = [*FAST, "--set", "model.kwargs.widths=[8, 16, 32, 64]", "--set", "schedule.epochs=1", "--model", "seresnet"]
PLANTED = {3: "Covid19", 10: "no finding"}  # row of the first shard -> the bad label written there
SHARD = "data-00000-of-00001.parquet"


def _plant_labels(data: Path, planted: dict[int, str]) -> None:
    """Rewrite the first shard's `labels` column with `planted` labels at the given rows (images untouched)."""
    path = sorted((data / "data").glob("*.parquet"))[0]
    table = pq.read_table(path)
    labels = table.column("labels").to_pylist()
    for row, text in planted.items():
        labels[row] = text
    table = table.set_column(table.schema.get_field_index("labels"), "labels", pa.array(labels, pa.string()))
    pq.write_table(table, path, row_group_size=64)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, sample_images_dir: Path) -> Path:
    """synth/ (a synthetic set), bad/ (its copy with PLANTED labels), built/ (NIH samples built at 64 px)."""
    from chexvision.data.build import build_shards
    from chexvision.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("data-faults")
    write_synthetic(root / "synth", 200, 64, 11)
    shutil.copytree(root / "synth", root / "bad")
    _plant_labels(root / "bad", PLANTED)
    build_shards(sample_images_dir, root / "built", size=64, workers=1, shard_size=4)
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("not a data set\n")
    (root / "empty-images").mkdir()
    (root / "images2").mkdir()
    for png in sorted(sample_images_dir.glob("*.png"))[:2]:
        shutil.copy(png, root / "images2" / png.name)
    csv = root / "csv"
    csv.mkdir()
    names = sorted(p.name for p in sample_images_dir.glob("*.png"))
    (csv / "bad-label.csv").write_text(f"Image Index,Finding Labels\n{names[0]},Mass\n{names[1]},Covid19\n")
    (csv / "no-labels.csv").write_text(f"Image Index,Age\n{names[0]},40\n")
    (csv / "garbage.csv").write_bytes(b'\x00\x01\x02 not,a\ncsv\x00\xff\xfe\n"unterminated')
    (root / "hf").mkdir()  # what a download of the pinned revision leaves
    shutil.copytree(root / "synth" / "data", root / "hf" / "data")
    (root / "hf" / "dataset.json").write_text(json.dumps({"source": "hf", "repo_id": "a/b", "revision": "r1"}))
    (root / "badjson").mkdir()
    shutil.copytree(root / "synth" / "data", root / "badjson" / "data")
    (root / "badjson" / "dataset.json").write_text("{not json")
    (root / "notparquet" / "data").mkdir(parents=True)
    (root / "notparquet" / "data" / SHARD).write_bytes(b"PAR1 this is not parquet")
    (root / "nolabels" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"filename": ["00000001_000.png"], "image": [b"x"]}), root / "nolabels" / "data" / SHARD)
    (root / "afile").write_text("a file, not a folder\n")
    return root


# (case id, args with {ws} for the workspace, folders that must not change, the exit code, what the line names)
CASES: list[tuple[str, list[str], list[str], int, list[str]]] = [
    ("train-bad-label-strict", ["train", "--data", "{ws}/bad", "--out", "{ws}/run-strict", *TRAIN, "--strict"],
     ["bad"], 2, [f"{SHARD} row 3", "'Covid19'"]),
    ("eda-bad-label-strict", ["data", "eda", "--data", "{ws}/bad", "--out", "{ws}/eda-strict", "--strict"],
     ["bad", "eda-strict"], 2, [f"{SHARD} row 3", "'Covid19'"]),
    ("splits-bad-label-strict", ["data", "splits", "--data", "{ws}/bad", "--strict"],
     ["bad"], 2, [f"{SHARD} row 3", "'Covid19'"]),
    ("synth-other-size", ["data", "synth", "--out", "{ws}/synth", "--images", "200", "--size", "32", "--seed", "11"],
     ["synth"], 2, ["size 64 (asked 32)", "--overwrite"]),
    ("synth-other-seed-and-count", ["data", "synth", "--out", "{ws}/synth", "--images", "50", "--size", "64"],
     ["synth"], 2, ["images 200 (asked 50)", "seed 11 (asked 0)"]),
    ("synth-into-built-set", ["data", "synth", "--out", "{ws}/built", "--images", "20", "--size", "64"],
     ["built"], 2, ["made by `data build`"]),
    ("synth-into-foreign-folder-overwrite", ["data", "synth", "--out", "{ws}/notes", "--images", "8", "--overwrite"],
     ["notes"], 2, ["'notes.txt'"]),
    ("synth-out-is-a-file", ["data", "synth", "--out", "{ws}/afile", "--images", "8"], ["afile"], 2, ["is a file"]),
    ("build-other-size", ["data", "build", "--images", "{samples}", "--out", "{ws}/built", "--size", "32",
                          "--shard-size", "4", "--workers", "1"], ["built"], 2, ["size 64 (asked 32)"]),
    ("build-other-images", ["data", "build", "--images", "{ws}/images2", "--out", "{ws}/built", "--size", "64",
                            "--shard-size", "4", "--workers", "1"], ["built", "images2"], 2, ["images '", "images2"]),
    ("build-into-synthetic-set", ["data", "build", "--images", "{samples}", "--out", "{ws}/synth", "--size", "64",
                                  "--workers", "1"], ["synth"], 2, ["made by `data synth`", "--overwrite"]),
    ("build-into-foreign-folder", ["data", "build", "--images", "{samples}", "--out", "{ws}/notes", "--workers", "1"],
     ["notes"], 2, ["'notes.txt'"]),
    ("build-no-images", ["data", "build", "--images", "{ws}/empty-images", "--out", "{ws}/built", "--size", "64"],
     ["built"], 2, ["no PNG files", "empty-images"]),
    ("build-images-not-a-folder", ["data", "build", "--images", "{ws}/afile", "--out", "{ws}/built2"],
     ["afile", "built2"], 2, ["is not a directory"]),
    ("build-metadata-bad-label", ["data", "build", "--images", "{samples}", "--out", "{ws}/built", "--size", "64",
                                  "--metadata", "{ws}/csv/bad-label.csv"], ["built"], 2, ["line 3", "'Covid19'"]),
    ("build-metadata-no-label-column", ["data", "build", "--images", "{samples}", "--out", "{ws}/built-nl",
                                        "--metadata", "{ws}/csv/no-labels.csv"], ["built-nl"], 2, ["'Finding Labels'"]),
    ("build-metadata-garbage", ["data", "build", "--images", "{samples}", "--out", "{ws}/built-g",
                                "--metadata", "{ws}/csv/garbage.csv"], ["built-g"], 2, ["garbage.csv", "cannot read"]),
    ("build-metadata-missing", ["data", "build", "--images", "{samples}", "--out", "{ws}/built-m",
                                "--metadata", "{ws}/csv/nope.csv"], ["built-m"], 2, ["nope.csv", "does not exist"]),
    ("eda-metadata-bad-label", ["data", "eda", "--metadata", "{ws}/csv/bad-label.csv", "--out", "{ws}/eda-bl"],
     ["eda-bl"], 2, ["line 3", "'Covid19'"]),
    ("eda-into-a-data-set", ["data", "eda", "--data", "{ws}/synth", "--out", "{ws}/synth", "--overwrite"],
     ["synth"], 2, ["not an EDA report"]),
    ("eda-into-foreign-folder", ["data", "eda", "--data", "{ws}/synth", "--out", "{ws}/notes"],
     ["notes"], 2, ["'notes.txt'"]),
    ("eda-malformed-dataset-json", ["data", "eda", "--data", "{ws}/badjson", "--out", "{ws}/eda-bj"],
     ["badjson", "eda-bj"], 2, ["dataset.json"]),
    ("eda-shard-not-parquet", ["data", "eda", "--data", "{ws}/notparquet", "--out", "{ws}/eda-np"],
     ["notparquet", "eda-np"], 2, ["unreadable Parquet shard", SHARD]),
    ("eda-shard-without-labels", ["data", "eda", "--data", "{ws}/nolabels", "--out", "{ws}/eda-nl"],
     ["nolabels", "eda-nl"], 2, ["lacks column(s) labels"]),
    ("download-into-synthetic-set", ["data", "download", "--out", "{ws}/synth"],
     ["synth"], 2, ["made by `data synth`", "--overwrite"]),
    ("download-other-revision", ["data", "download", "--out", "{ws}/hf", "--repo", "a/b", "--revision", "r2"],
     ["hf"], 2, ["revision 'r1' (asked 'r2')"]),
    ("download-into-foreign-folder", ["data", "download", "--out", "{ws}/notes", "--overwrite"],
     ["notes"], 2, ["'notes.txt'"]),
]  # fmt: skip


def _fill(args: list[str], ws: Path, samples: Path) -> list[str]:
    return [a.format(ws=ws, samples=samples) for a in args]


@pytest.mark.parametrize(("args", "keep", "code", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_data_input_is_one_clean_line_and_changes_nothing(
    expect_clean_error: ExpectCleanError,
    ws: Path,
    sample_images_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    keep: list[str],
    code: int,
    names: list[str],
) -> None:
    from chexvision.data import download

    def no_network(**_: object) -> None:
        raise AssertionError("the Hub was called before --out was checked")

    monkeypatch.setattr(download, "HubClient", no_network)
    line = expect_clean_error(
        _fill(args, ws, sample_images_dir), keep=[ws / k for k in keep], exit_code=code, names=names
    )
    assert line.isprintable(), ascii(line)  # no byte of a bad file reaches the terminal


SKIPPED = [
    ("eda", ["data", "eda", "--data", "{ws}/bad", "--out", "{ws}/eda-skip", "--scheme", "patient", "--json"]),
    ("splits", ["data", "splits", "--data", "{ws}/bad", "--json"]),
    ("train", ["train", "--data", "{ws}/bad", "--out", "{ws}/run-skip", *TRAIN]),
    ("evaluate", ["evaluate", "{ws}/run-eval", "--data", "{ws}/bad", "--out", "{ws}/eval-skip", "--bootstrap", "0",
                  "--cam-samples", "0", "--device", "cpu", "--json"]),
]  # fmt: skip


@pytest.mark.parametrize("args", [c[1] for c in SKIPPED], ids=[c[0] for c in SKIPPED])
def test_bad_labels_without_strict_are_reported_skipped_and_counted(
    ws: Path,
    sample_images_dir: Path,
    make_run_dir: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    args: list[str],
) -> None:
    if "evaluate" in args and not (ws / "run-eval").exists():
        make_run_dir(ws / "run-eval", run_id="run-eval", model="seresnet", seed=0, split_scheme="patient")
    before = tree_digest(ws / "bad")
    outcome = invoke(_fill(args, ws, sample_images_dir))
    assert outcome.exit_code == 0, outcome.stdout + outcome.stderr + repr(outcome.exception)
    assert "Traceback" not in outcome.stdout + outcome.stderr
    for row, label in PLANTED.items():  # every skipped row named by shard, row and label (stderr outside pytest)
        assert f"{SHARD} row {row} " in caplog.text and repr(label) in caplog.text
    assert f"skipped {len(PLANTED)} rows with bad labels" in caplog.text
    assert tree_digest(ws / "bad") == before
    if "eda" in args:
        assert json.loads(outcome.stdout)["groups"]["all"]["images"] == 200 - len(PLANTED)
    if "train" in args:
        assert "skipped 2 " in (ws / "run-skip" / "train.log").read_text()  # the loader's count reaches the run log


def test_the_same_parameters_again_change_nothing(ws: Path, sample_images_dir: Path) -> None:
    synth = ["data", "synth", "--out", str(ws / "synth"), "--images", "200", "--size", "64", "--seed", "11"]
    build = ["data", "build", "--images", str(sample_images_dir), "--out", str(ws / "built"), "--size", "64",
             "--shard-size", "4", "--workers", "1"]  # fmt: skip
    before = tree_digest(ws / "synth", ws / "built")
    again = invoke(synth)
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    rebuilt = invoke(build)
    assert rebuilt.exit_code == 0 and "[0 built, " in rebuilt.stdout
    assert tree_digest(ws / "synth", ws / "built") == before


def test_overwrite_replaces_only_what_the_data_commands_wrote(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "set"
    shutil.copytree(ws / "synth", out)
    (out / "mine.txt").write_text("kept\n")
    result = invoke(["data", "synth", "--out", str(out), "--images", "30", "--size", "32", "--overwrite"])
    assert result.exit_code == 0, result.stdout + result.stderr
    info = json.loads((out / "dataset.json").read_text())
    assert (info["images"], info["size"], info["seed"]) == (30, 32, 0)
    assert (out / "mine.txt").read_text() == "kept\n"
    assert len(list((out / "data").glob("*.parquet"))) == 1
