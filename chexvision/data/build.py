"""Build our one-channel Parquet shards from raw NIH PNGs (`chexvision data build`).

Each image is decoded (8-bit L, the odd RGBA, 16-bit; any size), resized with `cv2.INTER_AREA` to
`size` x `size` (NIH originals are square), optionally contrast-equalised with CLAHE once here (clip 2.0,
8x8 tiles; recorded as `"clahe"` in `dataset.json` so the loader does not apply it again) and stored as a
one-channel JPEG (`chexvision.data.shards.IMAGE_FORMAT`) with the labels and metadata of
`Data_Entry_2017_v2020.csv`: the shipped CSV, or, where only a remote bundle is installed, its compact copy
`LABELS_RESOURCE` (the same rows and values for the columns a build stores; a test holds them equal). Which labels
were used is recorded as `"labels"` in `dataset.json` (and training copies it into run.json): the Kaggle mirror's
own `Data_Entry_2017.csv` carries the older 2017 labels and is not read.

Work is split into fixed shards of `shard_size` images in sorted file-name order, one process-pool task per
shard. A shard is written atomically and recorded in `build_manifest.json` with a digest of its inputs, so a
re-run skips shards that are already complete and converges after a crash. A shard's digest covers its image names,
sizes and metadata rows, so a label fixed in the CSV rebuilds only its shard. Other settings (size, CLAHE, shard
size, images folder) into the same `--out`, or another data set there, are refused unless `overwrite`
(`chexvision.data.outdir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chexvision.data.metadata import METADATA_RESOURCE, load_metadata, resource_path
from chexvision.data.outdir import prepare_out
from chexvision.data.pool import run_tasks
from chexvision.data.shards import (
    IMAGE_FORMAT,
    ImageDecodeError,
    ShardRow,
    decode_image,
    encode_image,
    shard_name,
    write_shard,
)
from chexvision.data.transforms import apply_clahe, resize_to
from chexvision.errors import BadInputError
from chexvision.files import write_json_atomic

__all__ = [
    "LABELS_RESOURCE",
    "MANIFEST_NAME",
    "SHIPPED_LABELS",
    "BuildResult",
    "build_shards",
    "find_images",
    "read_labels_resource",
    "read_manifest",
    "remove_stale",
    "shard_is_complete",
    "shipped_labels",
    "write_labels_resource",
]

log = logging.getLogger(__name__)

MANIFEST_NAME = "build_manifest.json"
_SHARD_SPLIT = "data"  # shard file prefix: splits are recomputed by patient, not stored

ProgressFn = Callable[[int, int], None]  # (images done, images total)
# The compact copy of the shipped v2020 metadata that remote bundles carry (build's columns only).
LABELS_RESOURCE = "nih_labels_v2020.json.xz"
SHIPPED_LABELS = "NIH Data_Entry_2017_v2020.csv (shipped with chexvision)"  # dataset.json "labels"


@dataclass
class BuildResult:
    """What a build did. `corrupt` holds (image path, reason) for images skipped as undecodable."""

    out_dir: Path
    shards: list[Path]
    images: int
    size: int
    clahe: bool
    labels: str = SHIPPED_LABELS  # which metadata labelled the images (dataset.json "labels")
    built_shards: int = 0
    resumed_shards: int = 0
    not_in_metadata: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _ShardTask:
    path: Path
    files: tuple[str, ...]  # image paths, sorted by file name
    meta: tuple[dict[str, Any], ...]  # labels, patient_id, age, sex, view per image
    size: int
    clahe: bool
    strict: bool
    digest: str


@dataclass(frozen=True)
class _ShardOutcome:
    name: str
    rows: int
    corrupt: tuple[tuple[str, str], ...]


def find_images(images_dir: Path) -> list[Path]:
    """PNG files under `images_dir` (recursively, as NIH ships them in images_0NN/images/), sorted by name."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise BadInputError(f"--images {images_dir} is not a directory", "pass the folder holding the NIH PNGs")
    found = [p for p in images_dir.rglob("*") if p.suffix.lower() == ".png" and not p.name.startswith(".")]
    found.sort(key=lambda p: (p.name, str(p)))
    unique: list[Path] = []
    for path in found:
        if unique and unique[-1].name == path.name:
            log.warning("duplicate image name %s: keeping %s", path.name, unique[-1])
            continue
        unique.append(path)
    return unique


