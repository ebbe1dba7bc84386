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
    images: Annotated[list[Path], typer.Argument(help="PNG or JPEG chest X-rays (gray/RGB/RGBA, 8/16 bit).")],
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Hub repo owner/name (optionally @REVISION), a run or --hub-dir folder, or FOLDER@TAG."
        ),
    ],
    tta: Annotated[bool, typer.Option("--tta", help="Average over identity, h-flip and +-7 degree rotations.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | auto (cuda when available).")] = "auto",
    as_json: Annotated[
        bool,
        typer.Option("--json", help='Print JSON: [{"image", "probabilities": {label: p}, "abnormal": p}].'),
    ] = False,
) -> None:
    """Predict the 14 finding probabilities and the abnormal probability for each image."""
    from chexvision.device import resolve_device
    from chexvision.hub.predict import predict_spec

    dev = str(resolve_device(device))  # an unknown or absent device: one line, before any image is read
    results = predict_spec(model, images, tta=tta, device=dev)  # a bad image fails before any download
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results]))
        return
    _print_predictions(results)


def _print_predictions(results: list[Prediction]) -> None:
    from rich.console import Console
    from rich.table import Table

    from chexvision.labels import LABELS

    table = Table("finding", *(Path(r.image).name for r in results))

    def cell(p: float) -> str:
        return f"[bold]{p:.3f}[/]" if p >= 0.5 else f"{p:.3f}"

    for label in LABELS:
        table.add_row(label, *(cell(r.probabilities[label]) for r in results))
    table.add_section()
    table.add_row("[bold]abnormal (any finding)[/]", *(cell(r.abnormal) for r in results))
    Console().print(table)
