"""The model card: `huggingface_hub.ModelCardData` metadata (YAML via `to_yaml()`) around a Jinja body.

The body is `templates/modelcard.md.j2`, rendered with `StrictUndefined` (a missing variable is an error, never an
empty string). Everything the card says comes from the run directory (DESIGN §4): config.json (architecture and
training recipe), history.json (the curves plot), metrics.json (model-index results and the per-class table) and
run.json (run id, data set and revision). What the card says about the architecture (its sentence, base model and
pretrained weights, the latter only when the run's config started from them) is the model registry's `ModelInfo`;
which metrics it reports, and how, is the metrics table (`chexvision.evaluate.metrics.METRICS`, the rows with a
model-index type). No torch here: the parameter count is read from the safetensors header (parameters only:
BatchNorm buffers are left out).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError
from chexvision.evaluate.metrics import METRICS, TEST, VAL, Metric, Threshold
from chexvision.labels import LABELS
from chexvision.models import ModelInfo, count_state_parameters, get_model_info
from chexvision.rundir import (
    CONFIG_JSON,
    HISTORY_JSON,
    METRICS_JSON,
    WEIGHTS,
    RunInfo,
    read_run_dir,
    read_safetensors_header,
)

__all__ = [
    "CARD_FILE",
    "PLOT_FILE",
    "REFERENCES",
    "build_card_data",
    "eval_results",
    "plot_training_curves",
    "read_run",
    "render_card",
]

CARD_FILE = "README.md"
PLOT_FILE = "training_curves.png"
REQUIRED = (CONFIG_JSON, HISTORY_JSON, METRICS_JSON, WEIGHTS)  # run.json is optional (older runs lack it)

# Published numbers and the split each was measured on: only same-split numbers are comparable.
REFERENCES: tuple[dict[str, str], ...] = (
    {
        "name": "CheXNet (Rajpurkar et al. 2017), DenseNet-121",
        "macro_auc": "0.841",
        "split": "CheXNet patient-disjoint random split (`chexnet` scheme), its test set",
        "comparable_with": "chexnet",
    },
    {
        "name": "ImageNet-pretrained DenseNet-121, typical reproductions",
        "macro_auc": "~0.81-0.82",
        "split": "official NIH test split (`official` scheme)",
        "comparable_with": "official",
    },
    {
        "name": "Original CheXVision DenseNet-121 / SE-ResNet",
        "macro_auc": "0.8459 / 0.8141",
        "split": "per-image random split that LEAKS patients between train and validation: not comparable",
        "comparable_with": "",
    },
)

_SPLITS = ((VAL, "validation"), (TEST, "test"))  # metrics.json section -> model-index split
_SOURCES = {  # run.json dataset.source -> words for the card
    "hf": "the published NIH ChestX-ray14 Parquet shards",
    "nih-build": "NIH ChestX-ray14 PNGs built into shards",
    "synthetic": "CheXVision synthetic X-rays",
}


def read_run(run_dir: Path) -> RunInfo:
    """Read and check a run directory; a missing file is a BadInputError naming it."""
    art = read_run_dir(
        Path(run_dir), required=REQUIRED,
        hint="publish a run that finished at least one epoch (training writes these files; "
        "fetch a remote run first: `chexvision fetch --run ID`)",
    )  # fmt: skip
    if not isinstance(art.config.get("model"), dict) or "name" not in art.config["model"]:
        raise BadInputError(f"{art.run_dir / CONFIG_JSON} has no model name", 'expected "model": {"name": ...}')
    return art


def count_parameters(weights: Path) -> int:
    """Parameters in a safetensors file, from its JSON header (no tensors loaded; BatchNorm buffers left out)."""
    return count_state_parameters(read_safetensors_header(weights))


def _dataset_id(art: RunInfo) -> str | None:
    repo = art.dataset.get("repo_id")
    return str(repo) if repo else None


def _dataset_title(art: RunInfo) -> str:
    source = art.dataset.get("source")
    base = "CheXVision synthetic chest X-rays" if source == "synthetic" else "NIH ChestX-ray14"
    return f"{base} ({art.split_scheme} split)"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _card_metrics() -> tuple[Metric, ...]:
    """The metrics table's rows that the card reports (those with a model-index type), in table order."""
    return tuple(m for m in METRICS if m.model_index is not None)


def _threshold_args(metric: Metric) -> dict[str, Any] | None:
    """A thresholded metric's model-index `args`: where the abnormal probability was cut."""
    if metric.threshold is Threshold.NONE:
        return None
    return {"threshold": 0.5 if metric.threshold is Threshold.HALF else metric.threshold.description}


