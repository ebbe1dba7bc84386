"""Training augmentations for chest X-rays, CPU path (cv2/numpy, one uint8 image per call, in workers).

The augmentations are the original CheXVision ones: CLAHE, horizontal flip, rotation +-15 deg, affine
translate/scale/shear, brightness/contrast jitter, Gaussian blur and random erasing, then normalisation with
mean 0.449 / std 0.226 (the ImageNet mean/std averaged over RGB; models take one channel). The batched GPU
path (`chexvision.data.gpu_transforms`) draws the same parameters from the same `AugConfig` and applies the
same geometry.

Why the CPU path is fast (the original ran eight torchvision v1 transforms on RGB PIL images):

- brightness, contrast, the clamps between them and the normalisation are pointwise, so they collapse into
  ONE 256-entry float32 look-up table applied by `cv2.LUT` to the decoded image (uint8 in, normalised float32
  out); the contrast mean is exact without a histogram (the clamped pixels' sum and count from one threshold
  pass);
- all geometry (flip, rotation, translation, scale, shear) is composed in closed form into ONE 2x3 matrix and
  applied with ONE `cv2.warpAffine` to that float image, written straight into the batch: one resampling instead
  of three. `AugConfig.interpolation` picks it: "nearest" (the default: what the original pipeline and
  torchxrayvision's training scripts use, torchvision's RandomRotation/RandomAffine default) or "bilinear" (on
  float values, so no rounding to uint8 between the steps). The border is the jittered black, what a black fill
  becomes when the jitter comes after the geometry as in the original. Warping after the LUT costs less than
  the LUT after a uint8 warp (the warp writes the batch once; the LUT's output stays in cache); the warp is most
  of the cost (BENCHMARKS.md, `benchmarks/input_pipeline.py --components`);
- the Gaussian blur (linear, so it commutes with the normalisation) runs in place on the float image, only when
  drawn, and erasing is a slice assignment;
- a batch at a time (`augment_batch_cpu`, what the loader calls): the batch's parameters (`BatchParams`),
  matrices and (after each image's mean) LUTs come from a few vectorised numpy steps, so per image only its
  mean and the OpenCV calls are left (the per-sample Python it replaces cost about as much as the LUT). One
  image (`augment_cpu`) is set up in Python floats, cheaper for one, with the same formulas (`_lut_terms`,
  `_affine_terms`) and the same per-image steps: the same result as in a batch.

CLAHE is deterministic, so it is not a per-epoch augmentation: `chexvision data build` applies it once when
it writes the shards and records `"clahe": true` in `dataset.json`. Data sets that do not say so (the
published HF shards, folders without `dataset.json`) get CLAHE at decode time in the worker (about 1 ms per
320 px image with cv2) when `AugConfig.clahe` asks: `"auto"` (default) applies it when `dataset.json` does
not say it was applied and the source is not synthetic (synthetic images are drawn with X-ray contrast
already); `"always"` / `"never"` force the choice. CLAHE runs on the gray channel; the original ran it on the
L channel of LAB from an RGB copy of the gray image, which for gray input differs only by the L* tone curve.
Validation and test images get the same CLAHE decision and no augmentation.

Deliberate differences from the original torchvision v1 pipeline: one resampling instead of three; blur
kernels reach 3 sigma instead of a fixed 3x3; jitter is brightness then contrast (ColorJitter picks a random
order of the two); the contrast mean is that of the image before the geometry (the original's includes the black
corners the rotation adds). Pointwise jitter commutes with a nearest-neighbour warp, so otherwise the order makes
no difference there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chexvision.config import CLAHE_CLIP, CLAHE_GRID, CLAHE_MODES, PIPELINES, AugConfig  # re-exported

__all__ = [
    "CLAHE_CLIP",
    "CLAHE_GRID",
    "CLAHE_MODES",
    "MEAN",
    "N_UNIFORMS",
    "PIPELINES",
    "STD",
    "AugConfig",
    "AugParams",
    "BatchParams",
    "CpuTrainTransform",
    "affine_matrix",
    "apply_clahe",
    "augment_batch_cpu",
    "augment_cpu",
    "blur_kernel_radius",
    "normalize_cpu",
    "params_from_uniforms",
    "resize_to",
    "resolve_clahe",
    "sample_params",
    "sample_uniforms",
    "uniform_draws",
]

MEAN = 0.449  # ImageNet mean averaged over R, G, B; intensities in [0, 1]
STD = 0.226  # ImageNet std averaged over R, G, B


@dataclass(frozen=True)
class AugParams:
    """One sample's drawn augmentation; the default is the identity."""

    flip: bool = False
    angle: float = 0.0  # degrees
    translate: tuple[float, float] = (0.0, 0.0)  # (x, y) in pixels
    scale: float = 1.0
    shear: float = 0.0  # x-shear, degrees
    brightness: float = 1.0  # intensity factor
    contrast: float = 1.0  # blend factor with the image mean
    blur_sigma: float = 0.0  # pixels; 0 = no blur
    erase: tuple[int, int, int, int] | None = None  # (top, left, height, width) in pixels, or no erasing


