"""The one table from each external data set's findings to the 14 NIH findings, and the label policies.

An NIH class a set does not label is *missing* for it (not negative): evaluation scores a class only on the images
that define it (`chexvision.data.classes`). The tables below are what `chexvision data build --source ...` applies and
what the README renders; `tests/test_external_mapping.py` checks them against torchxrayvision's published relabelling
(`torchxrayvision.datasets.CheX_Dataset`, `MIMIC_Dataset`, `PC_Dataset`, version 1.5.7), and every place where we
deliberately differ from it is listed in `XRV_DIFFERENCES`.

CheXpert and MIMIC-CXR-JPG (the CheXpert labeller's 14 observations, 1 / 0 / -1 uncertain / blank not mentioned):

* blank = missing, except on images whose `No Finding` is 1: the labeller sets `No Finding` only when no pathology
  is positive or uncertain, so every mapped class is negative there (torchxrayvision does the same);
* -1 by `--uncertain`: `ignore` (missing, the default, as torchxrayvision), `zeros` or `ones` (the U-Zeros / U-Ones
  policies of Irvin et al. 2019).

PadChest (`Labels`: the findings of the whole report in its 174-term taxonomy): a mapped NIH class is positive when
one of its terms is in the list and negative when none is. The report was labelled as a whole, so an absent term is a
finding the radiologist did not report; every mapped class is therefore defined for every image (torchxrayvision
scores absent terms as 0 too). Terms match after trimming and lower-casing (the CSV spells ` pleural effusion` and
`pleural effusion` both).
"""

from __future__ import annotations

from collections.abc import Mapping

from chexvision.labels import LABELS

__all__ = [
    "CHEXPERT_COLUMNS",
    "CHEXPERT_NOT_MAPPED",
    "CHEXPERT_TO_NIH",
    "NO_FINDING_COLUMN",
    "PADCHEST_EXCLUDE",
    "PADCHEST_NOT_MAPPED",
    "PADCHEST_TO_NIH",
    "UNCERTAIN_POLICIES",
    "XRV_DIFFERENCES",
    "chexpert_classes",
    "padchest_classes",
    "padchest_terms_by_class",
]

UNCERTAIN_POLICIES = ("ignore", "zeros", "ones")  # -1 -> missing | 0 | 1

NO_FINDING_COLUMN = "No Finding"
# The CheXpert labeller's 14 observations in the published column order (CheXpert-v1.0 train.csv / valid.csv and
# MIMIC-CXR-JPG mimic-cxr-2.0.0-chexpert.csv / -negbio.csv).
CHEXPERT_COLUMNS = (
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
)

