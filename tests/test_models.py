"""Model zoo behaviour: every registered model, as a tiny variant at 64 px (full size only for parameter counts)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.errors import BadInputError
from chexvision.labels import NUM_LABELS
from chexvision.models import (
    CheXModel,
    ModelInfo,
    build_from_config,
    count_parameters,
    count_state_parameters,
    create_model,
    get_model_info,
    list_models,
    model_config,
    register_model,
    tiny_kwargs,
)
from chexvision.models import weights as weights_module
from chexvision.models.registry import read_model_info

# Full-size counts with a one-channel stem. DESIGN says ~7.49 M for densenet (its figure counted a three-channel
# stem, 7,486,351) and ~21.7 M for seresnet (SE-ResNet-34 + Linear(512, 512) neck + heads).
FULL_SIZE_PARAMS = {"densenet": 7_480_079, "seresnet": 21_709_947}
SIZE = 64


def _tiny(name: str, **overrides: object) -> CheXModel:
    torch.manual_seed(0)
    return create_model(name, **{**tiny_kwargs(name), **overrides})


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, SIZE, SIZE, generator=gen)
    y14 = torch.randint(0, 2, (n, NUM_LABELS), generator=gen).float()
    return x, y14, y14.amax(dim=1)


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in module.named_buffers() if "running" in name]


def test_registry_lists_both_models() -> None:
    assert {"densenet", "seresnet"} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_full_size_parameter_count(name: str) -> None:
    assert count_parameters(name) == FULL_SIZE_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_outputs_have_contract_shapes_and_are_finite(name: str) -> None:
    model = _tiny(name).eval()
    x, _, _ = _batch(2)
    with torch.no_grad():
        feat = model.forward_features(x)
        multi, binary = model(x)
        head_multi, head_binary = model.forward_head(feat)
    assert model.feature_dim == 512
    assert feat.ndim == 4 and feat.shape[0] == 2 and feat.shape[2] >= 1
    assert multi.shape == (2, NUM_LABELS) and binary.shape == (2,)
    assert torch.isfinite(multi).all() and torch.isfinite(binary).all()
    torch.testing.assert_close(head_multi, multi)
    torch.testing.assert_close(head_binary, binary)


@pytest.mark.parametrize("name", list_models())
def test_loss_goes_down_on_a_fixed_batch(name: str) -> None:
    model = _tiny(name, drop_rate=0.0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y14, ybin = _batch()
    losses = []
    for _ in range(8):
        multi, binary = model(x)
        loss = F.binary_cross_entropy_with_logits(multi, y14) + 0.5 * F.binary_cross_entropy_with_logits(binary, ybin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", list_models())
def test_build_from_config_round_trip_gives_identical_outputs(name: str) -> None:
    model = _tiny(name).eval()
    cfg = json.loads(json.dumps(model_config(model)))  # what config.json stores
    assert cfg["name"] == name
    rebuilt = build_from_config(cfg)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x, _, _ = _batch(2)
    with torch.no_grad():
        for a, b in zip(model(x), rebuilt(x), strict=True):
            torch.testing.assert_close(a, b)


def test_model_config_drops_weight_sources_and_is_json() -> None:
    cfg = model_config("densenet", {"pretrained": True, "weights": "/x.pth", "block_config": (2, 2, 2, 2)})
    assert cfg == {"name": "densenet", "kwargs": {"block_config": [2, 2, 2, 2]}}


def test_build_from_config_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise AssertionError("build_from_config tried to fetch weights")

    monkeypatch.setattr("chexvision.models.densenet.densenet121_imagenet_state_dict", fail)
    cfg = {"name": "densenet", "kwargs": {**tiny_kwargs("densenet"), "pretrained": True}}
    assert build_from_config(cfg)(torch.zeros(1, 1, SIZE, SIZE))[0].shape == (1, NUM_LABELS)


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(BadInputError) as info:
        create_model("resnet9000")
    assert "resnet9000" in info.value.message
    assert all(name in info.value.message for name in list_models())
    assert "chexvision models" in (info.value.hint or "")


@pytest.mark.parametrize("name", list_models())
def test_unknown_model_argument_is_bad_input(name: str) -> None:
    with pytest.raises(BadInputError) as info:
        create_model(name, no_such_argument=1)
    assert "no_such_argument" in info.value.message and "model.kwargs" in (info.value.hint or "")


def test_duplicate_registration_raises() -> None:
    another_densenet = ModelInfo(
        name="densenet", builder="chexvision.models.se_resnet:seresnet", summary="", description="", params=0,
        drop_rate=0.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="already registered"):
        register_model(another_densenet)


def test_registered_builder_is_imported_only_when_created(monkeypatch: pytest.MonkeyPatch) -> None:
    from chexvision.models import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._registry()))  # leave the real registry as it was
    info = ModelInfo(
        name="tinyse", builder="chexvision.models.se_resnet:seresnet", summary="a test model", description="",
        params=0, drop_rate=0.5, tiny=tiny_kwargs("seresnet"),
    )  # fmt: skip
    assert register_model(info) is info and "tinyse" in list_models() and get_model_info("tinyse") == info
    model = create_model("tinyse", **tiny_kwargs("tinyse"))
    assert model(torch.zeros(1, 1, SIZE, SIZE))[0].shape == (1, NUM_LABELS)
    assert model_config(model) == {"name": "tinyse", "kwargs": {"depths": [1, 1, 1, 1], "widths": [8, 16, 32, 64]}}


def test_listing_models_does_not_import_torch() -> None:
    code = (
        "import sys, chexvision.models as m; "
        "assert m.list_models(); [m.get_model_info(n) for n in m.list_models()]; m.model_summary(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", list_models())
def test_model_info_is_declared_and_counted_right(name: str) -> None:
    info = get_model_info(name)
    assert info.name == name and info.summary and "{dropout}" in info.description
    assert info.params == count_parameters(name)  # what `chexvision models` prints without torch
    assert create_model(name, **info.tiny).head.neck[2].p == info.drop_rate  # the card's default dropout
    assert (info.base_model is None) == (info.pretrained is None)


@pytest.mark.parametrize("name", list_models())
def test_state_parameter_count_leaves_batchnorm_buffers_out(tmp_path: Path, name: str) -> None:
    from safetensors.torch import save_file

    from chexvision.rundir import read_safetensors_header

    model = _tiny(name)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    header = read_safetensors_header(tmp_path / "m.safetensors")
    params = sum(p.numel() for p in model.parameters())
    assert count_state_parameters(header) == params
    assert sum(math.prod(v["shape"]) for v in header.values()) > params  # the buffers are in the file


def test_model_info_declarations_must_be_literal() -> None:
    source = 'MODEL_INFO = ModelInfo(name="x", builder="m:f", summary="", description="", params=1, drop_rate=0.0)'
    assert read_model_info(source, "x.py") == ModelInfo("x", "m:f", "", "", 1, 0.0)
    assert read_model_info("OTHER = 1", "y.py") is None
    with pytest.raises(TypeError, match="literals"):
        read_model_info('MODEL_INFO = ModelInfo(name=NAME, builder="m:f")', "z.py")


@pytest.mark.parametrize("name", list_models())
def test_frozen_backbone_keeps_batchnorm_stats_through_train_mode(name: str) -> None:
    model = _tiny(name)
    model.freeze_backbone(True)
    model.train()  # the trainer calls this every epoch: BN must stay frozen
    before = _bn_stats(model.features)
    x, y14, ybin = _batch()
    multi, binary = model(x)
    (F.binary_cross_entropy_with_logits(multi, y14) + F.binary_cross_entropy_with_logits(binary, ybin)).backward()
    for a, b in zip(before, _bn_stats(model.features), strict=True):
        torch.testing.assert_close(a, b)
    assert all(p.grad is None for p in model.backbone_parameters())
    assert all(p.grad is not None for p in model.head_parameters())

    model.freeze_backbone(False)
    assert model.training and all(p.requires_grad for p in model.parameters())
    model(x)
    assert any(not torch.equal(a, b) for a, b in zip(before, _bn_stats(model.features), strict=True))


def test_pretrained_offline_says_how_to_proceed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("CHEXVISION_OFFLINE", "1")
    with pytest.raises(BadInputError) as info:
        create_model("densenet", pretrained=True)
    line = info.value.one_line()
    assert "\n" not in line and "--no-pretrained" in line and "--weights PATH" in line


def test_pretrained_unreachable_network_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for var in weights_module.OFFLINE_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(weights_module, "_can_connect", lambda url: False)
    with pytest.raises(BadInputError, match="unreachable"):
        create_model("densenet", pretrained=True)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_weights_file_loads_with_rgb_stem_summed(tmp_path: Path, suffix: str) -> None:
    from safetensors.torch import save_file
    from torchvision.models.densenet import DenseNet as TorchvisionDenseNet

    torch.manual_seed(3)
    reference = TorchvisionDenseNet(**tiny_kwargs("densenet"))  # three-channel, with its 1000-way classifier
    state = reference.state_dict()
    # Released torchvision files predate `num_batches_tracked` and use old layer names (`norm.1`).
    state = {
        k.replace("denselayer1.norm1", "denselayer1.norm.1"): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    path = tmp_path / f"tv{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))

    model = create_model("densenet", weights=path, **tiny_kwargs("densenet"))
    loaded = model.features.state_dict()
    expected = reference.features.state_dict()
    torch.testing.assert_close(loaded["conv0.weight"], expected["conv0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(loaded["norm5.running_var"], expected["norm5.running_var"])
    torch.testing.assert_close(
        loaded["denseblock1.denselayer1.norm1.weight"], expected["denseblock1.denselayer1.norm1.weight"]
    )


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(_tiny("densenet").state_dict(), path)
    with pytest.raises(BadInputError, match="do not fit"):
        create_model("densenet", weights=path, growth_rate=4, block_config=(1, 1), num_init_features=8)


def test_missing_weights_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        create_model("densenet", weights=tmp_path / "nope.pth", **tiny_kwargs("densenet"))


def test_cli_models_json_lists_every_model_with_full_size_params() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == list_models()
    assert {row["name"]: row["params"] for row in rows} == FULL_SIZE_PARAMS


def test_cli_models_table() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "densenet" in result.stdout and "21,709,947" in result.stdout


def test_full_size_torchvision_release_layout_loads(tmp_path: Path) -> None:
    import re

    from torchvision.models import densenet121

    reference = densenet121(weights=None)
    # The layout of torchvision's densenet121-a639ec97.pth: old layer names, no num_batches_tracked.
    old_name = re.compile(r"(denselayer\d+\.)(norm|relu|conv)([12])\.")
    state = {
        old_name.sub(r"\1\2.\3.", k): v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert any(".norm.1." in k for k in state)
    path = tmp_path / "densenet121.pth"
    torch.save(state, path)
    model = create_model("densenet", weights=path)
    loaded, expected = model.features.state_dict(), reference.features.state_dict()
    torch.testing.assert_close(loaded["conv0.weight"], expected["conv0.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(loaded["norm5.bias"], expected["norm5.bias"])


@pytest.mark.parametrize("name", list_models())
def test_forward_returns_named_outputs_that_still_unpack(name: str) -> None:
    from chexvision.labels import LABELS
    from chexvision.models.heads import CheXOutput

    model = _tiny(name).eval()
    x, _, _ = _batch(3)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, CheXOutput) and isinstance(out, tuple)
    findings, abnormal = out  # every existing caller unpacks a pair
    assert findings is out.findings and abnormal is out.abnormal and out[0] is findings
    assert findings.shape == (3, NUM_LABELS) and abnormal.shape == (3,)
    assert model.labels == LABELS and len(model.labels) == findings.shape[1]


@pytest.mark.parametrize("name", list_models())
def test_hub_mixin_round_trip_on_a_folder(name: str, tmp_path: Path) -> None:
    """save_pretrained -> from_pretrained (the PyTorchModelHubMixin contract) gives the same model and outputs;
    the folder is a model folder `chexvision.load` reads too (config.json "model" + model.safetensors)."""
    from huggingface_hub import PyTorchModelHubMixin

    from chexvision.inference.load import load_model_dir

    assert issubclass(CheXModel, PyTorchModelHubMixin)
    model = _tiny(name).eval()
    model.run_config = {"data": {"size": SIZE, "mean": 0.5, "std": 0.25}}
    model.save_pretrained(tmp_path / "saved")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "saved").iterdir()}
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model"]["name"] == name and config["model"]["pretrained"] is False
    assert config["data"] == {"size": SIZE, "mean": 0.5, "std": 0.25}
    loaded = CheXModel.from_pretrained(tmp_path / "saved")
    assert type(loaded) is type(model) and not loaded.training
    x, _, _ = _batch(2)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        via_inference = load_model_dir(tmp_path / "saved").model
        torch.testing.assert_close(via_inference(x).abnormal, model(x).abnormal, rtol=0, atol=0)
    # a saved-and-loaded model saves the same config again (data section kept, weights identical)
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == config


def test_from_pretrained_on_the_wrong_subclass_is_bad_input(tmp_path: Path) -> None:
    other = next(n for n in list_models() if n != "densenet")
    _tiny("densenet").save_pretrained(tmp_path / "d")
    wrong = type(_tiny(other))
    with pytest.raises(BadInputError, match="not a"):
        wrong.from_pretrained(tmp_path / "d")
