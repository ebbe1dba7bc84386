"""Grad-CAM (Selvaraju et al., ICCV 2017) on the last convolutional map, `model.forward_features(x)`: drawing.

The computation lives in `chexvision.inference.cam` (the demo uses it too) and is re-exported here. Drawing:
`render_cam` writes the label, its probability, a colour bar and any ground-truth boxes onto the overlay at the
image's own resolution; `is_uniform` flags a flat map (drawn as the bare image, with a warning).

The class score is the multi-label logit (before the sigmoid, as the paper recommends); channel weights are the
spatially averaged gradients of that score; the map is ReLU(sum_c w_c A_c), upsampled bilinearly to the input
size and scaled to [0, 1] per image. The map has the resolution of the last stage (stride 32: 2x2 at 64 px,
10x10 at 320 px), which bounds how precisely it can localise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chexvision.data.bbox import Box
from chexvision.inference.cam import grad_cam, grad_cam_native, peak_location, top_classes, upsample_cam
from chexvision.labels import LABELS

if TYPE_CHECKING:
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "MIN_SIDE",
    "UNIFORM_RANGE",
    "cam_images",
    "grad_cam",
    "grad_cam_native",
    "is_uniform",
    "overlay",
    "peak_location",
    "render_cam",
    "save_png",
    "top_classes",
    "uniform_warning",
    "upsample_cam",
]


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 [H, W, 3]: the gray image blended with the map in the `jet` colour map."""
    from matplotlib import colormaps

    if image.shape != cam.shape:
        raise ValueError(f"image {image.shape} and map {cam.shape} differ in size")
    heat = colormaps["jet"](np.clip(cam, 0, 1))[..., :3]
    gray = np.repeat((image.astype(np.float64) / 255.0)[..., None], 3, axis=2)
    return (255 * np.clip((1 - alpha) * gray + alpha * heat, 0, 1)).astype(np.uint8)


def save_png(path: Path, rgb: np.ndarray, *, scale: int = 1) -> Path:
    """Write an RGB uint8 image (nearest-upscaled `scale` times, so 64 px maps stay readable)."""
    from PIL import Image

    img = Image.fromarray(rgb)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path


UNIFORM_RANGE = 0.01  # a map whose max - min is under 1% of its peak shows as one colour: "uniform"
MIN_SIDE = 256  # px: a smaller image is drawn enlarged by a whole factor, so its label and colour bar read
BOX_COLOR = "#39ff14"  # the NIH box outline: a green that no part of the jet overlay has at full saturation


def is_uniform(cam: np.ndarray, rel_tol: float = UNIFORM_RANGE) -> bool:
    """Whether a map is flat: max - min at most `rel_tol` of its largest magnitude.

    Scale-free, so the answer is the same before and after the per-image normalisation. The all-zero map (what the
    ReLU leaves when no location raises the class score, typical of a label the model finds improbable) is uniform;
    its overlay would be a featureless blue that reads as "evidence nowhere" when there is simply no map.
    """
    lo, hi = float(np.min(cam)), float(np.max(cam))
    return hi - lo <= rel_tol * max(abs(hi), abs(lo))


def uniform_warning(image: str, label: str) -> str:
    """The one-line warning for a uniform map (`chexvision cam` prints it and puts it in its JSON)."""
    return (
        f"the Grad-CAM map of {label} for {image} is uniform (max - min under {UNIFORM_RANGE:.0%} of its peak): "
        "it shows no location; the model finds no spatial evidence for this label here"
    )


