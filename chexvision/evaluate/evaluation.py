"""`chexvision evaluate`: score one or more runs (and their ensemble) on a split, write files, return data.

Per run: predictions on the validation split (for thresholds and temperature) and on the evaluated split,
plain and, with TTA, the 4-view mean; scores from `score_predictions`; Grad-CAM samples; localization against
boxes when given. Several runs: also their mean-probability ensemble. Files: `<out>/metrics.json` (everything),
`<out>/predictions/<name>[_tta].csv`, `<out>/report.html` + `report.md`, `<out>/cam/*.png`, and a `test` (or
`val_eval`) section in each run's own metrics.json.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chexvision.data.bbox import Box, read_bbox_csv
from chexvision.data.classes import classes_mask, dataset_classes, image_classes_mask
from chexvision.data.shards import ShardIndex, read_dataset_meta
from chexvision.errors import BadInputError
from chexvision.evaluate.gradcam import (
    grad_cam,
    grad_cam_native,
    peak_location,
    render_cam,
    save_png,
    top_classes,
    upsample_cam,
)
from chexvision.evaluate.localization import CamRecord, score_localization
from chexvision.evaluate.metrics import flat_metrics
from chexvision.evaluate.predictions import Predictions, StartStep, ensemble, score_predictions
from chexvision.evaluate.split_predict import check_split, external_source, predict_split, split_indices
from chexvision.evaluate.subgroups import add_subgroups, parse_subgroups, table_from_index
from chexvision.files import atomic_write_text
from chexvision.inference.load import LoadedModel, load_model_dir
from chexvision.labels import LABELS
from chexvision.rundir import METRICS_JSON, RunDir, utc_now

if TYPE_CHECKING:
    import torch

__all__ = [
    "EvalOptions",
    "brief",
    "evaluate_runs",
    "localize_run",
    "metrics_section_name",
    "reference_score",
    "write_csv_outputs",
    "write_outputs",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOptions:
    """What one `chexvision evaluate` does; every field is a CLI option."""

    data_dir: Path
    split: str = "test"  # test | val
    tta: bool = False  # also report the 4-view TTA mean beside the plain prediction
    bootstrap: int = 1000  # patient-bootstrap replicates for the CIs (0: none)
    seed: int = 0  # bootstrap / chance-baseline seed
    target_sensitivity: float = 0.95  # second operating point of the binary head
    batch_size: int = 64
    device: str = "cpu"
    bbox_csv: Path | None = None  # score Grad-CAM maps against these boxes
    bbox_frame: int | None = None  # pixel size of the frame the boxes are in (None: auto)
    cam_samples: int = 4  # Grad-CAM overlays in the report (0: none)
    reference: str | None = None  # also score against these adjudicated labels (chexvision.evaluate.references)
    reference_sets: tuple[str, ...] | None = None  # the reference's sets to score (None: all)
    subgroups: str = "auto"  # sex,age,view | auto (those the metadata has) | none (chexvision.evaluate.subgroups)


def metrics_section_name(split: str) -> str:
    """`test` for the test split; `val_eval` for a validation evaluation (training owns `val`)."""
    return "test" if split == "test" else "val_eval"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _score_pair(
    preds: dict[str, Predictions], val: dict[str, Predictions], opts: EvalOptions, progress: StartStep | None = None
) -> dict[str, dict[str, Any]]:
    """Scores of each prediction kind; with `--split val` the validation predictions are the evaluated ones, so
    `score_predictions` cross-fits thresholds and temperature on them."""
    scores = {
        key: score_predictions(
            p,
            val.get(key, val["plain"]),
            bootstrap=opts.bootstrap,
            seed=opts.seed,
            target_sensitivity=opts.target_sensitivity,
            evaluated="validation" if opts.split == "val" else "test",
            progress=progress,
        )
        for key, p in preds.items()
    }
    if opts.reference:  # issue 11 item 6: adjudicated labels of the images that have them
        for key, p in preds.items():
            scores[key]["reference"] = reference_score(
                p, opts.reference, opts.reference_sets, bootstrap=opts.bootstrap, seed=opts.seed, progress=progress
            )
    return scores


def reference_score(
    preds: Predictions,
    name: str,
    sets: Sequence[str] | None = None,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: StartStep | None = None,
) -> dict[str, Any]:
    """`score_reference` of `preds`, with one progress bar over its bootstraps (pooled, then per set)."""
    from chexvision.evaluate.references import reference_blocks, score_reference

    total = bootstrap * reference_blocks(preds, name, sets)
    advance = progress(f"bootstrap vs {name} labels", total) if progress and total else None
    return score_reference(preds, name, sets=sets, bootstrap=bootstrap, seed=seed, advance=advance)


def _with_dataset_classes(
    preds: dict[str, Predictions], data_dir: Path, index: ShardIndex | None = None
) -> dict[str, Predictions]:
    """Issue 11 item 10: the classes dataset.json defines (`"classes"`) as each prediction's `defined` mask; where
    the shards carry a per-image `classes` column (external sets with blank or uncertain labels), that column."""
    meta = read_dataset_meta(Path(data_dir))
    per_image = index is not None and "classes" in index.extra
    classes = (
        dataset_classes(meta, f"{Path(data_dir) / 'dataset.json'}") if not per_image or meta.get("classes") else ()
    )
    if index is None or not per_image:
        return {key: replace(p, defined=classes_mask(classes, len(p))) for key, p in preds.items()}
    row = {name: i for i, name in enumerate(index.filenames)}
    out = {}
    for key, p in preds.items():
        texts = [index.extra["classes"][row[name]] for name in p.filenames]
        out[key] = replace(p, defined=image_classes_mask(texts, classes))
    return out


def _box_frame(boxes: dict[str, list[Box]], index: ShardIndex, rows: np.ndarray, explicit: int | None) -> int | None:
    """Frame size of the boxes: explicit, else the stored image size unless boxes reach past it (NIH: 1024)."""
    if explicit:
        return explicit
    if rows.size == 0:
        return None
    stored = max(index.read_image(int(rows[0])).shape)
    reach = max((max(b.x + b.w, b.y + b.h) for bs in boxes.values() for b in bs), default=0.0)
    return stored if reach <= stored * 1.02 else 1024


def localize_run(
    run: LoadedModel,
    index: ShardIndex,
    rows: np.ndarray,
    bbox_csv: Path,
    *,
    data_dir: Path | None = None,
    bbox_frame: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
) -> dict[str, Any]:
    """Grad-CAM of each boxed (image, class) among `rows` for that class, scored by `score_localization`."""
    import torch

    boxes = read_bbox_csv(bbox_csv)
    transform = run.transform(data_dir)
    wanted = [
        (int(i), label, [b for b in boxes[name] if b.label == label])
        for i in rows
        if (name := index.filenames[int(i)].rsplit("/", 1)[-1]) in boxes
        for label in sorted({b.label for b in boxes[name]}, key=LABELS.index)
    ]
    frame = _box_frame(boxes, index, rows, bbox_frame)
    records: list[CamRecord] = []
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start : start + batch_size]
        x = torch.from_numpy(np.stack([transform(index.read_image(i)) for i, _, _ in chunk])).to(device)
        native = grad_cam_native(run.model, x, [LABELS.index(label) for _, label, _ in chunk])
        size = (transform.size, transform.size)
        scale = transform.size / float(frame or transform.size)
        for (i, label, bxs), low, cam in zip(chunk, native, upsample_cam(native, size), strict=True):
            boxes_in = [b.scaled(scale, scale) for b in bxs]
            records.append(CamRecord(index.filenames[i], label, cam, boxes_in, peak_location(low, size)))
    result = score_localization(records, seed=seed)
    result.update({"images": len({r.filename for r in records}), "box_frame": frame, "bbox_csv": str(bbox_csv)})
    return result


def _cam_samples(
    run: LoadedModel, index: ShardIndex, rows: np.ndarray, preds: Predictions, out: Path, opts: EvalOptions
) -> list[dict[str, str]]:
    """Overlays for the `k` images whose top predicted class is most confidently a true positive."""
    import torch

    k, device = opts.cam_samples, opts.device
    if k <= 0:
        return []
    top = np.array([t[0] for t in top_classes(preds.p14, 1)])
    conf = preds.p14[np.arange(len(preds)), top] * preds.y14[np.arange(len(preds)), top]
    picks = [int(j) for j in np.argsort(-conf, kind="stable")[:k] if conf[j] > 0]
    if not picks:
        return []
    transform = run.transform(opts.data_dir)
    images = [index.read_image(int(rows[j])) for j in picks]
    x = torch.from_numpy(np.stack([transform(img) for img in images])).to(device)
    cams = grad_cam(run.model, x, [int(top[j]) for j in picks])
    boxes = read_bbox_csv(opts.bbox_csv) if opts.bbox_csv is not None else {}  # drawn on the tiles that have one
    scale = transform.size / float(_box_frame(boxes, index, rows, opts.bbox_frame) or transform.size) if boxes else 1.0
    samples = []
    for j, img, cam in zip(picks, images, cams, strict=True):
        label = LABELS[int(top[j])]
        base = preds.filenames[j].rsplit("/", 1)[-1]
        name = base.rsplit(".", 1)[0]
        path = out / "cam" / f"{_safe(run.name)}_{name}_{label}.png"
        own = [b.scaled(scale, scale) for b in boxes.get(base, []) if b.label == label]
        p = float(preds.p14[j, int(top[j])])
        save_png(path, render_cam(transform.resized(img), cam, label=label, probability=p, boxes=own))
        samples.append(
            {
                "run": run.name,
                "image": preds.filenames[j],
                "label": label,
                "probability": f"{preds.p14[j, int(top[j])]:.3f}",
                "path": str(path),
            }
        )
    return samples


def _evaluate_run(
    run: LoadedModel, index: ShardIndex, opts: EvalOptions, out: Path, progress: StartStep | None = None
) -> tuple[dict[str, Any], dict[str, Predictions], dict[str, Predictions], list[dict[str, str]]]:
    """One run's scores (+ localization), its predictions on the split and on validation, and its CAM samples."""
    kw: dict[str, Any] = {
        "tta": opts.tta, "batch_size": opts.batch_size, "device": opts.device, "index": index, "progress": progress,
    }  # fmt: skip
    preds = _with_dataset_classes(predict_split(run, opts.data_dir, opts.split, **kw), opts.data_dir, index)
    val = (
        preds  # --split val, or an external set (no validation images): thresholds cross-fitted on these
        if opts.split == "val" or external_source(run.info, opts.data_dir)
        else _with_dataset_classes(predict_split(run, opts.data_dir, "val", **kw), opts.data_dir, index)
    )
    entry: dict[str, Any] = {
        "run_dir": str(run.run_dir),
        "model": run.config["model"]["name"],
        "num_params": run.num_params,
        **_score_pair(preds, val, opts, progress),
    }
    rows = split_indices(index, run.info, opts.split, data_dir=opts.data_dir)
    if opts.bbox_csv is not None:
        entry["localization"] = localize_run(
            run, index, rows, opts.bbox_csv, data_dir=opts.data_dir, bbox_frame=opts.bbox_frame, seed=opts.seed,
            device=opts.device,
        )  # fmt: skip
    return entry, preds, val, _cam_samples(run, index, rows, preds["plain"], out, opts)


