"""`chexvision models`: the registered architectures, their full-size parameter counts and base models.

Torch-free: everything comes from the registry's `ModelInfo` entries (`chexvision.models.model_summary`).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("models")(models)


def models(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: [{name, params, description, base_model}].")
    ] = False,
) -> None:
    """List the model architectures `--model` accepts, with full-size parameter counts."""
    from chexvision.models import model_summary

    rows = model_summary()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "params (full size)", "pretrained weights", "description")
    for row in rows:
        table.add_row(row["name"], f"{row['params']:,}", row["base_model"] or "none", row["description"])
    Console().print(table)
