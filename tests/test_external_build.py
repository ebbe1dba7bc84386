"""`chexvision data build --source chexpert|mimic-cxr-jpg|padchest` (issue 15 item 3) on small CSVs in each set's
exact published column layout, with real NIH X-rays (tests/fixtures/nih-sample) standing in for the images; then
`chexvision evaluate` on such a folder scores only the classes it defines."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.reliability import check_clean_error, invoke

from chexvision.data.external.build import read_source
from chexvision.data.shards import ShardIndex, find_shards
from chexvision.data.splits import make_split, patient_ids
from chexvision.labels import LABELS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nih-sample"

CHEXPERT_HEADER = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]
MIMIC_LABELS_HEADER = ["subject_id", "study_id", *CHEXPERT_HEADER[5:]]
MIMIC_META_HEADER = [
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
]
PADCHEST_HEADER = [
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "MethodProjection",
    "Pediatric",
    "Modality_DICOM",
    "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM",
    "PixelRepresentation_DICOM",
    "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM",
    "BitsStored_DICOM",
    "WindowCenter_DICOM",
    "WindowWidth_DICOM",
    "Rows_DICOM",
    "Columns_DICOM",
    "XRayTubeCurrent_DICOM",
    "Exposure_DICOM",
    "ExposureInuAs_DICOM",
    "ExposureTime",
    "RelativeXRayExposure_DICOM",
    "ReportID",
    "Report",
    "MethodLabel",
    "Labels",
    "Localizations",
    "LabelsLocalizationsBySentence",
    "labelCUIS",
    "LocalizationsCUIS",
]


def _sample(i: int) -> np.ndarray:
    """One of the five real NIH X-rays, gray, made non-square (external sets are not square)."""
    files = sorted(FIXTURES.glob("*.png"))
    img = cv2.imread(str(files[i % len(files)]), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(img, (112, 128), interpolation=cv2.INTER_AREA)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


# --- CheXpert ---------------------------------------------------------------------------------------------------


def chexpert_row(patient: int, study: int, view: int, frontal: bool = True, ap_pa: str = "AP", **labels: str) -> dict:
    kind = "frontal" if frontal else "lateral"
    row = {
        "Path": f"CheXpert-v1.0/train/patient{patient:05d}/study{study}/view{view}_{kind}.jpg",
        "Sex": "Female" if patient % 2 else "Male",
        "Age": str(40 + patient % 50),
        "Frontal/Lateral": "Frontal" if frontal else "Lateral",
        "AP/PA": ap_pa if frontal else "",
    }
    row.update({k.replace("_", " "): v for k, v in labels.items()})
    return row


def write_chexpert(root: Path, rows: Sequence[dict[str, str]], name: str = "train.csv") -> tuple[Path, Path]:
    """(images folder, CSV): the CSV in the published layout; every image a real X-ray as a JPEG at its Path."""
    images = root / "chexpert"
    for i, row in enumerate(rows):
        path = images / row["Path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _sample(i))
    return images, _write_csv(root / "CheXpert-v1.0" / name, CHEXPERT_HEADER, rows)


CHEXPERT_ROWS = [
    chexpert_row(1, 1, 1, **{"No Finding": "1.0", "Support Devices": "1.0", "Pneumothorax": "0.0"}),
    chexpert_row(2, 1, 1, ap_pa="PA", Cardiomegaly="-1.0", Lung_Opacity="1.0", Edema="-1.0", Pleural_Effusion="1.0"),
    chexpert_row(2, 1, 2, frontal=False, Cardiomegaly="-1.0", Pleural_Effusion="1.0"),
    chexpert_row(3, 1, 1, Atelectasis="1.0", Pneumonia="0.0", Lung_Lesion="1.0", Pleural_Other="1.0"),
    chexpert_row(4, 2, 1, Consolidation="1.0", Pneumothorax="-1.0", Fracture="1.0"),
]


def test_chexpert_labels_views_ids_and_uncertainty(tmp_path: Path) -> None:
    images, labels = write_chexpert(tmp_path, CHEXPERT_ROWS)
    table = read_source("chexpert", images, labels)
    frame = table.frame.set_index("source_path")
    assert len(frame) == 4 and table.counts["not_frontal"] == 1  # the lateral view is left out
    y = frame[list(LABELS)]
    first = y.loc[CHEXPERT_ROWS[0]["Path"]]
    mapped = ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax", "Consolidation", "Edema"]
    assert (first[mapped] == 0).all() and first.drop(mapped).isna().all()  # No Finding: mapped negative, rest missing
    second = y.loc[CHEXPERT_ROWS[1]["Path"]]
    assert second["Effusion"] == 1 and np.isnan(second["Cardiomegaly"]) and np.isnan(second["Edema"])
    assert np.isnan(second["Atelectasis"]) and np.isnan(second["Infiltration"])  # blank / Lung Opacity: missing
    third = y.loc[CHEXPERT_ROWS[3]["Path"]]
    assert third["Atelectasis"] == 1 and third["Pneumonia"] == 0
    assert np.isnan(third["Nodule"]) and np.isnan(third["Mass"]) and np.isnan(third["Pleural_Thickening"])
    row = frame.loc[CHEXPERT_ROWS[1]["Path"]]
    assert row["filename"] == "20000002_1_view1_frontal.jpg" and row["patient_id"] == 20000002
    assert (row["sex"], row["age"], row["view"]) == ("M", 42, "PA")
    assert patient_ids(list(table.frame["filename"])).tolist() == list(table.frame["patient_id"])

    zeros = read_source("chexpert", images, labels, uncertain="zeros").frame.set_index("source_path")
    ones = read_source("chexpert", images, labels, uncertain="ones", views="all").frame.set_index("source_path")
    assert zeros.loc[CHEXPERT_ROWS[1]["Path"], "Cardiomegaly"] == 0 and ones.loc[CHEXPERT_ROWS[1]["Path"], "Edema"] == 1
    assert len(ones) == 5 and ones.loc[CHEXPERT_ROWS[2]["Path"], "view"] == "LATERAL"
    assert np.isnan(zeros.loc[CHEXPERT_ROWS[1]["Path"], "Atelectasis"])  # blank stays missing under every policy


def test_chexpert_build_writes_shards_dataset_json_and_labels_csv(tmp_path: Path) -> None:
    images, labels = write_chexpert(tmp_path, CHEXPERT_ROWS)
    out = tmp_path / "out"
    result = invoke(["data", "build", "--source", "chexpert", "--images", str(images), "--labels", str(labels),
                     "--out", str(out), "--size", "64", "--workers", "1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["images"] == 4 and doc["counts"]["not_frontal"] == 1 and doc["classes"] == []
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["source"] == "chexpert" and meta["default_split_scheme"] == "patient" and meta["clahe"] is True
    assert meta["classes_any"] == ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax",
                                   "Consolidation", "Edema"]  # fmt: skip
    index = ShardIndex.open(out)  # our reader reads them like any shard folder
    assert len(index) == 4 and index.extra["sex"].count("M") == 2
    img = index.read_image(0)
    assert img.shape == (64, 64) and img.dtype == np.uint8 and img.std() > 10  # a real X-ray, squashed to 64 px
    table = pq.read_table(find_shards(out)[0]).to_pandas().set_index("filename")
    second = table.loc["20000002_1_view1_frontal.jpg"]
    assert second["labels"] == "Effusion"
    assert second["classes"] == "Effusion"  # labelled (1 or 0): not blank, not uncertain
    csv_labels = pd.read_csv(out / "labels.csv").set_index("filename")
    assert csv_labels.loc["20000002_1_view1_frontal.jpg", "Effusion"] == 1
    assert np.isnan(csv_labels.loc["20000002_1_view1_frontal.jpg", "Cardiomegaly"])
    again = invoke(["data", "build", "--source", "chexpert", "--images", str(images), "--labels", str(labels),
                    "--out", str(out), "--size", "64", "--workers", "1", "--json"])  # fmt: skip
    assert json.loads(again.stdout)["resumed_shards"] == 1  # same inputs: nothing rebuilt


# --- MIMIC-CXR-JPG ----------------------------------------------------------------------------------------------

MIMIC_DICOMS = {
    # dicom_id: (subject, study, ViewPosition)
    "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014": (10000032, 50414267, "PA"),
    "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962": (10000032, 50414267, "LATERAL"),
    "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab": (10000032, 53189527, "AP"),
    "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714": (10000764, 57375967, "AP"),
    "fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818": (10000898, 50771383, ""),
    "ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c": (10000935, 51178377, "PA"),  # a study without labels
}


def write_mimic(root: Path) -> tuple[Path, Path, Path]:
    """(images folder, chexpert CSV, metadata CSV) as MIMIC-CXR-JPG 2.0.0 publishes them."""
    images = root / "mimic-cxr-jpg" / "2.0.0"
    meta_rows = []
    for i, (dicom, (subject, study, view)) in enumerate(MIMIC_DICOMS.items()):
        path = images / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _sample(i))
        meta_rows.append({"dicom_id": dicom, "subject_id": str(subject), "study_id": str(study),
                          "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                          "Rows": "3056", "Columns": "2544", "StudyDate": "21800506", "StudyTime": "213014.531",
                          "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                          "ViewCodeSequence_CodeMeaning": "postero-anterior",
                          "PatientOrientationCodeSequence_CodeMeaning": "Erect"})  # fmt: skip
    labels = [
        {"subject_id": "10000032", "study_id": "50414267", "No Finding": "1.0"},
        {
            "subject_id": "10000032",
            "study_id": "53189527",
            "Cardiomegaly": "1.0",
            "Edema": "-1.0",
            "Atelectasis": "0.0",
        },
        {"subject_id": "10000764", "study_id": "57375967", "Pneumonia": "-1.0", "Consolidation": "1.0"},
        {"subject_id": "10000898", "study_id": "50771383", "Pleural Effusion": "1.0"},
    ]
    label_csv = _write_csv(images / "mimic-cxr-2.0.0-chexpert.csv", MIMIC_LABELS_HEADER, labels)
    return images, label_csv, _write_csv(images / "mimic-cxr-2.0.0-metadata.csv", MIMIC_META_HEADER, meta_rows)


def test_mimic_joins_studies_to_images_with_views_and_demographics(tmp_path: Path) -> None:
    images, labels, metadata = write_mimic(tmp_path)
    header = ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"]
    mimic_iv = [{"subject_id": "10000032", "gender": "F", "anchor_age": "52", "anchor_year": "2180"}]
    patients = _write_csv(tmp_path / "patients.csv", header, mimic_iv)  # MIMIC-IV hosp/patients.csv
    table = read_source("mimic-cxr-jpg", images / "files", labels, metadata=metadata, patients=patients)
    frame = table.frame.set_index("filename")
    assert table.counts == {"rows": 6, "not_frontal": 2, "uncertain_cells": 2, "no_study_labels": 1,
                            "image_missing": 0}  # fmt: skip
    first = frame.loc["10000032_50414267_02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"]
    assert (first[["Atelectasis", "Cardiomegaly", "Effusion"]] == 0).all() and np.isnan(first["Mass"])  # No Finding
    assert (first["patient_id"], first["view"], first["age"], first["sex"]) == (10000032, "PA", 52, "F")
    second = frame.loc["10000032_53189527_2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab.jpg"]
    assert second["Cardiomegaly"] == 1 and np.isnan(second["Edema"]) and second["Atelectasis"] == 0
    third = frame.loc["10000764_57375967_68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714.jpg"]
    assert third["Consolidation"] == 1 and np.isnan(third["Pneumonia"]) and pd.isna(third["age"])
    everything = read_source("mimic-cxr-jpg", images, labels, metadata=metadata, views="all")
    assert len(everything.frame) == 5  # the lateral and the view-less image too; still not the unlabelled study


def test_mimic_build_cli(tmp_path: Path) -> None:
    images, labels, metadata = write_mimic(tmp_path)
    out = tmp_path / "out"
    result = invoke(["data", "build", "--source", "mimic-cxr-jpg", "--images", str(images), "--labels", str(labels),
                     "--metadata", str(metadata), "--out", str(out), "--size", "64", "--workers", "1"])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "3 mimic-cxr-jpg images" in result.stdout and "no study labels 1" in result.stdout
    index = ShardIndex.open(out)
    assert sorted(set(patient_ids(index.filenames))) == [10000032, 10000764]


# --- PadChest ---------------------------------------------------------------------------------------------------


def padchest_row(image_id: str, patient: str, labels: str, projection: str = "PA", dicom_view: str = "") -> dict:
    return {"ImageID": image_id, "ImageDir": "0", "StudyDate_DICOM": "20140915", "StudyID": image_id.split("_")[0],
            "PatientID": patient, "PatientBirth": "1950.0", "PatientSex_DICOM": "M", "ViewPosition_DICOM": dicom_view,
            "Projection": projection, "MethodProjection": "Manual review of DICOM fields", "Pediatric": "No",
            "Modality_DICOM": "CR", "Manufacturer_DICOM": "ImagingDynamicsCompanyLtd",
            "PhotometricInterpretation_DICOM": "MONOCHROME2", "PixelRepresentation_DICOM": "0",
            "PixelAspectRatio_DICOM": "None", "SpatialResolution_DICOM": "None", "BitsStored_DICOM": "12",
            "WindowCenter_DICOM": "2092", "WindowWidth_DICOM": "2251", "Rows_DICOM": "1728", "Columns_DICOM": "1872",
            "XRayTubeCurrent_DICOM": "250", "Exposure_DICOM": "2", "ExposureInuAs_DICOM": "2500",
            "ExposureTime": "10", "RelativeXRayExposure_DICOM": "-1.42", "ReportID": "4765777",
            "Report": " sin hallazg patolog edad pacient .", "MethodLabel": "Physician", "Labels": labels,
            "Localizations": "[]", "LabelsLocalizationsBySentence": "[['normal'], ['normal']]", "labelCUIS": "[]",
            "LocalizationsCUIS": "[]"}  # fmt: skip


def write_padchest(root: Path, rows: Sequence[dict[str, str]], index_column: bool = False) -> tuple[Path, Path]:
    """(images folder, CSV): 16-bit PNGs (12 bits used, as PadChest's) in the numbered `ImageDir` folders."""
    images = root / "padchest"
    for i, row in enumerate(rows):
        path = images / row["ImageDir"] / row["ImageID"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _sample(i).astype(np.uint16) * 16)
    header = ["", *PADCHEST_HEADER] if index_column else PADCHEST_HEADER
    rows = [{"": str(i), **r} for i, r in enumerate(rows)] if index_column else rows
    return images, _write_csv(root / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", header, rows)


PADCHEST_ROWS = [
    padchest_row("20536686640136348236148679891455886468_k6ga29.png", "839860488694292331637988235681460987",
                 "['normal']"),
    padchest_row("135803415504923515076821959678074435083_fzis7d.png", "313572750430997347502932654319389875966",
                 "['pulmonary fibrosis', 'chronic changes', 'kyphosis', 'pseudonodule', 'ground glass pattern']",
                 projection="L", dicom_view="LATERAL"),
    padchest_row("113855343774216031222399093418304096733_2b7ppu.png", "313572750430997347502932654319389875966",
                 "[' pleural effusion', 'cardiomegaly', \"hiatal hernia\", 'pericardial effusion']",
                 projection="AP_horizontal"),
    padchest_row("216840111366964013076187734852011291090445391_00-196-188.png", "1234",
                 "['hydropneumothorax', 'subcutaneous emphysema', '']", projection="", dicom_view="POSTEROANTERIOR"),
    padchest_row("2168401113669640130761877348520112910904_00-196-189.png", "1234", "['exclude']"),
    padchest_row("3168401113669640130761877348520112910904_00-196-190.png", "1234", ""),  # no labels
]  # fmt: skip


def test_padchest_terms_views_and_16_bit_images(tmp_path: Path) -> None:
    images, labels = write_padchest(tmp_path, PADCHEST_ROWS, index_column=True)
    table = read_source("padchest", images, labels)
    assert table.counts == {"rows": 6, "unlabelled": 1, "not_frontal": 1, "excluded": 1, "image_missing": 0}
    frame = table.frame.set_index("source_path")
    assert not frame[list(LABELS)].isna().any().any()  # PadChest labels the whole report: all 14 defined
    normal = frame.loc[f"0/{PADCHEST_ROWS[0]['ImageID']}"]
    assert (normal[list(LABELS)] == 0).all() and normal["view"] == "PA" and normal["age"] == 64
    supine = frame.loc[f"0/{PADCHEST_ROWS[2]['ImageID']}"]
    assert {n for n in LABELS if supine[n] == 1} == {"Effusion", "Cardiomegaly", "Hernia"}
    assert supine["view"] == "AP"
    hydro = frame.loc[f"0/{PADCHEST_ROWS[3]['ImageID']}"]
    assert {n for n in LABELS if hydro[n] == 1} == {"Effusion", "Pneumothorax"}  # not Emphysema (subcutaneous)
    assert hydro["view"] == "PA"  # Projection blank: ViewPosition_DICOM
    assert supine["patient_id"] != hydro["patient_id"] and 30000000 <= supine["patient_id"] < 40000000
    assert hydro["filename"].startswith(f"{hydro['patient_id']:08d}_216840111366964013076187734852011291090445391")

    out = tmp_path / "out"
    result = invoke(["data", "build", "--source", "padchest", "--images", str(images), "--labels", str(labels),
                     "--out", str(out), "--size", "64", "--workers", "1", "--no-clahe", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads((out / "dataset.json").read_text())["classes"] == list(LABELS)
    index = ShardIndex.open(out)
    row = index.filenames.index(supine["filename"])
    original = _sample(2).astype(np.float32)  # what the 16-bit file holds, x16
    stretched = (original - original.min()) * 255.0 / (original.max() - original.min())
    expected = cv2.resize(stretched, (64, 64), interpolation=cv2.INTER_AREA)
    img = index.read_image(row)
    assert img.max() >= 250 and np.abs(img - expected).mean() < 3  # the 12 used bits stretched to 8 bit


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    images, labels = write_chexpert(tmp_path, CHEXPERT_ROWS)
    out = tmp_path / "out"
    base = ["data", "build", "--images", str(images), "--out", str(out), "--size", "64", "--workers", "1"]
    line = check_clean_error(invoke([*base, "--source", "chexpert"]))
    assert "--labels" in line
    line = check_clean_error(invoke([*base, "--source", "chexpret", "--labels", str(labels)]))
    assert "did you mean 'chexpert'" in line
    line = check_clean_error(invoke([*base, "--source", "chexpert", "--labels", str(labels), "--uncertain", "maybe"]))
    assert "ignore, zeros, ones" in line
    line = check_clean_error(invoke([*base, "--labels", str(labels)]))  # NIH with an external option
    assert "--labels is for external sets" in line
    bad = pd.read_csv(labels, dtype=str)
    bad.loc[1, "Edema"] = "2.0"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    line = check_clean_error(invoke([*base, "--source", "chexpert", "--labels", str(tmp_path / "bad.csv")]))
    assert "'Edema' holds '2.0' (line 3)" in line
    bad.drop(columns=["AP/PA"]).to_csv(tmp_path / "cols.csv", index=False)
    line = check_clean_error(invoke([*base, "--source", "chexpert", "--labels", str(tmp_path / "cols.csv")]))
    assert "lacks column(s) 'AP/PA'" in line
    line = check_clean_error(invoke([*base, "--source", "chexpert", "--labels", str(labels), "--images",
                                     str(tmp_path / "nowhere")]))  # fmt: skip
    assert "is not a directory" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = check_clean_error(invoke([*base, "--source", "chexpert", "--labels", str(labels), "--images", str(empty)]))
    assert "image missing: 4" in line
    pad_images, pad_labels = write_padchest(tmp_path / "pc", [padchest_row("1_a.png", "9", "['normal', 'nodule'")])
    line = check_clean_error(invoke([*base, "--source", "padchest", "--labels", str(pad_labels), "--images",
                                     str(pad_images)]))  # fmt: skip
    assert "Labels of line 2 cannot be read" in line
    assert not out.exists()  # nothing written by any refused build


# --- evaluate on an external folder -----------------------------------------------------------------------------


def _patients_in(split: str, want: int, start: int) -> list[int]:
    """CheXpert patient numbers whose stored ids fall in `split` of the `patient` scheme (seed 0)."""
    found: list[int] = []
    n = start
    while len(found) < want:
        name = f"{20000000 + n:08d}_1_view1_frontal.jpg"
        if len(make_split([name], "patient", seed=0)[split]):
            found.append(n)
        n += 1
    return found


@pytest.mark.slow  # a real `evaluate`: predictions, bootstrap, report with its figures (~15 s idle, more when loaded)
def test_evaluate_scores_only_the_classes_the_external_set_defines(
    tmp_path: Path, make_run_dir: Callable[..., Path]
) -> None:
    # CheXpert's valid.csv: radiologists' labels, 0/1 without blanks, so the 7 mapped classes are defined everywhere
    rows = []
    for k, n in enumerate(_patients_in("test", 8, 1) + _patients_in("val", 4, 1)):
        positive = k % 2 == 0
        values = {c: ("1.0" if positive == (j % 2 == 0) else "0.0") for j, c in enumerate(CHEXPERT_HEADER[6:])}
        rows.append(chexpert_row(n, 1, 1, **values, **{"No Finding": "0.0"}))
    for row in rows:
        row["Path"] = row["Path"].replace("/train/", "/valid/")
    images, labels = write_chexpert(tmp_path, rows, "valid.csv")
    data = tmp_path / "chexpert-valid"
    built = invoke(["data", "build", "--source", "chexpert", "--images", str(images), "--labels", str(labels),
                    "--out", str(data), "--size", "64", "--workers", "1"])  # fmt: skip
    assert built.exit_code == 0, built.stdout + built.stderr
    run = make_run_dir(tmp_path / "run", run_id="run", model="seresnet", split_scheme="patient")
    result = invoke(["evaluate", str(run), "--data", str(data), "--bootstrap", "5", "--cam-samples", "0",
                     "--out", str(tmp_path / "eval"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    mapped = ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax", "Consolidation", "Edema"]
    assert doc["classes_scored"] == mapped
    assert doc["classes_not_defined"] == [n for n in LABELS if n not in mapped]
    assert all(doc["per_class_auc"][n] is None for n in doc["classes_not_defined"])  # n/a, never 0.5
    assert all(isinstance(doc["per_class_auc"][n], float) for n in mapped)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "not defined" in report


def test_per_image_missing_labels_score_through_labels_csv(tmp_path: Path) -> None:
    """CheXpert train.csv leaves labels blank per image: `labels.csv` carries them to `evaluate --predictions`."""
    images, labels = write_chexpert(tmp_path, CHEXPERT_ROWS)
    out = tmp_path / "out"
    assert invoke(["data", "build", "--source", "chexpert", "--images", str(images), "--labels", str(labels),
                   "--out", str(out), "--size", "64", "--workers", "1"]).exit_code == 0  # fmt: skip
    truth = pd.read_csv(out / "labels.csv")
    rng = np.random.default_rng(0)
    preds = pd.DataFrame({"filename": truth["filename"], **{f"prob_{n}": rng.random(len(truth)) for n in LABELS}})
    preds.to_csv(tmp_path / "preds.csv", index=False)
    result = invoke(["evaluate", "--predictions", str(tmp_path / "preds.csv"), "--labels", str(out / "labels.csv"),
                     "--bootstrap", "0", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    # Effusion: labelled on 3 images (1 positive); Cardiomegaly: on 2 (none positive: no AUC); Mass: on none
    assert "Mass" in doc["classes_not_defined"] and "Effusion" in doc["classes_scored"]
    defined = truth["Effusion"].notna().to_numpy()
    from sklearn.metrics import roc_auc_score

    expected = roc_auc_score(truth["Effusion"][defined], preds["prob_Effusion"][defined])
    assert doc["per_class_auc"]["Effusion"] == pytest.approx(expected)
