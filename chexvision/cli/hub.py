"""`chexvision publish` and `chexvision predict`: a run to the Hub (or a folder), and a model back to predictions.

No torch at import: the library is imported inside each command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from chexvision.hub.publish import PublishResult
    from chexvision.inference.predict import Prediction
    from chexvision.inference.predictor import EnsemblePrediction, Predictor


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("publish")(publish)
    app.command("predict")(predict)


def publish(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (run.json, config.json, model.safetensors, ...).")],
    repo: Annotated[
        str | None,
        typer.Option("--repo", help="Model repo `owner/name` (default: <your HF user>/chexvision-<model>)."),
    ] = None,
    hub_dir: Annotated[
        Path | None,
        typer.Option("--hub-dir", help="Write the repo layout into this folder instead of the Hub (offline)."),
    ] = None,
    public: Annotated[bool, typer.Option("--public", help="Make a new Hub repo public (default private).")] = False,
    revision_tag: Annotated[
        str | None, typer.Option("--revision-tag", help="Tag for this upload (default: the run id).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: {repo_id, commit, tag, url, changed, files}.")
    ] = False,
) -> None:
    """Publish a run: one commit with weights, config, metrics, model card and plot, then a tag named after the run."""
    from chexvision.hub.publish import publish_run

    result = publish_run(run_dir, repo_id=repo, hub_dir=hub_dir, private=not public, tag=revision_tag)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    _print_publish(result)


def _print_publish(result: PublishResult) -> None:
    from rich.console import Console

    console = Console(soft_wrap=True)  # paths and URLs stay on one line
    where = f"{result.repo_id}@{result.tag}"
    if result.changed:
        console.print(f"published [bold]{where}[/] (commit {result.commit[:12]}): {', '.join(result.files)}")
    else:
        console.print(f"unchanged: [bold]{where}[/] already holds these files (commit {result.commit[:12]})")
    console.print(f"  {result.url}")
    console.print(f"  predict with: chexvision predict IMAGE --model {result.model_spec}")


def predict(
    images: Annotated[list[Path], typer.Argument(help="Chest X-rays: PNG or JPEG (gray/RGB/RGBA, 8/16 bit) or DICOM.")],
    models: Annotated[
        list[str],
        typer.Option(
            "--model",
            help="Hub repo owner/name (optionally @REVISION), a run or --hub-dir folder, or FOLDER@TAG; a bare "
            "NAME[@TAG] is also looked up in $CHEXVISION_HOME/hub (where `fetch` publishes without a token). "
            "Repeat it for an ensemble (the mean probability, beside each model's).",
        ),
    ],
    tta: Annotated[bool, typer.Option("--tta", help="Average over identity, h-flip and +-7 degree rotations.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | auto (cuda when available).")] = "auto",
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print JSON: [{"image", "probabilities": {label: p}, "abnormal": p, '
            '"decisions": {rule: {threshold, abnormal}}, "model": {spec, revision, commit, run_id, ...}}]; with '
            'several models the mean, "ensemble": {rule, members} and "models": [{name, probabilities, abnormal, '
            "decisions, model}].",
        ),
    ] = False,
) -> None:
    """Predict the 14 finding probabilities, the abnormal probability and the abnormal call at the model's
    operating points (when evaluation recorded them) for each image; several models give their ensemble too."""
    from chexvision.device import resolve_device
    from chexvision.hub.resolve import load_predictor
    from chexvision.inference.images import read_image
    from chexvision.inference.predictor import predict_ensemble

    dev = resolve_device(device)  # an unknown or absent device: one line, before any image is read
    decoded = [read_image(p) for p in images]  # a bad image fails before any download
    predictors = [load_predictor(spec, device=dev) for spec in models]
    for predictor in predictors:
        if predictor.synthetic:
            typer.echo(
                f"warning: {predictor.name} was trained on synthetic images: its numbers say nothing about real X-rays",
                err=True,
            )
    if len(predictors) > 1:
        rows = predict_ensemble(predictors, images, decoded, tta=tta)
        if as_json:
            members = [p.describe() for p in predictors]
            typer.echo(json.dumps([r.to_dict(members) for r in rows]))
            return
        _print_ensemble(rows, predictors)
        return
    predictor = predictors[0]
    results = predictor.predict_decoded(images, decoded, tta=tta)
    if as_json:
        about = predictor.describe()
        typer.echo(json.dumps([{**r.to_dict(), "model": about} for r in results]))
        return
    _print_predictions(results, predictor)


def _print_ensemble(rows: list[EnsemblePrediction], predictors: list[Predictor]) -> None:
    """One table per image: a column per model and the ensemble (mean); each model's operating-point calls."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    keys = [f"{i} {p.architecture}" for i, p in enumerate(predictors, 1)]  # short column names: 80 columns fit
    for key, name, predictor in zip(keys, rows[0].members, predictors, strict=True):
        console.print(f"[bold]{key}[/]: model {name} from {predictor.source.describe()}",
                      soft_wrap=True, highlight=False)  # fmt: skip

    def cell(p: float) -> str:
        return f"[bold]{p:.3f}[/]" if p >= 0.5 else f"{p:.3f}"

    titles = {rule: op.title for p in predictors for rule, op in p.operating_points.items()}
    for row in rows:
        table = Table(Path(row.image).name, *keys, "ensemble")
        for column in table.columns:
            column.no_wrap = True
        for label in predictors[0].labels:
            table.add_row(label, *(cell(p.probabilities[label]) for p in (*row.predictions, row.mean)))
        table.add_section()
        table.add_row("[bold]abnormal (any finding)[/]", *(cell(p.abnormal) for p in (*row.predictions, row.mean)))
        for rule, title in titles.items():
            calls = [
                ("[bold]abnormal[/]" if p.decisions[rule]["abnormal"] else "normal") if rule in p.decisions else "-"
                for p in row.predictions
            ]
            table.add_row(f"at {title}", *calls, "-")
        console.print(table)
    console.print("the ensemble is the mean probability; operating points are each model's own", highlight=False)


