"""`chexvision data build --source chexpert|mimic-cxr-jpg|padchest`: an external set as our Parquet shards.

The set's reader (`SOURCES`) gives the images, patient ids and NIH labels (1 / 0 / missing, `mapping`); this module
writes them as `chexvision data build` writes NIH: one-channel JPEG q95 at `size` px (squashed to a square, as
`predict` does with any image), CLAHE baked in unless asked not to, shards of `shard_size` images, resumable through
`build_manifest.json` (a shard whose images and labels are unchanged is not rebuilt). Beside `chexvision.data.shards`'
columns every row has `classes`: the NIH findings labelled for that image (`A|B`; empty: none), since CheXpert and
MIMIC leave single labels blank or uncertain. The folder also gets:

* `dataset.json`: `source`, `default_split_scheme` `patient`, `classes` (the findings labelled on *every* image, the
  folder-wide mask `chexvision evaluate` applies), `classes_any` (those labelled on some image), and `external`: the
  labels file, view filter, uncertainty policy and the counts of rows left out and why;
* `labels.csv`: `filename`, `patient_id`, one 1 / 0 / blank column per NIH finding, `age`, `sex`, `view`,
  `source_path`: the exact per-image labels, in the form `chexvision evaluate --predictions P --labels` reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from chexvision.data.build import MANIFEST_NAME, read_manifest, remove_stale, shard_is_complete
from chexvision.data.external.table import ExternalTable
from chexvision.data.outdir import prepare_out
from chexvision.data.pool import run_tasks
from chexvision.data.shards import (
    IMAGE_FORMAT,
    ROW_GROUP_SIZE,
    SCHEMA,
    ImageDecodeError,
    decode_image,
    encode_image,
    read_dataset_meta,
    shard_name,
)
from chexvision.data.transforms import apply_clahe, resize_to
from chexvision.errors import BadInputError, UnknownName
from chexvision.files import atomic_write_text, tmp_sibling, write_json_atomic
from chexvision.labels import LABELS, format_labels

__all__ = ["LABELS_CSV", "SHARD_SCHEMA", "SOURCES", "VIEWS", "ExternalBuildResult", "build_external", "read_source"]

log = logging.getLogger(__name__)

SOURCES = ("chexpert", "mimic-cxr-jpg", "padchest")
VIEWS = ("frontal", "all")
LABELS_CSV = "labels.csv"
SHARD_SCHEMA = SCHEMA.append(pa.field("classes", pa.string()))  # per-row labelled findings (module docstring)
ProgressFn = Callable[[int, int], None]


@dataclass
class ExternalBuildResult:
    """What a build did; the first fields are those of `chexvision.data.build.BuildResult`."""

    out_dir: Path
    shards: list[Path]
    images: int
    size: int
    clahe: bool
    source: str
    classes: tuple[str, ...]  # labelled on every image (dataset.json "classes")
    classes_any: tuple[str, ...]  # labelled on some image
    counts: dict[str, int]
    missing_images: list[str]
    built_shards: int = 0
    resumed_shards: int = 0
    corrupt: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Row:
    path: str
    filename: str
    labels: str
    classes: str
    patient_id: int
    age: int | None
    sex: str | None
    view: str | None


@dataclass(frozen=True)
class _ShardTask:
    path: Path
    rows: tuple[_Row, ...]
    size: int
    clahe: bool
    strict: bool
    digest: str


def read_source(
    source: str,
    images: Path,
    labels: Path,
    *,
    metadata: Path | None = None,
    patients: Path | None = None,
    views: str = "frontal",
    uncertain: str = "ignore",
) -> ExternalTable:
    """The set's reader: `ExternalTable` of the images found under `images`."""
    from chexvision.data.external.mapping import UNCERTAIN_POLICIES

    if source not in SOURCES:
        raise UnknownName("data source", source, ("nih", *SOURCES))
    if views not in VIEWS:
        raise UnknownName("view filter", views, VIEWS)
    if uncertain not in UNCERTAIN_POLICIES:
        raise UnknownName("uncertainty policy", uncertain, UNCERTAIN_POLICIES)
    if not Path(images).is_dir():
        raise BadInputError(f"--images {images} is not a directory", f"pass the folder holding the {source} images")
    if source == "chexpert":
        from chexvision.data.external.chexpert import read_chexpert

        _only_for(source, metadata=metadata, patients=patients)
        return read_chexpert(images, labels, views=views, uncertain=uncertain)
    if source == "mimic-cxr-jpg":
        from chexvision.data.external.mimic import read_mimic

        return read_mimic(images, labels, metadata, patients_csv=patients, views=views, uncertain=uncertain)
    from chexvision.data.external.padchest import read_padchest

    _only_for(source, metadata=metadata, patients=patients)
    if uncertain != "ignore":
        raise BadInputError("--uncertain applies to CheXpert-labelled sets", "PadChest has no uncertain labels")
    return read_padchest(images, labels, views=views)


def _only_for(source: str, **given: Path | None) -> None:
    for name, value in given.items():
        if value is not None:
            raise BadInputError(f"--{name} is not used with --source {source}", f"drop --{name}")


