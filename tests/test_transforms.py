"""Augmentations: CPU path (cv2) and batched GPU path (torch, tested on CPU tensors; one test on CUDA)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chexvision.data.gpu_transforms import (
    GpuAugment,
    gpu_augment,
    gpu_normalize,
    identity_gpu_params,
    params_from_cpu,
    sample_gpu_params,
)
from chexvision.data.transforms import (
    MEAN,
    N_UNIFORMS,
    STD,
    AugConfig,
    AugParams,
    BatchParams,
    CpuTrainTransform,
    apply_clahe,
    augment_batch_cpu,
    augment_cpu,
    normalize_cpu,
    params_from_uniforms,
    resize_to,
    resolve_clahe,
    sample_params,
    sample_uniforms,
)

SIZE = 64


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A structured uint8 image (gradient, texture, a bright block): every op changes it visibly."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = 100 + 50 * np.sin(xx / 4.0) * np.cos(yy / 6.0) + xx * 0.8
    img[8:20, 5:18] = 250
    return img.clip(0, 255).astype(np.uint8)


def _valid(out: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> None:
    out = torch.as_tensor(out)
    assert out.shape == shape
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert float(out.std()) > 0.05  # not constant


def test_aug_config_round_trips_through_json() -> None:
    cfg = AugConfig(flip_p=0.3, scale=(0.8, 1.2))
    again = AugConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.scale == (0.8, 1.2)


@pytest.mark.parametrize(
    "bad", [{"flip_pp": 0.5}, {"scale": (1.2, 0.8)}, {"flip_p": 2.0}, {"clahe": "maybe"}, {"interpolation": "cubic"}]
)
def test_aug_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AugConfig.from_dict(bad)


def test_cpu_augment_gives_valid_varied_images(image: np.ndarray) -> None:
    transform = CpuTrainTransform(AugConfig())
    rng = np.random.default_rng(0)
    outs = [transform(image, rng) for _ in range(8)]
    for out in outs:
        _valid(out, (SIZE, SIZE))
    assert not np.allclose(outs[0], outs[1])


def test_cpu_identity_params_give_back_the_input(image: np.ndarray) -> None:
    out = augment_cpu(image, AugParams())
    expected = (image.astype(np.float32) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(normalize_cpu(image), expected, atol=1e-5)


def test_cpu_flip_mirrors_exactly(image: np.ndarray) -> None:
    out = augment_cpu(image, AugParams(flip=True))
    np.testing.assert_allclose(out, normalize_cpu(image)[:, ::-1], atol=1e-5)


def test_cpu_brightness_and_erasing(image: np.ndarray) -> None:
    brighter = augment_cpu(image, AugParams(brightness=1.2))
    assert brighter.mean() > normalize_cpu(image).mean()
    erased = augment_cpu(image, AugParams(erase=(4, 6, 10, 12)))
    assert np.all(erased[4:14, 6:18] == 0.0)
    assert np.any(erased[20:] != 0.0)


def test_identity_config_draws_identity(image: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    params = sample_params(AugConfig.identity(), rng, SIZE, SIZE)
    np.testing.assert_allclose(augment_cpu(image, params), normalize_cpu(image), atol=1e-5)


def test_gpu_path_on_cpu_tensors_gives_valid_per_sample_images(image: np.ndarray) -> None:
    batch = torch.from_numpy(np.stack([image] * 6)).unsqueeze(1)
    gen = torch.Generator().manual_seed(0)
    out = GpuAugment(AugConfig())(batch, gen)
    _valid(out, (6, 1, SIZE, SIZE))
    assert not torch.allclose(out[0], out[1])  # per-sample parameters, same input


def test_gpu_identity_params_give_back_the_input(image: np.ndarray) -> None:
    batch = torch.from_numpy(np.stack([image] * 2)).unsqueeze(1)
    out = gpu_augment(batch, identity_gpu_params(2, torch.device("cpu")), max_blur_sigma=1.0)
    torch.testing.assert_close(out, gpu_normalize(batch), atol=1e-4, rtol=0)
    expected = torch.from_numpy(normalize_cpu(image))
    torch.testing.assert_close(out[0, 0], expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_gpu_and_cpu_paths_agree_on_the_same_parameters(image: np.ndarray, interpolation: str) -> None:
    rng = np.random.default_rng(3)
    params = [sample_params(AugConfig(), rng, SIZE, SIZE) for _ in range(6)]
    params.append(AugParams(flip=True, angle=15.0, scale=1.1, shear=5.0, translate=(3.0, -2.0)))
    params.append(AugParams(blur_sigma=1.0, brightness=1.2, contrast=0.8, erase=(1, 2, 9, 7)))
    cpu = np.stack([augment_cpu(image, p, interpolation=interpolation) for p in params])
    batch = torch.from_numpy(np.stack([image] * len(params))).unsqueeze(1)
    gpu = gpu_augment(
        batch, params_from_cpu(params, torch.device("cpu")), max_blur_sigma=1.0, interpolation=interpolation
    )[:, 0].numpy()
    # Same order (jitter, then the warp of the float image), same border: equal up to float rounding, both ways.
    np.testing.assert_allclose(cpu, gpu, atol=1e-4, rtol=0)


def test_nearest_warp_moves_pixels_and_bilinear_blends_them(image: np.ndarray) -> None:
    geometry = AugParams(angle=11.0, shear=4.0, scale=1.05, translate=(2.5, -1.5))
    levels = set(normalize_cpu(np.arange(256, dtype=np.uint8)[None])[0][[*np.unique(image).tolist(), 0]].tolist())
    nearest = augment_cpu(image, geometry, interpolation="nearest")
    bilinear = augment_cpu(image, geometry, interpolation="bilinear")
    assert set(np.unique(nearest).tolist()) <= levels  # every pixel is one source pixel (or the black border)
    assert not set(np.unique(bilinear).tolist()) <= levels  # blends make grey levels the source does not have
    assert np.abs(nearest - bilinear).mean() < 0.1  # the same geometry


@pytest.mark.parametrize(("brightness", "contrast"), [(1.25, 1.3), (1.25, 0.7), (0.8, 1.3), (0.8, 0.7), (1.0, 1.2)])
def test_jitter_follows_its_definition_including_the_clamps(
    image: np.ndarray, brightness: float, contrast: float
) -> None:
    out = augment_cpu(image, AugParams(brightness=brightness, contrast=contrast))
    bright = np.clip(brightness * image / 255.0, 0.0, 1.0)  # torchvision's adjust_brightness, then adjust_contrast
    expected = np.clip(contrast * bright + (1.0 - contrast) * bright.mean(), 0.0, 1.0)
    if brightness > 1.0:
        assert (bright == 1.0).any()  # the bright block clips: the brightness clamp is exercised
    np.testing.assert_allclose(out, (expected - MEAN) / STD, atol=2e-5, rtol=0)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_the_border_is_black_after_the_jitter_and_the_mean_is_the_unwarped_images(
    image: np.ndarray, interpolation: str
) -> None:
    params = AugParams(angle=15.0, translate=(6.0, 4.0), brightness=1.1, contrast=0.7)
    out = augment_cpu(image, params, interpolation=interpolation)
    bright = np.clip(1.1 * image / 255.0, 0.0, 1.0)
    black = ((1.0 - 0.7) * bright.mean() - MEAN) / STD  # contrast pulls black towards the image's mean
    assert out[0, 0] == pytest.approx(black, abs=1e-5) and out[-1, 0] == pytest.approx(black, abs=1e-5)
    inside = augment_cpu(image, AugParams(brightness=1.1, contrast=0.7))  # same jitter, no geometry
    assert inside[0, 0] != pytest.approx(black, abs=1e-3)  # the corner is border only because of the warp


def test_uniforms_are_a_function_of_seed_epoch_and_index() -> None:
    batch = sample_uniforms(7, 3, np.array([5, 9, 11]))
    assert batch.shape == (3, N_UNIFORMS)
    np.testing.assert_array_equal(batch[1], sample_uniforms(7, 3, np.array([9]))[0])  # not the batch's position
    np.testing.assert_array_equal(batch, sample_uniforms(7, np.array([3, 3, 3]), np.array([5, 9, 11])))
    for other in (sample_uniforms(8, 3, np.array([9])), sample_uniforms(7, 4, np.array([9]))):
        assert not np.array_equal(other[0], batch[1])
    many = sample_uniforms(0, 0, np.arange(20_000))
    assert many.min() >= 0.0 and many.max() < 1.0
    assert abs(many.mean() - 0.5) < 0.005 and abs(many.std() - 12**-0.5) < 0.005
    assert abs(np.corrcoef(many[:-1, 0], many[1:, 0])[0, 1]) < 0.03  # neighbouring indices independent
    assert abs(np.corrcoef(many[:, 0], many[:, 1])[0, 1]) < 0.03  # and a sample's own draws


def test_transform_writes_into_the_given_buffer(image: np.ndarray) -> None:
    transform = CpuTrainTransform(AugConfig(blur_p=1.0, erase_p=1.0))
    u = sample_uniforms(0, 0, np.array([4]))[0]
    out = np.full((SIZE, SIZE), np.nan, dtype=np.float32)
    result = transform.apply(image, u, out=out)
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, transform.apply(image, u))  # same as allocating its own
    np.testing.assert_array_equal(
        out, augment_cpu(image, params_from_uniforms(AugConfig(blur_p=1.0, erase_p=1.0), u, SIZE, SIZE))
    )


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_a_batch_augments_each_image_as_it_would_alone(image: np.ndarray, interpolation: str) -> None:
    cfg = AugConfig(blur_p=0.5, erase_p=0.5, interpolation=interpolation)
    images: list[np.ndarray | None] = [np.roll(image, 7 * j, axis=j % 2) for j in range(6)]
    images[2] = None  # a failed sample: its row is left as it was
    u = sample_uniforms(1, 0, np.arange(6))
    out = np.full((6, SIZE, SIZE), np.nan, dtype=np.float32)
    result = CpuTrainTransform(cfg).apply_batch(images, u, out)
    assert result is out and np.isnan(out[2]).all()
    batch_params = BatchParams.from_uniforms(cfg, u, SIZE, SIZE)
    drawn = [batch_params.row(j) for j in range(6)]
    assert drawn == [params_from_uniforms(cfg, u[j], SIZE, SIZE) for j in range(6)]
    assert any(p.erase for p in drawn) and any(p.blur_sigma for p in drawn) and not all(p.blur_sigma for p in drawn)
    assert BatchParams.of(drawn).row(3) == drawn[3]
    for j, img in enumerate(images):
        if img is not None:
            alone = augment_cpu(img, drawn[j], interpolation=interpolation)
            np.testing.assert_array_equal(out[j], alone)
            np.testing.assert_array_equal(out[j], CpuTrainTransform(cfg).apply(img, u[j]))


def test_a_batch_of_rows_with_and_without_jitter_gives_each_images_own_pixels(image: np.ndarray) -> None:
    drawn = [
        AugParams(angle=3.0),  # no jitter: the plain normalisation's LUT, not the jitter formula at b = c = 1
        AugParams(angle=-4.0, brightness=1.2, contrast=0.8),
        AugParams(brightness=1.0, contrast=1.25),  # no geometry
        AugParams(angle=5.0, brightness=0.85),
        AugParams(flip=True),
    ]
    images = [np.roll(image, 5 * j, axis=0) for j in range(len(drawn))]
    out = augment_batch_cpu(images, BatchParams.of(drawn), np.empty((len(drawn), SIZE, SIZE), dtype=np.float32))
    for j, (img, params) in enumerate(zip(images, drawn, strict=True)):
        np.testing.assert_array_equal(out[j], augment_cpu(img, params))
    np.testing.assert_array_equal(out[4], normalize_cpu(images[4][:, ::-1].copy()))  # a flip moves pixels exactly


def test_a_batch_refuses_images_of_another_size(image: np.ndarray) -> None:
    params = BatchParams.of([AugParams(angle=3.0)] * 2)
    with pytest.raises(ValueError, match="image 1"):
        augment_batch_cpu([image, image[:-1]], params, np.empty((2, SIZE, SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match="parameter rows"):
        augment_batch_cpu([image], params, np.empty((1, SIZE, SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous float32"):  # a blur in place would be lost there
        augment_batch_cpu([image] * 2, params, np.empty((2, SIZE, 2 * SIZE), dtype=np.float32)[:, :, ::2])


def test_gpu_params_follow_the_config() -> None:
    cfg = AugConfig(flip_p=1.0, erase_p=0.0, blur_p=0.0)
    p = sample_gpu_params(cfg, 64, SIZE, SIZE, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    assert bool(p.flip.all())
    assert float(p.angle.abs().max()) <= cfg.rotate_deg
    assert float(p.scale.min()) >= cfg.scale[0] and float(p.scale.max()) <= cfg.scale[1]
    assert int(p.erase[:, 2].max()) == 0 and float(p.blur_sigma.max()) == 0.0


def test_clahe_rule_and_op(image: np.ndarray) -> None:
    assert resolve_clahe("auto", {}) is True  # e.g. the HF shards: no dataset.json
    assert resolve_clahe("auto", {"source": "nih-build", "clahe": True}) is False
    assert resolve_clahe("auto", {"source": "synthetic"}) is False
    assert resolve_clahe("always", {"clahe": True}) is True
    assert resolve_clahe("never", {}) is False
    out = apply_clahe(image)
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)


def test_resize_to_uses_the_target_size(image: np.ndarray) -> None:
    assert resize_to(image, SIZE) is image
    assert resize_to(image, 32).shape == (32, 32)


@pytest.mark.gpu
def test_gpu_augment_on_cuda(image: np.ndarray) -> None:
    device = torch.device("cuda")
    batch = torch.from_numpy(np.stack([image] * 4)).unsqueeze(1).to(device)
    out = GpuAugment(AugConfig())(batch, torch.Generator(device=device).manual_seed(0))
    assert out.device.type == "cuda"
    _valid(out.cpu(), (4, 1, SIZE, SIZE))
    ident = gpu_augment(batch, identity_gpu_params(4, device), max_blur_sigma=1.0)
    torch.testing.assert_close(ident, gpu_normalize(batch), atol=1e-4, rtol=0)
