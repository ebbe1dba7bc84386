"""Grad-CAM, TTA views and localization scoring on hand-built models and maps whose answer is known."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from chexvision.data.bbox import Box, read_bbox_csv
from chexvision.evaluate.gradcam import grad_cam, grad_cam_native, overlay, peak_location, save_png, top_classes
from chexvision.evaluate.localization import CamRecord, cam_box, iobb, pointing_hit, score_localization
from chexvision.inference.tta import TTA_VIEWS, predict_views, tta_views


class _BlobModel(nn.Module):
    """Features = the image itself; class k's logit = w_k * mean(image). Grad-CAM must equal the image (scaled)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 2.0, 14))

    def forward_features(self, x: Tensor) -> Tensor:
        return x

    def forward_head(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        pooled = feat.mean(dim=(1, 2, 3))
        return pooled[:, None] * self.w[None], pooled

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.forward_head(self.forward_features(x))


def _blob_image(cx: int, cy: int, size: int = 32) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0).float()[None, None]


def test_grad_cam_finds_the_planted_blob() -> None:
    x = torch.cat([_blob_image(8, 20), _blob_image(25, 5)])
    cams = grad_cam(_BlobModel(), x, [3, 7])
    assert cams.shape == (2, 32, 32)
    assert cams.min() >= 0 and cams.max() == pytest.approx(1.0)
    assert np.unravel_index(cams[0].argmax(), cams[0].shape) == (20, 8)
    assert np.unravel_index(cams[1].argmax(), cams[1].shape) == (5, 25)


def test_pointing_peak_is_the_strongest_native_cell_centre() -> None:
    native = grad_cam_native(_BlobModel(), _blob_image(40, 10, size=64), 0)[0]
    assert native.shape == (64, 64)
    coarse = np.array([[0.0, 1.0], [0.2, 0.0]])  # a 2x2 map: the top-right cell wins
    assert peak_location(coarse, (64, 64)) == (16, 48)
    up = np.zeros((64, 64))
    up[:32, 32:] = 1.0  # its upsampled plateau: argmax would say (0, 32), an edge pixel
    truth = np.zeros((64, 64), dtype=bool)
    truth[10:20, 40:56] = True
    assert not pointing_hit(up, truth) and pointing_hit(up, truth, peak_location(coarse, (64, 64)))


def test_grad_cam_on_a_registered_model_has_input_size() -> None:
    from chexvision.models import create_model, tiny_kwargs

    torch.manual_seed(0)
    model = create_model("seresnet", **tiny_kwargs("seresnet"))
    cams = grad_cam(model, torch.randn(2, 1, 64, 64), 2)
    assert cams.shape == (2, 64, 64)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert top_classes(np.arange(14.0)[None], 2) == [[13, 12]]


def test_overlay_and_png(tmp_path: Path) -> None:
    img = np.zeros((16, 16), dtype=np.uint8)
    cam = np.zeros((16, 16))
    cam[4, 4] = 1.0
    rgb = overlay(img, cam)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert rgb[4, 4].tolist() != rgb[0, 0].tolist()
    path = save_png(tmp_path / "x.png", rgb, scale=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tta_views_and_probability_mean() -> None:
    x = torch.randn(3, 1, 16, 16)
    views = tta_views(x)
    assert tuple(views) == TTA_VIEWS
    assert torch.equal(views["hflip"].flip(-1), x)
    assert all(v.shape == x.shape for v in views.values())
    out = predict_views(_BlobModel(), x, tta=True)
    assert out["plain"].shape == (3, 15) and out["tta"].shape == (3, 15)
    assert ((out["tta"] >= 0) & (out["tta"] <= 1)).all()


def test_cam_box_iobb_and_pointing_by_hand() -> None:
    cam = np.zeros((10, 10))
    cam[2:4, 2:6] = 1.0  # the larger region: 2x4
    cam[8, 8] = 0.9  # a smaller, separate region
    assert cam_box(cam, 0.5) == (2, 2, 6, 4)
    truth = np.zeros((10, 10), dtype=bool)
    truth[2:4, 2:4] = True  # covers half of the predicted box
    assert iobb((2, 2, 6, 4), truth) == pytest.approx(0.5)
    assert pointing_hit(cam, truth)
    assert not pointing_hit(cam, ~truth)


def test_score_localization_beats_chance_for_a_perfect_map() -> None:
    cam = np.zeros((32, 32))
    cam[10:14, 20:26] = 1.0
    box = Box("Nodule", 20, 10, 6, 4)
    miss = Box("Mass", 0, 28, 4, 4)
    result = score_localization([CamRecord("a.png", "Nodule", cam, [box]), CamRecord("a.png", "Mass", cam, [miss])])
    nodule = result["per_class"]["Nodule"]
    assert nodule["pointing"] == 1.0 and nodule["iobb@0.5"] == 1.0
    assert nodule["pointing_chance"] == pytest.approx(24 / 1024)
    assert nodule["iobb@0.5_chance"] < 0.2
    assert result["per_class"]["Mass"]["pointing"] == 0.0
    assert result["overall"]["n"] == 2 and result["overall"]["pointing"] == 0.5
    many = [CamRecord(f"{i}.png", "Nodule", cam, [box]) for i in range(20)]
    assert score_localization(many)["overall"]["pointing_p_value"] < 1e-6  # 20 hits where 0.5 are expected


def test_read_bbox_csv_nih_format(tmp_path: Path) -> None:
    path = tmp_path / "bbox.csv"
    path.write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000001_000.png,Infiltrate,1,2,3,4\n"
        "00000001_000.png,Pleural Thickening,5,6,7,8\n"
        "00000002_000.png,Mass,10,20,30,40\n"
    )
    boxes = read_bbox_csv(path)
    assert [b.label for b in boxes["00000001_000.png"]] == ["Infiltration", "Pleural_Thickening"]
    assert boxes["00000002_000.png"][0] == Box("Mass", 10, 20, 30, 40)


