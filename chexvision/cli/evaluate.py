"""`chexvision evaluate`, `chexvision compare` and `chexvision cam`: score runs or prediction files, compare runs
head to head, and draw Grad-CAM maps. Thin skin over `chexvision.evaluate`; torch is imported only when a
command runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chexvision.errors import BadInputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

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


@contextmanager
def _progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Transient rich progress bars on stderr for the long steps (prediction over a split, the bootstrap): a
    `StartStep` that adds one bar per step; all vanish when the command ends. rich.progress is imported here only."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bars:

        def start(description: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(description, total=total)
            return lambda n: bars.advance(task, n)

        yield start


def evaluate(
    run_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Run directories (several: also their ensemble).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Data folder (shards) the runs were trained on.")] = None,
    split: Annotated[str, typer.Option(help="test | val.")] = "test",
    tta: Annotated[bool, typer.Option("--tta", help="Also report 4-view TTA (identity, h-flip, +-7 deg).")] = False,
    bootstrap: Annotated[int, typer.Option(help="Patient-bootstrap replicates for 95% CIs (0: none).", min=0)] = 1000,
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
        Path | None,
        typer.Option(help="Score Grad-CAM maps against these NIH-format boxes.", exists=True, dir_okay=False),
    ] = None,
    bbox_frame: Annotated[
        int | None, typer.Option(help="Pixel size the boxes are drawn in (default: auto).", min=1)
    ] = None,
    target_sensitivity: Annotated[float, typer.Option(help="Second binary operating point.", min=0.0, max=1.0)] = 0.95,
    cam_samples: Annotated[int, typer.Option(help="Grad-CAM overlays per run in the report.", min=0)] = 4,
    seed: Annotated[int, typer.Option(help="Bootstrap and chance-baseline seed.")] = 0,
    reference: Annotated[
        str | None,
        typer.Option(help="Also score against adjudicated labels: google2019 (4 findings, 4,376 NIH images)."),
    ] = None,
    reference_set: Annotated[
        str | None, typer.Option(help="Sets of --reference to score, comma-separated (google2019: test,val; all).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 64,
    device: DeviceOpt = "auto",
    subgroups: Annotated[
        str, typer.Option(help="Subgroup attributes: sex,age,view (any of them), auto (those the metadata has), none.")
    ] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Score runs (AUROC/AUPRC with patient-bootstrap CIs, operating points, calibration, TTA, ensemble)
    or a predictions CSV from any model; write metrics, predictions and an HTML/Markdown report."""
    if split not in ("test", "val"):
        raise BadInputError(f"unknown split {split!r}", "use --split test or --split val")
    if predictions is not None and run_dirs:
        raise BadInputError("RUN_DIR and --predictions were both given", "score runs or a predictions CSV, not both")
    from chexvision.evaluate.subgroups import parse_subgroups

    parse_subgroups(subgroups)  # a bad --subgroups is refused before any work
    ref = _reference(reference, reference_set)  # likewise a bad --reference / --reference-set
    if predictions is not None:
        result = _evaluate_csv(
            predictions, labels, images, val_predictions, bootstrap, seed, target_sensitivity, out, subgroups=subgroups,
            ref=ref,
        )  # fmt: skip
    else:
        result = _evaluate_runs(
            run_dirs or [], data, split, tta, bootstrap, out, localization, bbox_frame, target_sensitivity,
            cam_samples, seed, batch_size, device, subgroups=subgroups, ref=ref,
        )  # fmt: skip
    if as_json:
        _print_json(result)
    else:
        _print_summary(result)


Reference = tuple[str, tuple[str, ...] | None]  # (--reference, its sets or None for all)


def _reference(name: str | None, sets: str | None) -> Reference | None:
    """`--reference` / `--reference-set` checked against the shipped references (exit 2 when unknown)."""
    if name is None:
        if sets is not None:
            raise BadInputError("--reference-set without --reference", "add --reference google2019")
        return None
    from chexvision.evaluate.references import load_reference

    known = sorted(set(load_reference(name).sets))  # an unknown name is a BadInputError listing the known ones
    chosen = tuple(s.strip() for s in sets.split(",") if s.strip()) if sets else None
    if chosen is not None and (bad := [s for s in chosen if s not in known]):
        raise BadInputError(f"reference {name} has no set {', '.join(bad)}", f"use --reference-set {','.join(known)}")
    return name, chosen


