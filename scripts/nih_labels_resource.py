"""Regenerate `chexvision/data/resources/nih_labels_v2020.parquet` from the shipped `Data_Entry_2017_v2020.csv.gz`.

The compact copy is what remote bundles carry when a kernel builds shards from raw NIH PNGs (the CSV itself does not
fit Kaggle's source limit); `tests/test_kaggle_nih.py` checks it still equals the CSV.

    python scripts/nih_labels_resource.py
"""

from __future__ import annotations

from pathlib import Path

from chexvision.data.build import LABELS_RESOURCE, write_labels_resource
from chexvision.data.metadata import load_metadata


def main() -> None:
    path = Path(__file__).resolve().parents[1] / "chexvision" / "data" / "resources" / LABELS_RESOURCE
    write_labels_resource(load_metadata(), path)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
