"""NIH ChestX-ray14 metadata (`Data_Entry_2017_v2020.csv`) and the shipped split lists, read fast.

The CSV and the lists ship gzipped in `chexvision/data/resources/` (NIH Clinical Center; Wang et al., CVPR
2017). A remote source bundle may omit some of them (it keeps only `official_test.txt.gz`), so a missing
resource is a `BadInputError` that names the split scheme that still works.
"""

from __future__ import annotations

import gzip
import importlib.resources
from functools import cache
from pathlib import Path

import pandas as pd

from chexvision.errors import BadInputError
from chexvision.labels import label_string_problem

__all__ = [
    "COLUMNS",
    "METADATA_RESOURCE",
    "SPLIT_LISTS",
    "load_metadata",
    "load_split_list",
    "metadata_from_shards",
    "resource_path",
]

METADATA_RESOURCE = "Data_Entry_2017_v2020.csv.gz"
SPLIT_LISTS = ("official_train_val", "official_test", "chexnet_train", "chexnet_val", "chexnet_test")

# Our column name -> the spellings accepted in a CSV (the NIH header first, then our own normalised name).
_SOURCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "filename": ("Image Index", "filename"),
    "labels": ("Finding Labels", "labels"),
    "patient_id": ("Patient ID", "patient_id"),
    "age": ("Patient Age", "age"),
    "sex": ("Patient Gender", "sex"),
    "view": ("View Position", "view"),
    "follow_up": ("Follow-up #", "follow_up"),
}
COLUMNS = tuple(_SOURCE_COLUMNS)
_REQUIRED = ("filename", "labels")  # the rest can be derived (patient id) or left missing
_INT_COLUMNS = ("patient_id", "age", "follow_up")

# What to use instead when a split list is missing from the installed package / remote bundle.
_SCHEME_INSTEAD = {
    "official_train_val": "the official scheme needs only official_test.txt.gz; or `--split-scheme patient`",
    "official_test": "use `--split-scheme patient` (seeded 70/10/20 by patient)",
    "chexnet_train": "use `--split-scheme official` or `--split-scheme patient`",
    "chexnet_val": "use `--split-scheme official` or `--split-scheme patient`",
    "chexnet_test": "use `--split-scheme official` or `--split-scheme patient`",
}


def resource_path(name: str) -> Path | None:
    """Path of a packaged resource file in chexvision/data/resources/, or None when it is not installed."""
    ref = importlib.resources.files("chexvision.data") / "resources" / name
    if not ref.is_file():
        return None
    return Path(str(ref))


def _read_csv(path: Path) -> pd.DataFrame:
    # pyarrow's CSV reader handles .gz by extension and reads the 112k rows in ~0.1 s (the C engine ~0.4 s).
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError on malformed or unreadable files
        # pyarrow quotes the offending bytes: keep the one line printable whatever the file holds
        reason = "".join(ch if ch.isprintable() else "?" for ch in str(exc))[:200]
        raise BadInputError(f"cannot read metadata CSV {path}: {reason}", "pass an NIH Data_Entry CSV") from exc
    return table.to_pandas()


def _normalise(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    found: dict[str, str] = {}
    for ours, spellings in _SOURCE_COLUMNS.items():
        match = next((s for s in spellings if s in raw.columns), None)
        if match is not None:
            found[ours] = match
    for ours in _REQUIRED:
        if ours not in found:
            raise BadInputError(
                f"metadata CSV {path} has no {_SOURCE_COLUMNS[ours][0]!r} column",
                f"expected the NIH Data_Entry header ({', '.join(s[0] for s in _SOURCE_COLUMNS.values())})",
            )
    df = pd.DataFrame({ours: raw[src] for ours, src in found.items()})
    df["filename"] = df["filename"].astype(str)
    df["labels"] = df["labels"].fillna("No Finding").astype(str)
    _check_labels(df, path)
    if "patient_id" not in df:
        df["patient_id"] = df["filename"].str.extract(r"(\d{8})_\d+", expand=False).astype("Int64")
    for col in COLUMNS:
        if col not in df:
            df[col] = pd.NA
    for col in _INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("sex", "view"):
        df[col] = df[col].astype("string")
    return df[list(COLUMNS)].reset_index(drop=True)


def _check_labels(df: pd.DataFrame, path: Path) -> None:
    """A label the CSV misspells (`Covid19`, `no finding`) is a BadInputError naming the line: never a guess."""
    problems = {text: label_string_problem(text) for text in df["labels"].unique()}
    bad = [text for text, problem in problems.items() if problem is not None]
    if not bad:
        return
    rows = df["labels"].isin(bad).to_numpy().nonzero()[0]
    first = int(rows[0])
    more = f"; {len(rows) - 1} more such rows" if len(rows) > 1 else ""
    raise BadInputError(
        f"metadata CSV {path} line {first + 2} ({df['filename'].iloc[first]}): {problems[df['labels'].iloc[first]]}"
        + more,
        "labels must be exact NIH names joined by '|' (e.g. Effusion|Mass) or 'No Finding'",
    )


def load_metadata(path: Path | None = None) -> pd.DataFrame:
    """Read the NIH Data_Entry CSV into normalised columns.

    Columns: filename (str), labels (`A|B` / `No Finding`), patient_id, age, follow_up (nullable Int64),
    sex, view (string). `path=None` reads the shipped `Data_Entry_2017_v2020.csv.gz`.
    """
    if path is None:
        return _shipped_metadata().copy()
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"metadata CSV {path} does not exist", "pass an existing Data_Entry CSV")
    return _normalise(_read_csv(path), path)


@cache
def _shipped_metadata() -> pd.DataFrame:
    """The packaged CSV, parsed once per process (callers get copies)."""
    path = resource_path(METADATA_RESOURCE)
    if path is None:
        raise BadInputError(
            f"the shipped metadata {METADATA_RESOURCE} is not installed",
            "pass `--metadata Data_Entry_2017_v2020.csv` or use `--data DIR` with shards",
        )
    return _normalise(_read_csv(path), path)


def load_split_list(name: str, directory: Path | None = None) -> list[str]:
    """Image names of a shipped split list (`official_test`, `chexnet_train`, ...), one per line.

    `directory` overrides the package resources (a folder holding `<name>.txt.gz` or `<name>.txt`).
    """
    if name not in SPLIT_LISTS:
        raise BadInputError(f"unknown split list {name!r}", f"choose one of {', '.join(SPLIT_LISTS)}")
    file_name = f"{name}.txt.gz"
    path: Path | None
    if directory is None:
        path = resource_path(file_name)
    else:
        candidates = [Path(directory) / file_name, Path(directory) / f"{name}.txt"]
        path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = directory if directory is not None else "chexvision/data/resources"
        raise BadInputError(f"split list {file_name} is missing from {where}", _SCHEME_INSTEAD[name])
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


def metadata_from_shards(data_dir: Path, *, strict: bool = False) -> pd.DataFrame:
    """The normalised metadata columns of a shard folder (file names and labels; age/sex/view when stored).

    Rows with a bad label are left out with a warning (`ShardIndex.open`); with `strict` they are a BadInputError.
    """
    from chexvision.data.shards import ShardIndex

    index = ShardIndex.open(Path(data_dir), strict=strict)
    raw = pd.DataFrame({"filename": index.filenames, "labels": index.labels, **index.extra})
    return _normalise(raw, Path(data_dir))