N_UNIFORMS = 15  # uniforms one sample's augmentation draws (`params_from_uniforms`)


@dataclass(frozen=True)
class BatchParams:
    """A batch's drawn augmentation as columns, one row per sample (what `augment_batch_cpu` applies).

    Built from uniforms for a whole batch at once (`from_uniforms`, vectorised: the loader's path) or from
    `AugParams` (`of`); `row(j)` is sample j's `AugParams`.
    """

    flip: np.ndarray  # bool [n]
    angle: np.ndarray  # degrees, float64 [n]
    translate: np.ndarray  # (x, y) pixels, float64 [n, 2]
    scale: np.ndarray
    shear: np.ndarray  # x-shear, degrees
    brightness: np.ndarray
    contrast: np.ndarray
    blur_sigma: np.ndarray  # pixels; 0 = no blur
    erase: np.ndarray  # (top, left, height, width) pixels, int64 [n, 4]; height 0 = no erasing

    def __len__(self) -> int:
        return len(self.flip)

    @classmethod
    def from_uniforms(cls, cfg: AugConfig, u: np.ndarray, height: int, width: int) -> BatchParams:
        """Parameters from `N_UNIFORMS` uniforms in [0, 1) per row (`sample_uniforms`), same draw per row as
        `params_from_uniforms`."""
        u = np.asarray(u, dtype=np.float64).reshape(-1, N_UNIFORMS)
        erase = np.zeros((len(u), 4), dtype=np.int64)
        for j in (u[:, 9] < cfg.erase_p).nonzero()[0].tolist():  # a few rows (erase_p): per row, in Python
            area, ratio, top, left = u[j, [10, 11, 13, 14]].tolist()
            erase[j] = _erase_box(cfg, area, ratio, top, left, height, width)
        draws = uniform_draws(cfg, u.T, height, width)
        translate = np.empty((len(u), 2))
        translate[:, 0], translate[:, 1] = draws.pop("translate")
        return cls(
            **draws,
            translate=translate,
            blur_sigma=np.where(u[:, 8] < cfg.blur_p, _between(u[:, 12], *cfg.blur_sigma), 0.0),
            erase=erase,
        )

    @classmethod
    def of(cls, params: Sequence[AugParams]) -> BatchParams:
        def col(name: str) -> np.ndarray:
            return np.array([getattr(p, name) for p in params], dtype=np.float64)

        return cls(
            flip=np.array([p.flip for p in params], dtype=bool),
            angle=col("angle"),
            translate=col("translate").reshape(len(params), 2),
            scale=col("scale"),
            shear=col("shear"),
            brightness=col("brightness"),
            contrast=col("contrast"),
            blur_sigma=col("blur_sigma"),
            erase=np.array([p.erase or (0, 0, 0, 0) for p in params], dtype=np.int64).reshape(len(params), 4),
        )

    def row(self, j: int) -> AugParams:
        top, left, eh, ew = self.erase[j].tolist()
        tx, ty = self.translate[j].tolist()
        return AugParams(
            flip=bool(self.flip[j]), angle=float(self.angle[j]), translate=(tx, ty), scale=float(self.scale[j]),
            shear=float(self.shear[j]), brightness=float(self.brightness[j]), contrast=float(self.contrast[j]),
            blur_sigma=float(self.blur_sigma[j]), erase=(top, left, eh, ew) if eh else None,
        )  # fmt: skip


