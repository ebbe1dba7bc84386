"""Split faults: `evaluate` refuses (exit 2, one line naming the split and the counts) to score images that were in
the run's training split, and leaves the run directory and the data folder as they were."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.reliability import ExpectCleanError

from chexvision.data.shards import ShardIndex
from chexvision.data.splits import fingerprint, make_split


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    from chexvision.data.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("split-faults")
    write_synthetic(root / "data", 90, 64, 0)
    make_run_dir(root / "run", model="seresnet", split_scheme="patient")
    return root


def _run_with_dataset(base: Path, tmp_path: Path, **fields: object) -> Path:
    """A copy of the run whose run.json "dataset" records `fields` (what training would have written)."""
    run = Path(shutil.copytree(base / "run", tmp_path / "run"))
    doc = json.loads((run / "run.json").read_text())
    doc["dataset"].update(fields)
    (run / "run.json").write_text(json.dumps(doc, indent=2) + "\n")
    return run


def _test_names(data: Path, seed: int = 0) -> list[str]:
    index = ShardIndex.open(data)
    return [index.filenames[i] for i in make_split(index.filenames, "patient", seed=seed)["test"]]


def _args(run: Path, data: Path, out: Path) -> list[str]:
    return ["evaluate", str(run), "--data", str(data), "--out", str(out), "--bootstrap", "0", "--device", "cpu"]


def test_evaluate_refuses_images_the_recorded_training_fingerprint_holds(
    base: Path, tmp_path: Path, expect_clean_error: ExpectCleanError
) -> None:
    test = fingerprint(_test_names(base / "data"))
    run = _run_with_dataset(base, tmp_path, split_fingerprints={"train": test, "val": test, "test": test})
    line = expect_clean_error(
        _args(run, base / "data", tmp_path / "eval"), keep=[run, base / "data"],
        names=["test split", f"({test['count']} images)", f"{test['count']} of them", "training split"],
    )  # fmt: skip
    assert f"training split of {test['count']} images" in line
    assert not (tmp_path / "eval").exists()


def test_evaluate_refuses_when_the_training_split_rule_puts_evaluated_images_in_train(
    base: Path, tmp_path: Path, expect_clean_error: ExpectCleanError
) -> None:
    run = _run_with_dataset(base, tmp_path, seed=1)  # run.json: training drew its split with seed 1, config says 0
    test = _test_names(base / "data")
    # independent count of the leak the refusal must name: images whose sha256("1:<patient>") falls below 0.7
    in_train = sum(int(hashlib.sha256(f"1:{int(n[:8])}".encode()).hexdigest()[:16], 16) / 2**64 < 0.7 for n in test)
    assert in_train > 0
    expect_clean_error(
        _args(run, base / "data", tmp_path / "eval"), keep=[run, base / "data"],
        names=["test split", f"({len(test)} images)", f"{in_train} of them"],
    )  # fmt: skip
    assert not (run / "eval-test").exists() and not (tmp_path / "eval").exists()