def evaluate_runs(
    run_dirs: Sequence[Path], opts: EvalOptions, out: Path, progress: StartStep | None = None
) -> dict[str, Any]:
    """Evaluate each run (and their ensemble when there are several); write all files; return the results.
    `progress(description, total)` is called at the start of each long step (prediction, bootstrap)."""
    if not run_dirs:
        raise BadInputError("no run directory given", "pass one or more RUN_DIRs")
    request = parse_subgroups(opts.subgroups)  # subgroups hook: a bad --subgroups fails before any work
    index = ShardIndex.open(Path(opts.data_dir))
    table = table_from_index(index, request, Path(opts.data_dir)) if request.attributes else None
    runs = [load_model_dir(Path(d), opts.device) for d in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        runs = [replace(r, name=f"{r.name}-{i}") for i, r in enumerate(runs)]
    results: dict[str, Any] = {
        "split": opts.split,
        "data": str(opts.data_dir),
        "tta": opts.tta,
        "bootstrap": opts.bootstrap,
        "seed": opts.seed,
        "evaluated_at": utc_now(),
        "runs": {},
        "cam_samples": [],
    }
    all_preds: dict[str, dict[str, Predictions]] = {}
    all_val: dict[str, dict[str, Predictions]] = {}
    checked = {run.name: _checked_splits(run, index, opts) for run in runs}  # split hook: refuse before writing
    out.mkdir(parents=True, exist_ok=True)
    for run in runs:
        entry, all_preds[run.name], all_val[run.name], cams = _evaluate_run(run, index, opts, out, progress)
        add_subgroups(entry, all_preds[run.name], table, bootstrap=opts.bootstrap, seed=opts.seed, progress=progress)
        results["runs"][run.name] = {**entry, **checked[run.name]}
        results["cam_samples"] += cams
    if len(runs) > 1:
        members = list(all_preds)
        ens = {key: ensemble([all_preds[m][key] for m in members]) for key in all_preds[members[0]]}
        ens_val = {key: ensemble([all_val[m][key] for m in members]) for key in all_val[members[0]]}
        all_preds["ensemble"] = ens
        results["ensemble"] = {"members": members, **_score_pair(ens, ens_val, opts, progress)}
        add_subgroups(results["ensemble"], ens, table, bootstrap=opts.bootstrap, seed=opts.seed, progress=progress)
    write_outputs(results, all_preds, runs, out)
    return results


def _checked_splits(run: LoadedModel, index: ShardIndex, opts: EvalOptions) -> dict[str, Any]:
    """Split hook: `{"split": check_split(...)}` for the scored split, plus `"val_split"` for the validation split
    that thresholds and temperature are fitted on; either is refused when it holds training images."""
    doc = {"split": check_split(index, run.info, opts.split, data_dir=opts.data_dir)}
    if opts.split != "val" and not external_source(run.info, opts.data_dir):
        doc["val_split"] = check_split(index, run.info, "val", data_dir=opts.data_dir)
    return doc


def write_outputs(
    results: dict[str, Any], preds: dict[str, dict[str, Predictions]], runs: Sequence[LoadedModel], out: Path
) -> None:
    """Predictions CSVs, the evaluation's metrics.json, the report, and each run's metrics.json section."""
    from chexvision.evaluate.report import write_report

    split = results["split"]
    for name, by_key in preds.items():
        for key, p in by_key.items():
            suffix = "" if key == "plain" else f"_{key}"
            p.write_csv(out / "predictions" / f"{_safe(name)}_{split}{suffix}.csv")
    _write_json(out / METRICS_JSON, results)
    results["report"] = {k: str(v) for k, v in write_report(results, preds, out).items()}
    for run in runs:
        source = external_source(run.info, Path(results["data"]))
        section = f"external_{source}" if source else metrics_section_name(split)  # the NIH `test` stays
        entry = results["runs"][run.name]
        values = {
            **entry["plain"],
            "split": entry.get("split"),  # which images were scored: {name, count, sha256, matches_training}
            "val_split": entry.get("val_split"),
            "tta": entry.get("tta"),
            "localization": entry.get("localization"),
            "num_params": run.num_params,
            "data": results["data"],
            "evaluated_at": results["evaluated_at"],
            "predictions": str(out / "predictions" / f"{_safe(run.name)}_{split}.csv"),
            "out": str(out),
        }
        RunDir(run.run_dir).write_metrics_section(section, json.loads(json.dumps(values, default=_jsonable)))


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def brief(score: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one score that `--json` prints per model: every metrics-table row (+ `_ci`), per class AUC,
    where thresholds and temperature were fitted, where the binary score comes from, and the bootstrap's
    degenerate replicates (per class: how many resamples had no positives of it, so their macro went without it)."""
    doc = {
        **flat_metrics(score),
        "per_class_auc": score["per_class_auc"],
        "n_images": score["n_images"],
        "fitted_on": score["fitted_on"],
        "binary_source": score["binary_source"],
        "classes_scored": score.get("classes_scored"),
        "classes_not_defined": score.get("classes_not_defined"),
    }
    if "reference" in score:
        doc["reference"] = score["reference"]
    if "subgroups" in score:
        doc["subgroups"] = score["subgroups"]
    if "ci" in score:
        doc["degenerate_replicates"] = score["ci"]["degenerate_replicates"]
        doc["complete_replicates"] = score["ci"]["complete_replicates"]
    return doc


def write_csv_outputs(score: dict[str, Any], preds: Predictions, out: Path, *, name: str | None = None) -> Path:
    """Files of a predictions-CSV evaluation: metrics.json, the joined predictions and the report."""
    from chexvision.evaluate.report import write_report

    out.mkdir(parents=True, exist_ok=True)
    model = name or Path(preds.source).stem or "model"
    results: dict[str, Any] = {
        "split": "predictions file",
        "data": preds.source,
        "fitted_on": score["fitted_on"],
        "binary_source": score["binary_source"],
        "tta": False,
        "bootstrap": (score.get("ci") or {}).get("n", 0),
        "seed": (score.get("ci") or {}).get("seed", 0),
        "evaluated_at": utc_now(),
        "runs": {model: {"plain": score}},
        "cam_samples": [],
    }
    preds.write_csv(out / "predictions" / f"{_safe(model)}.csv")
    _write_json(out / METRICS_JSON, results)
    write_report(results, {model: {"plain": preds}}, out)
    return out