def _print_predictions(results: list[Prediction], predictor: Predictor) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"model [bold]{predictor.name}[/] ({predictor.architecture}) from {predictor.source.describe()}",
        soft_wrap=True,
        highlight=False,
    )
    table = Table("finding", *(Path(r.image).name for r in results))

    def cell(p: float) -> str:
        return f"[bold]{p:.3f}[/]" if p >= 0.5 else f"{p:.3f}"

    for label in predictor.labels:
        table.add_row(label, *(cell(r.probabilities[label]) for r in results))
    table.add_section()
    table.add_row("[bold]abnormal (any finding)[/]", *(cell(r.abnormal) for r in results))
    if predictor.operating_points:
        table.add_section()
    for rule, op in predictor.operating_points.items():
        calls = ("[bold]abnormal[/]" if r.decisions[rule]["abnormal"] else "normal" for r in results)
        table.add_row(f"at {op.title} ({op.threshold:.3f})", *calls)
    console.print(table)
    if predictor.operating_points:
        fitted = next(iter(predictor.operating_points.values())).fitted_on or "validation"
        console.print(f"operating points of the abnormal probability, chosen on {fitted}", highlight=False)
    else:
        console.print(f"{predictor.operating_points_note}", highlight=False)


def cam_model_dir(model: str | None, paths: list[Path]) -> tuple[Path, list[Path]]:
    """`cam --model SPEC IMAGE...` (resolved as `predict` does) or the older `cam RUN_DIR IMAGE...`: (the model's
    folder, the images)."""
    from chexvision.errors import BadInputError
    from chexvision.hub.resolve import resolve_model_dir

    if model is not None:
        return resolve_model_dir(model), paths
    if len(paths) >= 2 and (paths[0].is_dir() or not paths[0].exists()):
        return paths[0], paths[1:]  # cam checks the label, --top and the images first, then the run directory
    raise BadInputError("no model given", "use `chexvision cam --model SPEC IMAGE...` (or `cam RUN_DIR IMAGE...`)")
