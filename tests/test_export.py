"""`chexvision export`: ONNX (onnxruntime) and TorchScript files of a tiny model, parity with PyTorch, dynamic batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.errors import BadInputError
from chexvision.inference import export as export_module
from chexvision.inference.load import load_model_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("export") / "run", model="seresnet")


def _export(*args: str) -> object:
    return CliRunner().invoke(app, ["export", *args])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_writes_a_file_that_matches_pytorch(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"model.{fmt}"
    res = _export("--model", str(run_dir), "--format", fmt, "--out", str(out), "--json")
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    doc = json.loads(res.stdout)  # type: ignore[attr-defined]
    assert doc["passed"] and doc["max_abs_diff"] <= doc["tolerance"] == 1e-4
    assert doc["path"] == str(out) and doc["bytes"] == out.stat().st_size and doc["batch_sizes"] == [4, 1]
    # independent check: a batch of 3 random inputs (the trace used 2), outside the exporter's own code
    loaded = load_model_dir(run_dir)
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        want = torch.cat([t.reshape(3, -1) for t in loaded.model(x)], 1).numpy()
    if fmt == "onnx":
        import onnx
        import onnxruntime as ort

        graph = onnx.load(str(out)).graph
        assert [i.name for i in graph.input] == ["image"]
        assert [o.name for o in graph.output] == ["findings", "abnormal"]
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch axis is symbolic
        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    else:
        with torch.no_grad():
            got = [t.numpy() for t in torch.jit.load(str(out))(x)]
    assert np.max(np.abs(np.concatenate([g.reshape(3, -1) for g in got], 1) - want)) < 1e-4


def test_table_output_reports_the_difference(run_dir: Path, tmp_path: Path) -> None:
    res = _export("--model", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "m.pt"))
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert "max |diff|" in res.stdout and "batch sizes 4, 1" in res.stdout  # type: ignore[attr-defined]


def test_parity_failure_removes_the_file_and_exits_1(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module._run_torchscript
    monkeypatch.setattr(export_module, "_run_torchscript", lambda path, x: real(path, x) + 0.01)
    out = tmp_path / "m.pt"
    res = _export("--model", str(run_dir), "--format", "torchscript", "--out", str(out))
    assert res.exit_code == 1 and "differs from PyTorch by 1.00e-02" in res.output  # type: ignore[attr-defined]
    assert not out.exists()


def test_unknown_format_and_missing_extra_are_one_line(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = _export("--model", str(run_dir), "--format", "tflite", "--out", str(tmp_path / "m"))
    assert res.exit_code == 2 and "choose one of onnx, torchscript" in res.output  # type: ignore[attr-defined]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(BadInputError, match=r"needs onnxruntime \(the `export` extra\)"):
        export_module.require_extra("onnx")
    res = _export("--model", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert res.exit_code == 2 and "chexvision[export]" in res.output  # type: ignore[attr-defined]
    assert len(res.output.strip().splitlines()) == 1  # type: ignore[attr-defined]


def test_parity_on_given_images(run_dir: Path, tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (70, 90), dtype=np.uint8))
    res = _export("--model", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "m.pt"),
                  "--image", str(path), "--json")  # fmt: skip
    assert res.exit_code == 0, res.output  # type: ignore[attr-defined]
    assert json.loads(res.stdout)["samples"] == 1  # type: ignore[attr-defined]


def test_help_names_the_formats_the_extra_and_the_batch_axis() -> None:
    res = _export("--help")
    assert res.exit_code == 0  # type: ignore[attr-defined]
    text = " ".join(res.stdout.split())  # type: ignore[attr-defined]
    assert "onnx | torchscript" in text and "dynamic batch axis" in text and "chexvision[export]" in text
