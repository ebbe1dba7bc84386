"""Transcode shards once into our format (`chexvision data transcode`): the published RGB PNG shards become
one-channel JPEG shards with CLAHE applied.

The published set (`chexvision.data.download`) stores 320 px RGB PNGs and leaves CLAHE to the loader, so every
epoch pays a PNG decode of three channels plus CLAHE per image. Decoding it once, converting to one channel,
applying CLAHE (clip 2.0, 8x8 tiles: what the loader would do) and storing JPEG q95 (`encode_image`) makes every
later epoch decode a one-channel JPEG. BENCHMARKS.md has the one-off cost against the per-epoch saving.

One output shard per input shard, same name, one process-pool task each, written atomically and entered in
`transcode_manifest.json` with the input's name and size: a re-run skips what is complete (resumable, idempotent).
`dataset.json` is the input's (source, repo, revision stay: run.json still names the published set) plus
`clahe: true`, `channels`, `image_format` and `transcoded_from`; it is written last, so its presence means done.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from chexvision.data.build import read_manifest
from chexvision.data.pool import run_tasks
from chexvision.data.shards import (
    IMAGE_FORMAT,
    ImageDecodeError,
    ShardRow,
    decode_image,
    encode_image,
    find_shards,
    read_dataset_meta,
    write_shard,
)
from chexvision.data.transforms import apply_clahe
from chexvision.errors import BadInputError
from chexvision.files import write_json_atomic

__all__ = ["MANIFEST_NAME", "TranscodeResult", "transcode_shards"]

MANIFEST_NAME = "transcode_manifest.json"
_META_COLUMNS = ("patient_id", "age", "sex", "view")
ProgressFn = Callable[[int, int], None]  # (images done, images total)


@dataclass
class TranscodeResult:
    out_dir: Path
    shards: int
    images: int
    transcoded_shards: int = 0
    resumed_shards: int = 0
    clahe: bool = True  # applied here (False: the input already had it)
    corrupt: int = 0  # rows whose image could not be decoded (left out, as the loader would skip them)
    seconds: float = 0.0


@dataclass(frozen=True)
class _Task:
    src: str
    dst: str
    clahe: bool


def _transcode_one(task: _Task) -> tuple[str, int, int]:
    """Worker: (shard name, rows written, rows skipped as undecodable)."""
    table = pq.read_table(task.src)
    names = table.column("filename").to_pylist()
    labels = table.column("labels").to_pylist()
    images = table.column("image").combine_chunks().field("bytes").to_pylist()
    extra = {c: table.column(c).to_pylist() for c in _META_COLUMNS if c in table.column_names}
    rows: list[ShardRow] = []
    corrupt = 0
    for i, (name, label, data) in enumerate(zip(names, labels, images, strict=True)):
        try:
            img = decode_image(data or b"")
        except ImageDecodeError:
            corrupt += 1
            continue
        if task.clahe:
            img = apply_clahe(img)
        meta = {c: values[i] for c, values in extra.items()}
        rows.append(ShardRow(filename=str(name), labels=str(label), image=encode_image(img), **meta))
    write_shard(Path(task.dst), rows)
    return Path(task.dst).name, len(rows), corrupt


def _check_out(in_dir: Path, out_dir: Path, manifest: dict[str, Any]) -> None:
    """`out` must be new, empty, or an earlier transcode of the same input (nothing else is touched)."""
    if out_dir.resolve() == in_dir.resolve():
        raise BadInputError(f"--out {out_dir} is the input folder", "choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"--out {out_dir} is a file", "pass a folder (it is created when missing)")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if manifest.get("source") != str(in_dir.resolve()):
        raise BadInputError(
            f"--out {out_dir} holds something other than a transcode of {in_dir}",
            "choose an empty or new --out folder (nothing was changed)",
        )


def transcode_shards(
    in_dir: Path,
    out_dir: Path,
    *,
    workers: int | None = os.cpu_count(),
    progress: ProgressFn | None = None,
) -> TranscodeResult:
    """Transcode the shards of `in_dir` into one-channel JPEG shards with CLAHE in `out_dir/data/`; resumable."""
    start = time.perf_counter()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    sources = find_shards(in_dir)
    if not sources:
        raise BadInputError(f"no Parquet shards in {in_dir}", "point --data at a folder holding data/*.parquet")
    meta = read_dataset_meta(in_dir)
    clahe = not bool(meta.get("clahe", False))  # never twice
    old = read_manifest(out_dir, MANIFEST_NAME)
    _check_out(in_dir, out_dir, old)
    counts = {p.name: pq.ParquetFile(p).metadata.num_rows for p in sources}
    total = sum(counts.values())
    keys = {p.name: {"size": p.stat().st_size, "clahe": clahe} for p in sources}
    done_before = {
        name: entry
        for name, entry in old.get("shards", {}).items()
        if name in keys and {k: entry.get(k) for k in keys[name]} == keys[name] and (out_dir / "data" / name).is_file()
    }
    manifest: dict[str, Any] = {"source": str(in_dir.resolve()), "shards": dict(done_before)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dataset.json").unlink(missing_ok=True)  # absent until complete again
    write_json_atomic(out_dir / MANIFEST_NAME, manifest, sort_keys=True)
    tasks = [_Task(str(p), str(out_dir / "data" / p.name), clahe) for p in sources if p.name not in done_before]
    result = TranscodeResult(out_dir, len(sources), 0, resumed_shards=len(done_before), clahe=clahe)
    done = sum(counts[name] for name in done_before)
    if progress:
        progress(done, total)
    for name, rows, corrupt in run_tasks(_transcode_one, tasks, workers):
        manifest["shards"][name] = {**keys[name], "rows": rows, "corrupt": corrupt}
        write_json_atomic(out_dir / MANIFEST_NAME, manifest, sort_keys=True)
        result.transcoded_shards += 1
        done += counts[name]
        if progress:
            progress(done, total)
    for entry in manifest["shards"].values():
        result.images += int(entry["rows"])
        result.corrupt += int(entry["corrupt"])
    info = {**meta, "clahe": True, "channels": 1, "image_format": IMAGE_FORMAT, "images": result.images}
    info["transcoded_from"] = str(in_dir.resolve())
    write_json_atomic(out_dir / "dataset.json", info, sort_keys=True)
    result.seconds = time.perf_counter() - start
    return result