def eval_results(art: RunInfo) -> list[Any]:
    """One `EvalResult` per card metric and split present in metrics.json (validation; test once evaluated)."""
    from huggingface_hub import EvalResult

    results = []
    for key, split in _SPLITS:
        block = art.metrics.get(key)
        if not isinstance(block, Mapping):
            continue
        for metric in _card_metrics():
            value = _finite(block.get(metric.key))
            if value is None or metric.model_index is None:
                continue
            metric_type, metric_config = metric.model_index
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Multi-label chest X-ray classification",
                    dataset_type=_dataset_id(art) or f"chexvision-{art.dataset.get('source') or 'local'}",
                    dataset_name=_dataset_title(art),
                    dataset_config=art.split_scheme,
                    dataset_split=split,
                    dataset_revision=art.dataset.get("revision") or None,
                    dataset_args={"split_scheme": art.split_scheme},
                    metric_type=metric_type,
                    metric_name=metric.name,
                    metric_config=metric_config,
                    metric_args=_threshold_args(metric),
                    metric_value=value,
                )
            )
    return results


def _model_info(art: RunInfo) -> ModelInfo | None:
    """The registry's facts about the run's model; None for a model this version does not know."""
    try:
        return get_model_info(art.model_name)
    except BadInputError:
        return None


def _started_pretrained(art: RunInfo) -> bool:
    """True when the run's config started the backbone from pretrained weights the model has (never for scratch)."""
    model = art.config.get("model", {})
    info = _model_info(art)
    return bool(info and info.pretrained and (model.get("pretrained") or model.get("weights")))


def build_card_data(art: RunInfo) -> Any:
    """The card's YAML front matter as `huggingface_hub.ModelCardData`."""
    from huggingface_hub import ModelCardData

    dataset = _dataset_id(art)
    info = _model_info(art)
    base = info.base_model if info and _started_pretrained(art) else None
    # library_name + the mixin's tags: the Hub shows "Use this model" with `CheXModel.from_pretrained`
    tags = ["chexvision", "chest-x-ray", "medical-imaging", "multi-label-classification", "nih-chestxray14",
            art.model_name, "safetensors", "pytorch", "model_hub_mixin", "pytorch_model_hub_mixin"]  # fmt: skip
    if art.dataset.get("source") == "synthetic":
        tags.append("synthetic-data")
    return ModelCardData(
        model_name=f"chexvision-{art.model_name} ({art.run_id})",
        license="apache-2.0",
        library_name="chexvision",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[dataset] if dataset else None,
        base_model=base,
        metrics=list(dict.fromkeys(m.model_index[0] for m in _card_metrics() if m.model_index)),
        eval_results=eval_results(art) or None,
    )


def plot_training_curves(history: Mapping[str, Any], out: Path) -> Path | None:
    """Loss and validation AUC per epoch as a PNG (matplotlib Agg); None when there is no epoch to plot."""
    epochs = [e for e in history.get("epochs", []) if isinstance(e, Mapping) and "epoch" in e]
    if not epochs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    x = [e["epoch"] for e in epochs]

    def series(key: str) -> list[float]:
        return [v if (v := _finite(e.get(key))) is not None else math.nan for e in epochs]

    fig = Figure(figsize=(10, 3.8), dpi=100)
    loss_ax, auc_ax = fig.subplots(1, 2)
    loss_ax.plot(x, series("train_loss"), marker="o", label="train loss")
    loss_ax.plot(x, series("val_loss"), marker="o", label="validation loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    auc_ax.plot(x, series("val_macro_auc"), marker="o", label="val macro AUC (14)")
    auc_ax.plot(x, series("val_binary_auc"), marker="o", label="val binary AUC")
    auc_ax.set(xlabel="epoch", ylabel="AUC", title="Validation AUC")
    best = history.get("best_epoch")
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, auc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if isinstance(best, int):
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})  # no version stamp: same run, same bytes
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    number = _finite(value)
    return "n/a" if number is None else f"{number:.{digits}f}"


def _per_class_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    val = (metrics.get("val") or {}).get("per_class_auc") or {}
    test = (metrics.get("test") or {}).get("per_class_auc") or {}
    return [{"label": label, "val": _fmt(val.get(label)), "test": _fmt(test.get(label))} for label in LABELS]