def uniform_draws(cfg: AugConfig, u: Any, height: int, width: int) -> dict[str, Any]:
    """Flip, rotation, translation (x, y), scale, shear, brightness and contrast from the uniforms `u[0]` ... `u[7]`:
    one sample's floats, or a batch's columns (`uniforms.T` of a numpy array or a torch tensor). The same
    expressions on any of them: the CPU path (one image or a batch) and the GPU path draw these from here."""
    t = cfg.translate
    return {
        "flip": u[0] < cfg.flip_p,
        "angle": _between(u[1], -cfg.rotate_deg, cfg.rotate_deg),
        "translate": (_between(u[2], -t, t) * width, _between(u[3], -t, t) * height),
        "scale": _between(u[4], *cfg.scale),
        "shear": _between(u[5], -cfg.shear_deg, cfg.shear_deg),
        "brightness": _between(u[6], 1.0 - cfg.brightness, 1.0 + cfg.brightness),
        "contrast": _between(u[7], 1.0 - cfg.contrast, 1.0 + cfg.contrast),
    }


def sample_params(cfg: AugConfig, rng: np.random.Generator, height: int, width: int) -> AugParams:
    """Draw one sample's augmentation parameters."""
    return params_from_uniforms(cfg, rng.random(N_UNIFORMS), height, width)


def params_from_uniforms(cfg: AugConfig, u: np.ndarray | Sequence[float], height: int, width: int) -> AugParams:
    """One sample's augmentation parameters from `N_UNIFORMS` uniforms in [0, 1) (`sample_uniforms`): the same draw
    as that sample's row of `BatchParams.from_uniforms`, in Python floats (cheaper for one)."""
    u = u.tolist() if isinstance(u, np.ndarray) else [float(x) for x in u]
    return AugParams(
        **uniform_draws(cfg, u, height, width),
        blur_sigma=_between(u[12], *cfg.blur_sigma) if u[8] < cfg.blur_p else 0.0,
        erase=_erase_box(cfg, u[10], u[11], u[13], u[14], height, width) if u[9] < cfg.erase_p else None,
    )


_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (2^64 / golden ratio)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function (Steele, Lea & Flood 2014): a bijective 64-bit mix, in place."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def sample_uniforms(seed: int, epochs: int | np.ndarray, indices: np.ndarray, n: int = N_UNIFORMS) -> np.ndarray:
    """float64 [len(indices), n] uniforms in [0, 1), a pure function of (seed, epoch, index) per row.

    Counter-based (splitmix64 over a key chained from seed, epoch and index, then n consecutive counters), so a
    sample's draws do not depend on the batch, the worker or the order it is drawn in, and a whole batch costs
    a few vectorised passes instead of one seeded generator per sample (~35 us each here).
    """
    epochs = np.broadcast_to(np.asarray(epochs, dtype=np.int64), np.shape(indices))
    with np.errstate(over="ignore"):
        key = _mix64(np.full(np.shape(indices), np.uint64(seed & (2**64 - 1)), dtype=np.uint64) + _GAMMA)
        key = _mix64(key ^ epochs.astype(np.uint64) + _GAMMA)
        key = _mix64(key ^ np.asarray(indices).astype(np.uint64) + _GAMMA)
        counters = key[:, None] + _GAMMA * np.arange(1, n + 1, dtype=np.uint64)[None, :]
        bits = _mix64(counters) >> np.uint64(11)
    return bits.astype(np.float64) * (1.0 / 2**53)


def _between(u: Any, low: float, high: float) -> Any:
    """low + (high - low) u, elementwise for arrays (the same float64 operations for a float or an array)."""
    return low + (high - low) * u


