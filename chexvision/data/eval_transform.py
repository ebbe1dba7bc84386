"""The evaluation transform: uint8 HxW -> resize (INTER_AREA) -> CLAHE when asked -> normalise with mean/std.

One definition for every image a model sees outside training augmentation: the loader's validation/test images
(`ShardDataset`), evaluation, prediction, Grad-CAM and the demo. Whether CLAHE applies is decided once, from what
the run recorded, by `chexvision.inference.preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chexvision.data.transforms import CLAHE_CLIP, CLAHE_GRID, MEAN, STD, apply_clahe, normalize_cpu, resize_to

__all__ = ["EvalTransform"]


@dataclass(frozen=True)
class EvalTransform:
    """uint8 HxW -> normalised float32 [1, size, size]."""

    size: int  # pixels per side
    mean: float = MEAN  # of intensities in [0, 1]
    std: float = STD
    clahe: bool = False  # apply CLAHE after resizing (the images the model learnt from had it)
    clahe_clip: float = CLAHE_CLIP  # OpenCV clip limit
    clahe_grid: int = CLAHE_GRID  # tiles per side

    def resized(self, img: np.ndarray) -> np.ndarray:
        """The uint8 image the model sees before normalisation: resize, then CLAHE."""
        img = resize_to(img, self.size)
        return apply_clahe(img, self.clahe_clip, self.clahe_grid) if self.clahe else img

    def normalize(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float32 HxW of an already `resized` image (written into `out` when given)."""
        return normalize_cpu(img, self.mean, self.std, out)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.normalize(self.resized(img))[None]

    @property
    def black(self) -> float:
        """The normalised value of a black pixel (what rotations fill corners with)."""
        return -self.mean / self.std
