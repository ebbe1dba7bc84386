from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.shards import ShardIndex, decode_image
from chexvision.data.synthetic import (
    MIN_PREVALENCE,
    NO_FINDING_SHARE,
    PATIENT_ID_START,
    generate,
    label_prevalence,
    sample_labels,
    write_synthetic,
)
from chexvision.errors import BadInputError
from chexvision.labels import LABELS, NO_FINDING, label_matrix, parse_labels, patient_id_from_filename

NIH_BBOX = Path(__file__).resolve().parents[1] / "chexvision" / "data" / "resources" / "BBox_List_2017.csv.gz"
NAME_RE = re.compile(r"^9\d{7}_\d{3}\.png$")


def test_same_seed_gives_identical_images_and_labels() -> None:
    a = list(generate(8, 64, seed=3))
    b = list(generate(8, 64, seed=3))
    c = list(generate(8, 64, seed=4))
    assert [s.image.tobytes() for s in a] == [s.image.tobytes() for s in b]
    assert [(s.filename, s.labels, s.boxes) for s in a] == [(s.filename, s.labels, s.boxes) for s in b]
    assert [s.image.tobytes() for s in a] != [s.image.tobytes() for s in c]


def test_a_slice_equals_the_same_slice_of_the_full_sequence() -> None:
    full = list(generate(12, 48, seed=5))
    part = list(generate(12, 48, seed=5, start=7, stop=10))
    assert [s.image.tobytes() for s in part] == [s.image.tobytes() for s in full[7:10]]


def test_images_are_one_channel_uint8_of_the_requested_size_with_boxes_inside() -> None:
    for size in (64, 96):
        for s in generate(30, size, seed=1):
            assert s.image.dtype == np.uint8 and s.image.shape == (size, size)
            assert s.image.std() > 10  # a picture, not a flat field
            assert NAME_RE.match(s.filename) and patient_id_from_filename(s.filename) >= PATIENT_ID_START
            labels = set(parse_labels(s.labels))
            assert {b.label for b in s.boxes} == labels
            for b in s.boxes:
                assert b.x >= 0 and b.y >= 0 and b.w > 0 and b.h > 0
                assert b.x + b.w <= size and b.y + b.h <= size


def test_label_targets_and_sampled_frequencies() -> None:
    target = label_prevalence()
    assert all(target[name] >= MIN_PREVALENCE * 0.99 for name in LABELS)
    assert target[NO_FINDING] == pytest.approx(NO_FINDING_SHARE, abs=0.01)
    n = 2000
    labels = sample_labels(n, seed=0)
    observed = label_matrix(labels).mean(axis=0)
    for name, freq in zip(LABELS, observed, strict=True):
        p = target[name]
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.005, name
    no_finding = np.mean([text == NO_FINDING for text in labels])
    assert abs(no_finding - target[NO_FINDING]) < 0.05
    assert labels[:50] == [s.labels for s in generate(50, 32, seed=0)]


def test_several_images_per_patient() -> None:
    names = [s.filename for s in generate(40, 32, seed=2)]
    patients = [patient_id_from_filename(n) for n in names]
    assert len(set(patients)) < len(patients)
    assert max(int(n[9:12]) for n in names) <= 3


def test_global_intensity_statistics_do_not_give_labels_away() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    samples = list(generate(700, 64, seed=11))
    pixels = np.stack([s.image for s in samples]).reshape(len(samples), -1).astype(np.float32)
    features = np.column_stack([pixels.mean(1), pixels.std(1), *np.percentile(pixels, [5, 25, 50, 75, 95], axis=1)])
    features = (features - features.mean(0)) / features.std(0)
    y = label_matrix([s.labels for s in samples])
    aucs = []
    for c in range(len(LABELS)):
        scores = cross_val_predict(LogisticRegression(), features, y[:, c], cv=3, method="predict_proba")[:, 1]
        aucs.append(roc_auc_score(y[:, c], scores))
    assert float(np.mean(aucs)) < 0.9


def test_output_does_not_depend_on_workers(tmp_path: Path) -> None:
    one = write_synthetic(tmp_path / "one", 24, 48, seed=7, workers=1, shard_rows=8)
    two = write_synthetic(tmp_path / "two", 24, 48, seed=7, workers=2, shard_rows=8)
    assert len(one.shards) == 3
    a, b = ShardIndex.open(one.out), ShardIndex.open(two.out)
    assert a.filenames == b.filenames and a.labels == b.labels
    assert all(a.read_image_bytes(i) == b.read_image_bytes(i) for i in range(len(a)))
    assert one.bbox_csv.read_bytes() == two.bbox_csv.read_bytes()


