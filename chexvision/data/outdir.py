"""The `--out` rule of the data commands: what a folder already holds decides whether a command writes into it.

Every data command (`synth`, `build`, `download`, `eda`) records, before it writes anything, the parameters that
decide its output in `OUTPUT_RECORD` (`.chexvision.json`), so even a killed run's folder says what it holds. Then:

- a missing or empty folder: write;
- the same command with the same parameters: continue (or there is nothing to do);
- other parameters, or another data set (a synthetic set where shards are to be built): refused, exit 2, naming
  the differing parameters, unless `overwrite`, which removes only the files that data set's commands write;
- anything else (files no data command writes, or an EDA report where a data set would go): refused, even with
  `overwrite`: a command never deletes what it did not write.

Folders written before the record existed are recognised by their `dataset.json` / `build_manifest.json` (and a
killed download by the Hub client's `.cache/huggingface`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError
from chexvision.files import write_json_atomic

__all__ = ["DATASET_FILES", "EDA_FILES", "OUTPUT_RECORD", "prepare_out", "record_out"]

OUTPUT_RECORD = ".chexvision.json"
# What the data-set commands write into their folder (`data/` holds the shards); overwrite removes only these.
DATASET_FILES = ("data", "dataset.json", "bbox.csv", "build_manifest.json", "README.md", ".cache", OUTPUT_RECORD)
EDA_FILES = (
    "eda.md",
    "label_frequency.png",
    "cooccurrence.png",
    "distributions.png",
    "sex_view.png",
    OUTPUT_RECORD,
)
_DATASET_COMMANDS = ("synth", "build", "download")
_NOUNS = {
    "synth": "synthetic data",
    "build": "a built data set",
    "download": "a downloaded data set",
    "eda": "an EDA report",
}
_LEGACY_SOURCES = {"synthetic": "synth", "nih-build": "build", "hf": "download"}


def prepare_out(
    out: Path, command: str, params: Mapping[str, Any], *, overwrite: bool = False, record: bool = True
) -> bool:
    """Check `out` for `command` with `params` (see the module docstring), record them, and return whether the
    folder already held this very output (same command, same parameters): the caller continues or has nothing to do.

    Raises BadInputError (exit 2) for a refusal; nothing in `out` changes then. `record=False` leaves the recording
    to the caller (`record_out`): the Hub client treats any non-empty folder as a finished download when offline.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} is a file", "pass a folder (it is created when missing)")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        if record:
            record_out(out, command, params)
        return False
    recorded = _recorded(out)
    own = EDA_FILES if command == "eda" else DATASET_FILES
    family = ("eda",) if command == "eda" else _DATASET_COMMANDS
    if recorded is None or recorded[0] not in family:
        foreign = [name for name in entries if name not in own] or entries
        raise BadInputError(
            f"--out {out} holds {foreign[0]!r} and other files that are not {_NOUNS[command]}"
            if len(foreign) > 1
            else f"--out {out} holds {foreign[0]!r}, which is not {_NOUNS[command]}",
            "choose an empty or new --out folder (nothing was changed)",
        )
    was_command, was_params = recorded
    differing = _differences(was_command, was_params, command, params)
    if not differing:
        if record:
            record_out(out, command, params)
        return True
    if not overwrite:
        if was_command == command:
            what, again = (
                f"with other parameters: {'; '.join(differing)}",
                "re-run with the same parameters to continue, ",
            )
        else:
            what, again = f"({differing[0]})", ""
        raise BadInputError(
            f"--out {out} already holds {_NOUNS[was_command]} {what}",
            f"{again}pass --overwrite to replace it, or choose another --out",
        )
    _remove(out, own)
    if record:
        record_out(out, command, params)
    return False


def _differences(was_command: str, was: Mapping[str, Any], command: str, now: Mapping[str, Any]) -> list[str]:
    """`key WAS (asked NOW)` for each recorded parameter that differs; a key recorded on one side only is not
    compared (older folders recorded less)."""
    if was_command != command:
        return [f"made by `data {was_command}`, not `data {command}`"]
    return [f"{key} {was[key]!r} (asked {now[key]!r})" for key in now if key in was and was[key] != now[key]]


def _recorded(out: Path) -> tuple[str, dict[str, Any]] | None:
    """(command, parameters) the folder says it holds, or None when it holds nothing a data command wrote."""
    record = _read_object(out / OUTPUT_RECORD)
    if record is not None and isinstance(record.get("command"), str) and isinstance(record.get("params"), dict):
        return str(record["command"]), dict(record["params"])
    info = _read_object(out / "dataset.json")
    manifest = _read_object(out / "build_manifest.json")
    if info is None and manifest is None:
        if (out / ".cache" / "huggingface").is_dir():
            return "download", {}  # a download killed before it recorded itself: the Hub client resumes it
        if (out / "eda.md").is_file() and all(p.name in EDA_FILES for p in out.iterdir()):
            return "eda", {}  # a report written before the record existed
    source = info.get("source") if info else "nih-build" if manifest else None
    if source not in _LEGACY_SOURCES:
        return None
    if source == "nih-build":
        settings = manifest or {}
        return "build", {k: settings[k] for k in ("size", "clahe", "shard_size") if k in settings}
    keys = ("images", "size", "seed", "version") if source == "synthetic" else ("repo_id", "revision")
    return _LEGACY_SOURCES[str(source)], {k: info[k] for k in keys if info and k in info}


def _read_object(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_out(out: Path, command: str, params: Mapping[str, Any]) -> None:
    """Write the record of what `out` holds (`prepare_out` does it unless told not to)."""
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / OUTPUT_RECORD, {"command": command, "params": dict(params)}, sort_keys=True)


def _remove(out: Path, names: tuple[str, ...]) -> None:
    """Delete what a data command writes (shards in `data/`, its JSON and CSV files); leave everything else."""
    for name in names:
        path = out / name
        if name == "data" and path.is_dir():
            for shard in path.glob("*.parquet"):
                shard.unlink()
            for tmp in path.glob(".*.tmp"):
                tmp.unlink()
            if not any(path.iterdir()):
                path.rmdir()
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
