"""Config resolution: presets, per-model sections, files, `key=value` overrides, and the errors users see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chexvision.config import PRESETS, TrainConfig, apply_overrides, config_keys, load_config
from chexvision.errors import BadInputError


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("model", ["densenet", "seresnet"])
def test_every_preset_resolves_for_every_model(preset: str, model: str) -> None:
    cfg = load_config(preset, None, [f"model.name={model}"])
    assert cfg.model.name == model
    assert cfg.preset == preset
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # config.json round trip


def test_kaggle_t4_is_the_original_design() -> None:
    dn = load_config("kaggle-t4", None, ["model.name=densenet"])
    se = load_config("kaggle-t4", None, ["model.name=seresnet"])
    assert (dn.data.size, dn.data.batch_size, dn.optim.accumulation, dn.optim.amp) == (320, 24, 2, "fp16")
    assert (dn.schedule.epochs, se.schedule.epochs, dn.schedule.patience) == (60, 100, 15)
    assert (dn.schedule.frozen_epochs, dn.schedule.frozen_lr, dn.optim.lr) == (5, 1e-3, 1e-4)
    assert dn.model.pretrained and not se.model.pretrained
    assert se.schedule.frozen_epochs == 0
    assert (dn.loss.binary_weight, dn.optim.clip_grad) == (0.5, 1.0)
    full = load_config("full", None, ["model.name=densenet"])
    assert (full.optim.amp, full.optim.accumulation) == ("bf16", 1)


def test_smoke_uses_tiny_models_without_imagenet_weights() -> None:
    for model in ("densenet", "seresnet"):
        cfg = load_config("smoke", None, [f"model.name={model}"])
        assert cfg.model.kwargs and not cfg.model.pretrained
        assert (cfg.data.size, cfg.data.batch_size, cfg.optim.amp) == (64, 64, "off")


def test_file_then_overrides_win_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[optim]\nlr = 0.5\n[data]\nsize = 96\n[models.seresnet.schedule]\nepochs = 7\n")
    cfg = load_config("smoke", toml, ["model.name=seresnet", "optim.lr=3e-4", "data.split_scheme=patient"])
    assert (cfg.optim.lr, cfg.data.size, cfg.schedule.epochs, cfg.data.split_scheme) == (3e-4, 96, 7, "patient")
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps({"optim": {"betas": [0.8, 0.9]}, "data": {"aug": {"flip_p": 0.0}}}))
    cfg = load_config(None, as_json, ["model.kwargs.widths=[8, 16, 32, 64]", "data.aug.scale=[1.0, 1.0]"])
    assert cfg.optim.betas == (0.8, 0.9) and cfg.data.aug.flip_p == 0.0 and cfg.data.aug.scale == (1.0, 1.0)
    assert cfg.model.kwargs == {"widths": [8, 16, 32, 64]}


def test_model_section_applies_only_to_its_model(tmp_path: Path) -> None:
    cfg = load_config("kaggle-t4", None, ["model.name=seresnet", "schedule.epochs=3"])
    assert cfg.schedule.epochs == 3  # an override beats the [models.seresnet] section
    assert load_config("kaggle-t4", None, ["model.name=densenet"]).optim.lr == 1e-4


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("optim.lrr=1e-3", ["optim.lrr", "optim.lr"]),
        ("lr=1e-3", ["'lr'", "optim.lr"]),
        ("schedule.epoch=3", ["schedule.epoch", "schedule.epochs"]),
    ],
)
def test_unknown_key_names_it_and_close_matches(override: str, names: list[str]) -> None:
    with pytest.raises(BadInputError) as info:
        load_config("smoke", None, [override])
    text = info.value.one_line()
    for name in names:
        assert name in text


@pytest.mark.parametrize(
    "override", ["optim.lr=abc", "data.size=1.5", "optim.amp=fp8", "data.aug.flip_p=2", "no-equals-sign"]
)
def test_malformed_values_are_bad_input(override: str) -> None:
    with pytest.raises(BadInputError):
        load_config("smoke", None, [override])


@pytest.mark.parametrize(
    "override",
    ["data.size=-5", "data.batch_size=0", "optim.accumulation=0", "optim.lr=0", "schedule.epochs=0", "data.std=0"],
)
def test_out_of_range_values_name_their_key(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(BadInputError, match=key.replace(".", r"\.")):
        load_config("smoke", None, [override])


def test_unknown_key_in_a_file_and_an_unknown_preset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[models.densenet.optim]\nlearning_rate = 1\n")
    with pytest.raises(BadInputError, match="learning_rate"):
        load_config(None, bad, [])
    with pytest.raises(BadInputError) as info:
        load_config("kaggle_t4", None, [])
    assert "kaggle-t4" in info.value.one_line()
    with pytest.raises(BadInputError, match="not found"):
        load_config(None, tmp_path / "missing.toml", [])


def test_apply_overrides_copies_and_none_values() -> None:
    base = load_config("smoke", None, ["data.split_scheme=patient"])
    out = apply_overrides(base, ["data.split_scheme=null", "schedule.epochs=9"])
    assert out.data.split_scheme is None and out.schedule.epochs == 9
    assert base.schedule.epochs != 9  # the input is untouched
    assert "data.aug.flip_p" in config_keys() and "optim.lr" in config_keys()


def test_config_module_does_not_import_torch() -> None:
    code = "import sys, chexvision.config as c; c.load_config('smoke', None, []); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_sits_at_the_bottom_layer() -> None:
    """`import chexvision.config` pulls in neither torch, OpenCV nor chexvision.data (AugConfig lives in config)."""
    code = (
        "import sys, chexvision.config; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'cv2') or m.startswith('chexvision.data')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    from chexvision.config import AugConfig
    from chexvision.data.transforms import AugConfig as FromTransforms

    assert FromTransforms is AugConfig


def test_a_run_written_before_the_interpolation_key_resumes_bilinear(tmp_path: Path) -> None:
    from chexvision.engine.launch import resolve_train_config

    saved = load_config("smoke", None, []).to_dict()
    assert saved["data"]["aug"]["interpolation"] == "nearest"  # the default of a new run
    del saved["data"]["aug"]["interpolation"]  # config.json of a run from before the key existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    resume = dict(resume=True, preset=None, config=None, overrides=[], flags=[], model=saved["model"]["name"])
    assert resolve_train_config(out=tmp_path, **resume).data.aug.interpolation == "bilinear"
    saved["data"]["aug"]["interpolation"] = "nearest"  # a newer run keeps what it recorded
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert resolve_train_config(out=tmp_path, **resume).data.aug.interpolation == "nearest"
