"""`chexvision evaluate`, `chexvision compare` and `chexvision cam`: score runs or prediction files, compare runs
head to head, and draw Grad-CAM maps. Thin skin over `chexvision.evaluate`; torch is imported only when a
command runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from chexvision.errors import BadInputError

JsonFlag = Annotated[bool, typer.Option("--json", help="Print plain JSON to stdout.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu | cuda | auto (cuda when available).")]


def register(app: typer.Typer) -> None:
    """Add `evaluate`, `compare` and `cam` to `app`."""
    app.command("evaluate")(evaluate)
    app.command("compare")(compare)
    app.command("cam")(cam)


def _device(name: str) -> str:
    from chexvision.device import resolve_device

    return str(resolve_device(name))


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, allow_nan=False))


def evaluate(
    run_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Run directories (several: also their ensemble).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Data folder (shards) the runs were trained on.")] = None,
    split: Annotated[str, typer.Option(help="test | val.")] = "test",
    tta: Annotated[bool, typer.Option("--tta", help="Also report 4-view TTA (identity, h-flip, +-7 deg).")] = False,
    bootstrap: Annotated[int, typer.Option(help="Patient-bootstrap replicates for 95% CIs (0: none).")] = 1000,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: RUN_DIR/eval-SPLIT, or ./eval-SPLIT).")
    ] = None,
    predictions: Annotated[Path | None, typer.Option(help="Score this predictions CSV instead of runs.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Ground truth for --predictions (NIH Data_Entry CSV).")] = None,
    images: Annotated[
        Path | None, typer.Option(help="Only these images (one name per line) for --predictions.")
    ] = None,
    val_predictions: Annotated[
        Path | None, typer.Option(help="Validation predictions CSV for thresholds/temperature (--predictions).")
    ] = None,
    localization: Annotated[
        Path | None, typer.Option(help="Score Grad-CAM maps against these NIH-format boxes.")
    ] = None,
    bbox_frame: Annotated[int | None, typer.Option(help="Pixel size the boxes are drawn in (default: auto).")] = None,
    target_sensitivity: Annotated[float, typer.Option(help="Second binary operating point.")] = 0.95,
    cam_samples: Annotated[int, typer.Option(help="Grad-CAM overlays per run in the report.")] = 4,
    seed: Annotated[int, typer.Option(help="Bootstrap and chance-baseline seed.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Score runs (AUROC/AUPRC with patient-bootstrap CIs, operating points, calibration, TTA, ensemble)
    or a predictions CSV from any model; write metrics, predictions and an HTML/Markdown report."""
    if split not in ("test", "val"):
        raise BadInputError(f"unknown split {split!r}", "use --split test or --split val")
    if predictions is not None:
        result = _evaluate_csv(predictions, labels, images, val_predictions, bootstrap, seed, target_sensitivity, out)
    else:
        result = _evaluate_runs(
            run_dirs or [], data, split, tta, bootstrap, out, localization, bbox_frame, target_sensitivity,
            cam_samples, seed, batch_size, device,
        )  # fmt: skip
    if as_json:
        _print_json(result)
    else:
        _print_summary(result)


def _evaluate_csv(
    predictions: Path,
    labels: Path | None,
    images: Path | None,
    val_predictions: Path | None,
    bootstrap: int,
    seed: int,
    target_sensitivity: float,
    out: Path | None,
) -> dict[str, Any]:
    from chexvision.evaluate.evaluation import brief
    from chexvision.evaluate.predictions import predictions_from_csv, read_image_list, score_predictions

    if labels is None:
        raise BadInputError("--predictions needs --labels", "pass the NIH metadata CSV: --labels Data_Entry_2017.csv")
    names = read_image_list(images) if images is not None else None
    test = predictions_from_csv(predictions, labels, names)
    val = predictions_from_csv(val_predictions, labels) if val_predictions is not None else None
    score = score_predictions(test, val, bootstrap=bootstrap, seed=seed, target_sensitivity=target_sensitivity)
    result: dict[str, Any] = {**brief(score), "name": predictions.stem, "source": str(predictions)}
    if out is not None:
        from chexvision.evaluate.evaluation import write_csv_outputs

        result["out"] = str(write_csv_outputs(score, test, out))
    return result


