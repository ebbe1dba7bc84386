"""The `chexvision` command: the root only wires one sub-app or command module per noun.

Every module imported here must stay free of torch at import time: `--help`, `status`, `logs`, `fetch` and
`dispatch` answer in well under a second.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from chexvision.cli._errors import render_error


class _ErrorMappingGroup(TyperGroup):
    """Turns the errors of the hint table (`cli/_errors.py`) into one line on stderr and their exit code (DESIGN §7)."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except Exception as exc:
            rendered = render_error(exc)
            if rendered is None:  # click's own exits and usage errors, and bugs: not ours to reword
                raise
            line, exit_code = rendered
            typer.echo(line, err=True)
            raise typer.Exit(exit_code) from None


app = typer.Typer(
    name="chexvision",
    cls=_ErrorMappingGroup,
    help="Train, evaluate and publish chest X-ray classifiers (NIH ChestX-ray14) on borrowed GPUs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # tokens live in locals
    add_completion=False,
)
data_app = typer.Typer(help="Data sets: splits, shards, synthetic data, download, EDA.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: input pipeline and training step throughput.", no_args_is_help=True)
dispatch_app = typer.Typer(help="Dispatch a run to a backend (Kaggle or local).", no_args_is_help=True)


def _wire() -> None:
    from chexvision.cli import bench, data, evaluate, hub, models, runs, train

    data.register(data_app)
    bench.register(bench_app)
    models.register(app)
    train.register(app)
    runs.register(app, dispatch_app)
    hub.register(app)
    evaluate.register(app)
    app.add_typer(data_app, name="data")
    app.add_typer(dispatch_app, name="dispatch")
    app.add_typer(bench_app, name="bench")


_wire()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
