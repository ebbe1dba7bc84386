"""Data: labels and metadata, patient-disjoint splits, Parquet shards, synthetic data, download, EDA, loaders.

Import submodules directly (`from chexvision.data.shards import ShardIndex`); this package imports nothing heavy.
"""

from typing import Any


def __getattr__(name: str) -> Any:  # `chexvision.data.ChestXrayDataset`: imports torch on first use only
    if name in ("ChestXrayDataset", "collate"):
        from chexvision.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
