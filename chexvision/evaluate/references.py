"""Scores against radiologist-adjudicated reference labels, beside the NIH text-mined labels of the same images.

`google2019`: Majkowska et al., "Chest radiograph interpretation with deep learning models: assessment with
radiologist-adjudicated reference standards and population-adjusted evaluation", Radiology 2020;294:421-431
(published online 2019). Google's radiologists adjudicated four findings (YES/NO) on 4,376 NIH ChestX-ray14 images
of 1,695 patients: a `test` set of 1,962 images (all in the NIH official test list) and a `val` set of 2,414
images (all in the NIH train_val list). Shipped as `chexvision/data/resources/google2019_nih-chest-xray-labels.csv.gz`
(45 KB, the file as Google published it).

Which set is scored: both by default, each reported on its own (`per_set`) and pooled. A model trained on the NIH
official split has seen the `val` images in training (they are in train_val), so for such a model only the `test`
set is out of sample; in run mode only images of the evaluated split are scored anyway (the official test split
holds the `test` set and none of `val`).

How each finding is scored from the 14 NIH probabilities (`GOOGLE2019_MAPPING`; the NIH-label AUC of the same images
uses the same classes, a positive being any of them):

* Pneumothorax: the Pneumothorax probability.
* Nodule or mass: max(Nodule, Mass): the adjudicators labelled the two as one finding.
* Airspace opacity: max(Consolidation, Pneumonia, Infiltration, Edema, Atelectasis). We read the paper's airspace
  opacity as a radiographic appearance, not a diagnosis: opacification of the lung airspaces whatever fills them
  (pus, fluid, blood, collapse). That reading is ours, not a quotation: the paper's own definition (in its
  supplement) could not be retrieved when this was written, so check it before quoting a number. Among the NIH
  classes, Consolidation and Infiltration name that appearance, and Pneumonia, Edema and Atelectasis are the
  diagnoses NIH reports use for it; the other classes are pleural
  (Effusion, Thickening, Pneumothorax), cardiac, nodular, or chronic interstitial (Fibrosis, Emphysema, Hernia).
  The max (not a mean) keeps a confident single-class call confident.
* Fracture: no NIH class, so it is listed in `not_scorable` and never scored.

The gap (`gap` = AUROC vs adjudicated - AUROC vs NIH labels) shows how much the NIH label noise moves the number.
Its interval and those of both AUROCs come from the same patient resamples (`bootstrap_auc_replicates`), so the gap's
interval is a paired one.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from chexvision.errors import BadInputError
from chexvision.evaluate.bootstrap import Advance, bootstrap_auc_replicates, percentile_interval
from chexvision.evaluate.metrics import auroc
from chexvision.evaluate.predictions import Predictions
from chexvision.labels import LABELS

__all__ = [
    "GOOGLE2019_MAPPING",
    "REFERENCES",
    "Reference",
    "finding_matrix",
    "load_reference",
    "reference_blocks",
    "reference_sections",
    "score_reference",
]

GOOGLE2019_FILE = "google2019_nih-chest-xray-labels.csv.gz"
GOOGLE2019_CITATION = (
    "Majkowska A, Mittal S, Steiner DF, et al. Chest radiograph interpretation with deep learning models: "
    "assessment with radiologist-adjudicated reference standards and population-adjusted evaluation. "
    "Radiology 2020;294(2):421-431 (online 2019)."
)
# finding -> the NIH classes whose max probability scores it (and any of whose NIH labels is an NIH positive)
GOOGLE2019_MAPPING: dict[str, tuple[str, ...]] = {
    "Pneumothorax": ("Pneumothorax",),
    "Nodule or mass": ("Nodule", "Mass"),
    "Airspace opacity": ("Consolidation", "Pneumonia", "Infiltration", "Edema", "Atelectasis"),
    "Fracture": (),
}
REFERENCES = ("google2019",)
GOOGLE2019_SETS = {  # what each `Set Id` is, for the report
    "test": "all in the NIH official test list",
    "val": "all in NIH train_val: training images of a model trained on the official split",
}


@dataclass(frozen=True)
class Reference:
    """Adjudicated labels of one reference: per image its set and a YES(1)/NO(0) per finding."""

    name: str
    filenames: tuple[str, ...]
    sets: tuple[str, ...]
    labels: np.ndarray  # float32 [N, F] 0/1
    findings: tuple[str, ...]
    mapping: Mapping[str, tuple[str, ...]]
    citation: str

    @property
    def scorable(self) -> tuple[str, ...]:
        return tuple(f for f in self.findings if self.mapping.get(f))


@cache
def load_reference(name: str = "google2019") -> Reference:
    """The shipped reference `name`; an unknown name is a BadInputError listing the known ones."""
    if name != "google2019":
        raise BadInputError(f"unknown reference {name!r}", f"known references: {', '.join(REFERENCES)}")
    with resources.files("chexvision.data").joinpath("resources", GOOGLE2019_FILE).open("rb") as fh:
        frame = pd.read_csv(gzip.GzipFile(fileobj=fh))
    findings = tuple(GOOGLE2019_MAPPING)
    values = frame[list(findings)].astype(str).apply(lambda c: c.str.strip().str.upper())
    if not values.isin(("YES", "NO")).all().all():
        raise ValueError(f"{GOOGLE2019_FILE}: a finding cell is neither YES nor NO")  # a broken install, not input
    return Reference(
        name=name,
        filenames=tuple(frame["Image Index"].astype(str)),
        sets=tuple(frame["Set Id"].astype(str)),
        labels=(values == "YES").to_numpy(dtype=np.float32),
        findings=findings,
        mapping=GOOGLE2019_MAPPING,
        citation=GOOGLE2019_CITATION,
    )


def finding_matrix(m14: np.ndarray, mapping: Mapping[str, Sequence[str]], findings: Sequence[str]) -> np.ndarray:
    """[N, F]: per finding the row-wise max of its NIH columns of `m14` (probabilities, or 0/1 labels: then "any")."""
    cols = [[LABELS.index(c) for c in mapping[f]] for f in findings]
    return np.stack([np.asarray(m14)[:, c].max(axis=1) for c in cols], axis=1)


def _aucs(y: np.ndarray, p: np.ndarray, findings: Sequence[str]) -> dict[str, float | None]:
    return {f: auroc(y[:, j], p[:, j]) for j, f in enumerate(findings)}


def _block(
    y_ref: np.ndarray,
    y_nih: np.ndarray,
    p: np.ndarray,
    pids: np.ndarray,
    findings: Sequence[str],
    bootstrap: int,
    seed: int,
    advance: Advance | None,
) -> dict[str, Any]:
    ref_auc, nih_auc = _aucs(y_ref, p, findings), _aucs(y_nih, p, findings)
    block: dict[str, Any] = {
        "images": len(p),
        "patients": len(np.unique(pids)),
        "per_finding_auc": ref_auc,
        "nih_label_auc": nih_auc,
        "gap": {
            f: (None if ref_auc[f] is None or nih_auc[f] is None else ref_auc[f] - nih_auc[f])  # type: ignore[operator]
            for f in findings
        },
        "positives": {f: int((y_ref[:, j] > 0.5).sum()) for j, f in enumerate(findings)},
        "nih_positives": {f: int((y_nih[:, j] > 0.5).sum()) for j, f in enumerate(findings)},
    }
    if bootstrap > 0 and len(p):
        ref_reps, nih_reps = bootstrap_auc_replicates(
            [(y_ref, p, None), (y_nih, p, None)], pids, n=bootstrap, seed=seed, advance=advance
        )

        def ci(values: np.ndarray) -> list[float] | None:
            interval = percentile_interval(values)
            return None if interval is None else [interval[0], interval[1]]

        block["ci"] = {
            "n": bootstrap,
            "seed": seed,
            "unit": "patient",
            "per_finding_auc": {f: ci(ref_reps[:, j]) for j, f in enumerate(findings)},
            "nih_label_auc": {f: ci(nih_reps[:, j]) for j, f in enumerate(findings)},
            "gap": {f: ci(ref_reps[:, j] - nih_reps[:, j]) for j, f in enumerate(findings)},
        }
    return block


def _rows(preds: Predictions, ref: Reference, wanted: set[str]) -> list[tuple[int, int]]:
    """(row of `preds`, row of `ref`) of each evaluated image with reference labels in the `wanted` sets."""
    at = {f: i for i, f in enumerate(ref.filenames)}
    rows = [(i, at[base]) for i, f in enumerate(preds.filenames) if (base := f.rsplit("/", 1)[-1]) in at]
    return [(i, j) for i, j in rows if ref.sets[j] in wanted]


def reference_blocks(preds: Predictions, name: str = "google2019", sets: Sequence[str] | None = None) -> int:
    """How many bootstraps `score_reference` runs: the pooled one, plus one per set when several are present."""
    ref = load_reference(name)
    present = {ref.sets[j] for _, j in _rows(preds, ref, set(sets) if sets is not None else set(ref.sets))}
    return 0 if not present else 1 if len(present) == 1 else 1 + len(present)


def score_reference(
    preds: Predictions,
    name: str = "google2019",
    *,
    sets: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    advance: Advance | None = None,
) -> dict[str, Any]:
    """Scores of `preds` on the images of reference `name` it holds (restricted to `sets`; None: all of them).

    Returns `{"name", "citation", "images", "patients", "sets", "mapping", "not_scorable", "per_finding_auc",
    "nih_label_auc", "gap", "positives", "nih_positives", "ci", "per_set": {set: {...same numbers...}}}`; `ci` (and
    each set's) only with `bootstrap` > 0. `advance` is told every replicate of every block."""
    ref = load_reference(name)
    wanted = set(sets) if sets is not None else set(ref.sets)
    unknown = wanted - set(ref.sets)
    if unknown:
        raise BadInputError(
            f"reference {name} has no set {', '.join(sorted(unknown))}", f"its sets: {', '.join(sorted(set(ref.sets)))}"
        )
    rows = _rows(preds, ref, wanted)
    findings = ref.scorable
    out: dict[str, Any] = {
        "name": name,
        "citation": ref.citation,
        "mapping": {f: list(ref.mapping[f]) for f in findings},
        "not_scorable": {f: "no NIH class" for f in ref.findings if f not in findings},
        "sets_requested": sorted(wanted),
    }
    if not rows:
        out.update({"images": 0, "patients": 0, "sets": [], "per_set": {}})
        out["note"] = f"none of the {len(preds)} evaluated images has {name} labels"
        return out
    pi = np.array([i for i, _ in rows], dtype=np.int64)
    ri = np.array([j for _, j in rows], dtype=np.int64)
    col = [ref.findings.index(f) for f in findings]
    y_ref = ref.labels[ri][:, col]
    y_nih = finding_matrix(preds.y14[pi], ref.mapping, findings)
    p = finding_matrix(preds.p14[pi], ref.mapping, findings)
    pids = np.asarray(preds.patient_ids)[pi]
    set_of = np.array([ref.sets[j] for j in ri])
    present = sorted(set(set_of))
    out.update(_block(y_ref, y_nih, p, pids, findings, bootstrap, seed, advance))
    out["sets"] = present
    out["per_set"] = {}
    if len(present) > 1:
        for s in present:
            m = set_of == s
            out["per_set"][s] = _block(y_ref[m], y_nih[m], p[m], pids[m], findings, bootstrap, seed, advance)
    else:
        out["per_set"][present[0]] = {k: v for k, v in out.items() if k in _BLOCK_KEYS}
    return out


_BLOCK_KEYS = ("images", "patients", "per_finding_auc", "nih_label_auc", "gap", "positives", "nih_positives", "ci")


def _estimate(value: float | None, ci: Sequence[float] | None, spec: str = ".3f") -> str:
    if value is None:
        return "n/a"
    return format(value, spec) + (f" [{format(ci[0], spec)}, {format(ci[1], spec)}]" if ci else "")


def _display_rows(block: Mapping[str, Any]) -> list[list[str]]:
    ci = block.get("ci") or {}
    return [
        [
            finding,
            str(block["images"]),
            str(block["positives"][finding]),
            str(block["nih_positives"][finding]),
            _estimate(auc, (ci.get("per_finding_auc") or {}).get(finding)),
            _estimate(block["nih_label_auc"][finding], (ci.get("nih_label_auc") or {}).get(finding)),
            _estimate(block["gap"][finding], (ci.get("gap") or {}).get(finding), "+.3f"),
        ]
        for finding, auc in block["per_finding_auc"].items()
    ]


def reference_sections(scores: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The report's section per model whose score has a `reference`: the mapping, what is not scorable, and a
    table per set (pooled first when there are several) of finding, images, adjudicated and NIH positives, AUROC vs
    adjudicated, AUROC vs NIH labels on the same images, and the gap (adjudicated - NIH), with 95% CIs."""
    sections = []
    for model, score in scores:
        ref = score.get("reference")
        if not ref:
            continue
        blocks = []
        if ref["images"] and len(ref["per_set"]) > 1:
            blocks.append({"title": "all sets: " + " + ".join(ref["sets"]), "rows": _display_rows(ref)})
        blocks += [
            {"title": f"set {name}" + (f" ({GOOGLE2019_SETS[name]})" if name in GOOGLE2019_SETS else ""),
             "rows": _display_rows(b)}
            for name, b in ref["per_set"].items()
        ]  # fmt: skip
        sections.append(
            {
                "model": model,
                "name": ref["name"],
                "citation": ref["citation"].rstrip("."),
                "images": ref["images"],
                "patients": ref["patients"],
                "mapping": "; ".join(f"{f}: max of {', '.join(c)}" for f, c in ref["mapping"].items()),
                "not_scorable": ", ".join(f"{f} ({why})" for f, why in ref["not_scorable"].items()) or "none",
                "note": ref.get("note", ""),
                "blocks": blocks,
            }
        )
    return sections
