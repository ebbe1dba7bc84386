"""The study file: a commented TOML naming the models, seeds, data, backend, evaluation and publishing of one
head-to-head comparison (`studies/head-to-head.toml`, `studies/smoke.toml`).

Validated like the training config: every table has a fixed set of keys with types; an unknown key, a wrong type
or a bad value is a one-line `BadInputError` naming the key and the file (exit 2). Each model's preset and `--set`
overrides are checked later against the real training-config schema (`remote.validate_request`), before anything
is dispatched.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chexvision.config import SPLIT_SCHEMES
from chexvision.errors import BadInputError

__all__ = [
    "Backend",
    "Evaluation",
    "ModelEntry",
    "Publishing",
    "StudySpec",
    "load_study",
    "parse_study",
    "spec_from_json",
]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class ModelEntry:
    name: str  # densenet | seresnet (the model registry)
    preset: str | None = None  # a training preset (chexvision/presets/)
    overrides: tuple[str, ...] = ()  # `--set key=value` items, applied after the preset


@dataclass(frozen=True)
class Backend:
    name: str = "local"  # local | kaggle (| any dispatch backend)
    gpu: str | None = None  # None: the backend's default (Kaggle: t4x2)
    time_budget: float | None = None  # hours per session; None: the backend's default (Kaggle: 11)
    max_concurrent: int | None = None  # runs at once; None: the backend's limit (Kaggle 2), else 1
    max_sessions: int = 8  # sessions per logical run (the first + continuations) before it counts as failed


@dataclass(frozen=True)
class Evaluation:
    split: str = "test"  # test | val
    tta: bool = False  # also score the 4-view TTA mean
    bootstrap: int = 1000  # patient-bootstrap replicates for the CIs and the paired tests (0: none)
    seed: int = 0  # bootstrap seed
    reference: str | None = None  # adjudicated labels to score against (chexvision.evaluate.references)
    subgroups: str = "auto"  # sex,age,view | auto | none
    cam_samples: int = 0  # Grad-CAM overlays per run in the evaluation report
    device: str = "auto"  # where evaluation runs on this machine: cpu | cuda | auto
    data: str | None = None  # a local data folder to evaluate on; None: made from the study's data source


@dataclass(frozen=True)
class Publishing:
    enabled: bool = True
    target: str = "auto"  # hub | folder | auto (the Hub when a token is configured, else the folder)
    hub_dir: str | None = None  # the folder (the Hub's repo layout); None: $CHEXVISION_HOME/hub
    repo: str = "chexvision-{study}-{model}"  # repo name pattern ({study}, {model}); `owner/` prefix optional
    public: bool = False  # private by default


@dataclass(frozen=True)
class StudySpec:
    name: str
    models: tuple[ModelEntry, ...]
    seeds: tuple[int, ...] = (0,)
    data: str | None = None  # what `dispatch train --data` takes; None: hf remotely, synthetic locally
    split_scheme: str | None = None  # official | chexnet | patient; None: the data's
    backend: Backend = field(default_factory=Backend)
    evaluation: Evaluation = field(default_factory=Evaluation)
    publishing: Publishing = field(default_factory=Publishing)
    source: str = ""  # the file it was read from

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def repo_for(self, model: str) -> str:
        return self.publishing.repo.format(study=self.name, model=model)


# table -> key -> (type(s), comment for the error); "" is the top level
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "": {"name": (str, "a name"), "seeds": (list, "a list of integers"), "models": (list, "[[models]] tables"),
         "data": (dict, "a [data] table"), "backend": (dict, "a [backend] table"),
         "evaluation": (dict, "an [evaluation] table"), "publish": (dict, "a [publish] table")},
    "models": {"name": (str, "a model name"), "preset": (str, "a preset name"), "set": (list, "key=value strings")},
    "data": {"source": (str, "hf[:REPO@REV] | synthetic[:N[:SIZE]] | kaggle:OWNER/SLUG | a folder"),
             "split_scheme": (str, "official | chexnet | patient")},
    "backend": {"name": (str, "local | kaggle"), "gpu": (str, "e.g. t4x2"), "time_budget": ((int, float), "hours"),
                "max_concurrent": (int, "a positive integer"), "max_sessions": (int, "a positive integer")},
    "evaluation": {"split": (str, "test | val"), "tta": (bool, "true | false"), "bootstrap": (int, "an integer"),
                   "seed": (int, "an integer"), "reference": (str, "a reference name"),
                   "subgroups": (str, "sex,age,view | auto | none"), "cam_samples": (int, "an integer"),
                   "device": (str, "cpu | cuda | auto"), "data": (str, "a data folder")},
    "publish": {"enabled": (bool, "true | false"), "target": (str, "hub | folder | auto"),
                "hub_dir": (str, "a folder"), "repo": (str, "a repo pattern"),
                "public": (bool, "true | false")},
}  # fmt: skip


def _check_table(table: Mapping[str, Any], where: str, source: str) -> None:
    schema = _SCHEMA[where.split("[")[0]]
    for key, value in table.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(schema)}"
            raise BadInputError(f"{source}: unknown key {key!r} in {_where(where)}", hint)
        kind, words = schema[key]
        if (isinstance(value, bool) and kind in (int, (int, float))) or not isinstance(value, kind):
            raise BadInputError(f"{source}: {_where(where, key)} must be {words}", f"got {value!r}")


def _where(table: str, key: str | None = None) -> str:
    if not table:
        return f"key {key!r}" if key else "the top level"
    return f"[{table}] {key}" if key else f"[{table}]"


def _positive(value: int | None, what: str, source: str) -> None:
    if value is not None and value < 1:
        raise BadInputError(f"{source}: {what} must be at least 1", f"got {value}")


def _models(raw: Any, source: str) -> tuple[ModelEntry, ...]:
    if not raw:
        raise BadInputError(f"{source}: no [[models]]", 'add e.g. [[models]] name = "densenet" preset = "smoke"')
    entries = []
    for i, table in enumerate(raw):
        if not isinstance(table, dict):
            raise BadInputError(f"{source}: models[{i}] is not a table", "write each model as a [[models]] table")
        _check_table(table, f"models[{i}]", source)
        if "name" not in table:
            raise BadInputError(f"{source}: models[{i}] has no name", 'add name = "densenet" (or "seresnet")')
        items = table.get("set", [])
        if not all(isinstance(s, str) and "=" in s for s in items):
            raise BadInputError(f"{source}: models[{i}] set must be key=value strings", 'e.g. set = ["train.x=1"]')
        entries.append(ModelEntry(table["name"], table.get("preset"), tuple(items)))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise BadInputError(f"{source}: a model is listed twice", "list each model once (seeds repeat it)")
    return tuple(entries)


def parse_study(doc: Mapping[str, Any], source: str) -> StudySpec:
    """A parsed TOML document -> StudySpec; every problem is one BadInputError naming the key and `source`."""
    _check_table(doc, "", source)
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise BadInputError(f"{source}: name {name!r} is not a study name", "lower-case letters, digits and '-'")
    seeds = doc.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise BadInputError(f"{source}: seeds must be a non-empty list of integers >= 0", f"got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise BadInputError(f"{source}: a seed is listed twice", f"got {seeds!r}")
    tables = {key: doc.get(key, {}) for key in ("data", "backend", "evaluation", "publish")}
    for key, table in tables.items():
        _check_table(table, key, source)
    data, be, ev, pub = tables["data"], tables["backend"], tables["evaluation"], tables["publish"]
    scheme = data.get("split_scheme")
    if scheme is not None and scheme not in SPLIT_SCHEMES:
        raise BadInputError(f"{source}: [data] split_scheme {scheme!r} unknown", f"choose one of: {SPLIT_SCHEMES}")
    backend = Backend(**be)
    _positive(backend.max_concurrent, "[backend] max_concurrent", source)
    _positive(backend.max_sessions, "[backend] max_sessions", source)
    if backend.time_budget is not None and backend.time_budget <= 0:
        raise BadInputError(f"{source}: [backend] time_budget must be positive hours", f"got {backend.time_budget}")
    evaluation = Evaluation(**ev)
    if evaluation.split not in ("test", "val"):
        raise BadInputError(f"{source}: [evaluation] split must be test or val", f"got {evaluation.split!r}")
    if evaluation.bootstrap < 0:
        raise BadInputError(f"{source}: [evaluation] bootstrap must be >= 0", f"got {evaluation.bootstrap}")
    publishing = Publishing(**pub)
    if publishing.target not in ("hub", "folder", "auto"):
        raise BadInputError(f"{source}: [publish] target must be hub, folder or auto", f"got {publishing.target!r}")
    try:
        publishing.repo.format(study=name, model="densenet")
    except (KeyError, IndexError, ValueError):
        raise BadInputError(
            f"{source}: [publish] repo {publishing.repo!r} is not a pattern", "use only {study} and {model}"
        ) from None
    return StudySpec(
        name=name, models=_models(doc.get("models"), source), seeds=tuple(seeds), data=data.get("source"),
        split_scheme=scheme, backend=backend, evaluation=evaluation, publishing=publishing, source=source,
    )  # fmt: skip


def load_study(path: Path) -> StudySpec:
    """Read and validate a study file; a missing or malformed file is a one-line BadInputError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"study file {path} not found", "e.g. chexvision study run studies/smoke.toml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"study file {path} cannot be read ({exc})", "pass a UTF-8 TOML file") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"{path} is not valid TOML ({exc})", "fix the line it names") from None
    return parse_study(doc, str(path))


def spec_from_json(doc: Mapping[str, Any]) -> StudySpec:
    """The StudySpec a study state file recorded (`StudySpec.to_json`)."""
    return StudySpec(
        name=doc["name"],
        models=tuple(ModelEntry(m["name"], m["preset"], tuple(m["overrides"])) for m in doc["models"]),
        seeds=tuple(doc["seeds"]), data=doc["data"], split_scheme=doc["split_scheme"],
        backend=Backend(**doc["backend"]), evaluation=Evaluation(**doc["evaluation"]),
        publishing=Publishing(**doc["publishing"]), source=doc.get("source", ""),
    )  # fmt: skip