def _prepare(img: np.ndarray, size: int, clahe: bool) -> np.ndarray:
    # CLAHE after the resize, with the loader's default clip and grid: what `aug.clahe` would do at load time.
    img = resize_to(img, size)
    if clahe:
        img = apply_clahe(img)
    return np.ascontiguousarray(img)


def _build_one(task: _ShardTask) -> _ShardOutcome:
    """Worker: decode, resize, encode and write one shard. Runs in a pool process."""
    rows: list[ShardRow] = []
    corrupt: list[tuple[str, str]] = []
    for file, meta in zip(task.files, task.meta, strict=True):
        try:
            img = decode_image(Path(file).read_bytes())
        except (OSError, ImageDecodeError) as exc:
            corrupt.append((file, str(exc)))
            if task.strict:
                return _ShardOutcome(task.path.name, 0, tuple(corrupt))
            continue
        image = encode_image(_prepare(img, task.size, task.clahe))
        rows.append(ShardRow(filename=Path(file).name, image=image, **meta))
    if rows:
        write_shard(task.path, rows)
    else:
        task.path.unlink(missing_ok=True)  # an earlier build's shard of that name must not survive
    return _ShardOutcome(task.path.name, len(rows), tuple(corrupt))


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _row_meta(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for filename, labels, pid, age, sex, view in zip(
        df["filename"], df["labels"], df["patient_id"], df["age"], df["sex"], df["view"], strict=True
    ):
        records[str(filename)] = {
            "labels": str(labels),
            "patient_id": None if _missing(pid) else int(pid),
            "age": None if _missing(age) else int(age),
            "sex": None if _missing(sex) else str(sex),
            "view": None if _missing(view) else str(view),
        }
    return records


def _digest(files: Sequence[Path], meta: Sequence[dict[str, Any]]) -> str:
    """What a shard is built from: its image names and sizes, and their metadata rows (a changed label rebuilds)."""
    h = hashlib.sha256()
    for path, row in zip(files, meta, strict=True):
        h.update(f"{path.name}\0{path.stat().st_size}\0{json.dumps(row, sort_keys=True)}\n".encode())
    return h.hexdigest()[:16]


def _plan(
    files: list[Path],
    meta: dict[str, dict[str, Any]],
    out_dir: Path,
    size: int,
    clahe: bool,
    strict: bool,
    shard_size: int,
) -> list[_ShardTask]:
    chunks = [files[i : i + shard_size] for i in range(0, len(files), shard_size)]
    return [
        _ShardTask(
            path=out_dir / "data" / shard_name(_SHARD_SPLIT, i, len(chunks)),
            files=tuple(str(p) for p in chunk),
            meta=tuple(meta[p.name] for p in chunk),
            size=size,
            clahe=clahe,
            strict=strict,
            digest=_digest(chunk, [meta[p.name] for p in chunk]),
        )
        for i, chunk in enumerate(chunks)
    ]


def read_manifest(out_dir: Path, name: str = MANIFEST_NAME) -> dict[str, Any]:
    """The folder's resume record (`{"shards": {name: {...}}, ...}`, file `name`); an empty one when unreadable."""
    path = out_dir / name
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"shards": {}}
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("shards"), dict) else {"shards": {}}


def shard_is_complete(task: _ShardTask | Any, entry: dict[str, Any] | None) -> bool:
    """Whether the manifest `entry` says `task` (anything with `.digest` and `.path`) was written as planned."""
    if not entry or entry.get("digest") != task.digest:
        return False
    return int(entry.get("rows", 0)) == 0 or task.path.is_file()


def remove_stale(out_dir: Path, old: dict[str, Any], tasks: Sequence[_ShardTask | Any]) -> None:
    """Drop shards of an earlier plan (another image count renames every shard): no row is read twice."""
    keep = {t.path.name for t in tasks}
    for name in old.get("shards", {}):
        if name not in keep:
            (out_dir / "data" / name).unlink(missing_ok=True)


