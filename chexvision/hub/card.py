"""The model card: `huggingface_hub.ModelCardData` metadata (YAML via `to_yaml()`) around a Jinja body.

The body is `templates/modelcard.md.j2`, rendered with `StrictUndefined` (a missing variable is an error, never an
empty string). Everything the card says comes from the run directory (DESIGN §4): config.json (architecture and
training recipe), history.json (the curves plot), metrics.json (model-index results and the per-class table) and
run.json (run id, data set and revision). No torch here: the parameter count is read from the safetensors header.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError
from chexvision.files import read_json_object
from chexvision.labels import LABELS

__all__ = [
    "CARD_FILE",
    "PLOT_FILE",
    "REFERENCES",
    "RunArtifacts",
    "build_card_data",
    "eval_results",
    "plot_training_curves",
    "read_run",
    "render_card",
]

CARD_FILE = "README.md"
PLOT_FILE = "training_curves.png"
WEIGHTS_FILE = "model.safetensors"
REQUIRED = ("config.json", "history.json", "metrics.json", WEIGHTS_FILE)

# The ImageNet weights a pretrained DenseNet starts from (torchvision IMAGENET1K_V1, mirrored by timm on the Hub).
BASE_MODELS = {"densenet": "timm/densenet121.tv_in1k"}

# `{dropout}` is filled from the run's `drop_rate` (tiny smoke variants train without dropout).
ARCHITECTURES = {
    "densenet": (
        "DenseNet-121 (torchvision layout) with a one-channel stem (the ImageNet `conv0` filters summed over RGB), "
        "a feature layer to 512 (ReLU, dropout {dropout}) and two heads on the shared 512-d feature"
    ),
    "seresnet": (
        "An SE-ResNet (basic residual blocks with squeeze-and-excitation, reduction 16; stem 7x7/2 + max-pool), "
        "trained from scratch, ending in a 512-d feature (ReLU, dropout {dropout}) and two heads"
    ),
}
DEFAULT_DROPOUT = {"densenet": 0.3, "seresnet": 0.5}  # the builders' defaults (DESIGN §3)

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

_METRICS = (  # (metrics.json key, model-index metric type, display name, metric config)
    ("macro_auc", "roc_auc", "Macro AUC (14 findings)", "macro"),
    ("binary_auc", "roc_auc", "Binary AUC (any finding vs No Finding)", "binary"),
    ("binary_f1", "f1", "Binary F1 (any finding vs No Finding)", "binary"),
)
_SPLITS = (("val", "validation"), ("test", "test"))
_SOURCES = {  # run.json dataset.source -> words for the card
    "hf": "the published NIH ChestX-ray14 Parquet shards",
    "nih-build": "NIH ChestX-ray14 PNGs built into shards",
    "synthetic": "CheXVision synthetic X-rays",
}


@dataclass(frozen=True)
class RunArtifacts:
    """The JSON files of a run directory, read once and checked."""

    run_dir: Path
    run: dict[str, Any]
    config: dict[str, Any]
    history: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.run.get("run_id") or self.run_dir.name)

    @property
    def model_name(self) -> str:
        return str(self.config.get("model", {}).get("name") or self.run.get("model") or "model")

    @property
    def dataset(self) -> dict[str, Any]:
        return dict(self.run.get("dataset") or {})

    @property
    def split_scheme(self) -> str:
        return str(
            self.metrics.get("split_scheme")
            or self.dataset.get("split_scheme")
            or self.config.get("data", {}).get("split_scheme")
            or "unknown"
        )


def read_run(run_dir: Path) -> RunArtifacts:
    """Read and check a run directory; a missing file is a BadInputError naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run directory {run_dir} not found", "fetch the run first: `chexvision fetch --run ID`")
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise BadInputError(
            f"run directory {run_dir} lacks {', '.join(missing)}",
            "publish a run that finished at least one epoch (training writes these files)",
        )
    run = read_json_object(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    config = read_json_object(run_dir / "config.json")
    if not isinstance(config.get("model"), dict) or "name" not in config["model"]:
        raise BadInputError(f"{run_dir / 'config.json'} has no model name", 'expected "model": {"name": ...}')
    return RunArtifacts(run_dir, run, config, read_json_object(run_dir / "history.json"),
                        read_json_object(run_dir / "metrics.json"))  # fmt: skip


def count_parameters(weights: Path) -> int:
    """Number of parameters in a safetensors file, from its JSON header (no tensors loaded)."""
    with weights.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def _dataset_id(art: RunArtifacts) -> str | None:
    repo = art.dataset.get("repo_id")
    return str(repo) if repo else None


def _dataset_title(art: RunArtifacts) -> str:
    source = art.dataset.get("source")
    base = "CheXVision synthetic chest X-rays" if source == "synthetic" else "NIH ChestX-ray14"
    return f"{base} ({art.split_scheme} split)"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def eval_results(art: RunArtifacts) -> list[Any]:
    """One `EvalResult` per metric and split present in metrics.json (validation; test once evaluated)."""
    from huggingface_hub import EvalResult

    results = []
    for key, split in _SPLITS:
        block = art.metrics.get(key)
        if not isinstance(block, Mapping):
            continue
        for metric_key, metric_type, name, metric_config in _METRICS:
            value = _finite(block.get(metric_key))
            if value is None:
                continue
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
                    metric_name=name,
                    metric_config=metric_config,
                    metric_value=value,
                )
            )
    return results


