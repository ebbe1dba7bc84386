"""External data sets for external validation: CheXpert, MIMIC-CXR-JPG and PadChest as our Parquet shards.

`mapping` is the one table from each set's findings to the 14 NIH findings (missing, never negative, where a set has
none); `chexpert`, `mimic` and `padchest` read each set's published CSVs; `build` writes the shards
(`chexvision data build --source ...`). Import the submodules directly; this package imports nothing.
"""
