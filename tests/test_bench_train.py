"""`chexvision bench train` and the library function behind it, on tiny models and the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from chexvision.bench.train_step import bench_train_step
from chexvision.cli.main import app
from chexvision.models import list_models

REQUIRED_KEYS = {"model", "size", "batch", "amp", "dtype", "channels_last", "device", "images_per_second", "steps"}
TINY_ARGS = ["--tiny", "--size", "64", "--batch", "2", "--steps", "2", "--warmup", "1", "--device", "cpu"]


@pytest.mark.parametrize("name", list_models())
def test_cli_bench_train_json_reports_throughput(name: str) -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--model", name, *TINY_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row.keys() >= REQUIRED_KEYS
    assert row["model"] == name and row["device"] == "cpu" and row["dtype"] == "float32"
    assert row["batch"] == 2 and row["steps"] == 2 and row["images_per_second"] > 0


def test_cli_bench_train_amp_channels_last_uses_bf16_on_cpu() -> None:
    args = ["bench", "train", "--model", "seresnet", *TINY_ARGS, "--amp", "--channels-last", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["amp"] is True and row["dtype"] == "bfloat16" and row["channels_last"] is True


def test_cli_bench_train_human_output() -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--model", "densenet", *TINY_ARGS])
    assert result.exit_code == 0, result.output
    assert "images/s" in result.stdout


def test_cli_bench_train_unknown_model_exits_2_with_hint() -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--model", "vgg", *TINY_ARGS])
    assert result.exit_code == 2
    assert "unknown model 'vgg'" in result.stderr and "chexvision models" in result.stderr


def test_cli_bench_train_rejects_zero_steps() -> None:
    args = ["bench", "train", "--model", "densenet", "--tiny", "--steps", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "steps >= 1" in result.stderr


def test_cli_bench_train_unknown_compile_mode_exits_2() -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--model", "seresnet", *TINY_ARGS, "--compile", "fast"])
    assert result.exit_code == 2
    assert "'fast'" in result.stderr and "max-autotune" in result.stderr


def test_bench_train_step_reports_eager_and_warmup_time() -> None:
    result = bench_train_step("seresnet", size=64, batch=2, steps=1, warmup=1, tiny=True, device="cpu")
    assert result.compiled == "off" and result.warmup_seconds > 0


@pytest.mark.gpu
def test_bench_train_step_on_cuda_uses_amp_dtype_and_reports_memory() -> None:
    result = bench_train_step("densenet", size=64, batch=4, amp=True, steps=2, warmup=1, tiny=True)
    assert result.device == "cuda" and result.peak_memory_mib is not None
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert result.dtype == expected and result.images_per_second > 0