def _evaluate_csv(
    predictions: Path,
    labels: Path | None,
    images: Path | None,
    val_predictions: Path | None,
    bootstrap: int,
    seed: int,
    target_sensitivity: float,
    out: Path | None,
    *,
    subgroups: str = "auto",
    ref: Reference | None = None,
) -> dict[str, Any]:
    from chexvision.evaluate.evaluation import brief
    from chexvision.evaluate.predictions import predictions_from_csv, read_image_list, score_predictions
    from chexvision.evaluate.subgroups import add_subgroups, csv_subgroup_table

    if labels is None:
        raise BadInputError("--predictions needs --labels", "pass the NIH metadata CSV: --labels Data_Entry_2017.csv")
    names = read_image_list(images) if images is not None else None
    test = predictions_from_csv(predictions, labels, names)
    val = predictions_from_csv(val_predictions, labels) if val_predictions is not None else None
    for line in test.warnings + (val.warnings if val is not None else []):
        typer.echo(f"warning: {line}", err=True)
    table = csv_subgroup_table(labels, subgroups)  # before scoring: a missing attribute fails first
    with _progress_bars() as progress:
        score = score_predictions(
            test, val, bootstrap=bootstrap, seed=seed, target_sensitivity=target_sensitivity, progress=progress
        )
        add_subgroups({"plain": score}, {"plain": test}, table, bootstrap=bootstrap, seed=seed, progress=progress)
        if ref is not None:  # issue 11 item 6: adjudicated labels of the images that have them
            from chexvision.evaluate.evaluation import reference_score

            score["reference"] = reference_score(test, *ref, bootstrap=bootstrap, seed=seed, progress=progress)
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
    *,
    subgroups: str = "auto",
    ref: Reference | None = None,
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
        cam_samples=cam_samples, subgroups=subgroups, reference=ref[0] if ref else None,
        reference_sets=ref[1] if ref else None,
    )  # fmt: skip
    with _progress_bars() as progress:
        results = evaluate_runs(run_dirs, opts, target, progress)

    def model_json(entry: dict[str, Any]) -> dict[str, Any]:
        doc = brief(entry["plain"])
        if "tta" in entry:
            doc["tta"] = brief(entry["tta"])
        if entry.get("localization"):
            doc["localization"] = entry["localization"]["overall"]
        doc.update({k: _split_json(entry[k]) for k in ("split", "val_split") if k in entry})  # split hook
        return doc

    _warn_splits(results["runs"].values())  # split hook: one line per distinct warning
    runs = {name: model_json(entry) for name, entry in results["runs"].items()}
    primary = model_json(results["ensemble"]) if "ensemble" in results else next(iter(runs.values()))
    name = "ensemble" if "ensemble" in results else next(iter(runs))
    doc: dict[str, Any] = {
        **primary,
        "name": name,
        "split": _scored_split(results["runs"].values(), split),
        "out": str(target),
        "report": results["report"]["html"],
    }
    if len(runs) > 1:
        doc["runs"] = runs
        doc["ensemble"] = primary
    return doc


def _split_json(check: dict[str, Any]) -> dict[str, Any]:
    """A split check as --json prints it: {name, count, sha256, matches_training} (its warning goes to stderr)."""
    return {k: check[k] for k in ("name", "count", "sha256", "matches_training")}


def _scored_split(entries: Any, split: str) -> dict[str, Any]:
    """The top-level "split": the first run's scored fingerprint; matches_training true only when every run's is."""
    checks = [entry["split"] for entry in entries if "split" in entry]
    if not checks:
        return {"name": split, "count": None, "sha256": None, "matches_training": None}
    matches = [c["matches_training"] for c in checks]
    doc = _split_json(checks[0])
    doc["matches_training"] = None if None in matches else all(matches)
    return doc


