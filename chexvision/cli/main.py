"""The `chexvision` command: the root only wires one sub-app or command module per noun.

Every module imported here must stay free of torch at import time: `--help`, `status`, `logs`, `fetch` and
`dispatch` answer in well under a second.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from chexvision.cli import _help
from chexvision.cli._errors import render_error, usage_line

_help.install()  # flags show no `<bool>`, repeatable options no `<list[str]>`


def _quiet_opencv() -> None:
    """OpenCV logs its own `[ WARN:0@...] grfmt_png.cpp ...` lines on the C stderr for a corrupt PNG, before our one
    line says the same; silence it here, the one place (worker processes inherit the variable). A user's own
    OPENCV_LOG_LEVEL wins."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    os.environ["OPENCV_LOG_LEVEL"] = "OFF"  # read when cv2 is imported
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # imported already (a test, a notebook): tell it directly
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _one_line_usage(exc: Exception) -> typer.Exit | None:
    """Exit 2 after printing `exc` as one line if it is a usage error; None for anything else."""
    line = usage_line(exc)
    if line is None:
        return None
    typer.echo(line, err=True)
    return typer.Exit(2)


class _ErrorMappingGroup(TyperGroup):
    """Turns the errors of the hint table (`cli/_errors.py`) into one line on stderr and their exit code (DESIGN §7);
    click's usage errors too (exit 2), instead of Typer's multi-line usage panel."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # the root's own options and arguments
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            if (usage := _one_line_usage(exc)) is None:
                raise
            raise usage from None

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        _quiet_opencv()  # before any command imports cv2
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if (usage := _one_line_usage(exc)) is not None:  # a sub-command's options: unknown, missing, bad choice
                raise usage from None
            rendered = render_error(exc)
            if rendered is None:  # click's own exits (help, --version), and bugs: not ours to reword
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
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
)
data_app = typer.Typer(help="Data sets: splits, shards, synthetic data, download, EDA.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: input pipeline and training step throughput.", no_args_is_help=True)
dispatch_app = typer.Typer(help="Dispatch a run to a backend (local, Kaggle or SkyPilot).", no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from chexvision import __version__

        typer.echo(f"chexvision {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Train, evaluate and publish chest X-ray classifiers (NIH ChestX-ray14) on borrowed GPUs."""


def _wire() -> None:
    from chexvision.cli import bench, data, evaluate, export, hub, models, runs, train

    data.register(data_app)
    bench.register(bench_app)
    models.register(app)
    train.register(app)
    runs.register(app, dispatch_app)
    hub.register(app)
    export.register(app)  # chexvision export --model SPEC --format onnx|torchscript
    evaluate.register(app)
    from chexvision.cli import demo

    demo.register(app)  # chexvision demo --model SPEC | demo export
    from chexvision.cli import study

    study.register(app)  # chexvision study run|resume|status|cancel
    app.add_typer(data_app, name="data")
    app.add_typer(dispatch_app, name="dispatch")
    app.add_typer(bench_app, name="bench")


_wire()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
