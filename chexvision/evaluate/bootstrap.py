"""Bootstrap confidence intervals that resample PATIENTS, not images.

Images of one patient are correlated (follow-up studies), so resampling images would understate the
variance. Each replicate draws patients with replacement (seeded `numpy.random.Generator`, one
`integers(0, n_patients, n_patients)` draw per replicate) and keeps all of their images. A replicate is therefore a
multinomial weighting of the patients: every image counts as often as its patient was drawn. That is how the
replicates are computed, all at once: each class is sorted once, and AUROC (weighted Mann-Whitney, ties counted
half) and AUPRC (scikit-learn's average precision with those weights) come from weighted sums over the tie groups
that hold positives, for a chunk of replicates at a time (one sparse product per class and chunk). The numbers
equal scikit-learn's on the resampled images (checked in tests/test_eval_bootstrap.py to 1e-12, ties included).

The interval is the percentile interval of the replicate statistics. A replicate in which a class has no positives
(or no negatives) is *degenerate* for that class: it has no value for it, so the class's own interval uses the other
replicates, and that replicate's macro averages the classes it does define (dropping whole replicates instead would
leave small test sets, where some class has one or two positive patients, with no macro interval at all). That is
never silent: `degenerate_replicates` counts them per class, and `complete_replicates` is how many replicates
define every class of the macro. On NIH-sized test sets both are 0 and n: the rarest class (Hernia) has dozens of
positive patients, and a replicate misses all of them with probability ~e^-40.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from chexvision.engine.metrics import auroc
from chexvision.labels import LABELS

__all__ = [
    "Advance",
    "bootstrap_auc_replicates",
    "bootstrap_classification",
    "bootstrap_samples",
    "bootstrap_weights",
    "paired_bootstrap",
    "patient_groups",
    "percentile_interval",
]

Interval = tuple[float, float]
Advance = Callable[[int], None]  # told how many more replicates are done (a progress bar's `advance`)
_CHUNK_CELLS = 4_000_000  # replicates x positive tie groups per chunk: ~32 MB per float64 work array


def patient_groups(patient_ids: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Image indices of each patient (in order of first appearance of the sorted ids)."""
    ids = np.asarray(patient_ids)
    order = np.argsort(ids, kind="stable")
    _, starts = np.unique(ids[order], return_index=True)
    return np.split(order, starts[1:])