def _warn_splits(entries: Any) -> None:
    seen: list[str] = []
    for entry in entries:
        for key in ("split", "val_split"):
            line = (entry.get(key) or {}).get("warning")
            if line and line not in seen:
                seen.append(line)
                typer.echo(f"warning: {line}", err=True)


def summary_tables(result: dict[str, Any], width: int) -> list[Table]:
    """The terminal summary: one row per metric, one column per model, as many models side by side as fit
    `width` columns (the rest in further tables), so no model name or number is ever folded or cut."""
    from rich.table import Table

    from chexvision.evaluate.metrics import METRICS
    from chexvision.evaluate.report import format_estimate as fmt

    models = result.get("runs") or {result.get("name", "model"): result}
    if "ensemble" in result:
        models = {**models, "ensemble": result["ensemble"]}
    shown = [m for m in METRICS if m.summary]  # the metrics table's summary columns
    rows = [
        (m.column + (" [95% CI]" if m.ci else ""), [fmt(d.get(m.key), d.get(f"{m.key}_ci") if m.ci else None)
                                                    for d in models.values()])
        for m in shown
    ]  # fmt: skip
    if any("tta" in d for d in models.values()):
        rows.append(("TTA macro AUROC", [fmt((d.get("tta") or {}).get("macro_auc")) for d in models.values()]))
    names = list(models)
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(name), *(len(cells[i]) for _, cells in rows)) for i, name in enumerate(names)]
    groups: list[list[int]] = [[]]
    used = 1 + label_width + 3  # rich's box: a border and one space of padding on each side of every column
    for i, w in enumerate(widths):
        if groups[-1] and used + w + 3 > width:
            groups.append([])
            used = 1 + label_width + 3
        groups[-1].append(i)
        used += w + 3
    tables = []
    for group in groups:
        table = Table()
        table.add_column("metric", no_wrap=True)
        for i in group:
            table.add_column(names[i], no_wrap=True, justify="right")
        for label, cells in rows:
            table.add_row(label, *(cells[i] for i in group))
        tables.append(table)
    return tables


def _print_summary(result: dict[str, Any], console: Console | None = None) -> None:
    from rich.console import Console

    console = console or Console()
    for table in summary_tables(result, console.width):
        console.print(table)
    if "out" in result:  # soft wrap: a long path is left to the terminal, never split by rich
        console.print(f"results in {result['out']}", soft_wrap=True)
        if "report" in result:
            console.print(f"report {result['report']}", soft_wrap=True)


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more evaluated run directories.")],
    out: Annotated[Path, typer.Option(help="Output folder for compare.{md,json,csv}.")] = Path("compare"),
    bootstrap: Annotated[int, typer.Option(help="Patient resamples for the paired test (0: none).", min=0)] = 1000,
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
    images: Annotated[
        list[Path], typer.Argument(help="Image files (PNG/JPEG); without --model the first is a run directory.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="As for predict: owner/name[@rev], a run or --hub-dir folder, FOLDER@TAG, or NAME in "
            "$CHEXVISION_HOME/hub.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder for the PNG overlays.")] = Path("cam"),
    label: Annotated[str | None, typer.Option(help="Map this label (default: the top classes).")] = None,
    top: Annotated[int, typer.Option(help="How many top classes per image without --label.")] = 3,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Grad-CAM on the model's last convolutional map, overlaid on each image (PNG files at the image's
    resolution, with the label, its probability and a colour bar); a uniform map is a warning on stderr."""
    from chexvision.cli.hub import cam_model_dir
    from chexvision.evaluate.gradcam import cam_images

    model_dir, images = cam_model_dir(model, images)
    written = cam_images(model_dir, images, out, label=label, top=top, device=_device(device))
    for row in written:
        if row.get("warning"):
            typer.echo(f"warning: {row['warning']}", err=True)  # one line per uniform map, --json or not
    if as_json:
        _print_json(written)
        return
    for row in written:
        typer.echo(f"{row['png']}  ({row['label']}, p={float(row['probability']):.3f})")  # type: ignore[arg-type]