def build_external(
    table: ExternalTable,
    out_dir: Path,
    *,
    images_dir: Path,
    labels_csv: Path,
    size: int = 320,
    clahe: bool = True,
    workers: int | None = os.cpu_count(),
    shard_size: int = 1000,
    strict: bool = False,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> ExternalBuildResult:
    """Write `table` as shards + dataset.json + labels.csv in `out_dir` (see the module docstring); resumable."""
    start = time.perf_counter()
    if size < 8 or shard_size < 1:
        raise BadInputError(f"bad build settings size={size} shard_size={shard_size}", "use e.g. --size 320")
    out_dir = Path(out_dir)
    rows = _rows(table)
    if not rows:
        raise BadInputError(
            f"none of the {table.counts.get('rows', 0)} rows of {labels_csv} left an image to build "
            f"({_left_out(table.counts)})",
            "point --images at the folder holding the set's images (see `chexvision data build --help`)",
        )
    _refuse_other_data(out_dir, table.source, overwrite)
    settings = {"source": table.source, "size": size, "clahe": clahe, "shard_size": shard_size, **table.settings}
    inputs = {"labels": str(Path(labels_csv).resolve()), "images": str(Path(images_dir).resolve())}
    prepare_out(out_dir, "build", {**settings, **inputs}, overwrite=overwrite)
    tasks = _plan(rows, out_dir, size, clahe, strict, shard_size)
    old = read_manifest(out_dir)
    same = all(old.get(k) == v for k, v in settings.items())
    remove_stale(out_dir, old, tasks)
    keep = {t.path.name for t in tasks}
    manifest: dict[str, Any] = {**settings, "shards": {}}
    if same:
        manifest["shards"] = {n: e for n, e in old.get("shards", {}).items() if n in keep}
    todo = [t for t in tasks if not (same and shard_is_complete(t, manifest["shards"].get(t.path.name)))]
    if todo:
        (out_dir / "dataset.json").unlink(missing_ok=True)  # absent until the build is complete again
    done = len(rows) - sum(len(t.rows) for t in todo)
    if progress:
        progress(done, len(rows))
    result = _result(table, out_dir, size, clahe)
    result.resumed_shards = len(tasks) - len(todo)
    outcomes = run_tasks(_build_one, todo, workers)
    by_name = {t.path.name: t for t in tasks}
    try:
        for name, written, corrupt in outcomes:
            if strict and corrupt:
                raise BadInputError(f"corrupt image {corrupt[0][0]}: {corrupt[0][1]}",
                                    "fix or remove the file, or re-run without --strict to skip it")  # fmt: skip
            manifest["shards"][name] = {"digest": by_name[name].digest, "rows": written, "corrupt": corrupt}
            write_json_atomic(out_dir / MANIFEST_NAME, manifest, sort_keys=True)
            result.built_shards += 1
            done += len(by_name[name].rows)
            if progress:
                progress(done, len(rows))
    finally:
        outcomes.close()
    write_json_atomic(out_dir / MANIFEST_NAME, manifest, sort_keys=True)
    _finish(result, table, manifest, tasks, labels_csv)
    result.seconds = time.perf_counter() - start
    return result


def _left_out(counts: dict[str, int]) -> str:
    reasons = {k: v for k, v in counts.items() if k not in ("rows", "uncertain_cells") and v}
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in reasons.items()) or "no rows"


def _refuse_other_data(out_dir: Path, source: str, overwrite: bool) -> None:
    """`prepare_out` compares only the parameters both builds recorded: an NIH build there records no source."""
    meta = read_dataset_meta(out_dir) if (out_dir / "dataset.json").is_file() else {}
    manifest = read_manifest(out_dir) if (out_dir / MANIFEST_NAME).is_file() else {}
    was = meta.get("source") or manifest.get("source") or ("nih-build" if manifest.get("shards") else None)
    if was is not None and was != source and not overwrite:
        raise BadInputError(f"--out {out_dir} already holds a {was} data set",
                            "pass --overwrite to replace it, or choose another --out")  # fmt: skip


def _rows(table: ExternalTable) -> list[_Row]:
    frame = table.frame.sort_values("filename", kind="stable")
    dupes = frame["filename"].duplicated()
    if dupes.any():
        name = frame.loc[dupes, "source_path"].iloc[0]
        raise BadInputError(f"{name} is listed twice", "pass the labels CSV as published: one row per image")
    y = frame[list(LABELS)].to_numpy(dtype=np.float64)
    defined = np.isfinite(y)
    columns = ("path", "filename", "patient_id", "age", "sex", "view")
    records: list[tuple[Any, ...]] = list(zip(*(frame[c].tolist() for c in columns), strict=True))
    rows = []
    for i, (path, filename, pid, age, sex, view) in enumerate(records):
        rows.append(
            _Row(
                path=str(path),
                filename=str(filename),
                labels=format_labels(n for k, n in enumerate(LABELS) if y[i, k] == 1.0),
                classes="|".join(n for k, n in enumerate(LABELS) if defined[i, k]),
                patient_id=int(pid),
                age=None if _na(age) else int(age),
                sex=None if _na(sex) else str(sex),
                view=None if _na(view) else str(view),
            )
        )
    return rows


