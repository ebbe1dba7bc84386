"""The external label mapping (chexvision.data.external.mapping) against torchxrayvision's published relabelling.

torchxrayvision's dataset classes (`CheX_Dataset`, `MIMIC_Dataset`, `PC_Dataset`) are run on the same small CSVs,
in each set's published layout, as our readers, and their labels (relabelled onto the 14 NIH findings with their
`relabel_dataset`) are compared cell by cell with ours: every difference must be one `XRV_DIFFERENCES` documents,
and every documented difference must show. Also: the PadChest `Labels` parser, and the table's own invariants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_external_build import (
    CHEXPERT_ROWS,
    chexpert_row,
    padchest_row,
    write_chexpert,
    write_mimic,
    write_padchest,
)

from chexvision.data.external.build import read_source
from chexvision.data.external.mapping import (
    CHEXPERT_COLUMNS,
    CHEXPERT_NOT_MAPPED,
    CHEXPERT_TO_NIH,
    PADCHEST_NOT_MAPPED,
    PADCHEST_TO_NIH,
    XRV_DIFFERENCES,
    chexpert_classes,
    padchest_classes,
)
from chexvision.data.external.padchest import padchest_nih_labels, parse_labels_list
from chexvision.labels import LABELS


def test_tables_are_complete_and_in_nih_names() -> None:
    assert set(CHEXPERT_TO_NIH) | set(CHEXPERT_NOT_MAPPED) | {"No Finding"} == set(CHEXPERT_COLUMNS)
    assert not set(CHEXPERT_TO_NIH) & set(CHEXPERT_NOT_MAPPED)
    assert set(CHEXPERT_TO_NIH.values()) <= set(LABELS) and len(set(CHEXPERT_TO_NIH.values())) == 7
    assert all(set(v) <= set(LABELS) and v for v in PADCHEST_TO_NIH.values())
    assert not set(PADCHEST_TO_NIH) & set(PADCHEST_NOT_MAPPED)
    assert all(t == t.strip().lower() for t in [*PADCHEST_TO_NIH, *PADCHEST_NOT_MAPPED])
    assert padchest_classes() == LABELS  # PadChest names every NIH finding
    assert chexpert_classes() == ("Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax",
                                  "Consolidation", "Edema")  # fmt: skip


def test_padchest_labels_parser_reads_the_list_grammar_only() -> None:
    assert parse_labels_list("['normal']") == ["normal"]
    assert parse_labels_list("[' pleural effusion', \"cardiomegaly\" ,'']") == [" pleural effusion", "cardiomegaly", ""]
    assert parse_labels_list("[]") == [] and parse_labels_list(" [ ] ") == []
    for bad in ("normal", "['a',]", "['a' 'b']", "['a', b]", "['a'", "[__import__('os')]", "['a'] + ['b']", "{'a'}"):
        with pytest.raises(ValueError):
            parse_labels_list(bad)
    assert padchest_nih_labels([" Pleural Effusion", "pseudonodule", "COPD signs"]) == {"Effusion"}


xrv = pytest.importorskip("torchxrayvision", reason="torchxrayvision (dev extra) checks the mapping")


def _xrv_labels(dataset: object) -> np.ndarray:
    xrv.datasets.relabel_dataset(list(LABELS), dataset, silent=True)
    return np.asarray(dataset.labels, dtype=np.float64)  # type: ignore[attr-defined]


def _compare(ours: np.ndarray, theirs: np.ndarray) -> list[tuple[int, str, float, float]]:
    """(row, class, ours, theirs) of each cell where the labels differ (NaN = missing on both sides is equal)."""
    same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs))
    return [(int(i), LABELS[int(k)], float(ours[i, k]), float(theirs[i, k])) for i, k in np.argwhere(~same)]


def test_chexpert_matches_torchxrayvision(tmp_path: Path) -> None:
    rows = [*CHEXPERT_ROWS]
    for n, column in enumerate(CHEXPERT_COLUMNS[1:], start=10):  # every observation positive, negative, uncertain
        for value in ("1.0", "0.0", "-1.0", ""):
            rows.append(chexpert_row(n, 1 + len(rows), 1, ap_pa="PA", **{column: value}))
    images, csv_path = write_chexpert(tmp_path, rows)
    ours = read_source("chexpert", images, csv_path, views="all")
    theirs = xrv.datasets.CheX_Dataset(str(images), str(csv_path), views=["PA", "AP", "L"], unique_patients=False)
    order = {p: i for i, p in enumerate(ours.frame["source_path"])}
    assert [order[p] for p in theirs.csv["Path"]] == list(range(len(rows)))
    assert _compare(ours.label_matrix().astype(np.float64), _xrv_labels(theirs)) == []


def test_mimic_matches_torchxrayvision(tmp_path: Path) -> None:
    images, labels, metadata = write_mimic(tmp_path)
    ours = read_source("mimic-cxr-jpg", images, labels, metadata=metadata)
    theirs = xrv.datasets.MIMIC_Dataset(str(images / "files"), str(labels), str(metadata), views=["PA", "AP"],
                                        unique_patients=False)  # fmt: skip
    dicoms = [f.rsplit("_", 1)[1].removesuffix(".jpg") for f in ours.frame["filename"]]
    theirs_rows = [list(theirs.csv["dicom_id"]).index(d) for d in dicoms]
    assert len(theirs_rows) == len(theirs.csv) == 3
    assert _compare(ours.label_matrix().astype(np.float64), _xrv_labels(theirs)[theirs_rows]) == []


def test_padchest_matches_torchxrayvision_except_where_documented(tmp_path: Path) -> None:
    terms = [*PADCHEST_TO_NIH, *PADCHEST_NOT_MAPPED, "normal", "COPD signs"]
    rows = [padchest_row(f"{1000 + i}_{i:03d}.png", str(5000 + i), f"['{t}']") for i, t in enumerate(terms)]
    rows.append(padchest_row("2000_x.png", "9", "[' pleural effusion', ' pneumonia']"))  # leading spaces, as published
    images, csv_path = write_padchest(tmp_path, rows)
    ours = read_source("padchest", images, csv_path)
    theirs = xrv.datasets.PC_Dataset(str(images / "0"), str(csv_path), views=["PA", "AP", "AP Supine"],
                                     unique_patients=False)  # fmt: skip
    ids = [f.split("_", 1)[1] for f in ours.frame["filename"]]
    theirs_rows = [list(theirs.csv["ImageID"]).index(i) for i in ids]
    assert len(theirs_rows) == len(rows)
    term_of = {r["ImageID"]: r["Labels"][2:-2] for r in rows}
    found: set[str] = set()
    for row, label, _, _ in _compare(ours.label_matrix().astype(np.float64), _xrv_labels(theirs)[theirs_rows]):
        term = term_of[ids[row]]
        assert ("padchest", term) in XRV_DIFFERENCES, f"{term!r} -> {label}: differs from torchxrayvision"
        found.add(term)
    documented = {t for source, t in XRV_DIFFERENCES if source == "padchest"}
    assert found == documented  # each documented difference is real