# CheXpert observation -> NIH finding (same for MIMIC-CXR-JPG: the same labeller).
CHEXPERT_TO_NIH: Mapping[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
# The observations with no NIH class, and why (their NIH neighbours stay missing, never negative).
CHEXPERT_NOT_MAPPED: Mapping[str, str] = {
    "Enlarged Cardiomediastinum": "heart or mediastinum: a widened mediastinum is no Cardiomegaly",
    "Lung Opacity": "any opacity (consolidation, edema, atelectasis, lesions...): no one NIH class, and a negative "
    "would wrongly deny NIH's Infiltration, which is not the same definition",
    "Lung Lesion": "nodule and mass in one label: NIH splits them by size (3 cm), which the label cannot",
    "Pleural Other": "pleural thickening, plaques, calcification and more: a positive is not necessarily "
    "Pleural_Thickening (torchxrayvision keeps it apart too)",
    "Fracture": "no NIH class",
    "Support Devices": "no NIH class",
}

# PadChest `Labels` term (trimmed, lower case) -> NIH findings. Terms not listed map to no NIH class.
PADCHEST_TO_NIH: Mapping[str, tuple[str, ...]] = {
    "atelectasis": ("Atelectasis",),
    "laminar atelectasis": ("Atelectasis",),
    "lobar atelectasis": ("Atelectasis",),
    "segmental atelectasis": ("Atelectasis",),
    "total atelectasis": ("Atelectasis",),
    "round atelectasis": ("Atelectasis",),
    "atelectasis basal": ("Atelectasis",),
    "cardiomegaly": ("Cardiomegaly",),
    "pleural effusion": ("Effusion",),
    "loculated pleural effusion": ("Effusion",),
    "loculated fissural effusion": ("Effusion",),
    "hydropneumothorax": ("Effusion", "Pneumothorax"),
    "infiltrates": ("Infiltration",),
    "interstitial pattern": ("Infiltration",),
    "ground glass pattern": ("Infiltration",),
    "reticular interstitial pattern": ("Infiltration",),
    "reticulonodular interstitial pattern": ("Infiltration",),
    "alveolar pattern": ("Infiltration",),
    "consolidation": ("Consolidation", "Infiltration"),
    "air bronchogram": ("Consolidation", "Infiltration"),
    "mass": ("Mass",),
    "pulmonary mass": ("Mass",),
    "mediastinal mass": ("Mass",),
    "pleural mass": ("Mass",),
    "nodule": ("Nodule",),
    "multiple nodules": ("Nodule",),
    "pneumonia": ("Pneumonia",),
    "atypical pneumonia": ("Pneumonia",),
    "pneumothorax": ("Pneumothorax",),
    "pulmonary edema": ("Edema",),
    "emphysema": ("Emphysema",),
    "pulmonary fibrosis": ("Fibrosis",),
    "pleural thickening": ("Pleural_Thickening",),
    "apical pleural thickening": ("Pleural_Thickening",),
    "calcified pleural thickening": ("Pleural_Thickening",),
    "hiatal hernia": ("Hernia",),
}
# Terms that sound like an NIH finding but are not one, and why (torchxrayvision matches some of them as substrings).
PADCHEST_NOT_MAPPED: Mapping[str, str] = {
    "pericardial effusion": "fluid around the heart, not in the pleura",
    "subcutaneous emphysema": "air in the soft tissue, not pulmonary emphysema",
    "pseudonodule": "a nodule-like shadow that is not a nodule (nipple, vessel end on, ...)",
    "soft tissue mass": "outside the lung",
    "breast mass": "outside the lung",
    "calcified granuloma": "a benign healed lesion PadChest names apart (torchxrayvision: its own Granuloma class)",
    "granuloma": "a benign healed lesion PadChest names apart (torchxrayvision: its own Granuloma class)",
    "lung metastasis": "a diagnosis, not an appearance (nodule or mass): left out, as torchxrayvision does",
    "copd signs": "hyperinflation signs, not emphysema itself",
    "bullas": "bullae are not NIH Emphysema",
    "fibrotic band": "a scar band, not pulmonary fibrosis",
    "pleural plaques": "plaques, not diffuse thickening",
    "calcified pleural plaques": "plaques, not diffuse thickening",
    "costophrenic angle blunting": "a sign that may or may not be effusion",
    "heart insufficiency": "a diagnosis, not an appearance: left out, as torchxrayvision does",
    "empyema": "infected pleural fluid; too rare (5 images) to argue either way, left out as torchxrayvision does",
}
PADCHEST_EXCLUDE = "exclude"  # PadChest's own mark for an image to leave out: such images are skipped

# Where our table deliberately gives another label than torchxrayvision 1.5.7 (which matches the class name and its
# synonyms as substrings of the whole `Labels` text): (source, term) -> what differs and why.
XRV_DIFFERENCES: Mapping[tuple[str, str], str] = {
    ("padchest", "pericardial effusion"): "xrv: Effusion (substring 'effusion'); ours: none, not pleural",
    ("padchest", "subcutaneous emphysema"): "xrv: Emphysema (substring); ours: none, soft-tissue air",
    ("padchest", "pseudonodule"): "xrv: Nodule (substring); ours: none, by definition not a nodule",
    ("padchest", "soft tissue mass"): "xrv: Mass (substring); ours: none, outside the lung",
    ("padchest", "breast mass"): "xrv: Mass (substring); ours: none, outside the lung",
    ("padchest", "hydropneumothorax"): "xrv: Pneumothorax only; ours: Pneumothorax and Effusion (air and fluid)",
}


def chexpert_classes() -> tuple[str, ...]:
    """The NIH findings CheXpert / MIMIC-CXR-JPG define, in LABELS order."""
    wanted = set(CHEXPERT_TO_NIH.values())
    return tuple(label for label in LABELS if label in wanted)


def padchest_classes() -> tuple[str, ...]:
    """The NIH findings PadChest defines (for every image), in LABELS order."""
    wanted = {label for labels in PADCHEST_TO_NIH.values() for label in labels}
    return tuple(label for label in LABELS if label in wanted)


def padchest_terms_by_class() -> dict[str, list[str]]:
    """NIH finding -> the PadChest terms that make it positive (the README's table)."""
    terms: dict[str, list[str]] = {label: [] for label in padchest_classes()}
    for term, labels in PADCHEST_TO_NIH.items():
        for label in labels:
            terms[label].append(term)
    return terms
