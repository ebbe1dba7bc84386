"""Kernel templates: StrictUndefined, valid Python and JSON, the size limit, and the template search path."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
from typer.testing import CliRunner

import dispatch.runs as runs
from chexvision.cli.main import app
from dispatch.errors import KernelTooLargeError
from dispatch.render import (
    KernelSpec,
    MetadataSpec,
    render_kernel,
    render_metadata,
    render_script,
    render_template,
    templates_dir,
)

SPEC = KernelSpec(
    run_id="densenet-20261126-0912-3fa1",
    model="densenet",
    bundle=b"zip",
    bundle_sha256="ab" * 32,
    data={"kind": "synthetic", "images": 10, "size": 64, "seed": 0},
    overrides=("optim.lr=0.1",),
)
META = MetadataSpec(
    kernel_id="alice/chexvision-densenet-20261126-0912-3fa1",
    title="chexvision densenet 20261126 0912 3fa1",
    machine_shape="NvidiaTeslaT4",
    dataset_sources=['odd"owner/x'],
    kernel_sources=[],
)


def test_missing_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError, match="run_id"):
        render_template("train.py.j2", {"model": "densenet"})
    with pytest.raises(jinja2.UndefinedError):
        render_template("kernel-metadata.json.j2", {"kernel_id": "a/b"})


def test_script_is_valid_python_with_the_values() -> None:
    text = render_script(SPEC)
    tree = ast.parse(text)
    values = {
        n.targets[0].id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id in ("RUN_ID", "OVERRIDES", "DATA", "PRESET")
    }
    assert values == {"RUN_ID": SPEC.run_id, "OVERRIDES": ["optim.lr=0.1"], "DATA": SPEC.data, "PRESET": None}
    assert "torchrun" in text and "nvidia-smi" in text and "chexvision-status.json" in text


def test_metadata_goes_through_tojson() -> None:
    meta = render_metadata(META)
    assert meta["dataset_sources"] == ['odd"owner/x']  # quoted safely, not concatenated
    assert meta["is_private"] is True and meta["enable_internet"] is True and meta["enable_gpu"] is True
    assert (meta["kernel_type"], meta["language"], meta["code_file"]) == ("script", "python", "train.py")


def test_render_kernel_writes_the_folder(tmp_path: Path) -> None:
    rendered = render_kernel(tmp_path / "k", SPEC, META)
    assert rendered.script.name == "train.py" and rendered.script_size == rendered.script.stat().st_size
    assert json.loads(rendered.metadata.read_text())["id"] == META.kernel_id


def test_templates_found_in_the_repo() -> None:
    assert (templates_dir() / "train.py.j2").is_file()
    assert (templates_dir() / "README.md").is_file()


def test_too_large_kernel_names_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    (root / "chexvision").mkdir(parents=True)
    (root / "chexvision" / "__init__.py").write_text("")
    (root / "chexvision" / "big.bin").write_bytes(random.Random(0).randbytes(800_000))  # incompressible
    monkeypatch.setattr(runs, "repo_root", lambda: root)
    with pytest.raises(KernelTooLargeError) as info:
        runs.dispatch_train(runs.TrainRequest(model="densenet", backend="kaggle"), dry_run_out=tmp_path / "k")
    assert info.value.size > 1_000_000 and f"{info.value.size:,} bytes" in info.value.message
    out = CliRunner().invoke(
        app,
        ["dispatch", "train", "--model", "densenet", "--backend", "kaggle", "--dry-run", "--out", str(tmp_path / "k2")],
    )
    assert out.exit_code == 2 and "over Kaggle's 1,000,000-byte limit" in out.stderr


def _load_kernel(tmp_path: Path, spec: KernelSpec) -> Any:
    path = tmp_path / "train.py"
    path.write_text(render_script(spec))
    module_spec = importlib.util.spec_from_file_location("rendered_kernel", path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_two_gpus_train_through_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(SPEC, preset="kaggle-t4", time_budget=11.0, resume_source="chexvision-parent")
    kernel = _load_kernel(tmp_path, spec)
    calls: list[list[str]] = []
    monkeypatch.setattr(kernel, "gpu_count", lambda: 2)
    monkeypatch.setattr(kernel, "run_step", lambda step, cmd, env=None: calls.append([str(c) for c in cmd]))
    kernel.train({}, Path("/kaggle/tmp/data"))
    [cmd] = calls
    launcher = cmd[: cmd.index("--standalone")]
    assert launcher in (
        [str(Path(sys.executable).with_name("torchrun"))],
        [sys.executable, "-m", "torch.distributed.run"],
    )
    rest = cmd[len(launcher) :]
    assert rest[:6] == ["--standalone", "--nproc_per_node", "2", "-m", "chexvision", "train"]
    args = rest[6:]
    assert args[args.index("--model") + 1] == "densenet" and args[args.index("--run-id") + 1] == SPEC.run_id
    assert args[args.index("--out") + 1] == str(kernel.WORKING)
    assert args[args.index("--time-budget") + 1] == "11.0" and args[args.index("--set") + 1] == "optim.lr=0.1"
    assert "--resume" in args
    monkeypatch.setattr(kernel, "gpu_count", lambda: 1)
    kernel.train({}, Path("/data"))
    assert calls[-1][:4] == [sys.executable, "-m", "chexvision", "train"]
