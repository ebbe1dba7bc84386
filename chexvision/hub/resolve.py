"""A model spec -> the local folder holding it, and the model loaded from there (by `chexvision.inference`).

A spec is one of:

- a folder holding config.json + model.safetensors (a run directory, a `--hub-dir` repo head, a snapshot);
- `FOLDER@TAG`: the snapshot of TAG in a `--hub-dir` repo folder;
- `owner/name[@REVISION]`: a Hub model repo at a tag, branch or commit (downloaded through `HubClient`; cached by
  huggingface_hub, so it works offline once downloaded).

`resolve_model` also says which revision and commit answered (`ModelSource`); `load_predictor` is what
`chexvision.load(spec)` returns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from chexvision.hf import HubClient
from chexvision.hub.publish import REFS_FILE, REVISIONS_DIR, default_hub_dir, folder_revision
from chexvision.inference.predictor import ModelSource
from chexvision.rundir import CONFIG_JSON, METRICS_JSON, RUN_JSON, WEIGHTS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from chexvision.inference.load import LoadedModel
    from chexvision.inference.predictor import Predictor

__all__ = ["MODEL_FILES", "load_model", "load_predictor", "load_spec", "resolve_model", "resolve_model_dir"]

# run.json (provenance) and metrics.json (operating points) are optional: older uploads lack them
MODEL_FILES = (CONFIG_JSON, WEIGHTS, RUN_JSON, METRICS_JSON)
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def _folder_commit(repo_dir: Path, revision: str) -> str | None:
    """The content commit a `--hub-dir` repo folder's refs.json gives `revision` (a tag or `main`)."""
    try:
        refs = json.loads((repo_dir / REVISIONS_DIR / REFS_FILE).read_text())
    except (OSError, ValueError):
        return None
    commit = (refs.get("tags") or {}).get(revision) or (refs.get("branches") or {}).get(revision)
    return str(commit) if commit else (revision if _COMMIT_RE.match(revision) else None)


def _split_revision(spec: str) -> tuple[str, str | None]:
    base, sep, revision = spec.rpartition("@")
    return (base, revision) if sep and base and revision else (spec, None)


def resolve_model_dir(spec: str, *, client: HubClient | None = None) -> Path:
    """The local folder holding config.json + model.safetensors for `spec` (downloading from the Hub if needed)."""
    return resolve_model(spec, client=client)[0]


def in_default_hub(spec: str) -> str:
    """A bare `NAME[@TAG]` that is no folder here but a repo in the default hub folder ($CHEXVISION_HOME/hub, where
    `fetch` publishes without a token) -> that folder's path; anything else unchanged."""
    base, _, tag = spec.partition("@")
    if "/" in base or "\\" in base or not base or Path(base).expanduser().exists():
        return spec
    candidate = default_hub_dir() / base
    if not candidate.is_dir():
        return spec
    return f"{candidate}@{tag}" if tag else str(candidate)


def resolve_model(spec: str, *, client: HubClient | None = None) -> tuple[Path, ModelSource]:
    """`resolve_model_dir`, and which revision and commit answered: a Hub snapshot's commit (its cache folder's
    name), a `--hub-dir` tag's content commit; a plain run folder has neither. A bare `NAME[@TAG]` is looked up in
    the default hub folder first (`in_default_hub`)."""
    spec = in_default_hub(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        head = (path / REVISIONS_DIR / REFS_FILE).is_file()  # a --hub-dir repo head is `main`
        return path, ModelSource(spec, "main" if head else None, _folder_commit(path, "main") if head else None)
    base, revision = _split_revision(spec)
    if revision is not None and Path(base).expanduser().is_dir():
        repo_dir = Path(base).expanduser()
        return folder_revision(repo_dir, revision), ModelSource(spec, revision, _folder_commit(repo_dir, revision))
    if _REPO_RE.match(base) and not path.exists():
        client = client or HubClient(require_token=False)  # public repos need no token; HfApi finds one if set
        folder = client.download(base, revision=revision, filenames=MODEL_FILES)
        commit = folder.name if _COMMIT_RE.match(folder.name) else None  # HF cache: snapshots/<commit>/
        return folder, ModelSource(spec, revision or "main", commit)
    raise BadInputError(
        f"model {spec!r} is neither a folder nor a Hub repo id",
        "pass a run or --hub-dir folder (optionally FOLDER@TAG) or `owner/name[@revision]`",
    )


def load_spec(spec: str, *, client: HubClient | None = None, device: str = "cpu") -> LoadedModel:
    """The model of `spec` in eval mode on `device`, with the run files that came with it."""
    from chexvision.inference.load import load_model_dir

    return load_model_dir(resolve_model_dir(spec, client=client), device)


def load_predictor(
    spec: str | Path, *, device: str | torch.device = "auto", client: HubClient | None = None
) -> Predictor:
    """A `Predictor` for `spec` (`owner/name[@rev]`, a run or `--hub-dir` folder, `FOLDER@TAG`) on `device`."""
    from chexvision.device import resolve_device
    from chexvision.inference.load import load_model_dir
    from chexvision.inference.predictor import Predictor

    dev = resolve_device(device)  # an unknown or absent device: one line, before any download
    folder, source = resolve_model(str(spec), client=client)
    return Predictor(load_model_dir(folder, dev), source, device=dev)


def load_model(spec: str, *, client: HubClient | None = None, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model of `spec` and its config.json (+ run.json's `dataset` block, when present, as `config["dataset"]`)."""
    loaded = load_spec(spec, client=client, device=device)
    config = dict(loaded.config)
    if loaded.dataset and "dataset" not in config:
        config["dataset"] = loaded.dataset  # what the model was trained on: decides CLAHE for prediction
    return loaded.model, config
