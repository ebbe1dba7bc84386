from __future__ import annotations

import numpy as np
import pytest

from chexvision.labels import (
    LABELS,
    NUM_LABELS,
    canonical_label,
    format_labels,
    is_abnormal,
    label_matrix,
    labels_to_vector,
    parse_labels,
    patient_id_from_filename,
)


def test_canonical_order_and_count() -> None:
    assert NUM_LABELS == 14
    assert LABELS[0] == "Atelectasis" and LABELS[-1] == "Hernia" and LABELS[12] == "Pleural_Thickening"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No Finding", []),
        ("", []),
        ("Mass|Effusion", ["Effusion", "Mass"]),  # canonical order, not input order
        ("Pleural Thickening|Hernia", ["Pleural_Thickening", "Hernia"]),
        ("Nodule|Nodule", ["Nodule"]),
    ],
)
def test_parse_labels(text: str, expected: list[str]) -> None:
    assert parse_labels(text) == expected


def test_format_round_trip_and_vectors() -> None:
    assert format_labels([]) == "No Finding"
    assert format_labels(["Mass", "pleural thickening", "Atelectasis"]) == "Atelectasis|Mass|Pleural_Thickening"
    vec = labels_to_vector("Cardiomegaly|Hernia")
    assert vec.dtype == np.float32 and vec.sum() == 2 and vec[1] == 1 and vec[13] == 1
    assert label_matrix(["No Finding", "Mass"]).tolist()[1][4] == 1.0
    assert is_abnormal("No Finding") == 0 and is_abnormal("Edema") == 1
    assert canonical_label("prob_Pleural_Thickening") == "Pleural_Thickening"


def test_unknown_label_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown label 'Covid'.*Atelectasis"):
        parse_labels("Covid|Mass")


def test_patient_ids() -> None:
    assert patient_id_from_filename("00012345_003.png") == 12345
    assert patient_id_from_filename("images/90000001_000.png") == 90000001
    with pytest.raises(ValueError, match="patient id"):
        patient_id_from_filename("scan.png")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("Covid19", "'Covid19'"),
        ("no finding", "did you mean 'No Finding'"),  # wrongly cased: reported, never guessed
        ("effusion|Mass", "did you mean 'Effusion'"),
        ("Pleural Thickening", "did you mean 'Pleural_Thickening'"),
        ("Mass|No Finding", "mixed with findings"),
        ("", "empty"),
        (None, "empty"),
    ],
)
def test_stored_label_strings_must_be_exact(text: object, named: str) -> None:
    from chexvision.labels import label_string_problem

    problem = label_string_problem(text)
    assert problem is not None and named in problem


def test_exact_label_strings_pass() -> None:
    from chexvision.labels import label_string_problem

    assert all(label_string_problem(t) is None for t in ["No Finding", "Effusion|Mass", "Pleural_Thickening"])