def test_cli_writes_shards_dataset_json_and_nih_bbox_csv(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    args = ["data", "synth", "--out", str(out), "--images", "40", "--size", "64", "--seed", "1", "--workers", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    meta = json.loads((out / "dataset.json").read_text())
    assert meta == {
        "source": "synthetic",
        "default_split_scheme": "patient",
        "images": 40,
        "size": 64,
        "seed": 1,
        "version": 1,
    }

    index = ShardIndex.open(out)
    assert len(index) == 40 and all(NAME_RE.match(n) for n in index.filenames)
    assert index.read_image(0).shape == (64, 64)
    assert decode_image(index.read_image_bytes(39)).dtype == np.uint8
    assert set(index.extra) == {"patient_id", "age", "sex", "view"}
    assert set(index.extra["view"]) <= {"PA", "AP"} and set(index.extra["sex"]) <= {"M", "F"}

    boxes = pd.read_csv(out / "bbox.csv")
    nih = pd.read_csv(NIH_BBOX)
    assert list(boxes.columns) == list(nih.columns)
    assert (out / "bbox.csv").read_text().splitlines()[0] == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    assert set(boxes["Image Index"]) <= set(index.filenames)
    assert set(nih["Finding Label"]) <= {*LABELS, "Infiltrate"}  # NIH's spelling, which we keep
    assert set(boxes["Finding Label"]) <= {*LABELS, "Infiltrate"} - {"Infiltration"}
    x, y, w, h = (boxes[c].to_numpy() for c in ("Bbox [x", "y", "w", "h]"))
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 64).all() and (y + h <= 64).all()

    as_json = CliRunner().invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["images"] == 40


def test_bad_arguments_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError):
        write_synthetic(tmp_path, 0, 64, seed=0)
    result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path), "--size", "8"])
    assert result.exit_code == 2
    assert "size" in result.output


def test_refuses_to_overwrite_a_folder_of_other_shards(tmp_path: Path) -> None:
    from chexvision.data.shards import ShardRow, encode_png, write_shard

    image = encode_png(np.zeros((8, 8), np.uint8))
    write_shard(tmp_path / "data" / "train-00000-of-00001.parquet", [ShardRow("00000001_000.png", "Mass", image)])
    with pytest.raises(BadInputError, match="not synthetic"):
        write_synthetic(tmp_path, 4, 32, seed=0)
    assert (tmp_path / "data" / "train-00000-of-00001.parquet").exists()


def test_shipped_nih_statistics_match_the_metadata() -> None:
    """The few-KB statistics the generator reads (and remote kernels carry) are derived from the shipped CSV."""
    import gzip
    from importlib import resources

    import pandas as pd

    from chexvision.data.metadata import resource_path
    from chexvision.data.synthetic import nih_statistics

    csv = resource_path("Data_Entry_2017_v2020.csv.gz")
    assert csv is not None
    cols = ["Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position"]
    expected = nih_statistics(pd.read_csv(csv, usecols=cols))
    shipped = resources.files("chexvision.data").joinpath("resources", "nih_synth_stats.json.gz").read_bytes()
    assert json.loads(gzip.decompress(shipped)) == expected


def _digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_parameters_again_is_nothing_to_do(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path, 12, 32, seed=3, shard_rows=5)
    before = _digest(tmp_path)
    again = write_synthetic(tmp_path, 12, 32, seed=3, shard_rows=5)
    assert again.reused and not first.reused
    assert _digest(tmp_path) == before
    assert (again.boxes, again.label_counts, again.shards) == (first.boxes, first.label_counts, first.shards)


def test_a_killed_run_is_continued_to_the_same_bytes(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "whole", 12, 32, seed=3, shard_rows=5)
    write_synthetic(tmp_path / "killed", 12, 32, seed=3, shard_rows=5)
    (tmp_path / "killed" / "dataset.json").unlink()  # what a run killed before its last step leaves
    (tmp_path / "killed" / "data" / "data-00002-of-00003.parquet").unlink()
    assert not write_synthetic(tmp_path / "killed", 12, 32, seed=3, shard_rows=5).reused
    assert _digest(tmp_path / "killed") == _digest(tmp_path / "whole")


def test_other_parameters_are_refused_naming_them_unless_overwrite(tmp_path: Path) -> None:
    write_synthetic(tmp_path, 12, 32, seed=3)
    before = _digest(tmp_path)
    with pytest.raises(BadInputError) as err:
        write_synthetic(tmp_path, 12, 48, seed=4)
    assert "size 32 (asked 48)" in err.value.message and "seed 3 (asked 4)" in err.value.message
    assert "images" not in err.value.message
    assert _digest(tmp_path) == before
    replaced = write_synthetic(tmp_path, 12, 48, seed=4, overwrite=True)
    assert ShardIndex.open(tmp_path).read_image(0).shape == (48, 48)
    assert json.loads((tmp_path / "dataset.json").read_text())["seed"] == 4 and not replaced.reused


def test_a_folder_that_is_not_a_data_set_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(BadInputError, match=r"'notes\.txt'"):
            write_synthetic(tmp_path, 4, 32, seed=0, overwrite=overwrite)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_cli_says_nothing_to_do_and_refuses_other_parameters(tmp_path: Path) -> None:
    args = ["data", "synth", "--out", str(tmp_path), "--images", "8", "--size", "32", "--workers", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "nothing to do" in again.stdout
    other = CliRunner().invoke(app, [*args, "--seed", "1"])
    assert other.exit_code == 2 and "seed 0 (asked 1)" in other.stderr and "--overwrite" in other.stderr
    assert CliRunner().invoke(app, [*args, "--seed", "1", "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "dataset.json").read_text())["seed"] == 1
