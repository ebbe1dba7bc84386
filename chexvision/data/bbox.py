"""NIH `BBox_List_2017` boxes: one `Box` type and the CSV format, shared by synthetic data and localisation scoring.

The NIH file has a 9-field header (`Image Index,Finding Label,Bbox [x,y,w,h],,,`) above 6-field rows, and spells
Infiltration `Infiltrate`; coordinates are pixels of the frame the boxes were drawn in (1024 for NIH originals).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from chexvision.errors import BadInputError
from chexvision.files import atomic_write_text
from chexvision.labels import canonical_label

__all__ = ["BBOX_HEADER", "BBOX_LABEL_NAMES", "Box", "read_bbox_csv", "write_bbox_csv"]

BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
# NIH's box list spells Infiltration as `Infiltrate`; every other label keeps its NIH name.
BBOX_LABEL_NAMES = {"Infiltration": "Infiltrate"}


@dataclass(frozen=True)
class Box:
    """A finding's box: label (canonical NIH name), top-left corner x, y and size w, h in pixels."""

    label: str
    x: float
    y: float
    w: float
    h: float

    def scaled(self, sx: float, sy: float) -> Box:
        return Box(self.label, self.x * sx, self.y * sy, self.w * sx, self.h * sy)


def _fmt(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


def write_bbox_csv(path: Path, boxes: Iterable[tuple[str, Box]]) -> Path:
    """Write (image name, box) pairs in the NIH layout, atomically (no quoting needed: names hold no commas)."""
    lines = [BBOX_HEADER]
    for image, b in boxes:
        label = BBOX_LABEL_NAMES.get(b.label, b.label)
        lines.append(",".join([image, label, _fmt(b.x), _fmt(b.y), _fmt(b.w), _fmt(b.h)]))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_bbox_csv(path: Path) -> dict[str, list[Box]]:
    """Boxes per image base name from an NIH-format CSV (`Image Index`, `Finding Label`, `Bbox [x`, y, w, `h]`)."""
    import numpy as np
    import pandas as pd

    if not Path(path).is_file():
        raise BadInputError(f"bounding-box file {path} not found", "pass the NIH BBox_List_2017.csv or bbox.csv")
    frame = pd.read_csv(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.rename(columns={"Bbox [x": "x", "h]": "h", "Image Index": "image", "Finding Label": "label"})
    need = ["image", "label", "x", "y", "w", "h"]
    if any(c not in frame.columns for c in need):
        raise BadInputError(
            f"{path} is not in the NIH BBox_List format (columns {list(frame.columns)[:6]})",
            "expected `Image Index,Finding Label,Bbox [x,y,w,h]`",
        )
    boxes: dict[str, list[Box]] = {}
    coords = frame[["x", "y", "w", "h"]].to_numpy(dtype=np.float64)
    for image, raw_label, (x, y, w, h) in zip(frame["image"], frame["label"], coords, strict=True):
        name = str(image).replace("\\", "/").rsplit("/", 1)[-1]
        try:
            label = canonical_label(str(raw_label))
        except ValueError:  # `Infiltrate`
            label = "Infiltration" if str(raw_label).lower().startswith("infiltrat") else ""
        if label:
            boxes.setdefault(name, []).append(Box(label, float(x), float(y), float(w), float(h)))
    return boxes