def _recipe_rows(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The resolved config flattened to (dotted key, JSON value) rows, for the card's recipe table."""
    rows: list[tuple[str, str]] = []
    for key in sorted(config):
        value = config[key]
        if isinstance(value, Mapping) and value:
            rows += _recipe_rows(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", json.dumps(value)))
    return rows


def _metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per split in metrics.json: the card metrics' values in table order, then the epoch."""
    rows = []
    best = (metrics.get(VAL) or {}).get("epoch", "n/a")  # evaluation scores the published (best-epoch) weights
    for key, split in _SPLITS:
        block = metrics.get(key)
        if isinstance(block, Mapping):
            cells = [_fmt(block.get(m.key)) for m in _card_metrics()]
            rows.append({"split": split, "cells": cells, "epoch": str(block.get("epoch", best))})
    return rows


def _threshold_notes() -> list[str]:
    """One sentence per card metric measured at a threshold: which splits carry it and where it cuts."""
    notes = []
    for m in _card_metrics():
        if m.threshold is not Threshold.NONE:
            splits = " and ".join(dict(_SPLITS)[s] for s in m.splits)
            notes.append(f"{m.column}: the abnormal probability cut at {m.threshold.description} ({splits})")
    return notes


def _estimate(value: Any, ci: Any = None, spec: str = ".3f") -> str:
    """`0.812 [0.790, 0.833]`: a number with its 95% CI when there is one; "n/a" when there is no number."""
    number = _finite(value)
    if number is None:
        return "n/a"
    bounds = [_finite(b) for b in ci] if isinstance(ci, list | tuple) and len(ci) == 2 else []
    if len(bounds) == 2 and None not in bounds:
        return f"{number:{spec}} [{bounds[0]:{spec}}, {bounds[1]:{spec}}]"
    return f"{number:{spec}}"


def _split_line(split: Any) -> str | None:
    """The evaluated split's fingerprint (issue 11): name, image count, sha256 prefix, whether training held it out."""
    if not isinstance(split, Mapping) or "name" not in split:
        return None
    match = split.get("matches_training")
    if match is True:
        verdict = "the split training held out"
    elif match is False:
        verdict = "NOT the split training held out (a partial or different data folder)"
    else:
        verdict = "training recorded no fingerprint to compare"
    sha = str(split.get("sha256") or "")[:12]
    return f"`{split['name']}`, {split.get('count', 'n/a')} images, sha256 `{sha}...`: {verdict}"


_ATTRIBUTES = {"sex": "Sex", "age": "Age band", "view": "View"}


def _subgroup_context(subgroups: Any) -> dict[str, Any] | None:
    """Rows (attribute, subgroup, images, macro AUROC [CI], underdiagnosis [CI]) and one gap sentence per attribute."""
    if not isinstance(subgroups, Mapping):
        return None
    from chexvision.evaluate.subgroup_report import gap_sentence

    attributes = [
        a for a in subgroups.get("attributes") or ("sex", "age", "view") if isinstance(subgroups.get(a), Mapping)
    ]
    rows = [
        {"attribute": _ATTRIBUTES.get(attribute, attribute), "group": group, "images": g.get("images", "n/a"),
         "auc": _estimate(g.get("macro_auc"), g.get("macro_auc_ci")),
         "rate": _estimate(g.get("underdiagnosis_rate"), g.get("underdiagnosis_ci"))}
        for attribute in attributes
        for group, g in subgroups[attribute].items()
        if isinstance(g, Mapping) and g.get("images")
    ]  # fmt: skip
    gaps = subgroups.get("largest_gap") or {}
    min_abnormal = subgroups.get("min_gap_abnormal", "n/a")
    sentences = [gap_sentence(a, gaps.get(a), min_abnormal)["text"] for a in attributes if a in gaps]
    return {"rows": rows, "gaps": sentences} if rows or sentences else None


def _reference_context(reference: Any) -> dict[str, Any] | None:
    """Per finding: images, AUROC vs the adjudicated labels and vs NIH's labels on the same images [CI], the gap."""
    if not isinstance(reference, Mapping) or not isinstance(reference.get("per_finding_auc"), Mapping):
        return None
    ci = reference.get("ci") or {}
    nih, gap = reference.get("nih_label_auc") or {}, reference.get("gap") or {}
    rows = [
        {"finding": finding, "images": reference.get("images", "n/a"),
         "auc": _estimate(auc, (ci.get("per_finding_auc") or {}).get(finding)),
         "nih": _estimate(nih.get(finding), (ci.get("nih_label_auc") or {}).get(finding)),
         "gap": _estimate(gap.get(finding), (ci.get("gap") or {}).get(finding), "+.3f")}
        for finding, auc in reference["per_finding_auc"].items()
    ]  # fmt: skip
    return {"name": reference.get("name", "n/a"), "rows": rows} if rows else None


def _evaluation_context(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """What `chexvision evaluate` recorded in metrics.json "test" beyond the metrics (issue 11); each None or empty
    when the run was never evaluated, or evaluated before it recorded that."""
    test = metrics.get("test")
    test = test if isinstance(test, Mapping) else {}
    not_defined = test.get("classes_not_defined")
    return {
        "eval_split": _split_line(test.get("split")),
        "fitted_on": test.get("fitted_on") or None,
        "binary_source": test.get("binary_source") or None,
        "subgroups": _subgroup_context(test.get("subgroups")),
        "reference": _reference_context(test.get("reference")),
        "classes_not_defined": [str(c) for c in not_defined] if isinstance(not_defined, list) else [],
    }


def _model_context(art: RunInfo, base_model: str | None) -> dict[str, Any]:
    """What the card says about the architecture, its size and where its weights started."""
    model_cfg = art.config.get("model", {})
    kwargs = model_cfg.get("kwargs") or {}
    info = _model_info(art)
    dropout = kwargs.get("drop_rate", info.drop_rate if info else "n/a")
    architecture = info.description if info else "The `{name}` architecture, ending in a 512-d feature"
    weights = model_cfg.get("weights")
    return {
        "architecture": architecture.format(name=art.model_name, dropout=dropout),
        "model_kwargs": json.dumps(kwargs, sort_keys=True),
        "num_params": f"{count_parameters(art.run_dir / WEIGHTS):,}",
        "base_model": base_model,
        # the pretrained weights' description, only when this run's config started from them
        "pretrained": info.pretrained if info and _started_pretrained(art) else None,
        "weights_file": Path(str(weights)).name if weights and _started_pretrained(art) else None,
    }


def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    )  # fmt: skip
    text = resources.files("chexvision.hub").joinpath("templates/modelcard.md.j2").read_text(encoding="utf-8")
    return env.from_string(text)


def render_card(art: RunInfo, *, repo_id: str, revision: str, plot: str | None = PLOT_FILE) -> str:
    """The full README.md: YAML front matter from `ModelCardData.to_yaml()`, then the Jinja body."""
    from chexvision.inference.preprocess import trained_with_clahe

    card_data = build_card_data(art)
    data = art.config.get("data", {})
    history = art.history
    context = {
        "card_data": card_data.to_yaml(),
        # `owner/name@tag` on the Hub; a bare name only exists as a --hub-dir folder (run from that folder)
        "model_spec": f"{repo_id}@{revision}" if "/" in repo_id else f"./{repo_id}@{revision}",
        "revision": revision,
        "repo_id": repo_id,
        "run_id": art.run_id,
        "model_name": art.model_name,
        **_model_context(art, card_data.base_model),
        "size": data.get("size", "n/a"),
        "mean": data.get("mean", "n/a"),
        "std": data.get("std", "n/a"),
        # the decision `predict` repeats (run.json's record, else the config's mode and the data source)
        "clahe": trained_with_clahe(art.config, art.dataset),
        "split_scheme": art.split_scheme,
        "dataset_title": _dataset_title(art),
        "dataset_id": _dataset_id(art),
        "dataset_revision": art.dataset.get("revision"),
        "dataset_source": _SOURCES.get(str(art.dataset.get("source")), "local shards"),
        "synthetic": art.dataset.get("source") == "synthetic",
        "counts": art.dataset.get("counts") or {},
        "status": art.run.get("status", "unknown"),
        "preset": art.run.get("preset") or art.config.get("preset"),
        "git_sha": art.run.get("git_sha"),
        "finished_at": art.run.get("finished_at"),
        "epochs_run": len(history.get("epochs", [])),
        "best_epoch": history.get("best_epoch"),
        "metric_columns": [m.column for m in _card_metrics()],
        "metric_rows": _metric_rows(art.metrics),
        "threshold_notes": _threshold_notes(),
        "per_class": _per_class_rows(art.metrics),
        **_evaluation_context(art.metrics),
        "recipe": _recipe_rows({k: v for k, v in art.config.items() if k != "model"}),
        "plot": plot,
        "references": REFERENCES,
        "labels": LABELS,
    }
    return str(_template().render(**context))