def _erase_box(
    cfg: AugConfig, u_area: float, u_ratio: float, u_top: float, u_left: float, height: int, width: int
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the erased rectangle from its four uniforms."""
    area = _between(u_area, *cfg.erase_scale) * height * width
    log_lo, log_hi = math.log(cfg.erase_ratio[0]), math.log(cfg.erase_ratio[1])
    ratio = math.exp(_between(u_ratio, log_lo, log_hi))
    eh = min(max(round(math.sqrt(area * ratio)), 1), height)
    ew = min(max(round(math.sqrt(area / ratio)), 1), width)
    return min(int(u_top * (height - eh + 1)), height - eh), min(int(u_left * (width - ew + 1)), width - ew), eh, ew


def _affine_terms(
    angle: Any, shear: Any, scale: Any, fx: Any, tx: Any, ty: Any, height: int, width: int, m: Any
) -> tuple[Any, ...]:
    """The six entries (row major) of the forward 2x3 matrix, for one sample's floats (`m` = math) or a batch's
    columns (`m` = numpy): the same formula for both. `fx` is -1 where flipped, else 1."""
    a, k = m.radians(angle), m.tan(m.radians(shear))
    cos, sin = m.cos(a) * scale, m.sin(a) * scale
    # L = R(angle) @ Shear @ scale @ Flip. p_out = L0 (F p - c) + c + t; the flip about the centre gives
    # F p - c = (fx (x - cx), y - cy), and L holds L0 diag(fx, 1): p_out = L (p - c) + c + t.
    l00, l01, l10, l11 = cos * fx, cos * k - sin, sin * fx, sin * k + cos
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return l00, l01, cx + tx - l00 * cx - l01 * cy, l10, l11, cy + ty - l10 * cx - l11 * cy


def _matrices(p: BatchParams, height: int, width: int) -> np.ndarray:
    """Forward 2x3 affine matrices [n, 2, 3] of all the geometry, one per sample; see `affine_matrix`."""
    fx = 1.0 - 2.0 * p.flip  # -1 where flipped, else 1 (exactly)
    terms = _affine_terms(p.angle, p.shear, p.scale, fx, p.translate[:, 0], p.translate[:, 1], height, width, np)
    m = np.empty((len(p), 6))  # filled column by column: cheaper than np.stack for the small batches here
    for j, term in enumerate(terms):
        m[:, j] = term
    return m.reshape(-1, 2, 3)


def _matrix(p: AugParams, height: int, width: int) -> np.ndarray:
    """One sample's forward 2x3 matrix (the same formula as `_matrices`, in Python floats)."""
    terms = _affine_terms(p.angle, p.shear, p.scale, -1.0 if p.flip else 1.0, *p.translate, height, width, math)
    return np.array(terms, dtype=np.float64).reshape(2, 3)


def affine_matrix(params: AugParams, height: int, width: int) -> np.ndarray:
    """Forward 3x3 matrix (source pixel -> output pixel, pixel centres at integers) of all the geometry.

    Order: flip, then scale, shear, rotation about the image centre, then translation (composed in closed
    form: one matrix, one resampling).
    """
    return np.vstack([_matrix(params, height, width), (0.0, 0.0, 1.0)])


def _has_geometry(flip: Any, angle: Any, scale: Any, shear: Any, tx: Any, ty: Any) -> Any:
    """Whether a sample's warp is not the identity: for one sample's values or a batch's columns."""
    return flip | (angle != 0) | (scale != 1.0) | (shear != 0) | (tx != 0) | (ty != 0)


def blur_kernel_radius(sigma: float) -> int:
    """Gaussian kernel half-width used by both paths: 3 sigma, at least 1."""
    return max(1, math.ceil(3.0 * sigma))


_LEVELS = np.arange(256, dtype=np.float64) / 255.0


def _brightened_mean(img: np.ndarray, brightness: float) -> float:
    """Exact mean of clip(brightness * img / 255, 0, 1) over the image, without a histogram.

    Only pixels above 255 / brightness clip (none when brightness <= 1): the mean is brightness x the plain mean,
    corrected by those pixels' sum and count (one threshold pass and three reductions in cv2).
    """
    import cv2

    n = img.size
    total = float(cv2.sumElems(img)[0])
    if brightness <= 1.0:
        return brightness * total / (255.0 * n)
    threshold = math.floor(255.0 / brightness)  # integer x clips iff x > 255 / b, iff x > floor(255 / b)
    above = cv2.threshold(img, threshold, 0, cv2.THRESH_TOZERO)[1]  # x where it clips, else 0 (x > 0 there)
    above_sum, above_n = float(cv2.sumElems(above)[0]), cv2.countNonZero(above)
    return (brightness * (total - above_sum) / 255.0 + above_n) / n


def _jitter_lut(img: np.ndarray, b: float, c: float, mean: float, std: float) -> np.ndarray:
    """The float32 [256] LUT of one image: brightness (clamped), contrast about the image mean (clamped),
    normalisation (`_lut_terms`); without jitter, the plain normalisation's LUT. A batch's: `_jitter_luts`."""
    if b == 1.0 and c == 1.0:
        return _normalize_lut(mean, std)
    slope, offset, low, high = _lut_terms(b, c, _brightened_mean(img, b) if c != 1.0 else 0.0, mean, std, min)
    lut = _LEVELS * slope + offset
    return np.clip(lut, low, high, out=lut).astype(np.float32)


def _jitter_luts(
    images: Sequence[np.ndarray | None], b: np.ndarray, c: np.ndarray, mean: float, std: float
) -> np.ndarray:
    """The float32 [n, 256] LUTs of a batch, row j image j's `_jitter_lut` (the same float64 operations
    elementwise): per image only its mean, then one multiply-add and one clamp for all rows. A row without jitter
    (b = c = 1) takes the formula too, which rounds to the plain normalisation's float32 LUT (a test checks it)."""
    means = [
        _brightened_mean(img, bj) if cj != 1.0 and img is not None else 0.0
        for img, bj, cj in zip(images, b.tolist(), c.tolist(), strict=True)
    ]
    slope, offset, low, high = _lut_terms(b, c, np.array(means), mean, std, np.minimum)
    luts = _LEVELS * slope[:, None] + offset[:, None]
    return np.clip(luts, low, high[:, None], out=luts).astype(np.float32)


def _lut_terms(b: Any, c: Any, m: Any, mean: float, std: float, minimum: Any) -> tuple[Any, Any, float, Any]:
    """Slope, offset and clamp bounds of a jitter LUT over the levels x / 255, for one sample's floats (`minimum` =
    `min`) or a batch's columns (`np.minimum`): the same formula for both. `m` is the brightened image's mean.

    In closed form, one multiply-add and one clamp over the 256 levels: with v = min(b x, 1) and contrast
    c > 0, clip(c v + (1 - c) m, 0, 1) = clip(c b x + k, 0, min(1, c + k)) where k = (1 - c) m, because
    c min(b x, 1) + k = min(c b x + k, c + k); the normalisation is affine, so it maps the bounds too (and
    min(1, c + k) >= 0: the clamp's bounds never cross).
    """
    k = (1.0 - c) * m
    return c * b / std, (k - mean) / std, -mean / std, (minimum(1.0, c + k) - mean) / std


@functools.cache
def _normalize_lut(mean: float, std: float) -> np.ndarray:
    return ((_LEVELS - mean) / std).astype(np.float32)


def normalize_cpu(img: np.ndarray, mean: float = MEAN, std: float = STD, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 HxW -> float32 HxW, (x/255 - mean) / std (the eval transform, after any resize), into `out` if given."""
    import cv2

    return _into(cv2.LUT(img, _normalize_lut(mean, std), out), out)


_CV2_INTERPOLATION = {"nearest": 0, "bilinear": 1}  # cv2.INTER_NEAREST, cv2.INTER_LINEAR


def augment_batch_cpu(
    images: Sequence[np.ndarray | None],
    params: BatchParams,
    out: np.ndarray,
    mean: float = MEAN,
    std: float = STD,
    *,
    interpolation: str = "nearest",
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """Apply each sample's augmentation (row j of `params`) to uint8 HxW `images[j]`, normalised, into `out[j]`.

    `out` is float32 [n, H, W] (e.g. the loader's batch buffer); a `None` image (a failed sample) leaves its row
    as it was. The batch's matrices and LUTs come from a few vectorised numpy steps (the LUTs after each image's
    mean: `_jitter_luts`); per image its mean and `_augment_into` are left. `scratch` (float32 HxW) takes each
    LUT's output: no allocation.
    """
    n, height, width = out.shape
    if len(images) != n or len(params) != n:
        raise ValueError(f"{len(images)} images and {len(params)} parameter rows for an output of {n}")
    _check_out(out)
    matrices = _matrices(params, height, width)
    p = params
    geometry = _has_geometry(p.flip, p.angle, p.scale, p.shear, p.translate[:, 0], p.translate[:, 1]).tolist()
    sigmas, erases = p.blur_sigma.tolist(), p.erase.tolist()
    if scratch is None or scratch.shape != (height, width):
        scratch = np.empty((height, width), dtype=np.float32)
    luts = _jitter_luts(images, p.brightness, p.contrast, mean, std)
    for j, img in enumerate(images):
        if img is not None:
            _augment_into(img, luts[j], matrices[j] if geometry[j] else None, sigmas[j],
                          erases[j] if erases[j][2] else None, interpolation, out[j], scratch, j)  # fmt: skip
    return out


def augment_cpu(
    img: np.ndarray,
    params: AugParams,
    mean: float = MEAN,
    std: float = STD,
    *,
    interpolation: str = "nearest",
    out: np.ndarray | None = None,
    scratch: np.ndarray | None = None,
) -> np.ndarray:
    """One sample's augmentation of a uint8 HxW image: the normalised float32 HxW image (into `out` if given).

    The same steps as one row of `augment_batch_cpu` (`_augment_into`, the same formulas for the matrix and the
    LUT), with the set-up in Python floats, which is cheaper for one image than the batch's vectorised one.
    """
    if out is None:
        out = np.empty(img.shape, dtype=np.float32)
    _check_out(out)
    if scratch is None or scratch.shape != img.shape:
        scratch = np.empty(img.shape, dtype=np.float32)
    lut = _jitter_lut(img, params.brightness, params.contrast, mean, std)
    p = params
    matrix = _matrix(p, *img.shape) if _has_geometry(p.flip, p.angle, p.scale, p.shear, *p.translate) else None
    _augment_into(img, lut, matrix, params.blur_sigma, params.erase, interpolation, out, scratch, 0)
    return out


def _check_out(out: np.ndarray) -> None:
    if out.dtype != np.float32 or not out.flags.c_contiguous:  # OpenCV writes in place only into such arrays
        raise ValueError(f"out must be a C-contiguous float32 array, got {out.dtype} with strides {out.strides}")


def _augment_into(
    img: np.ndarray,
    lut: np.ndarray,
    matrix: np.ndarray | None,
    sigma: float,
    erase: Sequence[int] | None,
    interpolation: str,
    slot: np.ndarray,
    scratch: np.ndarray,
    j: int,
) -> None:
    """One image's augmentation into `slot` (float32 HxW): three passes at most. One LUT (uint8 -> float32: jitter
    + normalisation), then, with geometry (`matrix`), one warp of that float image into `slot` (`interpolation`;
    the border gets the jittered black, `lut[0]`); the blur when drawn (in place); erasing is a slice
    assignment. OpenCV's arguments go by position (its keyword parsing costs about 1 us a call here)."""
    import cv2

    height, width = slot.shape
    if img.shape != (height, width):
        raise ValueError(f"image {j} is {img.shape}, the batch {(height, width)}")
    if matrix is not None:
        levels = cv2.LUT(img, lut, scratch)
        flags, border = _CV2_INTERPOLATION[interpolation], float(lut[0])
        _into(cv2.warpAffine(levels, matrix, (width, height), slot, flags, cv2.BORDER_CONSTANT, border), slot)
    else:
        _into(cv2.LUT(img, lut, slot), slot)
    if sigma > 0:
        k = 2 * blur_kernel_radius(sigma) + 1
        cv2.GaussianBlur(slot, (k, k), sigma, slot, 0.0, cv2.BORDER_REFLECT_101)  # dst, sigmaY (= sigma), border
    if erase is not None:
        top, left, eh, ew = erase
        slot[top : top + eh, left : left + ew] = 0.0


def _into(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """`out` holding `result` (cv2 writes into a given dst of the right shape and type; copy if it did not)."""
    if out is None or result is out:
        return result
    if not np.shares_memory(result, out):
        out[...] = result
    return out


class CpuTrainTransform:
    """Callable `(uint8 HxW, rng) -> normalised float32 HxW` drawing fresh parameters per call.

    `apply_batch(images, uniforms, out)` augments a whole batch from each sample's `N_UNIFORMS` uniforms into
    `out` (the loader's path: `ShardDataset.__getitems__`); `apply(img, uniforms, out)` one image, the same as its
    row of a batch (`augment_cpu`, set up in Python floats: cheaper for one).
    """

    def __init__(self, cfg: AugConfig, mean: float = MEAN, std: float = STD) -> None:
        self.cfg, self.mean, self.std = cfg, mean, std
        self._scratch: np.ndarray | None = None

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(img, rng.random(N_UNIFORMS))

    def apply(self, img: np.ndarray, uniforms: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if not self.cfg.enabled:
            return normalize_cpu(img, self.mean, self.std, out)
        params = params_from_uniforms(self.cfg, uniforms, *img.shape)
        return augment_cpu(img, params, self.mean, self.std, interpolation=self.cfg.interpolation, out=out,
                           scratch=self._scratch_for(img.shape))  # fmt: skip

    def _scratch_for(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._scratch is None or self._scratch.shape != shape:
            self._scratch = np.empty(shape, dtype=np.float32)
        return self._scratch

    def apply_batch(
        self, images: Sequence[np.ndarray | None], uniforms: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """float32 [n, H, W] (`out` when given): image j augmented by the draws `uniforms[j]`; rows of `None`
        images (failed samples) are left as they were."""
        if out is None:
            shape = next((img.shape for img in images if img is not None), None)
            if shape is None:
                raise ValueError("apply_batch needs an image or an out array to know the size")
            out = np.empty((len(images), *shape), dtype=np.float32)
        height, width = out.shape[1:]
        if not self.cfg.enabled or len(images) == 1:  # one image: `apply`'s set-up is the cheaper one
            for j, img in enumerate(images):
                if img is not None:
                    self.apply(img, uniforms[j], out[j])
            return out
        params = BatchParams.from_uniforms(self.cfg, uniforms, height, width)
        return augment_batch_cpu(images, params, out, self.mean, self.std, interpolation=self.cfg.interpolation,
                                 scratch=self._scratch_for((height, width)))  # fmt: skip


@functools.cache
def _clahe(clip: float, grid: int) -> Any:
    import cv2

    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid, grid))


def apply_clahe(img: np.ndarray, clip: float = CLAHE_CLIP, grid: int = CLAHE_GRID) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a uint8 HxW image (deterministic)."""
    return _clahe(float(clip), int(grid)).apply(img)


def resolve_clahe(mode: str, dataset_meta: Mapping[str, Any] | None) -> bool:
    """Whether the loader must apply CLAHE at decode time (see the module docstring for the rule)."""
    if mode not in CLAHE_MODES:
        raise ValueError(f"clahe must be one of {CLAHE_MODES}, got {mode!r}")
    if mode != "auto":
        return mode == "always"
    meta = dataset_meta or {}
    return not bool(meta.get("clahe", False)) and meta.get("source") != "synthetic"


def resize_to(img: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 HxW to size x size with INTER_AREA (the filter for downscaling), unless it already is."""
    if img.shape == (size, size):
        return img
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
