"""Data: labels and metadata, patient-disjoint splits, Parquet shards, synthetic data, download, EDA, loaders.

Import submodules directly (`from chexvision.data.shards import ShardIndex`); this package imports nothing heavy.
"""
