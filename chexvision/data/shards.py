"""Parquet image shards: one reader for the published HF layout and for our own one-channel format.

Both layouts share three columns: `image` (struct of `bytes` and `path`), `labels` (`A|B` or `No Finding`) and
`filename` (the original NIH name). The published shards hold RGB PNGs at 320 px; ours hold one-channel 8-bit JPEGs
at quality 95, plus optional metadata columns (`patient_id`, `age`, `sex`, `view`). JPEG q95 was chosen by
measurement (BENCHMARKS.md): against PNG it decodes 4x faster, is half the size and encodes 10x faster, for under one
grey level of mean error; `encode_image(img, fmt="png")` stays available where lossless matters. `decode_image` reads
both. The split a shard's file name claims is ignored: splits are always recomputed by patient from `filename` (see
`chexvision.data.splits`).

Random access: Parquet cannot read one row without its row group, so the index keeps a small per-process cache of
decoded row groups and exposes `row_groups()` for samplers that shuffle row groups, then rows within a window of them
(see BENCHMARKS.md, "shard access", for the row-group size chosen).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chexvision.errors import BadInputError
from chexvision.files import read_json_object, tmp_sibling
from chexvision.labels import label_string_problem

__all__ = [
    "ROW_GROUP_SIZE",
    "SCHEMA",
    "BadLabelRow",
    "ImageDecodeError",
    "ShardIndex",
    "ShardRow",
    "decode_image",
    "encode_image",
    "encode_jpeg",
    "encode_png",
    "find_shards",
    "read_dataset_meta",
    "shard_name",
    "write_shard",
]

log = logging.getLogger(__name__)

# Rows per row group in the shards we write: the unit of random access (measured in benchmarks/shard_access.py).
ROW_GROUP_SIZE = 64
# Image encoding of the shards we write: JPEG q95 decodes ~4x faster than PNG at half the size, with a mean
# absolute error under one grey level on real NIH images (measured in benchmarks/shard_access.py, BENCHMARKS.md).
IMAGE_FORMAT = "jpeg"
JPEG_QUALITY = 95
# Row groups kept decoded per process: a block-shuffling sampler touches few at a time.
_CACHE_ROW_GROUPS = 8
REQUIRED_COLUMNS = ("image", "labels", "filename")
# Optional columns the index keeps in `extra`: metadata, and `classes` (the NIH findings labelled for that image,
# `A|B`, written by `data build --source chexpert|mimic-cxr-jpg|padchest`; chexvision.data.classes).
_META_COLUMNS = ("patient_id", "age", "sex", "view", "classes")
_LISTED_BAD_LABELS = 20  # rows with a bad label warned about one by one before a count
_LABEL_HINT = "labels must be exact NIH names joined by '|' (e.g. Effusion|Mass) or 'No Finding'"

_IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema(
    [
        ("image", _IMAGE_TYPE),
        ("labels", pa.string()),
        ("filename", pa.string()),
        ("patient_id", pa.int32()),
        ("age", pa.int16()),
        ("sex", pa.string()),
        ("view", pa.string()),
    ]
)


class ImageDecodeError(ValueError):
    """Image bytes that cannot be decoded (corrupt, truncated, unsupported)."""


@dataclass(frozen=True)
class BadLabelRow:
    """A shard row left out of the index because its `labels` are not an exact NIH label string."""

    shard: Path
    row: int  # position in the shard file
    filename: str
    problem: str  # what `label_string_problem` says (names the label)

    def describe(self) -> str:
        return f"{self.shard} row {self.row} ({self.filename}): {self.problem}"


@dataclass(frozen=True)
class ShardRow:
    """One image and its labels, as stored in a shard."""

    filename: str
    labels: str
    image: bytes
    patient_id: int | None = None
    age: int | None = None
    sex: str | None = None
    view: str | None = None


def encode_png(img: np.ndarray, compression: int = 3) -> bytes:
    """Encode a uint8 one-channel image as PNG (lossless; level 3 is near level 9's size at a fraction of its cost)."""
    _check_gray_u8(img)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise ImageDecodeError("PNG encoding failed")
    return buf.tobytes()


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """Encode a uint8 one-channel image as JPEG (baseline, 4:4:4 is moot for one channel)."""
    _check_gray_u8(img)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageDecodeError("JPEG encoding failed")
    return buf.tobytes()


def encode_image(img: np.ndarray, fmt: str = IMAGE_FORMAT) -> bytes:
    """Encode a uint8 one-channel image in the shard format (`jpeg`, the default, or lossless `png`)."""
    if fmt == "jpeg":
        return encode_jpeg(img, JPEG_QUALITY)
    if fmt == "png":
        return encode_png(img)
    raise ValueError(f"unknown image format {fmt!r}; expected 'jpeg' or 'png'")


def _check_gray_u8(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(f"expected a uint8 HxW image, got {img.dtype} with shape {img.shape}")


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes (gray, RGB or RGBA; 8 or 16 bit) to a uint8 HxW grayscale image."""
    if not data:
        raise ImageDecodeError("empty image bytes")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError("undecodable image bytes (corrupt or not PNG/JPEG)")
    return to_gray_u8(img)


def to_gray_u8(img: np.ndarray) -> np.ndarray:
    """Convert a decoded image (cv2 channel order; any of L, BGR, BGRA; uint8 or uint16) to uint8 HxW."""
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise ImageDecodeError(f"unsupported channel count {channels}")
    if img.dtype == np.uint16:
        # 16-bit radiographs often use 10-14 bits: stretch the used range rather than dropping the low byte.
        lo, hi = int(img.min()), int(img.max())
        scale = 255.0 / max(hi - lo, 1)
        img = ((img.astype(np.float32) - lo) * scale + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported pixel type {img.dtype}")
    return np.ascontiguousarray(img)


def shard_name(split: str, index: int, total: int) -> str:
    """The HF datasets naming scheme we also write: `train-00003-of-00012.parquet`."""
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def write_shard(path: Path, rows: Iterable[ShardRow], row_group_size: int = ROW_GROUP_SIZE) -> int:
    """Write rows to a Parquet shard atomically (temp file + rename); returns the row count.

    The image column is stored uncompressed: PNG bytes do not compress further, and skipping the codec makes reading
    a row group a copy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for row in rows:
        columns["image"].append({"bytes": row.image, "path": row.filename})
        columns["labels"].append(row.labels)
        columns["filename"].append(row.filename)
        columns["patient_id"].append(row.patient_id)
        columns["age"].append(row.age)
        columns["sex"].append(row.sex)
        columns["view"].append(row.view)
    table = pa.table(columns, schema=SCHEMA)
    tmp = tmp_sibling(path)
    compression = {name: ("none" if name == "image" else "zstd") for name in SCHEMA.names}
    pq.write_table(table, tmp, row_group_size=row_group_size, compression=compression)
    os.replace(tmp, path)
    return table.num_rows


def read_dataset_meta(data_dir: Path) -> dict[str, Any]:
    """A data folder's dataset.json (source, default_split_scheme, clahe, ...); {} when it has none.

    A malformed one is a BadInputError naming it: it decides the split scheme and CLAHE, so guessing is wrong.
    """
    path = Path(data_dir) / "dataset.json"
    if not path.is_file():
        return {}
    return read_json_object(path, "fix or delete that file (`chexvision data synth|build|download` write it)")


def find_shards(data_dir: Path) -> list[Path]:
    """Shards of a data set folder: `DIR/data/*.parquet` (HF layout) or `DIR/*.parquet`, sorted by name."""
    data_dir = Path(data_dir)
    if data_dir.is_file() and data_dir.suffix == ".parquet":
        return [data_dir]
    found = sorted((data_dir / "data").glob("*.parquet")) or sorted(data_dir.glob("*.parquet"))
    return [p for p in found if not p.name.startswith(".")]


class ShardIndex:
    """Row index over a folder of shards: file names and labels in memory, image bytes read on demand.

    Picklable: open Parquet handles and the row-group cache stay behind, so each DataLoader worker reopens lazily.
    """

    def __init__(
        self,
        shards: Sequence[Path],
        filenames: list[str],
        labels: list[str],
        locations: np.ndarray,
        extra: dict[str, list[Any]],
        bad_labels: Sequence[BadLabelRow] = (),
    ) -> None:
        self.shards = list(shards)
        self.filenames = filenames
        self.labels = labels
        # (N, 3) int64: shard number, row group, row within the group
        self.locations = locations
        self.extra = extra
        # Rows left out because their labels are not an exact NIH label string (reported by `open`).
        self.bad_labels = list(bad_labels)
        self.cache_row_groups = _CACHE_ROW_GROUPS
        self._files: dict[int, pq.ParquetFile] = {}
        self._cache: OrderedDict[tuple[int, int], list[bytes | None]] = OrderedDict()

    @classmethod
    def open(cls, data_dir: Path, *, strict: bool = False) -> ShardIndex:
        """Index the shards of `data_dir`. A row whose labels are unknown or misspelt (`Covid19`, `no finding`) is
        treated like an unreadable image: left out, warned about (shard, row, label) and kept in `bad_labels`, or,
        with `strict`, a BadInputError naming them. Filenames, labels and locations are filtered together, so no
        label ever moves to another image.
        """
        shards = find_shards(Path(data_dir))
        if not shards:
            raise BadInputError(
                f"no Parquet shards in {data_dir}",
                "point --data at a folder holding data/*.parquet (make one with `chexvision data synth --out DIR`)",
            )
        filenames: list[str] = []
        labels: list[str] = []
        locations: list[np.ndarray] = []
        keep: list[np.ndarray] = []
        bad: list[BadLabelRow] = []
        extra: dict[str, list[Any]] = {}
        for s, path in enumerate(shards):
            meta_cols, table = _read_metadata_columns(path)
            names, texts = table.column("filename").to_pylist(), table.column("labels").to_pylist()
            keep.append(_check_labels(path, names, texts, strict, bad))
            filenames.extend(names)
            labels.extend(texts)
            for name in _META_COLUMNS:
                if name in meta_cols:
                    extra.setdefault(name, []).extend(table.column(name).to_pylist())
            md = pq.ParquetFile(path).metadata
            for rg in range(md.num_row_groups):
                n = md.row_group(rg).num_rows
                loc = np.empty((n, 3), dtype=np.int64)
                loc[:, 0], loc[:, 1], loc[:, 2] = s, rg, np.arange(n)
                locations.append(loc)
        for name, values in list(extra.items()):
            if len(values) != len(filenames):  # a column present in some shards only is not usable
                del extra[name]
        locs = np.concatenate(locations) if locations else np.empty((0, 3), dtype=np.int64)
        if bad:
            _warn_bad_labels(bad)
            mask = np.concatenate(keep)
            rows = np.flatnonzero(mask).tolist()
            filenames, labels = [filenames[i] for i in rows], [labels[i] for i in rows]
            extra = {name: [values[i] for i in rows] for name, values in extra.items()}
            locs = locs[mask]
        return cls(shards, filenames, labels, locs, extra, bad)

    def __len__(self) -> int:
        return len(self.filenames)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"], state["_cache"] = {}, OrderedDict()
        return state

    def shard_of(self, i: int) -> tuple[Path, int]:
        """The shard file holding row `i` and the row's position in that file."""
        s, rg, row = (int(v) for v in self.locations[i])
        md = self._file(s).metadata
        offset = sum(md.row_group(g).num_rows for g in range(rg))
        return self.shards[s], offset + row

    def row_groups(self) -> list[np.ndarray]:
        """Global row indices grouped by (shard, row group), in storage order."""
        keys = self.locations[:, 0] * (1 << 32) + self.locations[:, 1]
        boundaries = np.flatnonzero(np.diff(keys)) + 1
        return np.split(np.arange(len(self), dtype=np.int64), boundaries) if len(self) else []

    def read_image_bytes(self, i: int) -> bytes:
        s, rg, row = self.locations[i].tolist()
        data = self._row_group_images(s, rg)[row]
        return data if data is not None else b""

    def read_image(self, i: int) -> np.ndarray:
        """Decoded uint8 HxW image of row `i`; raises ImageDecodeError naming shard and row when corrupt."""
        try:
            return decode_image(self.read_image_bytes(i))
        except ImageDecodeError as exc:
            shard, row = self.shard_of(i)
            raise ImageDecodeError(f"{shard.name} row {row} ({self.filenames[i]}): {exc}") from exc

    def _file(self, s: int) -> pq.ParquetFile:
        handle = self._files.get(s)
        if handle is None:
            handle = self._files[s] = pq.ParquetFile(self.shards[s], memory_map=True)
        return handle

    def _row_group_images(self, s: int, rg: int) -> list[bytes | None]:
        """The image bytes of one row group, as Python bytes (converted once per row group: a random read is
        then a list index, not a pyarrow scalar per image)."""
        key = (s, rg)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        table = self._file(s).read_row_group(rg, columns=["image"])
        images: list[bytes | None] = table.column("image").combine_chunks().field("bytes").to_pylist()
        self._cache[key] = images
        if len(self._cache) > self.cache_row_groups:
            self._cache.popitem(last=False)
        return images

    def iter_rows(self) -> Iterator[tuple[str, str, bytes]]:
        """(filename, labels, image bytes) in storage order: sequential reads, for builds and conversions."""
        for i in range(len(self)):
            yield self.filenames[i], self.labels[i], self.read_image_bytes(i)


def _check_labels(path: Path, names: list[Any], texts: list[Any], strict: bool, bad: list[BadLabelRow]) -> np.ndarray:
    """Which rows of one shard carry a valid label string; the others are appended to `bad` (or, strict, raised)."""
    keep = np.ones(len(texts), dtype=bool)
    for row, text in enumerate(texts):
        problem = label_string_problem(text)
        if problem is None:
            continue
        found = BadLabelRow(path, row, str(names[row]), problem)
        if strict:
            raise BadInputError(
                f"bad label in {found.describe()}",
                f"{_LABEL_HINT}; fix or rebuild that shard, or run without --strict to skip such rows",
            )
        keep[row] = False
        bad.append(found)
    return keep


def _warn_bad_labels(bad: list[BadLabelRow]) -> None:
    for found in bad[:_LISTED_BAD_LABELS]:
        log.warning("skipping a row with a bad label: %s", found.describe())
    more = f" ({len(bad) - _LISTED_BAD_LABELS} more not listed)" if len(bad) > _LISTED_BAD_LABELS else ""
    rows = f"{len(bad)} row{'s' if len(bad) != 1 else ''}"
    log.warning("skipped %s with bad labels%s; %s (--strict makes them fatal)", rows, more, _LABEL_HINT)


def _read_metadata_columns(path: Path) -> tuple[list[str], pa.Table]:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(f"unreadable Parquet shard {path}: {exc}", "re-download or rebuild that shard") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise BadInputError(
            f"shard {path} lacks column(s) {', '.join(missing)}",
            "shards need image, labels and filename columns (HF layout or `chexvision data build` output)",
        )
    meta_cols = [c for c in _META_COLUMNS if c in schema.names]
    table = pq.read_table(path, columns=["filename", "labels", *meta_cols])
    return meta_cols, table