def test_uniform_maps_are_flat_ones_whatever_their_scale() -> None:
    from chexvision.evaluate.gradcam import is_uniform

    assert is_uniform(np.zeros((7, 7)))  # what the ReLU leaves when nothing raises the class score
    assert is_uniform(np.full((7, 7), 3.2))
    near = np.full((7, 7), 1.0)
    near[3, 3] = 1.005  # 0.5% of the peak: one colour on the overlay
    assert is_uniform(near) and is_uniform(near * 1e-9) and is_uniform(near * 1e6)
    peaked = np.zeros((7, 7))
    peaked[3, 3] = 1e-9  # tiny values, but a real peak: normalisation makes it a full-range map
    assert not is_uniform(peaked) and not is_uniform(near + peaked * 1e8)


def _text_drawn(rgb: np.ndarray, plain: np.ndarray, rows: slice, cols: slice) -> float:
    return float((rgb[rows, cols].astype(int) - plain[rows, cols].astype(int)).any(axis=-1).mean())


def test_render_cam_keeps_the_image_size_and_writes_label_and_colour_bar() -> None:
    from chexvision.evaluate.gradcam import render_cam

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(288, 320), dtype=np.uint8)
    cam = np.zeros((9, 10))
    cam[6, 2] = 1.0
    rgb = render_cam(image, cam, label="Effusion", probability=0.87, boxes=[Box("Effusion", 40, 180, 60, 50)])
    assert rgb.shape == (288, 320, 3) and rgb.dtype == np.uint8
    from chexvision.evaluate.gradcam import _resize

    plain = overlay(image, np.clip(_resize(cam, (288, 320)), 0, 1))
    assert _text_drawn(rgb, plain, slice(0, 30), slice(0, 120)) > 0.2  # the label in the top left
    assert _text_drawn(rgb, plain, slice(30, 130), slice(306, 310)) > 0.9  # the colour bar on the right
    assert (rgb[180, 40:100] != plain[180, 40:100]).any()  # the box's top edge
    small = render_cam(image[:64, :64], cam, label="Effusion", probability=0.87)
    assert small.shape == (256, 256, 3)  # enlarged by a whole factor: text on 64 px would not read


def test_a_uniform_map_is_not_drawn_and_says_so() -> None:
    from chexvision.evaluate.gradcam import render_cam

    image = np.full((300, 300), 128, dtype=np.uint8)
    rgb = render_cam(image, np.zeros((10, 10)), label="Hernia", probability=0.01)
    gray = np.repeat(image[..., None], 3, axis=2)
    assert (rgb[150:, :] == gray[150:, :]).all()  # no blue tint and no colour bar: the image as it is
    assert (rgb[:20, :100] != gray[:20, :100]).any()  # but the label and the warning are written on it


def _zero_class_run(make_run_dir: Callable[..., Path], path: Path, label: str) -> Path:
    """A real run whose multi-label head ignores the features for `label` (weights 0, bias -6: p 0.0025), so its
    Grad-CAM map is all zeros; re-committed through the run-directory writer, as training writes weights."""
    from safetensors.torch import load_file

    from chexvision.engine.checkpoint import safetensors_writer
    from chexvision.labels import LABELS
    from chexvision.rundir import WEIGHTS, RunDir

    run = make_run_dir(path, run_id=path.name, model="seresnet", split_scheme="patient")
    state = load_file(str(run / WEIGHTS))
    k = LABELS.index(label)
    state["head.multi.weight"][k] = 0.0
    state["head.multi.bias"][k] = -6.0
    RunDir(run).commit({WEIGHTS: safetensors_writer(state, metadata={"epoch": "3"})})
    return run


def test_cam_command_writes_input_resolution_and_warns_on_a_uniform_map(
    make_run_dir: Callable[..., Path], tmp_path: Path
) -> None:
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from chexvision.cli.main import app

    run = _zero_class_run(make_run_dir, tmp_path / "run", "Hernia")
    image = tmp_path / "x.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, size=(288, 320), dtype=np.uint8)).save(image)  # W 320, H 288
    runner = CliRunner()
    base = ["cam", str(run), str(image), "--out", str(tmp_path / "c"), "--device", "cpu"]
    result = runner.invoke(app, [*base, "--label", "Hernia", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["uniform"] is True and "uniform" in row["warning"] and row["probability"] < 0.01
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "Hernia" in warnings[0] and str(image) in warnings[0]
    assert Image.open(row["png"]).size == (320, 288)  # the input's resolution, not the model's 64 px
    other = runner.invoke(app, [*base, "--label", "Effusion", "--json"])
    assert other.exit_code == 0, other.output
    assert json.loads(other.stdout)[0]["uniform"] is False and "warning:" not in other.stderr
    plain = runner.invoke(app, [*base, "--label", "Hernia"])
    assert plain.exit_code == 0 and plain.stderr.count("warning:") == 1 and "x_Hernia.png" in plain.stdout
