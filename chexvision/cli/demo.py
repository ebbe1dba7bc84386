"""`chexvision demo`: the Streamlit demo page on published models, and `demo export`, a Hugging Face Space folder.

No torch and no Streamlit at import: `demo` checks the models' specs (resolving them as `predict` does, which
downloads a Hub model once) and then runs `streamlit run chexvision/demo/app.py` with the specs in
CHEXVISION_DEMO_MODELS; the page loads the models once per process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from chexvision.errors import BadInputError

DEMO_EXTRA = "pip install 'chexvision[demo]'"
MODEL_HELP = (
    "Hub repo owner/name (optionally @REVISION), a run or --hub-dir folder, or FOLDER@TAG, as `predict` takes "
    "them; repeat it for an ensemble (mean probability)."
)

demo_app = typer.Typer(
    help="The demo page (Streamlit) for one chest X-ray: `chexvision demo --model SPEC`, or `demo export`.",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    """Add `chexvision demo` (and `demo export`) to `app`."""
    app.add_typer(demo_app, name="demo")


def app_path() -> Path:
    """The Streamlit script, inside the installed package."""
    from importlib import resources

    return Path(str(resources.files("chexvision.demo") / "app.py"))


def streamlit_command(specs: list[str], *, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that serve the page: `python -m streamlit run app.py` on `host:port`,
    headless, no usage statistics, no file watcher, a viewer's toolbar (no "Deploy"), with the models in
    CHEXVISION_DEMO_MODELS."""
    from chexvision.demo.analysis import MODELS_ENV

    argv = [sys.executable, "-m", "streamlit", "run", str(app_path()),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--global.developmentMode", "false", "--client.toolbarMode", "viewer"]  # fmt: skip
    env = {**os.environ, MODELS_ENV: os.pathsep.join(specs)}
    return argv, env


def _require_streamlit() -> None:
    import importlib.util

    if importlib.util.find_spec("streamlit") is None:
        raise BadInputError("the demo needs Streamlit, which is not installed", DEMO_EXTRA)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise BadInputError(f"cannot serve on {host}:{port}: {exc.strerror or exc}",
                                "pass another --port (or --host)") from None  # fmt: skip


def _check_models(specs: list[str]) -> None:
    """Every spec resolves (a folder with config.json + model.safetensors, or a Hub repo, downloaded once) before
    the page starts, so a typo is one line here, not an error on the page."""
    from chexvision.hub.resolve import resolve_model
    from chexvision.rundir import CONFIG_JSON, WEIGHTS

    for spec in specs:
        folder, _ = resolve_model(spec)
        missing = [name for name in (CONFIG_JSON, WEIGHTS) if not (folder / name).is_file()]
        if missing:
            raise BadInputError(f"model {spec!r} ({folder}) has no {' or '.join(missing)}",
                                "pass a run directory or a published model folder")  # fmt: skip


@demo_app.callback()
def demo(
    ctx: typer.Context,
    models: Annotated[list[str] | None, typer.Option("--model", help=MODEL_HELP)] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve the page on.")] = 8501,
    host: Annotated[
        str, typer.Option("--host", help="Address to serve on (0.0.0.0: every interface; the page has no login).")
    ] = "127.0.0.1",
) -> None:
    """Serve the demo page: pick a bundled NIH case or upload a PNG/JPEG/DICOM X-ray; the 14 probabilities per
    model and their ensemble, the abnormal call at each model's operating points, Grad-CAM, TTA on/off."""
    if ctx.invoked_subcommand is not None:
        return
    if not models:
        raise BadInputError("no model given", "pass --model SPEC (repeat it for an ensemble), e.g. the folder "
                            "`chexvision fetch` published: --model ~/.chexvision/hub/chexvision-densenet")  # fmt: skip
    _require_streamlit()
    _check_port(host, port)
    _check_models(models)
    argv, env = streamlit_command(models, host=host, port=port)
    typer.echo(f"CheXVision demo on http://{host}:{port} with {', '.join(models)} (Ctrl-C stops it)", err=True)
    proc = subprocess.Popen(argv, env=env)
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to both: let Streamlit shut down
        code = proc.wait()
    raise typer.Exit(0 if code in (0, -2, 130) else code)


@demo_app.command("export")
def export(
    models: Annotated[list[str], typer.Option("--model", help="Hub repo owner/name[@REVISION]; repeatable.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the Space's files (created if missing).")],
    package: Annotated[
        str | None,
        typer.Option(
            "--package",
            help="The requirement that installs chexvision in the Space (default: this release, "
            "`chexvision\\[demo]==VERSION`; e.g. `chexvision\\[demo] @ git+https://github.com/OWNER/REPO@SHA`).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {out, files, specs, requirements}.")] = False,
) -> None:
    """Write a Hugging Face Space folder (app.py, requirements.txt pinned to this release, README.md with the
    Space's YAML header) serving the demo on Hub models; push it with `hf upload --repo-type space`."""
    from chexvision.demo.export import export_space

    result = export_space(models, out, package=package)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    typer.echo(f"wrote the Space in {result.out}: {', '.join(result.files)}")
    typer.echo(f"  requirements: {'; '.join(result.requirements)}")
    typer.echo(f"  push it with: hf upload SPACE_ID {result.out} . --repo-type space")