def _resize(array: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    if array.shape[:2] == size:
        return array
    if nearest:
        return np.asarray(Image.fromarray(array).resize(size[::-1], Image.Resampling.NEAREST))
    img = Image.fromarray(array.astype(np.float32), mode="F")
    return np.asarray(img.resize(size[::-1], Image.Resampling.BILINEAR), dtype=np.float64)


def _colour_bar(fig: Figure, ax: Axes, font: float, width: int) -> None:
    """The map's scale, inset at the top right: ticks and label on its left, on dark backing."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = ax.inset_axes((1 - (0.6 * font + 8) / width, 0.5, 0.5 * font / width, 0.45))
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), colormaps["jet"]), cax=cax, ticks=[0, 0.5, 1])
    bar.outline.set_edgecolor("white")
    cax.yaxis.set_ticks_position("left")
    cax.yaxis.set_label_position("left")
    cax.tick_params(colors="white", labelsize=0.8 * font, length=0.25 * font)
    backing = {"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 1}
    bar.set_label("Grad-CAM (1: its peak)", color="white", fontsize=0.8 * font, bbox=backing)
    for tick in cax.get_yticklabels():
        tick.set_bbox(backing)


def render_cam(
    image: np.ndarray,
    cam: np.ndarray,
    *,
    label: str,
    probability: float,
    boxes: Sequence[Box] = (),
    uniform: bool | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """RGB uint8 picture of a Grad-CAM map over its image, at the image's resolution.

    `image` is uint8 gray [H, W]; `cam` in [0, 1] at any resolution (resized bilinearly to the image); `boxes` in
    image pixels are outlined in green. Written on it: the label and its probability (and "uniform map" when
    `uniform`, default `is_uniform(cam)`), and a colour bar of the map's scale. An image with a side under
    `MIN_SIDE` is enlarged by a whole factor (nearest neighbour) first.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    factor = max(1, -(-MIN_SIDE // min(image.shape[:2])))
    h, w = image.shape[0] * factor, image.shape[1] * factor
    flat = is_uniform(cam) if uniform is None else uniform
    # a uniform map is not drawn at all: a flat tint would read as "evidence everywhere" (or nowhere)
    rgb = overlay(_resize(image, (h, w), nearest=True), np.clip(_resize(cam, (h, w)), 0, 1), 0.0 if flat else alpha)
    dpi = 72.0  # one point per pixel: the sizes below are pixels
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(rgb, interpolation="none")
    ax.set_axis_off()
    font = max(11.0, 0.04 * h)
    for b in boxes:
        outline = Rectangle((b.x * factor, b.y * factor), b.w * factor, b.h * factor, fill=False,
                            edgecolor=BOX_COLOR, lw=max(1.5, 0.006 * h))  # fmt: skip
        ax.add_patch(outline)
    lines = [f"{label}  p = {probability:.3f}"]
    lines += ["uniform Grad-CAM map: not drawn"] if flat else []
    lines += ["green: ground-truth box"] if boxes else []
    backing = {"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 0.2 * font}
    ax.text(0.3 * font, 0.3 * font, "\n".join(lines), color="white", fontsize=font, va="top", ha="left", bbox=backing)
    if not flat:
        _colour_bar(fig, ax, font, w)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[..., :3]
    if out.shape[:2] != (h, w):  # a float rounding of the figure size: pad or crop the last row/column
        out = np.pad(out, ((0, max(0, h - out.shape[0])), (0, max(0, w - out.shape[1])), (0, 0)), mode="edge")[:h, :w]
    return np.ascontiguousarray(out)


def _label_index(label: str) -> int:
    from chexvision.errors import BadInputError
    from chexvision.labels import canonical_label

    try:
        return LABELS.index(canonical_label(label))
    except ValueError:
        raise BadInputError(f"unknown label {label!r}", f"name one of the 14 NIH labels: {', '.join(LABELS)}") from None


def cam_images(
    run_dir: Path,
    images: Sequence[Path],
    out: Path,
    *,
    label: str | None = None,
    top: int = 3,
    device: str | torch.device = "auto",
) -> list[dict[str, object]]:
    """Grad-CAM overlays (PNG) of image files for the named label or each image's `top` classes.

    Each PNG has the input's resolution (see `render_cam`); each row says whether its map is uniform (`is_uniform`
    on the map before normalisation) and then carries a one-line `warning`.

    The label, the device (`chexvision.device.resolve_device`) and every image are checked before the model is
    loaded, so bad input fails fast.
    """
    import torch

    from chexvision.device import resolve_device
    from chexvision.errors import BadInputError
    from chexvision.inference.images import read_image
    from chexvision.inference.load import load_model_dir
    from chexvision.inference.tta import predict_views

    fixed = [_label_index(label)] if label else None
    if fixed is None and top < 1:
        raise BadInputError(f"--top {top} maps no class", "pass --top 1 or more, or --label NAME")
    dev = resolve_device(device)
    decoded = [read_image(Path(path)) for path in images]
    run = load_model_dir(run_dir, dev)
    transform = run.transform()  # image files: repeat training's preprocessing, CLAHE included
    written: list[dict[str, object]] = []
    for path, img in zip(images, decoded, strict=True):
        x = torch.from_numpy(transform(img)[None]).to(dev)
        with torch.inference_mode():
            probs = predict_views(run.model, x, tta=False)["plain"][0].cpu().numpy()
        classes = fixed or top_classes(probs, top)[0]
        native = grad_cam_native(run.model, x.repeat(len(classes), 1, 1, 1), classes)
        # the model saw the whole image resized to a square: the map stretched back over it is in its frame
        cams = upsample_cam(native, (int(img.shape[0]), int(img.shape[1])))
        for k, low, cam in zip(classes, native, cams, strict=True):
            name, p, flat = LABELS[int(k)], float(probs[k]), is_uniform(low)
            target = out / f"{Path(path).stem}_{name}.png"
            save_png(target, render_cam(img, cam, label=name, probability=p, uniform=flat))
            row: dict[str, object] = {"image": str(path), "label": name, "probability": p, "png": str(target)}
            row["uniform"] = flat
            if flat:
                row["warning"] = uniform_warning(str(path), name)
            written.append(row)
    return written
