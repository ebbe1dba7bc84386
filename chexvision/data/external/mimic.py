"""MIMIC-CXR-JPG 2.0.0 (Johnson et al. 2019; PhysioNet): labels per study, views per image.

`--labels mimic-cxr-2.0.0-chexpert.csv` (or `-negbio.csv`): `subject_id,study_id` and the CheXpert labeller's 14
observations (1 / 0 / -1 / blank), one row per study; its values follow `chexpert.labeller_labels` (the same
labeller). `--metadata mimic-cxr-2.0.0-metadata.csv`: `dicom_id,subject_id,study_id,PerformedProcedureStepDescription,
ViewPosition,Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,
PatientOrientationCodeSequence_CodeMeaning`, one row per image. Each image takes its study's labels; an image whose
study has no label row (no findings or impression section to label) is left out and counted. Frontal:
`ViewPosition` `PA` or `AP`. Images: `files/p10/p10000032/s50414267/<dicom_id>.jpg` under `--images` (the folder
holding `files/`, or `files/` itself). Age and sex are not in these files: `--patients` takes MIMIC-IV's
`patients.csv` (`subject_id,gender,anchor_age,anchor_year,...`); the age at the study is `anchor_age` plus the
years from `anchor_year` to the (equally shifted) `StudyDate`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from chexvision.data.external.chexpert import labeller_labels
from chexvision.data.external.mapping import CHEXPERT_COLUMNS, chexpert_classes
from chexvision.data.external.table import (
    PATIENT_ID_BASE,
    ExternalTable,
    first_existing,
    read_source_csv,
    require_columns,
)
from chexvision.errors import BadInputError

__all__ = ["LABEL_COLUMNS", "METADATA_COLUMNS", "PATIENT_COLUMNS", "read_mimic"]

LABEL_COLUMNS = ("subject_id", "study_id", *CHEXPERT_COLUMNS)
METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
PATIENT_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year")
FRONTAL = ("PA", "AP")


def _ids(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna().to_numpy() | (values.to_numpy() % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{path}: {column} {frame[column].iloc[row]!r} (line {row + 2}) is no whole number",
                            f"pass the file as published ({column} holds integers)")  # fmt: skip
    return values.to_numpy(dtype=np.int64)


def read_mimic(
    images: Path,
    labels_csv: Path,
    metadata_csv: Path | None,
    *,
    patients_csv: Path | None = None,
    views: str = "frontal",
    uncertain: str = "ignore",
) -> ExternalTable:
    """The images of MIMIC-CXR-JPG found under `images`, with NIH labels (see the module docstring)."""
    if metadata_csv is None:
        raise BadInputError(
            "--source mimic-cxr-jpg needs --metadata mimic-cxr-2.0.0-metadata.csv",
            "the labels are per study; the metadata lists each study's images and views",
        )
    labels = read_source_csv(labels_csv, "MIMIC-CXR-JPG labels CSV")
    require_columns(labels, LABEL_COLUMNS, labels_csv, "MIMIC-CXR-JPG labels CSV")
    meta = read_source_csv(metadata_csv, "MIMIC-CXR-JPG metadata CSV")
    require_columns(meta, METADATA_COLUMNS, metadata_csv, "MIMIC-CXR-JPG metadata CSV")
    labels["subject_id"], labels["study_id"] = (
        _ids(labels, "subject_id", labels_csv),
        _ids(labels, "study_id", labels_csv),
    )
    meta["subject_id"], meta["study_id"] = _ids(meta, "subject_id", metadata_csv), _ids(meta, "study_id", metadata_csv)
    if labels.duplicated(["subject_id", "study_id"]).any():
        row = int(np.flatnonzero(labels.duplicated(["subject_id", "study_id"]).to_numpy())[0])
        raise BadInputError(f"{labels_csv}: study {labels['study_id'].iloc[row]} is labelled twice (line {row + 2})",
                            "pass the labels CSV as published: one row per study")  # fmt: skip
    counts = {"rows": len(meta)}
    if views == "frontal":
        meta = meta[meta["ViewPosition"].isin(FRONTAL)]
        counts["not_frontal"] = counts["rows"] - len(meta)
    nih, counts["uncertain_cells"] = labeller_labels(labels, labels_csv, uncertain)
    study_labels = pd.concat([labels[["subject_id", "study_id"]], nih], axis=1)
    joined = meta.merge(study_labels, on=["subject_id", "study_id"], how="inner", validate="many_to_one")
    counts["no_study_labels"] = len(meta) - len(joined)
    subjects = joined["subject_id"].to_numpy()
    out_of_range = (subjects < PATIENT_ID_BASE["mimic-cxr-jpg"]) | (subjects >= PATIENT_ID_BASE["chexpert"])
    if out_of_range.any():
        raise BadInputError(f"{labels_csv}: subject_id {int(subjects[out_of_range][0])} is outside 10000000-19999999",
                            "pass MIMIC-CXR-JPG's own CSVs (subject ids are 8 digits starting with 1)")  # fmt: skip
    rel = [
        f"p{str(s)[:2]}/p{s}/s{t}/{d}.jpg"
        for s, t, d in zip(subjects, joined["study_id"], joined["dicom_id"], strict=True)
    ]
    frame = pd.DataFrame(
        {
            "source_path": [f"files/{r}" for r in rel],
            "filename": [
                f"{s}_{t}_{d}.jpg" for s, t, d in zip(subjects, joined["study_id"], joined["dicom_id"], strict=True)
            ],
            "patient_id": subjects,
            "view": [v if isinstance(v, str) and v else None for v in joined["ViewPosition"]],
        }
    )
    frame["age"], frame["sex"] = _demographics(joined, patients_csv)
    frame = pd.concat([frame, joined[list(nih.columns)]], axis=1)
    frame["path"] = first_existing(images, [list(frame["source_path"]), rel])
    missing = frame["path"].isna()
    return ExternalTable(
        "mimic-cxr-jpg",
        frame[~missing].reset_index(drop=True),
        chexpert_classes(),
        counts={**counts, "image_missing": int(missing.sum())},
        missing_images=list(frame.loc[missing, "source_path"]),
        settings={"views": views, "uncertain": uncertain, "patients": bool(patients_csv)},
    )


def _demographics(joined: pd.DataFrame, patients_csv: Path | None) -> tuple[list[int | None], list[str | None]]:
    """(age at the study, sex) per image from MIMIC-IV patients.csv; all None without it."""
    if patients_csv is None:
        return [None] * len(joined), [None] * len(joined)
    patients = read_source_csv(patients_csv, "MIMIC-IV patients CSV")
    require_columns(patients, PATIENT_COLUMNS, patients_csv, "MIMIC-IV patients CSV")
    patients["subject_id"] = _ids(patients, "subject_id", patients_csv)
    by_subject = patients.drop_duplicates("subject_id").set_index("subject_id")
    found = by_subject.reindex(joined["subject_id"].to_numpy())
    anchor_age = pd.to_numeric(found["anchor_age"], errors="coerce").to_numpy(dtype=np.float64)
    anchor_year = pd.to_numeric(found["anchor_year"], errors="coerce").to_numpy(dtype=np.float64)
    study_year = pd.to_numeric(joined["StudyDate"].astype(str).str[:4], errors="coerce").to_numpy(dtype=np.float64)
    age = anchor_age + (study_year - anchor_year)
    ages = [int(a) if np.isfinite(a) and 0 <= a <= 120 else None for a in age]
    sexes = [g if g in ("M", "F") else None for g in found["gender"]]
    return ages, sexes