def bootstrap_samples(patient_ids: Sequence[int] | np.ndarray, n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield `n` index arrays, each the images of a with-replacement sample of the patients."""
    groups = patient_groups(patient_ids)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        picked = rng.integers(0, len(groups), size=len(groups))
        yield np.concatenate([groups[i] for i in picked])


def bootstrap_weights(n_patients: int, n: int, seed: int = 0, chunk: int = 256) -> Iterator[np.ndarray]:
    """Yield [c, n_patients] float64 draw counts, `n` replicates in all: the same draws as `bootstrap_samples`."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        picked = rng.integers(0, n_patients, size=(c, n_patients))  # the same stream as c draws of n_patients
        flat = (picked + n_patients * np.arange(c)[:, None]).ravel()
        yield np.bincount(flat, minlength=c * n_patients).reshape(c, n_patients).astype(np.float64)


def percentile_interval(values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> Interval | None:
    """(lo, hi) percentile interval of the finite values; None when there are none."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return None
    lo, hi = np.percentile(arr, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


@dataclass(frozen=True)
class _RankedColumn:
    """One score column sorted once, reduced to its tie groups that hold positives (all that the sums need).

    For positive group j (descending score): per patient, its positive images (`pos`), the negatives tied with it
    (`tied`), and the negatives above it but below group j-1 (`gap`; gap m: below every positive). Each matrix is
    [groups, n_patients], so one sparse product gives the weighted counts of a whole chunk of replicates.
    """

    pos: sparse.csr_matrix  # [m, n_patients]
    tied: sparse.csr_matrix  # [m, n_patients]
    gap: sparse.csr_matrix  # [m + 1, n_patients]

    @classmethod
    def build(cls, y: np.ndarray, p: np.ndarray, patient: np.ndarray, n_patients: int) -> _RankedColumn:
        neg_score = -np.asarray(p, dtype=np.float64)  # ascending = descending scores
        is_pos = np.asarray(y) > 0.5
        groups, pos_group = np.unique(neg_score[is_pos], return_inverse=True)
        m = len(groups)
        # a negative's slot: how many positive groups score strictly higher; tied when it equals the next one
        slot = np.searchsorted(groups, neg_score[~is_pos], side="left")
        tie = (slot < m) & (groups[np.minimum(slot, max(m - 1, 0))] == neg_score[~is_pos]) if m else slot < 0
        neg_patient = patient[~is_pos]

        def counts(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> sparse.csr_matrix:
            return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n_patients))  # sums repeats

        return cls(
            counts(pos_group, patient[is_pos], m),
            counts(slot[tie], neg_patient[tie], m),
            counts(slot[~tie], neg_patient[~tie], m + 1),
        )

    @property
    def width(self) -> int:
        return int(self.gap.shape[0])

    def scores(self, weights_t: np.ndarray, with_ap: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """(AUROC [c], AUPRC [c] or None) of replicate weights [n_patients, c]; NaN with one class only."""
        tp = self.pos @ weights_t  # [m, c] weighted positives of each positive group
        tied = self.tied @ weights_t
        gap = self.gap @ weights_t  # [m + 1, c]
        n_pos = tp.sum(axis=0)
        n_neg = tied.sum(axis=0) + gap.sum(axis=0)
        above = np.cumsum(gap[:-1], axis=0) + np.cumsum(tied, axis=0) - tied  # negatives strictly above group j
        with np.errstate(invalid="ignore", divide="ignore"):
            # positives outrank the negatives below their group and tie with half of those in it
            beaten = n_neg - above - 0.5 * tied
            auc = np.einsum("jc,jc->c", tp, beaten) / (n_pos * n_neg)
            ap = None
            if with_ap:
                tp_cum = np.cumsum(tp, axis=0)
                precision = np.where(tp > 0, tp_cum / np.maximum(tp_cum + above + tied, 1e-300), 0.0)
                ap = np.einsum("jc,jc->c", tp, precision) / n_pos
        undefined = (n_pos == 0) | (n_neg == 0)
        auc[undefined] = np.nan
        if ap is not None:
            ap[undefined] = np.nan
        return auc, ap


class _Replicates:
    """The patients of a set of images and the bootstrap weight chunks over them."""

    def __init__(self, patient_ids: Sequence[int] | np.ndarray) -> None:
        _, self.patient = np.unique(np.asarray(patient_ids), return_inverse=True)  # group k = k-th sorted id
        self.n_patients = int(self.patient.max()) + 1 if len(self.patient) else 0

    def columns(self, y: np.ndarray, p: np.ndarray, defined: np.ndarray | None = None) -> list[_RankedColumn]:
        """One ranked column per class; with `defined` [N, k] each class uses only the images defined for it."""
        y2, p2 = np.atleast_2d(y.T).T, np.atleast_2d(p.T).T
        rows: list[slice | np.ndarray]
        if defined is None:
            rows = [slice(None)] * y2.shape[1]
        else:  # classes a data set does not define (chexvision.data.classes)
            rows = [np.flatnonzero(np.asarray(defined)[:, k]) for k in range(y2.shape[1])]
        return [_RankedColumn.build(y2[r, k], p2[r, k], self.patient[r], self.n_patients) for k, r in enumerate(rows)]

    def chunks(self, n: int, seed: int, widest: int) -> Iterator[np.ndarray]:
        return bootstrap_weights(self.n_patients, n, seed, chunk=max(1, min(256, _CHUNK_CELLS // max(1, widest))))


def _score_all(
    reps: _Replicates,
    column_sets: Sequence[list[_RankedColumn]],
    n: int,
    seed: int,
    advance: Advance | None,
    with_ap: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each column set: (AUROC [n, k], AUPRC [n, k]; NaN without `with_ap`) over the `n` replicates."""
    widest = max((c.width for cols in column_sets for c in cols), default=1)
    out: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []) for _ in column_sets]
    for weights in reps.chunks(n, seed, widest):
        weights_t = np.ascontiguousarray(weights.T)  # [n_patients, c]: the sparse products' right-hand side
        for (aucs, aps), cols in zip(out, column_sets, strict=True):
            pairs = [c.scores(weights_t, with_ap) for c in cols]
            aucs.append(np.stack([a for a, _ in pairs], axis=1))
            aps.append(np.stack([np.full(len(weights), np.nan) if b is None else b for _, b in pairs], axis=1))
        if advance is not None:
            advance(len(weights))
    return [(np.concatenate(a), np.concatenate(b)) for a, b in out]


def _defined_on_full(y14: np.ndarray, defined: np.ndarray | None = None) -> np.ndarray:
    """Classes with positives and negatives among the images that define them (all images without `defined`)."""
    mask = np.ones(np.shape(y14), dtype=bool) if defined is None else np.asarray(defined, dtype=bool)
    n_pos = ((np.asarray(y14) > 0.5) & mask).sum(axis=0)
    return (n_pos > 0) & (n_pos < mask.sum(axis=0))


