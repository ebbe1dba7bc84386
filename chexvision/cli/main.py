"""The `chexvision` command: the root only wires one sub-app or command module per noun.

Every module imported here must stay free of torch at import time: `--help`, `status`, `logs`, `fetch` and
`dispatch` answer in well under a second.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from chexvision.errors import CheXVisionError


class _ErrorMappingGroup(TyperGroup):
    """Turns our typed errors into one line on stderr and the documented exit code (DESIGN §7)."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except CheXVisionError as exc:
            typer.echo(f"error: {exc.one_line()}", err=True)
            raise typer.Exit(exc.exit_code) from None


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
    from chexvision.cli import (
        bench_loader,
        bench_train,
        data,
        dispatch,
        evaluate,
        hub,
        models,
        synth,
        train,
    )

    data.register(data_app)
    synth.register(data_app)
    bench_loader.register(bench_app)
    bench_train.register(bench_app)
    models.register(app)
    train.register(app)
    dispatch.register(app, dispatch_app)
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
