"""`chexvision models`: the registered architectures and their full-size parameter counts."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to `app`."""
    app.command("models")(models)


def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: [{name, params, description}].")] = False,
) -> None:
    """List the model architectures `--model` accepts, with full-size parameter counts."""
    from chexvision.models import model_summary  # torch: only when the command runs

    rows = model_summary()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("model", "params (full size)", "description")
    for row in rows:
        table.add_row(row["name"], f"{row['params']:,}", row["description"])
    Console().print(table)
