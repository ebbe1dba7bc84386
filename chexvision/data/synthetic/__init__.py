"""Synthetic frontal chest X-rays with planted findings: the embedded default data set for offline runs and tests.

What is generated
    `n` images named like NIH files but with patient ids from 90000000 up (`90000123_002.png`), 1-4 follow-up
    images per patient (probabilities 0.4/0.3/0.2/0.1). Follow-ups of a patient share the body anatomy; labels,
    pose and exposure are drawn per image. Age and sex come from a random NIH patient (age grows by 0-1 year per
    follow-up), the view (PA/AP) from NIH's view frequencies. The renderer (`render`) plants
    each finding of the label set at a random position, size and intensity and records its box.

Label sets and their weighting
    Each image's label string is a real NIH `Finding Labels` value drawn from Data_Entry_2017_v2020.csv (package
    data), so co-occurrence patterns are NIH's. Drawn at NIH's raw frequencies, rare classes would be nearly absent
    (Hernia 0.2 %: 4 positives in 2000 images, validation AUC undefined), so the 836 distinct label sets are
    re-weighted:

    * weight(set) = count(set) * prod(beta_c for c in set) for abnormal sets, with beta_c >= 1 found by a fixed-point
      iteration so that every class reaches a prevalence of at least `MIN_PREVALENCE` (5 %);
    * `No Finding` gets `NO_FINDING_SHARE` (45 %) of the total weight.

    Within a class's boost the relative frequencies of its co-occurring sets stay NIH's. The resulting targets are
    returned by `label_prevalence()`: No Finding 45 %, Infiltration 18.8 %, Effusion 13.0 %, Atelectasis 10.9 %,
    Nodule 5.5 %, Mass 5.6 %, every other class 5.1 %.

Determinism
    Image i depends only on (seed, i) and the plan (patients, labels, metadata) drawn from the seed, so the same seed
    gives byte-identical rows whatever the number of worker processes.

Modules
    `plan` (label-set weighting, patients and metadata per image), `writer` (`generate`, `write_synthetic`),
    `render` (one image from its labels), `anatomy`, `findings` (one painter per label) and `textures`.
"""

from __future__ import annotations

from chexvision.data.bbox import BBOX_HEADER
from chexvision.data.synthetic.plan import (
    MIN_PREVALENCE,
    NO_FINDING_SHARE,
    PATIENT_ID_START,
    label_prevalence,
    nih_statistics,
    sample_labels,
)
from chexvision.data.synthetic.writer import SHARD_ROWS, SynthResult, SynthSample, generate, write_synthetic

__all__ = [
    "BBOX_HEADER",
    "MIN_PREVALENCE",
    "NO_FINDING_SHARE",
    "PATIENT_ID_START",
    "SHARD_ROWS",
    "SynthResult",
    "SynthSample",
    "generate",
    "label_prevalence",
    "nih_statistics",
    "sample_labels",
    "write_synthetic",
]
