"""Kernel templates: StrictUndefined, valid Python and JSON, the size limit, and the template search path."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
from typer.testing import CliRunner

from chexvision import remote as runs
from chexvision.cli.main import app
from dispatch.backends.kaggle.metadata import MetadataSpec, render_metadata
from dispatch.bundle import Bundle
from dispatch.errors import KernelTooLargeError
from dispatch.job import DATA, OUTPUT, PYTHON, DataSource, JobSpec, Sources, Step
from dispatch.render import render_script, render_template, script_variables, templates_dir, write_script

RUN_ID = "densenet-20261126-0912-3fa1"
BUNDLE = Bundle(data=b"zip", sha256=hashlib.sha256(b"zip").hexdigest(), files=("pkg/__init__.py",))
SPEC = JobSpec(
    run_id=RUN_ID,
    label="densenet",
    sources=Sources(root=Path("/nowhere"), include=("pkg",)),
    steps=(
        Step("data synth", (PYTHON, "-m", "pkg", "synth", "--out", DATA)),
        Step("train", (PYTHON, "-m", "pkg", "train", "--out", OUTPUT, "--set", "optim.lr=0.1"), distributed=True),
    ),
    data=DataSource("prepared", "synthetic", {"kind": "synthetic", "images": 10, "size": 64, "seed": 0}),
)
META = MetadataSpec(
    kernel_id="alice/chexvision-densenet-20261126-0912-3fa1",
    title="chexvision densenet 20261126 0912 3fa1",
    machine_shape="NvidiaTeslaT4",
    dataset_sources=['odd"owner/x'],
    kernel_sources=[],
)


def _script(job: JobSpec = SPEC, **kwargs: Any) -> str:
    return render_script(script_variables(job, BUNDLE, git_sha="abc123", **kwargs))


def test_missing_variable_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError, match="run_id"):
        render_template("train.py.j2", {"model": "densenet"})
    with pytest.raises(jinja2.UndefinedError):
        render_template("kernel-metadata.json.j2", {"kernel_id": "a/b"})


def test_script_is_valid_python_with_the_values() -> None:
    text = _script()
    tree = ast.parse(text)
    values = {
        n.targets[0].id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id in ("RUN_ID", "STEPS", "DATA", "RESUME_SOURCE", "GIT_SHA")
    }
    assert values["RUN_ID"] == SPEC.run_id and values["RESUME_SOURCE"] is None and values["GIT_SHA"] == "abc123"
    assert [s["argv"] for s in values["STEPS"]] == [list(step.argv) for step in SPEC.steps]  # overrides included
    assert values["DATA"] == {"kind": "prepared", "reference": "synthetic", "details": dict(SPEC.data.details)}
    assert "torchrun" in text and "nvidia-smi" in text and "chexvision-status.json" in text


def test_metadata_goes_through_tojson() -> None:
    meta = render_metadata(META)
    assert meta["dataset_sources"] == ['odd"owner/x']  # quoted safely, not concatenated
    assert meta["is_private"] is True and meta["enable_internet"] is True and meta["enable_gpu"] is True
    assert (meta["kernel_type"], meta["language"], meta["code_file"]) == ("script", "python", "train.py")


def test_render_kernel_writes_the_folder(tmp_path: Path) -> None:
    rendered = write_script(tmp_path / "k", script_variables(SPEC, BUNDLE, git_sha=None))
    assert rendered.script.name == "train.py" and rendered.script_size == rendered.script.stat().st_size
    assert f"RUN_ID = {RUN_ID!r}" in rendered.script.read_text()


def test_templates_found_in_the_repo() -> None:
    assert (templates_dir() / "train.py.j2").is_file()
    assert (templates_dir() / "README.md").is_file()


def test_too_large_kernel_names_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    (root / "chexvision").mkdir(parents=True)
    (root / "chexvision" / "__init__.py").write_text("")
    # incompressible, and a suffix the bundle ships (a .bin would not go in)
    (root / "chexvision" / "big.py").write_bytes(random.Random(0).randbytes(800_000))
    monkeypatch.setattr(runs, "repo_root", lambda: root)
    with pytest.raises(KernelTooLargeError) as info:
        runs.dispatch_train(runs.TrainRequest(model="densenet", backend="kaggle"), dry_run_out=tmp_path / "k")
    assert info.value.size > 1_000_000 and f"{info.value.size:,} bytes" in info.value.message
    out = CliRunner().invoke(
        app,
        ["dispatch", "train", "--model", "densenet", "--backend", "kaggle", "--dry-run", "--out", str(tmp_path / "k2")],
    )
    assert out.exit_code == 2 and "over Kaggle's 1,000,000-byte limit" in out.stderr


def _load_kernel(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "train.py"
    path.write_text(text)
    module_spec = importlib.util.spec_from_file_location("rendered_kernel", path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_two_gpus_train_through_torchrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The train command line chexvision builds, run by the kernel: through torchrun when there are two GPUs."""
    request = runs.TrainRequest(
        model="densenet", preset="kaggle-t4", overrides=("optim.lr=0.1",), time_budget=11.0, resume_from="parent"
    )
    job = runs.build_job(request, {"kind": "kaggle", "dataset": "o/s"}, RUN_ID)
    kernel = _load_kernel(tmp_path, _script(job, resume_source="chexvision-parent"))
    calls: list[list[str]] = []
    monkeypatch.setattr(kernel, "gpu_count", lambda: 2)
    monkeypatch.setattr(kernel, "run_step", lambda step, cmd, env=None: calls.append([str(c) for c in cmd]))
    kernel.run_steps({}, Path("/kaggle/tmp/data"))
    [cmd] = calls
    launcher = cmd[: cmd.index("--standalone")]
    assert launcher in (
        [str(Path(sys.executable).with_name("torchrun"))],
        [sys.executable, "-m", "torch.distributed.run"],
    )
    rest = cmd[len(launcher) :]
    assert rest[:6] == ["--standalone", "--nproc_per_node", "2", "-m", "chexvision", "train"]
    args = rest[6:]
    assert args[args.index("--model") + 1] == "densenet" and args[args.index("--run-id") + 1] == RUN_ID
    assert args[args.index("--out") + 1] == str(kernel.WORKING)
    assert args[args.index("--data") + 1] == "/kaggle/tmp/data"
    assert args[args.index("--time-budget") + 1] == "11.0" and args[args.index("--set") + 1] == "optim.lr=0.1"
    assert "--resume" in args
    monkeypatch.setattr(kernel, "gpu_count", lambda: 1)
    kernel.run_steps({}, Path("/data"))
    assert calls[-1][:4] == [sys.executable, "-m", "chexvision", "train"]