def _macro_replicates(reps: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Macro of each replicate over the `keep` classes it defines; NaN where it defines none of them."""
    chosen = reps[:, keep]
    defined = np.isfinite(chosen).sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(defined > 0, np.nansum(chosen, axis=1) / np.maximum(defined, 1), np.nan)


def _complete(reps: np.ndarray, keep: np.ndarray) -> int:
    return int(np.isfinite(reps[:, keep]).all(axis=1).sum())


def _degenerate(reps: np.ndarray, keep: np.ndarray) -> dict[str, int]:
    counts = np.isnan(reps).sum(axis=0)
    return {name: int(counts[k]) for k, name in enumerate(LABELS) if keep[k] and counts[k]}


def bootstrap_classification(
    y14: np.ndarray,
    p14: np.ndarray,
    ybin: np.ndarray,
    pbin: np.ndarray,
    patient_ids: Sequence[int] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    advance: Advance | None = None,
    defined: np.ndarray | None = None,
) -> dict[str, object]:
    """Percentile CIs for per-class/macro AUROC and AUPRC and the binary AUROC/AUPRC.

    `defined` [N, 14] (chexvision.data.classes): each class is resampled over the images that define it only, and
    a class no image defines has no interval and stays out of the macro, as in `classification_metrics`.

    Returns `{"n": n, "alpha": alpha, "macro_auc": [lo, hi], "per_class_auc": {label: [lo, hi] | None}, ...,
    "degenerate_replicates": {label: count}, "complete_replicates": int}` (see the module docstring).
    """
    reps = _Replicates(patient_ids)
    columns = [reps.columns(y14, p14, defined), reps.columns(ybin, pbin)]
    multi, binary = _score_all(reps, columns, n, seed, advance)
    keep = _defined_on_full(y14, defined)  # classes undefined on the full set stay out of every macro
    out: dict[str, object] = {"n": n, "alpha": alpha, "seed": seed, "unit": "patient"}
    for key, values in (("auc", multi[0]), ("auprc", multi[1])):
        out[f"macro_{key}"] = _as_list(percentile_interval(_macro_replicates(values, keep), alpha))
        out[f"per_class_{key}"] = {
            name: _as_list(percentile_interval(values[:, k], alpha)) if keep[k] else None
            for k, name in enumerate(LABELS)
        }
    out["binary_auc"] = _as_list(percentile_interval(binary[0][:, 0], alpha))
    out["binary_auprc"] = _as_list(percentile_interval(binary[1][:, 0], alpha))
    out["degenerate_replicates"] = _degenerate(multi[0], keep)
    out["complete_replicates"] = _complete(multi[0], keep)
    return out


def bootstrap_auc_replicates(
    column_sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    patient_ids: Sequence[int] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    *,
    advance: Advance | None = None,
) -> list[np.ndarray]:
    """AUROC [n, k] of each (y [N, k], p [N, k], defined [N, k] | None) set over the SAME `n` patient resamples
    (so differences between sets are paired); NaN where a replicate has one class only. Used for scores of other
    label sets than the 14 (chexvision.evaluate.references)."""
    reps = _Replicates(patient_ids)
    columns = [reps.columns(y, p, d) for y, p, d in column_sets]
    return [auc for auc, _ in _score_all(reps, columns, n, seed, advance, with_ap=False)]


def _as_list(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def _macro_auc(y14: np.ndarray, p14: np.ndarray, keep: np.ndarray) -> float:
    vals = [v for k in np.flatnonzero(keep) if (v := auroc(y14[:, k], p14[:, k])) is not None]
    return float(np.mean(vals)) if vals else float("nan")


def paired_bootstrap(
    y14: np.ndarray,
    p_a: np.ndarray,
    p_b: np.ndarray,
    patient_ids: Sequence[int] | np.ndarray,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    advance: Advance | None = None,
) -> dict[str, float | list[float] | int | dict[str, int] | None]:
    """Paired bootstrap of macro AUROC(A) - macro AUROC(B) on the same images and the same patient resamples.

    The two-sided p-value is twice the smaller tail of the replicate differences around zero (clipped to 1).
    Degenerate replicates (a class of the macro without positives) are counted and their macros average the classes
    they define, as in `bootstrap_classification`; `replicates` is how many the interval and p-value rest on.
    """
    keep = _defined_on_full(y14)
    reps = _Replicates(patient_ids)
    columns = [reps.columns(y14, p_a), reps.columns(y14, p_b)]
    (auc_a, _), (auc_b, _) = _score_all(reps, columns, n, seed, advance, with_ap=False)
    diffs = _macro_replicates(auc_a, keep) - _macro_replicates(auc_b, keep)
    arr = diffs[np.isfinite(diffs)]
    point = _macro_auc(y14, p_a, keep) - _macro_auc(y14, p_b, keep)
    p_value = min(1.0, 2.0 * min(float(np.mean(arr <= 0)), float(np.mean(arr >= 0)))) if arr.size else None
    return {
        "diff": point,
        "ci": _as_list(percentile_interval(arr, alpha)),
        "p_value": p_value,
        "n": n,
        "seed": seed,
        "replicates": int(arr.size),
        "degenerate_replicates": _degenerate(auc_a, keep),
        "complete_replicates": _complete(auc_a, keep),
    }
