"""The two pipelines `chexvision bench loader` times beside ours, on the same shards, in the same run.

- **The original pipeline**, exactly as the original CheXVision trained (`get_train_transforms` and
  `CLAHETransform` in arudaev/chexvision `src/data/transforms.py`, last commit 1fef343, 2026-06-17; its
  `ChestXrayDataset` decodes with `Image.open(...).convert("RGB")`), per sample, torchvision v1 transforms on RGB
  PIL images, in the original's order:

      CLAHE on the L channel of LAB (cv2, clip 2.0, 8x8 tiles, from an RGB copy)
      -> Resize((S, S)) -> RandomHorizontalFlip(0.5) -> RandomRotation(15)
      -> RandomAffine(0, translate=(0.05, 0.05), shear=5)
      -> ColorJitter(brightness=0.3, contrast=0.3, saturation=0.05)
      -> RandomApply([GaussianBlur(5, sigma=(0.1, 2.0))], p=0.2)
      -> ToTensor -> Normalize(ImageNet mean/std) -> RandomErasing(p=0.1, scale=(0.02, 0.08), ratio=(0.5, 2.0))

  The original applied CLAHE to every sample in every epoch, so this baseline does too, whatever the shards hold.
  Its parameters are the original's, not our `AugConfig`'s.
- **albumentations 2.x**: OUR augmentations (`AugConfig`: same parameters and meaning) written the idiomatic
  albumentations way, run through our own `ShardDataset` (same decode, CLAHE rule, resize and collate), so only
  the augmentation differs: HorizontalFlip, Affine (rotation, translation, isotropic scale, x-shear; bilinear,
  black border), ColorJitter (multiplicative brightness, contrast about the mean: torchvision's meaning, as ours),
  GaussianBlur (p, sigma range), Normalize, Erasing (after normalisation, fill 0 = the mean, as ours).
  albumentations is a dev-extra dependency, imported here only when this baseline runs.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from chexvision.config import AugConfig
from chexvision.data.shards import ShardIndex
from chexvision.data.transforms import MEAN, STD
from chexvision.errors import BadInputError
from chexvision.labels import label_matrix

__all__ = [
    "ALBUMENTATIONS_DESCRIPTION",
    "ORIGINAL_DESCRIPTION",
    "AlbumentationsTransform",
    "OriginalDataset",
    "albumentations_version",
    "original_clahe",
    "original_train_transform",
]

ORIGINAL_DESCRIPTION = (
    "the original CheXVision train transform (arudaev/chexvision src/data/transforms.py @ 1fef343), torchvision v1 "
    "per sample on RGB PIL: PIL decode -> RGB -> CLAHE on LAB L (cv2, clip 2, 8x8) -> Resize((S, S)) -> "
    "RandomHorizontalFlip(0.5) -> RandomRotation(15) -> RandomAffine(0, translate (0.05, 0.05), shear 5) -> "
    "ColorJitter(0.3, 0.3, saturation 0.05) -> RandomApply([GaussianBlur(5, sigma 0.1-2.0)], p 0.2) -> ToTensor -> "
    "Normalize(ImageNet) -> RandomErasing(p 0.1, scale 0.02-0.08, ratio 0.5-2.0)"
)
ALBUMENTATIONS_DESCRIPTION = (
    "albumentations {version}, our AugConfig in our ShardDataset (same decode, CLAHE rule, collate): HorizontalFlip, "
    "Affine(rotate, translate_percent, scale keep_ratio, x-shear; our interpolation, black), ColorJitter(brightness, "
    "contrast), GaussianBlur(p, sigma), Normalize, Erasing(after normalisation, fill 0)"
)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def original_train_transform(size: int) -> Callable[[Any], torch.Tensor]:
    """The original `get_train_transforms(size)` after its CLAHE step (see the module docstring)."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize((size, size)),
            T.RandomHorizontalFlip(p=0.5),
            T.RandomRotation(degrees=15),
            T.RandomAffine(degrees=0, translate=(0.05, 0.05), shear=5),
            T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.05),
            T.RandomApply([T.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.2),
            T.ToTensor(),
            T.Normalize(mean=_IMAGENET_MEAN, std=_IMAGENET_STD),
            T.RandomErasing(p=0.1, scale=(0.02, 0.08), ratio=(0.5, 2.0)),
        ]
    )


