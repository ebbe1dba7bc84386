"""Image files -> the uint8 gray arrays a model's preprocessing takes (PNG or JPEG; gray, RGB or RGBA; 8 or 16 bit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chexvision.data.shards import ImageDecodeError, decode_image
from chexvision.errors import BadInputError

__all__ = ["IMAGE_HINT", "read_image"]

IMAGE_HINT = "pass PNG or JPEG files (gray, RGB or RGBA; 8 or 16 bit)"


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to uint8 HxW gray; an unreadable file is a BadInputError naming it."""
    try:
        return decode_image(Path(path).read_bytes())
    except FileNotFoundError:
        raise BadInputError(f"image {path} not found", "check the path") from None
    except IsADirectoryError:
        raise BadInputError(f"image {path} is a folder, not an image file", IMAGE_HINT) from None
    except (OSError, ImageDecodeError) as exc:
        raise BadInputError(f"cannot read image {path}: {exc}", IMAGE_HINT) from exc
