"""`chexvision export`: a model (any spec `predict` takes) as an ONNX or TorchScript file, parity-checked.

No torch at import: the library is imported inside the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

FORMATS = ("onnx", "torchscript")


def register(app: typer.Typer) -> None:
    """Add this module's command to `app`."""
    app.command("export")(export)


def export(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Hub repo owner/name (optionally @REVISION), a run or --hub-dir folder, or FOLDER@TAG."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="onnx | torchscript.", metavar="FORMAT")],
    out: Annotated[Path, typer.Option("--out", help="File to write (e.g. model.onnx).")],
    images: Annotated[
        list[Path] | None,
        typer.Option("--image", help="A PNG/JPEG to check parity on (repeatable; default 4 synthetic X-rays)."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Largest allowed |probability difference| from PyTorch.")
    ] = 1e-4,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: {path, format, model, input_size, samples, batch_sizes, max_abs_diff, tolerance, "
            "passed, bytes}.",
        ),
    ] = False,
) -> None:
    """Export a model to ONNX or TorchScript (dynamic batch axis) and check it against PyTorch on sample images.

    Input: the preprocessed batch `image` [N, 1, S, S]. Outputs: logits `findings` [N, 14], `abnormal` [N].

    ONNX needs the `export` extra: pip install 'chexvision\\[export]'.
    """
    from chexvision.errors import BadInputError

    if fmt not in FORMATS:
        raise BadInputError(f"unknown --format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    from chexvision.hub.resolve import load_spec
    from chexvision.inference.export import export_model, require_extra

    require_extra(fmt)  # a missing extra: one line, before any download
    loaded = load_spec(model, device="cpu")
    result = export_model(loaded, fmt, out, images=images or (), tolerance=tolerance)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    typer.echo(
        f"wrote {result.path} ({result.format}, {result.bytes / 1e6:.1f} MB) from {result.model}: "
        f"input image [N, 1, {result.input_size}, {result.input_size}], outputs findings [N, 14], abnormal [N]"
    )
    typer.echo(
        f"parity with PyTorch on {result.samples} sample image(s), batch sizes "
        f"{', '.join(map(str, result.batch_sizes))}: max |diff| {result.max_abs_diff:.2e} "
        f"(tolerance {result.tolerance:.0e}) ok"
    )