def test_steps_run_in_order_with_placeholders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _load_kernel(tmp_path, _script())
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(kernel, "gpu_count", lambda: 1)
    monkeypatch.setattr(kernel, "run_step", lambda step, cmd, env=None: calls.append((step, list(map(str, cmd)))))
    kernel.run_steps({}, kernel.data_dir())
    assert [name for name, _ in calls] == ["data synth", "train"]
    assert calls[0][1] == [sys.executable, "-m", "pkg", "synth", "--out", str(kernel.SCRATCH / "data")]
    assert calls[1][1][-3:] == [str(kernel.WORKING), "--set", "optim.lr=0.1"]


def test_the_kernel_passes_provenance_to_the_job(tmp_path: Path) -> None:
    kernel = _load_kernel(tmp_path, _script(dataclasses.replace(SPEC, env={"EXTRA": "1"})))
    env = kernel.child_env(tmp_path / "src")
    assert env["DISPATCH_RUN_ID"] == RUN_ID and env["DISPATCH_GIT_SHA"] == "abc123"
    assert env["DISPATCH_BUNDLE_SHA256"] == BUNDLE.sha256 and env["EXTRA"] == "1"
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path / "src")


def test_the_job_status_file_decides_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = runs.build_job(
        runs.TrainRequest(model="densenet"), {"kind": "synthetic", "images": 4, "size": 64, "seed": 0}, RUN_ID
    )
    kernel = _load_kernel(tmp_path, _script(job))
    monkeypatch.setattr(kernel, "WORKING", tmp_path)
    with pytest.raises(kernel.StepFailed, match=r"train exited 0 but wrote no run\.json"):
        kernel.final_status()
    (tmp_path / "run.json").write_text(json.dumps({"status": "incomplete"}))
    assert "--resume-from " + RUN_ID in kernel.final_status()
    (tmp_path / "run.json").write_text(json.dumps({"status": "error"}))
    with pytest.raises(kernel.StepFailed, match="reported status 'error'"):
        kernel.final_status()
