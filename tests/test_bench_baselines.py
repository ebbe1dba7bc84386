"""The benchmark baselines: the original pipeline is exactly the original's; albumentations means what ours means."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chexvision.bench.baselines import AlbumentationsTransform, original_train_transform
from chexvision.config import AugConfig
from chexvision.data.transforms import AugParams, augment_cpu, normalize_cpu

SIZE = 64


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = 100 + 50 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + xx * 0.8
    img[8:20, 5:18] = 250
    return img.clip(0, 255).astype(np.uint8)


def test_original_pipeline_is_the_originals_in_its_order() -> None:
    from torchvision import transforms as T

    steps = original_train_transform(320).transforms
    kinds = [type(s).__name__ for s in steps]
    assert kinds == [
        "Resize", "RandomHorizontalFlip", "RandomRotation", "RandomAffine", "ColorJitter", "RandomApply",
        "ToTensor", "Normalize", "RandomErasing",
    ]  # fmt: skip
    resize, flip, rotate, affine, jitter, blur, _, _, erase = steps
    assert tuple(resize.size) == (320, 320) and flip.p == 0.5 and tuple(rotate.degrees) == (-15.0, 15.0)
    assert affine.translate == (0.05, 0.05) and affine.shear == [-5.0, 5.0] and affine.scale is None
    assert jitter.brightness == (0.7, 1.3) and jitter.contrast == (0.7, 1.3) and jitter.saturation == (0.95, 1.05)
    assert jitter.hue is None
    assert blur.p == 0.2 and isinstance(blur.transforms[0], T.GaussianBlur)
    assert tuple(blur.transforms[0].kernel_size) == (5, 5) and tuple(blur.transforms[0].sigma) == (0.1, 2.0)
    assert erase.p == 0.1 and erase.scale == (0.02, 0.08) and erase.ratio == (0.5, 2.0)


def test_albumentations_identity_config_gives_our_normalised_image(image: np.ndarray) -> None:
    out = AlbumentationsTransform(AugConfig.identity())(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, normalize_cpu(image), atol=1e-5)


def test_albumentations_flip_and_erasing_match_ours(image: np.ndarray) -> None:
    flip = AlbumentationsTransform(dataclasses.replace(AugConfig.identity(), flip_p=1.0))
    np.testing.assert_allclose(flip(image, np.random.default_rng(0)), augment_cpu(image, AugParams(flip=True)),
                               atol=1e-5)  # fmt: skip
    erase = AlbumentationsTransform(dataclasses.replace(AugConfig.identity(), erase_p=1.0), seed=3)
    out = erase(image, np.random.default_rng(0))
    erased = out == 0.0  # erased after normalisation with 0, as ours: the mean intensity
    assert 0.02 * image.size <= erased.sum() <= 0.1 * image.size + SIZE


def test_albumentations_full_config_varies_and_stays_finite(image: np.ndarray) -> None:
    transform = AlbumentationsTransform(AugConfig(), seed=0)
    outs = [transform(image, np.random.default_rng(0)) for _ in range(6)]
    assert all(np.isfinite(o).all() and o.shape == image.shape for o in outs)
    assert not np.allclose(outs[0], outs[1])
