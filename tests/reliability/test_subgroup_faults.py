"""`chexvision evaluate --subgroups` on bad requests: an unknown attribute, or one the metadata does not give, is one
line naming it, exit 2, and nothing written (runs and `--predictions` alike)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support.reliability import ExpectCleanError

from chexvision.labels import LABELS

NAMES = [f"{90000000 + i // 2:08d}_{i % 2:03d}.png" for i in range(12)]  # synthetic ids: not in the NIH metadata


@pytest.fixture
def world(tmp_path: Path) -> Path:
    probs = {f"prob_{name}": [0.05 + 0.07 * ((i * 7 + k) % 13) for i in range(12)] for k, name in enumerate(LABELS)}
    pd.DataFrame({"Image Index": NAMES, **probs}).to_csv(tmp_path / "p.csv", index=False)
    truth = ["Effusion" if i % 3 else "No Finding" for i in range(12)]
    pd.DataFrame({"Image Index": NAMES, "Finding Labels": truth, "sex": ["M", "F"] * 6}).to_csv(
        tmp_path / "m.csv", index=False
    )
    return tmp_path


@pytest.mark.parametrize(
    ("value", "names"),
    [("sex,race", ["'race'", "sex, age, view"]), ("ethnicity", ["'ethnicity'"]), (",", ["subgroup"])],
)
def test_unknown_attribute_with_predictions(
    world: Path, expect_clean_error: ExpectCleanError, value: str, names: list[str]
) -> None:
    args = ["evaluate", "--predictions", str(world / "p.csv"), "--labels", str(world / "m.csv"),
            "--out", str(world / "out"), "--subgroups", value]  # fmt: skip
    expect_clean_error(args, keep=[world], names=names)
    assert not (world / "out").exists()


def test_unknown_attribute_with_runs_fails_before_loading(world: Path, expect_clean_error: ExpectCleanError) -> None:
    # neither the run nor the data exist: the option is refused first
    args = ["evaluate", str(world / "no-run"), "--data", str(world / "no-data"), "--subgroups", "race"]
    expect_clean_error(args, keep=[world], names=["'race'"])


def test_requested_attribute_the_metadata_lacks(world: Path, expect_clean_error: ExpectCleanError) -> None:
    args = ["evaluate", "--predictions", str(world / "p.csv"), "--labels", str(world / "m.csv"),
            "--out", str(world / "out"), "--bootstrap", "0", "--subgroups", "sex,age"]  # fmt: skip
    expect_clean_error(args, keep=[world], names=["no age", "m.csv"])
    assert not (world / "out").exists()