def _pretrained(art: RunArtifacts) -> bool:
    model = art.config.get("model", {})
    return bool(model.get("pretrained") or model.get("weights"))


def build_card_data(art: RunArtifacts) -> Any:
    """The card's YAML front matter as `huggingface_hub.ModelCardData`."""
    from huggingface_hub import ModelCardData

    dataset = _dataset_id(art)
    base = BASE_MODELS.get(art.model_name) if _pretrained(art) else None
    tags = ["chexvision", "chest-x-ray", "medical-imaging", "multi-label-classification", "nih-chestxray14",
            art.model_name, "safetensors"]  # fmt: skip
    if art.dataset.get("source") == "synthetic":
        tags.append("synthetic-data")
    return ModelCardData(
        model_name=f"chexvision-{art.model_name} ({art.run_id})",
        license="apache-2.0",
        library_name="pytorch",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[dataset] if dataset else None,
        base_model=base,
        metrics=["roc_auc", "f1"],
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


def _metric_rows(metrics: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for key, split in _SPLITS:
        block = metrics.get(key)
        if isinstance(block, Mapping):
            rows.append({"split": split, **{m: _fmt(block.get(m)) for m, *_ in _METRICS},
                         "epoch": str(block.get("epoch", "n/a"))})  # fmt: skip
    return rows


def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        autoescape=False,  # Markdown, not HTML
    )  # fmt: skip
    text = resources.files("chexvision.hub").joinpath("templates/modelcard.md.j2").read_text(encoding="utf-8")
    return env.from_string(text)


def render_card(art: RunArtifacts, *, repo_id: str, revision: str, plot: str | None = PLOT_FILE) -> str:
    """The full README.md: YAML front matter from `ModelCardData.to_yaml()`, then the Jinja body."""
    from chexvision.hub.predict import trained_with_clahe

    card_data = build_card_data(art)
    data = art.config.get("data", {})
    model_cfg = art.config.get("model", {})
    kwargs = model_cfg.get("kwargs") or {}
    dropout = kwargs.get("drop_rate", DEFAULT_DROPOUT.get(art.model_name, "n/a"))
    architecture = ARCHITECTURES.get(art.model_name, "The `{name}` architecture, ending in a 512-d feature")
    history = art.history
    context = {
        "card_data": card_data.to_yaml(),
        # `owner/name@tag` on the Hub; a bare name only exists as a --hub-dir folder (run from that folder)
        "model_spec": f"{repo_id}@{revision}" if "/" in repo_id else f"./{repo_id}@{revision}",
        "revision": revision,
        "run_id": art.run_id,
        "model_name": art.model_name,
        "architecture": architecture.format(name=art.model_name, dropout=dropout),
        "model_kwargs": json.dumps(kwargs, sort_keys=True),
        "num_params": f"{count_parameters(art.run_dir / WEIGHTS_FILE):,}",
        "base_model": card_data.base_model,
        "size": data.get("size", "n/a"),
        "mean": data.get("mean", "n/a"),
        "std": data.get("std", "n/a"),
        # the decision `predict` repeats (run.json's record, else the config's mode and the data source)
        "clahe": trained_with_clahe({"dataset": art.dataset, **art.config}),
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
        "metric_rows": _metric_rows(art.metrics),
        "per_class": _per_class_rows(art.metrics),
        "recipe": _recipe_rows({k: v for k, v in art.config.items() if k != "model"}),
        "plot": plot,
        "references": REFERENCES,
        "labels": LABELS,
    }
    return str(_template().render(**context))
