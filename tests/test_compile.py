"""`compile` and `channels_last` settings: resolution, config validation, and compiled == eager on CPU.

The compiled-vs-eager check runs the real Inductor backend on the tiny SE-ResNet (it generates and builds C++
kernels, so it needs a C++ compiler; it is skipped, saying so, only where none is installed).
"""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chexvision.config import COMPILE_MODES, load_config
from chexvision.engine.speed import compile_model, resolve_channels_last, resolve_compile
from chexvision.errors import BadInputError
from chexvision.models.registry import create_model, tiny_kwargs

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_compiles_on_cuda_only_and_accepts_modes() -> None:
    assert resolve_compile("auto", CUDA) == "default" and resolve_compile("auto", CPU) is None
    assert resolve_compile(True, CPU) == "default" and resolve_compile(False, CUDA) is None
    for mode in COMPILE_MODES:
        assert resolve_compile(mode, CUDA) == mode
    with pytest.raises(BadInputError):
        resolve_compile("fast", CUDA)


def test_channels_last_auto_is_on_for_cuda_and_cpu() -> None:
    assert resolve_channels_last("auto", CUDA) and resolve_channels_last("auto", CPU)
    assert resolve_channels_last(False, CUDA) is False and resolve_channels_last(True, CPU) is True


def test_config_keys_parse_and_reject_bad_values() -> None:
    cfg = load_config("smoke", overrides=["compile=max-autotune", "channels_last=false"])
    assert cfg.compile == "max-autotune" and cfg.channels_last is False
    assert load_config("smoke").compile == "auto"
    again = type(cfg).from_dict(cfg.to_dict())
    assert again.compile == "max-autotune" and again.channels_last is False
    with pytest.raises(BadInputError, match="compile must be"):
        load_config("smoke", overrides=["compile=fast"])
    with pytest.raises(BadInputError, match="channels_last"):
        load_config("smoke", overrides=["channels_last=sometimes"])


def test_compile_model_off_returns_the_model() -> None:
    model = nn.Linear(2, 2)
    assert compile_model(model, None) is model


def _two_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        multi, binary = model(x)
        loss = F.binary_cross_entropy_with_logits(multi, y) + 0.5 * F.binary_cross_entropy_with_logits(
            binary, y.amax(dim=1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("clang++") is None,
    reason="torch.compile's Inductor backend on CPU builds C++ kernels; no C++ compiler (g++/clang++) found",
)
def test_compiled_training_steps_match_eager_on_cpu() -> None:
    torch.manual_seed(0)
    eager = create_model("seresnet", **{**tiny_kwargs("seresnet"), "drop_rate": 0.0}).train()  # dropout draws differ
    compiled_copy = copy.deepcopy(eager)
    x = torch.randn(4, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (4, 14)).float()
    expected = _two_steps(eager, x, y)
    got = _two_steps(compile_model(compiled_copy, "default"), x, y)
    assert expected[1] < expected[0]  # the steps train
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-5)
    for a, b in zip(eager.parameters(), compiled_copy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # the compiled module trained the same weights
