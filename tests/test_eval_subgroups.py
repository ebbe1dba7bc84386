"""Subgroups and underdiagnosis (`chexvision.evaluate.subgroups`): AUROCs against scikit-learn on the subgroup's
rows, underdiagnosis rates on hand-built cases and against the overall operating point, the rate's CI against a
plain loop over the same patient draws, age-band edges, the JSON shape, where the attributes come from, and
`--subgroups none`."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import bootstrap_samples
from chexvision.evaluate.predictions import Predictions, score_predictions
from chexvision.evaluate.subgroups import (
    AGE_BANDS,
    MIN_GAP_ABNORMAL,
    SHIPPED,
    AttributeTable,
    age_band,
    attribute_table,
    parse_subgroups,
    score_subgroups,
    table_from_index,
)
from chexvision.labels import LABELS, format_labels

runner = CliRunner()
ENTRY_KEYS = {"images", "macro_auc", "macro_auc_ci", "underdiagnosis_rate", "underdiagnosis_ci", "per_class_auc"}


def _predictions(n: int, n_patients: int, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    pids = np.sort(rng.integers(0, n_patients, n)).astype(np.int64)
    y14 = (rng.random((n, 14)) < 0.2).astype(np.float32)
    ybin = (y14.sum(axis=1) > 0).astype(np.float32)
    p14 = np.clip(0.35 * y14 + rng.random((n, 14)) * 0.65, 0, 1)
    pbin = np.clip(0.3 * ybin + rng.random(n) * 0.7, 0, 1)
    names = [f"{90000000 + int(p):08d}_{i:03d}.png" for i, p in enumerate(pids)]
    return Predictions(names, pids, y14, ybin, p14, pbin)


def _table(preds: Predictions, seed: int = 1) -> AttributeTable:
    """Sex per patient, age per image (some missing), view per image."""
    rng = np.random.default_rng(seed)
    sex_of = {int(p): rng.choice(["M", "F"]) for p in np.unique(preds.patient_ids)}
    ages: list[object] = [int(a) for a in rng.integers(5, 95, len(preds))]
    ages[::17] = [None] * len(ages[::17])
    frame = pd.DataFrame(
        {
            "Patient Gender": [sex_of[int(p)] for p in preds.patient_ids],
            "Patient Age": ages,
            "View Position": rng.choice(["PA", "AP", "LL"], len(preds), p=[0.55, 0.4, 0.05]),
        },
        index=preds.filenames,
    )
    return attribute_table(parse_subgroups("auto"), frame, "test frame")


@pytest.mark.parametrize(
    ("age", "band"),
    [(0, "0-19"), (19, "0-19"), (19.9, "0-19"), (20, "20-39"), (39, "20-39"), (40, "40-59"), (59, "40-59"),
     (60, "60-79"), (79, "60-79"), (80, "80+"), (95, "80+"), (120, "80+"), ("19", "0-19"), ("80", "80+"),
     ("058Y", "40-59"), ("080Y", "80+"), ("011M", "0-19"), ("020D", "0-19"), ("019", "0-19"),
     (None, None), (float("nan"), None), (pd.NA, None), (-1, None), (148, None), ("unknown", None)],
)  # fmt: skip
def test_age_band_edges(age: object, band: str | None) -> None:
    assert age_band(age) == band


def test_parse_subgroups() -> None:
    assert parse_subgroups("auto").attributes == ("sex", "age", "view")
    assert not parse_subgroups("auto").explicit
    assert parse_subgroups("none").attributes == ()
    assert parse_subgroups(" View, sex,view ").attributes == ("view", "sex")
    with pytest.raises(BadInputError, match="'race'"):
        parse_subgroups("sex,race")


def test_underdiagnosis_rate_hand_built() -> None:
    # M: 4 abnormal, 2 of them below the 0.5 threshold; F: 3 abnormal, 1 below; normal images never count
    pbin = np.array([0.9, 0.2, 0.8, 0.1, 0.3, 0.9, 0.9, 0.3, 0.7, 0.1])
    ybin = np.array([1, 1, 1, 1, 0, 1, 1, 1, 0, 0], dtype=np.float32)
    sex = ["M", "M", "M", "M", "M", "F", "F", "F", "F", "F"]
    y14 = np.zeros((10, 14), dtype=np.float32)
    y14[:, 2] = ybin
    pids = np.arange(10, dtype=np.int64)
    names = [f"{i:08d}_000.png" for i in range(10)]
    preds = Predictions(names, pids, y14, ybin, np.tile(pbin[:, None], (1, 14)), pbin)
    table = attribute_table(parse_subgroups("sex"), pd.DataFrame({"sex": sex}, index=names), "hand")
    score = {"operating_points": {"youden": {"threshold": 0.5, "fn": 3}}, "fitted_on": "validation"}
    out = score_subgroups(preds, table, score, bootstrap=0)
    assert out["sex"]["M"]["underdiagnosis_rate"] == pytest.approx(2 / 4)
    assert out["sex"]["F"]["underdiagnosis_rate"] == pytest.approx(1 / 3)
    assert (out["sex"]["M"]["missed"], out["sex"]["M"]["abnormal"], out["sex"]["F"]["images"]) == (2, 4, 5)
    assert out["overall"]["underdiagnosis_rate"] == pytest.approx(3 / 7)
    assert out["largest_gap"]["sex"] is None  # fewer than MIN_GAP_ABNORMAL abnormal images in each
    with pytest.raises(RuntimeError):  # decisions that disagree with the operating point's own count
        score_subgroups(preds, table, {"operating_points": {"youden": {"threshold": 0.5, "fn": 4}}}, bootstrap=0)


@pytest.mark.parametrize("cross_fitted", [False, True])
def test_subgroup_aucs_match_sklearn_and_rates_add_up(cross_fitted: bool) -> None:
    test = _predictions(600, 150, seed=3)
    val = None if cross_fitted else _predictions(300, 80, seed=4)
    score = score_predictions(test, val, bootstrap=0, seed=5)
    table = _table(test)
    out = score_subgroups(test, table, score, bootstrap=0, seed=5)
    groups = table.lookup(test.filenames)
    op = score["operating_points"]["youden"]
    assert ("fold_thresholds" in op) is cross_fitted and out["decision"]["fitted_on"] == score["fitted_on"]
    for attribute in ("sex", "age", "view"):
        for name, entry in out[attribute].items():
            rows = groups[attribute] == name
            assert entry["images"] == int(rows.sum())
            expected = {}
            for k, label in enumerate(LABELS):
                y = test.y14[rows, k]
                expected[label] = roc_auc_score(y, test.p14[rows, k]) if 0 < y.sum() < len(y) else None
                assert entry["per_class_auc"][label] == pytest.approx(expected[label], abs=1e-12)
            defined = [v for v in expected.values() if v is not None]
            assert entry["macro_auc"] == pytest.approx(np.mean(defined), abs=1e-12)
            assert entry["binary_auc"] == pytest.approx(roc_auc_score(test.ybin[rows], test.pbin[rows]), abs=1e-12)
    # every image has a sex, so the subgroups' misses add up to the operating point's false negatives
    assert sum(g["missed"] for g in out["sex"].values()) == op["fn"]
    assert out["overall"]["underdiagnosis_rate"] == pytest.approx(1 - op["sensitivity"], abs=1e-12)
    assert out["unknown"]["age"] == len(test.filenames[::17]) and out["unknown"]["view"] > 0


def test_rate_interval_matches_a_loop_over_the_same_patient_draws() -> None:
    test = _predictions(500, 120, seed=7)
    score = score_predictions(test, _predictions(300, 90, seed=8), bootstrap=0)
    table = _table(test)
    out = score_subgroups(test, table, score, bootstrap=200, seed=11)
    rows = table.lookup(test.filenames)["sex"] == "F"
    threshold = score["operating_points"]["youden"]["threshold"]
    abnormal, called = test.ybin[rows] > 0.5, test.pbin[rows] >= threshold
    rates = []
    for idx in bootstrap_samples(test.patient_ids[rows], 200, seed=11):
        if abnormal[idx].any():
            rates.append(np.mean(~called[idx][abnormal[idx]]))
    lo, hi = np.percentile(rates, [2.5, 97.5])
    assert out["sex"]["F"]["underdiagnosis_ci"] == pytest.approx([lo, hi], abs=1e-12)
    assert out["sex"]["F"]["macro_auc_ci"][0] < out["sex"]["F"]["macro_auc"] < out["sex"]["F"]["macro_auc_ci"][1]


def test_largest_gap_names_highest_and_lowest() -> None:
    test = _predictions(900, 300, seed=12)
    score = score_predictions(test, _predictions(300, 90, seed=13), bootstrap=0)
    out = score_subgroups(test, _table(test), score, bootstrap=100, seed=1)
    for attribute in ("sex", "age", "view"):
        gap = out["largest_gap"][attribute]
        eligible = {k: g for k, g in out[attribute].items() if g["abnormal"] >= MIN_GAP_ABNORMAL}
        rates = {k: g["underdiagnosis_rate"] for k, g in eligible.items()}
        assert gap["highest"] == max(rates, key=rates.__getitem__)
        assert gap["lowest"] == min(rates, key=rates.__getitem__)
        assert gap["difference"] == pytest.approx(max(rates.values()) - min(rates.values()))
        hi, lo = gap["highest_ci"], gap["lowest_ci"]
        assert gap["ci_overlap"] == (hi[0] <= lo[1] and lo[0] <= hi[1])


def test_attributes_from_synthetic_shards(tmp_path: Path) -> None:
    from chexvision.data.shards import ShardIndex
    from chexvision.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", 40, 32, 0)
    index = ShardIndex.open(tmp_path / "data")
    table = table_from_index(index, parse_subgroups("auto"), tmp_path / "data")
    assert table.attributes == ("sex", "age", "view")
    assert all(src.startswith("the shards of") for src in table.sources.values())
    groups = table.lookup(index.filenames)
    assert list(groups["age"]) == [age_band(a) for a in index.extra["age"]]
    assert set(groups["sex"]) <= {"M", "F"} and set(groups["view"]) <= {"PA", "AP"}


def _csv_world(
    tmp_path: Path, names: list[str], extra: Mapping[str, Sequence[object]] | None = None
) -> tuple[Path, Path]:
    preds = _predictions(len(names), len(names), seed=2)
    p = pd.DataFrame({"Image Index": names, **{f"prob_{n}": preds.p14[:, k] for k, n in enumerate(LABELS)}})
    labels = [format_labels(n for k, n in enumerate(LABELS) if row[k] > 0.5) for row in preds.y14]
    m = pd.DataFrame({"Image Index": names, "Finding Labels": labels, **(extra or {})})
    p.to_csv(tmp_path / "p.csv", index=False)
    m.to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "p.csv", tmp_path / "m.csv"


def _evaluate(*args: str) -> dict:
    result = runner.invoke(app, ["evaluate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_predictions_json_shape_and_labels_columns(tmp_path: Path) -> None:
    names = [f"{90000000 + i // 2:08d}_{i % 2:03d}.png" for i in range(80)]
    ages = [5 + (i * 7) % 90 for i in range(80)]
    extra: dict[str, Sequence[object]] = {"Patient Age": ages, "Patient Gender": ["M", "F"] * 40,
                                      "View Position": ["PA", "AP", "AP", "PA"] * 20}  # fmt: skip
    p, m = _csv_world(tmp_path, names, extra)
    doc = _evaluate("--predictions", str(p), "--labels", str(m), "--bootstrap", "20", "--out", str(tmp_path / "o"))
    sub = doc["subgroups"]
    assert {"sex", "age", "view", "largest_gap"} <= set(sub)
    assert set(sub["sex"]) == {"M", "F"} and set(sub["age"]) == set(AGE_BANDS) and set(sub["view"]) == {"PA", "AP"}
    for attribute in ("sex", "age", "view"):
        for entry in sub[attribute].values():
            assert set(entry) >= ENTRY_KEYS and isinstance(entry["images"], int)
            assert set(entry["per_class_auc"]) == set(LABELS)
            if entry["images"] > 4:
                assert isinstance(entry["macro_auc"], float) and len(entry["macro_auc_ci"]) == 2
                assert isinstance(entry["underdiagnosis_rate"], float) and len(entry["underdiagnosis_ci"]) == 2
    assert sub["age"]["0-19"]["images"] == sum(a <= 19 for a in ages)
    assert sub["sources"]["age"] == f"the labels file {m}" and "cross-fitted" in sub["decision"]["fitted_on"]
    assert set(sub["largest_gap"]) == {"sex", "age", "view"}
    report = (tmp_path / "o" / "report.md").read_text()
    assert "## Subgroups and underdiagnosis" in report and (tmp_path / "o" / "figures" / "subgroups.png").is_file()
    assert "subgroups" in json.loads((tmp_path / "o" / "metrics.json").read_text())["runs"]["p"]["plain"]


def test_subgroups_none_and_one_attribute(tmp_path: Path) -> None:
    names = [f"{90000000 + i:08d}_000.png" for i in range(30)]
    p, m = _csv_world(tmp_path, names, {"age": [30] * 15 + [70] * 15, "sex": ["M"] * 30})
    assert "subgroups" not in _evaluate("--predictions", str(p), "--labels", str(m), "--bootstrap", "0",
                                        "--subgroups", "none")  # fmt: skip
    sub = _evaluate("--predictions", str(p), "--labels", str(m), "--bootstrap", "0", "--subgroups", "age")["subgroups"]
    assert sub["attributes"] == ["age"] and "sex" not in sub
    assert sub["age"]["20-39"]["images"] == 15 and sub["age"]["60-79"]["images"] == 15
    # by default, an attribute that neither the labels nor the NIH metadata give is left out (view here)
    assert _evaluate("--predictions", str(p), "--labels", str(m), "--bootstrap", "0")["subgroups"]["attributes"] == [
        "sex", "age"
    ]  # fmt: skip


def test_nih_names_fall_back_to_the_shipped_metadata(tmp_path: Path) -> None:
    from chexvision.data.metadata import load_metadata

    meta = load_metadata().iloc[:60]
    p, m = _csv_world(tmp_path, list(meta["filename"]))  # labels CSV without age/sex/view columns
    sub = _evaluate("--predictions", str(p), "--labels", str(m), "--bootstrap", "0")["subgroups"]
    assert sub["sources"] == {"sex": SHIPPED, "age": SHIPPED, "view": SHIPPED}
    assert sub["sex"]["M"]["images"] == int((meta["sex"] == "M").sum())
    assert sub["view"]["AP"]["images"] == int((meta["view"] == "AP").sum())
    assert sum(g["images"] for g in sub["age"].values()) == 60
    # a few names that merely collide with NIH names (10 of 60 here) do not make a data set NIH
    mixed = list(meta["filename"].iloc[:10]) + [f"{90000000 + i:08d}_000.png" for i in range(50)]
    p, m = _csv_world(tmp_path, mixed)
    assert "subgroups" not in _evaluate("--predictions", str(p), "--labels", str(m), "--bootstrap", "0")


@pytest.mark.slow  # evaluates a tiny run on synthetic shards (~5-10 s)
def test_runs_mode_scores_subgroups_from_the_shards(tmp_path: Path, make_run_dir: Callable[..., Path]) -> None:
    from chexvision.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", 90, 64, 0)
    run = make_run_dir(tmp_path / "run", run_id="run", model="seresnet", seed=0, split_scheme="patient")
    doc = _evaluate(str(run), "--data", str(tmp_path / "data"), "--bootstrap", "10", "--out", str(tmp_path / "o"),
                    "--device", "cpu", "--cam-samples", "0")  # fmt: skip
    sub = doc["subgroups"]
    assert sub["attributes"] == ["sex", "age", "view"] and sub["decision"]["fitted_on"] == "validation"
    assert sum(g["images"] for g in sub["sex"].values()) == doc["n_images"]
    assert "subgroups" in json.loads((run / "metrics.json").read_text())["test"]


def test_report_rows_gap_sentence_and_forest_png() -> None:
    from chexvision.evaluate.subgroup_report import forest_figure, gap_sentence, subgroup_rows

    test = _predictions(900, 300, seed=12)
    score = score_predictions(test, _predictions(300, 90, seed=13), bootstrap=0)
    score["subgroups"] = sub = score_subgroups(test, _table(test), score, bootstrap=50, seed=1)
    rows = subgroup_rows(score)
    assert len(rows) == 2 + 5 + 2
    m = sub["sex"]["M"]
    assert rows[0][:5] == ["Sex", "M", str(m["images"]), str(m["patients"]), str(m["abnormal"])]
    assert rows[0][-1].endswith(f"({m['missed']}/{m['abnormal']})")
    assert rows[0][-1].startswith(f"{m['underdiagnosis_rate']:.3f} [")
    apart = {"highest": "F", "lowest": "M", "highest_rate": 0.4, "lowest_rate": 0.1, "difference": 0.3,
             "highest_ci": [0.3, 0.5], "lowest_ci": [0.05, 0.2], "ci_overlap": False}  # fmt: skip
    assert gap_sentence("sex", apart, 10)["warn"] and "do not overlap" in gap_sentence("sex", apart, 10)["text"]
    assert not gap_sentence("sex", {**apart, "ci_overlap": True}, 10)["warn"]
    assert "fewer than two subgroups" in gap_sentence("age", None, 10)["text"]
    assert forest_figure("model", score).startswith(b"\x89PNG")
