"""Load a published (or local) model: config.json rebuilds the architecture, model.safetensors fills it.

Nothing is unpickled. A spec is one of:

- a folder holding config.json + model.safetensors (a run directory, a `--hub-dir` repo head, a snapshot);
- `FOLDER@TAG`: the snapshot of TAG in a `--hub-dir` repo folder;
- `owner/name[@REVISION]`: a Hub model repo at a tag, branch or commit (downloaded through `HubClient`; cached by
  huggingface_hub, so it works offline once downloaded).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chexvision.errors import BadInputError
from chexvision.files import read_json_object
from chexvision.hub.card import WEIGHTS_FILE
from chexvision.hub.client import HubClient
from chexvision.hub.publish import folder_revision

if TYPE_CHECKING:
    from torch import nn

__all__ = ["CONFIG_FILE", "MODEL_FILES", "load_model", "resolve_model_dir"]

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, RUN_FILE)  # run.json is optional (older uploads lack it)
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _split_revision(spec: str) -> tuple[str, str | None]:
    base, sep, revision = spec.rpartition("@")
    return (base, revision) if sep and base and revision else (spec, None)


def resolve_model_dir(spec: str, *, client: HubClient | None = None) -> Path:
    """The local folder holding config.json + model.safetensors for `spec` (downloading from the Hub if needed)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    base, revision = _split_revision(spec)
    if revision is not None and Path(base).expanduser().is_dir():
        return folder_revision(Path(base).expanduser(), revision)
    if _REPO_RE.match(base) and not path.exists():
        client = client or HubClient(require_token=False)  # public repos need no token; HfApi finds one if set
        return client.download(base, revision=revision, filenames=MODEL_FILES)
    raise BadInputError(
        f"model {spec!r} is neither a folder nor a Hub repo id",
        "pass a run or --hub-dir folder (optionally FOLDER@TAG) or `owner/name[@revision]`",
    )


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    config = read_json_object(path, "a model folder needs the config.json its run wrote")
    if not isinstance(config.get("model"), dict):
        raise BadInputError(f'{path} has no "model" section', "was it written by `chexvision train`?")
    run_path = folder / RUN_FILE
    if "dataset" not in config and run_path.is_file():
        try:
            dataset = read_json_object(run_path).get("dataset")
        except BadInputError:
            dataset = None  # run.json is optional provenance: a damaged one must not block loading the weights
        if isinstance(dataset, dict):
            config["dataset"] = dataset  # what the model was trained on: decides CLAHE for prediction
    return config


def load_model(spec: str, *, client: HubClient | None = None, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of `spec` in eval mode on `device`; return it with its config.json.

    When a run.json lies beside config.json, its `dataset` block (source, repo, revision, split scheme) is added
    to the returned config as `config["dataset"]`: prediction needs it to repeat the training preprocessing.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from chexvision.models import build_from_config

    folder = resolve_model_dir(spec, client=client)
    config = _read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise BadInputError(f"{weights} not found", "a model folder needs model.safetensors")
    model = build_from_config(config["model"])
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError) as exc:
        raise BadInputError(f"cannot read {weights}: {exc}", "publish or fetch the run again") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise BadInputError(
            f"{weights} does not match the architecture in {folder / CONFIG_FILE}: {first}",
            "publish config.json and model.safetensors from the same run",
        ) from exc
    return model.to(device).eval(), config