def _evaluate_runs(
    run_dirs: list[Path],
    data: Path | None,
    split: str,
    tta: bool,
    bootstrap: int,
    out: Path | None,
    localization: Path | None,
    bbox_frame: int | None,
    target_sensitivity: float,
    cam_samples: int,
    seed: int,
    batch_size: int,
    device: str,
) -> dict[str, Any]:
    from chexvision.evaluate.evaluation import EvalOptions, brief, evaluate_runs

    if not run_dirs:
        raise BadInputError("nothing to evaluate", "pass RUN_DIR ... --data DIR, or --predictions CSV --labels CSV")
    if data is None:
        raise BadInputError("--data is required to evaluate runs", "pass the data folder, e.g. --data data/synth")
    target = out or (run_dirs[0] / f"eval-{split}" if len(run_dirs) == 1 else Path(f"eval-{split}"))
    opts = EvalOptions(
        data_dir=data, split=split, tta=tta, bootstrap=bootstrap, seed=seed, target_sensitivity=target_sensitivity,
        batch_size=batch_size, device=_device(device), bbox_csv=localization, bbox_frame=bbox_frame,
        cam_samples=cam_samples,
    )  # fmt: skip
    results = evaluate_runs(run_dirs, opts, target)

    def model_json(entry: dict[str, Any]) -> dict[str, Any]:
        doc = brief(entry["plain"])
        if "tta" in entry:
            doc["tta"] = brief(entry["tta"])
        if entry.get("localization"):
            doc["localization"] = entry["localization"]["overall"]
        return doc

    runs = {name: model_json(entry) for name, entry in results["runs"].items()}
    primary = model_json(results["ensemble"]) if "ensemble" in results else next(iter(runs.values()))
    name = "ensemble" if "ensemble" in results else next(iter(runs))
    doc: dict[str, Any] = {
        **primary,
        "name": name,
        "split": split,
        "out": str(target),
        "report": results["report"]["html"],
    }
    if len(runs) > 1:
        doc["runs"] = runs
        doc["ensemble"] = primary
    return doc


def _print_summary(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from chexvision.evaluate.metrics import METRICS
    from chexvision.evaluate.report import format_estimate as fmt

    models = result.get("runs") or {result.get("name", "model"): result}
    if "ensemble" in result:
        models = {**models, "ensemble": result["ensemble"]}
    shown = [m for m in METRICS if m.summary]  # the metrics table's summary columns
    table = Table("model", *(m.column + (" [95% CI]" if m.ci else "") for m in shown), "TTA macro AUROC")
    for name, doc in models.items():
        cells = [fmt(doc.get(m.key), doc.get(f"{m.key}_ci") if m.ci else None) for m in shown]
        table.add_row(name, *cells, fmt((doc.get("tta") or {}).get("macro_auc")))
    console = Console()
    console.print(table)
    if "out" in result:
        console.print(f"results in {result['out']}" + (f"; report {result['report']}" if "report" in result else ""))


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more evaluated run directories.")],
    out: Annotated[Path, typer.Option(help="Output folder for compare.{md,json,csv}.")] = Path("compare"),
    bootstrap: Annotated[int, typer.Option(help="Patient resamples for the paired test (0: none).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Head-to-head table of evaluated runs and a paired bootstrap test of their macro-AUROC difference."""
    from chexvision.evaluate.compare import compare_runs, comparison_markdown, write_comparison

    result = compare_runs(run_dirs, bootstrap=bootstrap, seed=seed)
    paths = write_comparison(result, out)
    if as_json:
        _print_json({**result, "out": {k: str(v) for k, v in paths.items()}})
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(comparison_markdown(result)))
    Console().print(f"written to {out}")


def cam(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG/JPEG).")],
    out: Annotated[Path, typer.Option(help="Output folder for the PNG overlays.")] = Path("cam"),
    label: Annotated[str | None, typer.Option(help="Map this label (default: the top classes).")] = None,
    top: Annotated[int, typer.Option(help="How many top classes per image without --label.")] = 3,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Grad-CAM on the model's last convolutional map, overlaid on each image (PNG files)."""
    from chexvision.evaluate.gradcam import cam_images

    written = cam_images(run_dir, images, out, label=label, top=top, device=_device(device))
    if as_json:
        _print_json(written)
        return
    for row in written:
        typer.echo(f"{row['png']}  ({row['label']}, p={float(row['probability']):.3f})")  # type: ignore[arg-type]