def build_shards(
    images_dir: Path,
    out_dir: Path,
    *,
    size: int = 320,
    metadata: Path | pd.DataFrame | None = None,
    workers: int | None = os.cpu_count(),
    shard_size: int = 1000,
    strict: bool = False,
    clahe: bool = True,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> BuildResult:
    """Build shards in `out_dir/data/` from the PNGs under `images_dir`; resumable; see the module docstring.

    `metadata`: a Data_Entry CSV path or a normalised DataFrame (`load_metadata`); None = the shipped v2020 labels
    (`shipped_labels`).
    Raises BadInputError on bad arguments, no usable images, or (with `strict`) the first corrupt image. `out_dir`
    follows `chexvision.data.outdir`: the same settings continue; other settings (size, CLAHE, shard size, images
    folder) or another data set there are refused unless `overwrite`.
    """
    start = time.perf_counter()
    if size < 8 or shard_size < 1:
        raise BadInputError(f"bad build settings size={size} shard_size={shard_size}", "use e.g. --size 320")
    out_dir = Path(out_dir)
    df, labels = _metadata(metadata)
    known, meta, missing = _labelled_images(Path(images_dir), df)
    settings = {"size": size, "clahe": clahe, "shard_size": shard_size}
    prepare_out(out_dir, "build", {**settings, "images": str(Path(images_dir).resolve())}, overwrite=overwrite)
    tasks = _plan(known, meta, out_dir, size, clahe, strict, shard_size)
    old = read_manifest(out_dir)
    same_settings = all(old.get(k) == v for k, v in settings.items())
    remove_stale(out_dir, old, tasks)
    manifest: dict[str, Any] = {**settings, "shards": {}}
    if same_settings:
        manifest["shards"] = {t.path.name: old["shards"][t.path.name] for t in tasks if t.path.name in old["shards"]}
    todo = [t for t in tasks if not (same_settings and shard_is_complete(t, manifest["shards"].get(t.path.name)))]
    result = BuildResult(
        out_dir, [], 0, size, clahe, labels, resumed_shards=len(tasks) - len(todo), not_in_metadata=missing
    )
    if todo:
        (out_dir / "dataset.json").unlink(missing_ok=True)  # absent until the build is complete again
    by_name = {t.path.name: t for t in tasks}
    done = len(known) - sum(len(t.files) for t in todo)
    if progress:
        progress(done, len(known))
    outcomes = run_tasks(_build_one, todo, workers)
    try:
        for outcome in outcomes:
            _record_shard(outcome, by_name[outcome.name], manifest, out_dir, strict)
            result.built_shards += 1
            done += len(by_name[outcome.name].files)
            if progress:
                progress(done, len(known))
    finally:
        outcomes.close()  # shuts the pool down now, not when the traceback is collected
    write_json_atomic(out_dir / MANIFEST_NAME, manifest, sort_keys=True)
    _finish(result, manifest, tasks)
    result.seconds = time.perf_counter() - start
    return result


def shipped_labels() -> pd.DataFrame:
    """The shipped v2020 metadata: the full CSV where installed, else the compact copy a remote bundle carries."""
    if resource_path(METADATA_RESOURCE) is not None:
        return load_metadata()
    path = resource_path(LABELS_RESOURCE)
    if path is None:
        raise BadInputError(
            f"neither {METADATA_RESOURCE} nor {LABELS_RESOURCE} is installed",
            "pass --metadata Data_Entry_2017_v2020.csv",
        )
    return read_labels_resource(path)


def write_labels_resource(df: pd.DataFrame, path: Path) -> None:
    """Write the compact copy of normalised NIH metadata `df` (`load_metadata`), xz-compressed JSON of columns in
    file-name order: `patients` and `images` (each patient's image count: NIH names them PPPPPPPP_000.png onwards),
    `labels`, `age`, `sex` (one letter per patient), `view` (A or P per image). 0.17 MB for the 112,120 rows."""
    df = df.sort_values("filename").reset_index(drop=True)
    counts = df.groupby("patient_id", sort=True).size()
    names = [f"{pid:08d}_{k:03d}.png" for pid, n in counts.items() for k in range(n)]
    if names != df["filename"].tolist():
        raise ValueError("metadata file names are not NIH's PPPPPPPP_NNN.png, numbered from 000 per patient")
    sex = df.groupby("patient_id", sort=True)["sex"].agg(lambda v: "".join(sorted(set(v))))
    if not sex.isin(["M", "F"]).all() or not df["view"].isin(["AP", "PA"]).all():
        raise ValueError("expected one sex (M/F) per patient and views AP/PA")
    columns = {
        "patients": [int(p) for p in counts.index],
        "images": [int(n) for n in counts],
        "labels": df["labels"].astype(str).tolist(),
        "age": [int(a) for a in df["age"]],
        "sex": "".join(sex),
        "view": "".join(v[0] for v in df["view"]),
    }
    data = json.dumps(columns, separators=(",", ":")).encode()
    Path(path).write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def read_labels_resource(path: Path) -> pd.DataFrame:
    """The compact copy back as build reads metadata (filename, labels, patient_id, age, sex, view)."""
    columns = json.loads(lzma.decompress(Path(path).read_bytes()))
    counts = list(zip(columns["patients"], columns["images"], strict=True))
    return pd.DataFrame(
        {
            "filename": [f"{pid:08d}_{k:03d}.png" for pid, n in counts for k in range(n)],
            "labels": columns["labels"],
            "patient_id": [pid for pid, n in counts for _ in range(n)],
            "age": columns["age"],
            "sex": [s for s, (_, n) in zip(columns["sex"], counts, strict=True) for _ in range(n)],
            "view": [{"A": "AP", "P": "PA"}[v] for v in columns["view"]],
        }
    )


def _metadata(metadata: Path | pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """(the metadata rows, what dataset.json calls them)."""
    if isinstance(metadata, pd.DataFrame):
        return metadata, "metadata passed by the caller"
    if metadata is None:
        return shipped_labels(), SHIPPED_LABELS
    path = Path(metadata)
    df = load_metadata(path)
    return df, f"{path.name} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:16]})"


def _labelled_images(images_dir: Path, df: pd.DataFrame) -> tuple[list[Path], dict[str, dict[str, Any]], list[str]]:
    """(images the metadata labels, their metadata rows by file name, names of the images it does not list)."""
    images = find_images(images_dir)
    if not images:
        raise BadInputError(f"no PNG files under {images_dir}", "point --images at the folder holding the NIH PNGs")
    meta = _row_meta(df[df["filename"].isin({p.name for p in images})])
    known = [p for p in images if p.name in meta]
    if not known:
        raise BadInputError(
            f"none of the {len(images)} PNG files under {images_dir} are in the metadata",
            "point --images at NIH images, or pass --metadata CSV listing them",
        )
    return known, meta, [p.name for p in images if p.name not in meta]


def _record_shard(
    outcome: _ShardOutcome, task: _ShardTask, manifest: dict[str, Any], out_dir: Path, strict: bool
) -> None:
    """Enter a finished shard in the manifest and save it, so a killed build resumes after it."""
    if strict and outcome.corrupt:
        file, reason = outcome.corrupt[0]
        raise BadInputError(
            f"corrupt image {file}: {reason}", "fix or remove the file, or re-run without --strict to skip it"
        )
    manifest["shards"][outcome.name] = {
        "digest": task.digest,
        "rows": outcome.rows,
        "corrupt": [list(c) for c in outcome.corrupt],
    }
    write_json_atomic(out_dir / MANIFEST_NAME, manifest, sort_keys=True)


def _finish(result: BuildResult, manifest: dict[str, Any], tasks: list[_ShardTask]) -> None:
    """Fill the result from the manifest (so resumed shards report their skips too); write dataset.json."""
    for task in tasks:
        entry = manifest["shards"][task.path.name]
        result.corrupt.extend((str(f), str(r)) for f, r in entry.get("corrupt", []))
        result.images += int(entry["rows"])
        if int(entry["rows"]) > 0:
            result.shards.append(task.path)
    info = {
        "source": "nih-build",
        "default_split_scheme": "official",
        "size": result.size,
        "clahe": result.clahe,  # applied once here: the loader must not apply it again
        "channels": 1,
        "image_format": IMAGE_FORMAT,
        "images": result.images,
        "labels": result.labels,
    }
    write_json_atomic(result.out_dir / "dataset.json", info, sort_keys=True)
