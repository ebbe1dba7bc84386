"""`chexvision evaluate --predictions` on bad predictions and labels files: one line naming the file, the column
or the images, exit 2, nothing written; exact duplicate rows pass with one warning line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from support.reliability import ExpectCleanError, invoke

from chexvision.labels import LABELS

NAMES = [f"{90000000 + i // 2:08d}_{i % 2:03d}.png" for i in range(12)]
TRUTH = ["Effusion" if i % 3 == 0 else ("Mass|Nodule" if i % 3 == 1 else "No Finding") for i in range(12)]


def _probs(n: int = 12) -> dict[str, list[object]]:
    return {f"prob_{name}": [round(0.05 + 0.07 * ((i * 7 + k) % 13), 3) for i in range(n)] for k, name in
            enumerate(LABELS)}  # fmt: skip


def _good() -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        pd.DataFrame({"Image Index": NAMES, **_probs()}),
        pd.DataFrame({"Image Index": NAMES, "Finding Labels": TRUTH}),
    )


def _missing_column(p: pd.DataFrame, m: pd.DataFrame) -> None:
    del p["prob_Hernia"]


def _text(p: pd.DataFrame, m: pd.DataFrame) -> None:
    p["prob_Mass"] = p["prob_Mass"].astype(object)
    p.loc[3, "prob_Mass"] = "high"


def _above_one(p: pd.DataFrame, m: pd.DataFrame) -> None:
    p.loc[4, "prob_Edema"] = 3.2  # a logit, not a probability


def _negative(p: pd.DataFrame, m: pd.DataFrame) -> None:
    p.loc[1, "prob_Edema"] = -0.1


def _blank(p: pd.DataFrame, m: pd.DataFrame) -> None:
    p.loc[2, "prob_Fibrosis"] = None


def _no_overlap(p: pd.DataFrame, m: pd.DataFrame) -> None:
    m["Image Index"] = [n.replace("9000", "8000") for n in NAMES]


def _conflicting_duplicate(p: pd.DataFrame, m: pd.DataFrame) -> None:
    row = p.iloc[[5]].copy()
    row["prob_Effusion"] = 0.999
    p.loc[len(p)] = row.iloc[0]


def _no_image_column(p: pd.DataFrame, m: pd.DataFrame) -> None:
    p.columns = ["picture", *p.columns[1:]]


def _no_label_column(p: pd.DataFrame, m: pd.DataFrame) -> None:
    m.columns = ["Image Index", "findings"]


def _typo(p: pd.DataFrame, m: pd.DataFrame) -> None:
    m.loc[4, "Finding Labels"] = "Effusion|Nodle"


Edit = Callable[[pd.DataFrame, pd.DataFrame], None]
Content = tuple[str, str]  # (file, its whole text)
HEADER = ",".join(["Image Index", *_probs()]) + "\n"
CASES: list[tuple[str, Edit | Content, list[str]]] = [
    ("missing probability column", _missing_column, ["p.csv", "Hernia"]),
    ("text in a probability column", _text, ["p.csv", "'prob_Mass'"]),
    ("probability above 1", _above_one, ["p.csv", "'prob_Edema'", "[0, 1]"]),
    ("negative probability", _negative, ["'prob_Edema'"]),
    ("blank probability", _blank, ["'prob_Fibrosis'"]),
    ("no image-name column", _no_image_column, ["p.csv", "image-name column"]),
    ("no predicted image in the labels", _no_overlap, ["none of the 12", "m.csv"]),
    ("one image twice with different rows", _conflicting_duplicate, ["p.csv", NAMES[5], "different"]),
    ("labels without a label column", _no_label_column, ["m.csv", "label column"]),
    ("unknown finding in the labels", _typo, ["m.csv", "line 6", "'Nodle'"]),
    ("predictions header without rows", ("p.csv", HEADER), ["p.csv", "no rows"]),
    ("empty predictions file", ("p.csv", ""), ["p.csv"]),
    ("empty labels file", ("m.csv", ""), ["m.csv"]),
]


@pytest.mark.parametrize(("case", "fault", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_predictions_or_labels_are_one_line_errors(
    tmp_path: Path, expect_clean_error: ExpectCleanError, case: str, fault: Edit | Content, names: list[str]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    preds, meta = _good()
    if callable(fault):
        fault(preds, meta)
    preds.to_csv(inputs / "p.csv", index=False)
    meta.to_csv(inputs / "m.csv", index=False)
    if isinstance(fault, tuple):
        (inputs / fault[0]).write_text(fault[1])
    out = tmp_path / "out"
    args = ["evaluate", "--predictions", str(inputs / "p.csv"), "--labels", str(inputs / "m.csv"), "--out", str(out)]
    expect_clean_error([*args, "--bootstrap", "5"], keep=[inputs], names=names)
    assert not out.exists(), case


def test_exact_duplicate_rows_are_scored_once_with_one_warning(tmp_path: Path) -> None:
    preds, meta = _good()
    preds = pd.concat([preds, preds.iloc[[2, 7]]], ignore_index=True)
    preds.to_csv(tmp_path / "p.csv", index=False)
    meta.to_csv(tmp_path / "m.csv", index=False)
    outcome = invoke(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--labels", str(tmp_path / "m.csv"),
                      "--bootstrap", "5", "--json"])  # fmt: skip
    assert outcome.exit_code == 0, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "2 images" in lines[0], outcome.stderr
    doc = json.loads(outcome.stdout)
    assert doc["n_images"] == 12 and doc["binary_source"] == "max of the 14 finding probabilities"