def _na(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _digest(rows: tuple[_Row, ...]) -> str:
    h = hashlib.sha256()
    for row in rows:
        fields = {**row.__dict__, "bytes": os.stat(row.path).st_size}
        fields.pop("path")
        h.update(json.dumps(fields, sort_keys=True).encode() + b"\n")
    return h.hexdigest()[:16]


def _plan(rows: list[_Row], out_dir: Path, size: int, clahe: bool, strict: bool, shard_size: int) -> list[_ShardTask]:
    chunks = [tuple(rows[i : i + shard_size]) for i in range(0, len(rows), shard_size)]
    return [
        _ShardTask(out_dir / "data" / shard_name("data", i, len(chunks)), chunk, size, clahe, strict, _digest(chunk))
        for i, chunk in enumerate(chunks)
    ]


def _build_one(task: _ShardTask) -> tuple[str, int, list[tuple[str, str]]]:
    """Worker: decode, resize, CLAHE, encode and write one shard; (shard name, rows written, corrupt images)."""
    columns: dict[str, list[Any]] = {name: [] for name in SHARD_SCHEMA.names}
    corrupt: list[tuple[str, str]] = []
    for row in task.rows:
        try:
            img = resize_to(decode_image(Path(row.path).read_bytes()), task.size)
        except (OSError, ImageDecodeError) as exc:
            corrupt.append((row.path, str(exc)))
            if task.strict:
                return task.path.name, 0, corrupt
            continue
        image = encode_image(np.ascontiguousarray(apply_clahe(img) if task.clahe else img))
        columns["image"].append({"bytes": image, "path": row.filename})
        for name in ("labels", "filename", "patient_id", "age", "sex", "view", "classes"):
            columns[name].append(getattr(row, name))
    written = len(columns["filename"])
    if written:
        task.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_sibling(task.path)
        compression = {name: ("none" if name == "image" else "zstd") for name in SHARD_SCHEMA.names}
        table = pa.table(columns, schema=SHARD_SCHEMA)
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, compression=compression)
        os.replace(tmp, task.path)
    else:
        task.path.unlink(missing_ok=True)
    return task.path.name, written, corrupt


def _result(table: ExternalTable, out_dir: Path, size: int, clahe: bool) -> ExternalBuildResult:
    defined = np.isfinite(table.label_matrix())
    every = tuple(n for k, n in enumerate(LABELS) if defined[:, k].all())
    some = tuple(n for k, n in enumerate(LABELS) if defined[:, k].any())
    return ExternalBuildResult(out_dir, [], 0, size, clahe, table.source, every, some, dict(table.counts),
                               list(table.missing_images))  # fmt: skip


def _finish(
    result: ExternalBuildResult, table: ExternalTable, manifest: dict[str, Any], tasks: list[_ShardTask], labels: Path
) -> None:
    """Fill the result from the manifest (resumed shards too); write labels.csv, then dataset.json (last)."""
    skipped: set[str] = set()
    for task in tasks:
        entry = manifest["shards"][task.path.name]
        result.corrupt.extend((str(f), str(r)) for f, r in entry.get("corrupt", []))
        skipped.update(str(f) for f, _ in entry.get("corrupt", []))
        result.images += int(entry["rows"])
        if int(entry["rows"]) > 0:
            result.shards.append(task.path)
    result.counts["corrupt"] = len(skipped)
    _write_labels_csv(result.out_dir / LABELS_CSV, table.frame[~table.frame["path"].isin(skipped)])
    info = {
        "source": table.source,
        "default_split_scheme": "patient",  # no official lists: 70/10/20 by the set's own patient ids
        "size": result.size,
        "clahe": result.clahe,
        "channels": 1,
        "image_format": IMAGE_FORMAT,
        "images": result.images,
        "classes": list(result.classes),  # labelled on every image: what a folder-wide mask may claim
        "classes_any": list(result.classes_any),
        "per_image_classes": "classes",  # the shard column with each image's labelled findings
        "external": {
            "labels_file": Path(labels).name,
            "mapping": "chexvision.data.external.mapping",
            **table.settings,
            "counts": result.counts,
        },
    }
    write_json_atomic(result.out_dir / "dataset.json", info, sort_keys=True)


def _write_labels_csv(path: Path, frame: pd.DataFrame) -> None:
    out = pd.DataFrame({"filename": frame["filename"], "patient_id": frame["patient_id"]})
    for label in LABELS:
        out[label] = frame[label].map(lambda v: "" if not np.isfinite(v) else str(int(v)))
    out["age"] = pd.array([None if _na(a) else int(a) for a in frame["age"]], dtype="Int64")
    for column in ("sex", "view", "source_path"):
        out[column] = frame[column]
    out = out.sort_values("filename", kind="stable")
    atomic_write_text(path, out.to_csv(index=False, lineterminator="\n"))
