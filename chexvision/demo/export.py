"""`chexvision demo export`: a Hugging Face Space folder that runs the demo page on published models.

Three files, each rendered from a template in `templates/` (Jinja, StrictUndefined): `app.py` (names the models and
calls `chexvision.demo.page.main`), `requirements.txt` (this chexvision release with its `demo` extra, and the torch
pair it is tested with, CPU wheels), `README.md` (the Space's YAML header through huggingface_hub's
`SpaceCardData`: `sdk: streamlit`, `sdk_version`, `app_file`, `models`; then what the Space shows). A Space runs
on the Hub, so every model must be a Hub repo (`owner/name[@revision]`); a local folder is refused. Re-exporting
into the same folder rewrites the three files; a folder holding other files of those names is left alone.
Torch-free: the export only writes text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError

__all__ = ["APP_FILE", "SpaceExport", "export_space", "space_package"]

APP_FILE = "app.py"
FILES = (APP_FILE, "requirements.txt", "README.md")
MARKER = "chexvision demo export"  # every exported file says who wrote it: re-exports may overwrite those only
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# What this release is tested with: the Makefile's TORCH_PINS (tests/test_demo_cli.py keeps the two equal) and the
# Streamlit of the dev environment. Constants, not the exporting environment's versions: the workflow exports
# from a light install without torch or Streamlit.
TESTED_TORCH = ("torch==2.14.1", "torchvision==0.29.1")
TESTED_STREAMLIT = "1.67.0"


@dataclass(frozen=True)
class SpaceExport:
    """What `export_space` wrote: the folder, its files, the models (specs) and the requirement lines."""

    out: Path
    files: tuple[str, ...]
    specs: tuple[str, ...]
    requirements: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "files": list(self.files), "specs": list(self.specs),
                "requirements": list(self.requirements)}  # fmt: skip


def space_package() -> str:
    """The default requirement for this release: `chexvision[demo]==<version>`."""
    from chexvision import __version__

    return f"chexvision[demo]=={__version__}"


def _hub_model(spec: str) -> dict[str, str | None]:
    base, sep, revision = spec.rpartition("@")
    repo_id, rev = (base, revision) if sep and base and revision else (spec, None)
    if not _REPO_RE.match(repo_id) or Path(repo_id).expanduser().exists():
        raise BadInputError(
            f"model {spec!r} is not a Hub repo: a Space can only load models from the Hub",
            "publish it first (`chexvision publish RUN_DIR`) and pass `owner/name[@revision]`",
        )
    return {"repo_id": repo_id, "revision": rev}


def _render(name: str, **context: Any) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(loader=PackageLoader("chexvision.demo", "templates"), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)  # fmt: skip
    return env.get_template(name).render(**context)


def _check_out(out: Path) -> None:
    """Refuse to overwrite an app.py / requirements.txt / README.md that an export did not write."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file", "pass a folder (it is created if missing)")
    for name in FILES:
        path = out / name
        if path.is_file() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
            raise BadInputError(
                f"{path} exists and was not written by `chexvision demo export`",
                "choose an empty folder for the Space, or move that file away",
            )


def export_space(
    specs: Sequence[str], out: Path, *, package: str | None = None, title: str = "CheXVision demo"
) -> SpaceExport:
    """Write the Space folder for `specs` (Hub repos) into `out`; returns what was written."""
    from huggingface_hub import SpaceCardData

    from chexvision import __version__

    if not specs:
        raise BadInputError("no model given", "pass --model owner/name[@revision] (repeat it for an ensemble)")
    models = [_hub_model(s) for s in specs]
    out = Path(out).expanduser()
    _check_out(out)
    package = package or space_package()
    requirements = (*TESTED_TORCH, package)
    card = SpaceCardData(
        title=title,
        emoji="🩻",
        colorFrom="blue",
        colorTo="gray",
        sdk="streamlit",
        sdk_version=TESTED_STREAMLIT,
        app_file=APP_FILE,
        models=sorted({str(m["repo_id"]) for m in models}),
        license="apache-2.0",
        pinned=False,
        short_description="Chest X-ray findings (NIH ChestX-ray14): not for clinical use",
    )
    context = {"version": __version__, "specs": list(specs), "models": models, "package": package, "title": title}
    texts = {
        APP_FILE: _render("space_app.py.j2", **context),
        "requirements.txt": _render("space_requirements.txt.j2", pins=requirements, **context),
        "README.md": _render("space_README.md.j2", card_yaml=card.to_yaml().strip(), **context),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (out / name).write_text(text, encoding="utf-8")
    return SpaceExport(out, FILES, tuple(specs), tuple(requirements))