def original_clahe(img: Any) -> Any:
    """The original `CLAHETransform()(img)`: RGB -> LAB, CLAHE(2.0, 8x8) on L, -> RGB (a new CLAHE object per call)."""
    import cv2
    from PIL import Image

    lab = cv2.cvtColor(np.array(img.convert("RGB")), cv2.COLOR_RGB2LAB)
    lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
    return Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


class OriginalDataset(Dataset[Item]):
    """The original loader on our shards: bytes -> `Image.open(...).convert("RGB")` -> CLAHE -> the transform."""

    def __init__(self, index: ShardIndex, indices: np.ndarray, size: int) -> None:
        self.index, self.indices, self.transform = index, indices, original_train_transform(size)
        self.labels14 = label_matrix([index.labels[int(i)] for i in indices])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        from PIL import Image

        k = key if isinstance(key, int) else key[0]
        image = Image.open(io.BytesIO(self.index.read_image_bytes(int(self.indices[k])))).convert("RGB")
        labels = torch.from_numpy(self.labels14[k])
        return self.transform(original_clahe(image)), labels, (labels.sum() > 0).float()


def _import_albumentations() -> Any:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # its import otherwise asks PyPI for a newer version
    try:
        import albumentations
    except ImportError:
        raise BadInputError(
            "the albumentations baseline needs albumentations >= 2, which is not installed",
            "pip install 'chexvision[dev]' (or 'albumentations>=2'), or pass --no-albumentations",
        ) from None
    major = int(str(albumentations.__version__).split(".")[0])
    if major < 2:
        raise BadInputError(
            f"the albumentations baseline needs albumentations >= 2, found {albumentations.__version__}",
            "pip install -U 'albumentations>=2', or pass --no-albumentations",
        )
    return albumentations


def albumentations_version() -> str:
    """The installed albumentations version (BadInputError when it is missing or older than 2)."""
    return str(_import_albumentations().__version__)


class AlbumentationsTransform:
    """Our augmentations as an albumentations 2.x `Compose`: `(uint8 HxW, rng) -> normalised float32 HxW`.

    A drop-in for `CpuTrainTransform` in `ShardDataset`, so the decode, CLAHE, resize and collate are ours;
    albumentations draws from its own seeded generator (the `rng` argument is not used, and
    `draws_own_randomness` tells `ShardDataset` not to build one per sample).
    """

    draws_own_randomness = True

    def __init__(self, cfg: AugConfig, mean: float = MEAN, std: float = STD, seed: int = 0) -> None:
        import cv2

        A = _import_albumentations()
        self.version = str(A.__version__)
        self.pipeline = A.Compose(
            [
                A.HorizontalFlip(p=cfg.flip_p),
                A.Affine(
                    rotate=(-cfg.rotate_deg, cfg.rotate_deg),
                    translate_percent=(-cfg.translate, cfg.translate),
                    scale=cfg.scale,
                    keep_ratio=True,  # one zoom factor for both axes, as ours
                    shear={"x": (-cfg.shear_deg, cfg.shear_deg), "y": (0.0, 0.0)},
                    interpolation=cv2.INTER_NEAREST if cfg.interpolation == "nearest" else cv2.INTER_LINEAR,
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=1.0,
                ),
                A.ColorJitter(
                    brightness=(1.0 - cfg.brightness, 1.0 + cfg.brightness),
                    contrast=(1.0 - cfg.contrast, 1.0 + cfg.contrast),
                    saturation=(1.0, 1.0),
                    hue=(0.0, 0.0),
                    p=1.0,
                ),
                A.GaussianBlur(blur_limit=0, sigma_limit=cfg.blur_sigma, p=cfg.blur_p),
                A.Normalize(mean=mean, std=std, max_pixel_value=255.0),
                A.Erasing(scale=cfg.erase_scale, ratio=cfg.erase_ratio, fill=0, p=cfg.erase_p),
            ],
            seed=seed,
        )

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out: np.ndarray = self.pipeline(image=img)["image"]
        return out
