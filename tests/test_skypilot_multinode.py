"""A two-node SkyPilot run simulated on this machine: the task's own run command, started twice with SkyPilot's
node variables as SkyPilot sets them, runs the rendered kernel on each "node"; torchrun joins them over gloo. Only
node 0 writes; the validation metrics gathered over both nodes equal one process evaluating the same weights. And a
recovered attempt (a preempted managed job) continues from the checkpoint it finds in the output storage."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes.skypilot import import_sky

from chexvision import remote
from dispatch.backends import get_backend
from dispatch.backends.base import LaunchRequest
from dispatch.backends.skypilot.task import MOUNT
from dispatch.bundle import build_bundle
from dispatch.job import OUTPUT, PYTHON, JobSpec, Outputs, Resources, Sources, Step

BUCKET = "s3://team-bucket/chexvision"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _render(job: JobSpec, home: Path, folder: Path) -> Any:
    """The kernel folder and the task, through the real backend; returns the task as SkyPilot parses it."""
    import sky

    get_backend("skypilot", home).render(LaunchRequest(job=job, bundle=build_bundle(job.sources)), folder)
    return sky.Task.from_yaml(str(folder / "task.yaml"))


def _node_env(task: Any, mount: Path, rank: int, scratch: Path, port: int) -> dict[str, str]:
    """What SkyPilot gives the run command on node `rank` of 2 (one GPU each), the bucket mounted at `mount`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPILOT_", "DISPATCH_KERNEL_"))}
    env.update({k: v.replace(MOUNT, str(mount)) for k, v in task.envs.items()})  # the task's envs
    env.update(
        SKYPILOT_NODE_RANK=str(rank),
        SKYPILOT_NODE_IPS="127.0.0.1\n127.0.0.1",  # one address per line, the head node first
        SKYPILOT_NUM_NODES="2",
        SKYPILOT_NUM_GPUS_PER_NODE="1",
        DISPATCH_KERNEL_PYTHON=sys.executable,  # setup's interpreter: this one has the dependencies
        DISPATCH_KERNEL_SCRATCH=str(scratch),  # each node's own disk
        DISPATCH_KERNEL_MASTER_PORT=str(port),
        DISPATCH_KERNEL_SKIP_PROBES="1",
        OMP_NUM_THREADS="1",
        CI="1",
    )
    return env


@pytest.mark.slow  # two nodes start torch and train a tiny model one epoch: ~25 s of CPU
def test_two_nodes_train_as_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from chexvision.config import TrainConfig
    from chexvision.data.synthetic import write_synthetic
    from chexvision.engine.distributed import DistInfo
    from chexvision.engine.loss import CheXLoss, pos_weight_from_labels
    from chexvision.engine.train import Trainer, _make_loaders, validate
    from chexvision.models import build_from_config

    import_sky(monkeypatch, tmp_path / "sky-home")
    data = tmp_path / "data"
    write_synthetic(data, 160, 64, 31)
    overrides = (
        "device=cpu", "schedule.epochs=1", "data.workers=0", "data.batch_size=16", "cpu_threads=1",
        "model.kwargs.widths=[8, 16, 32, 64]",
    )  # fmt: skip
    request = remote.TrainRequest(
        model="seresnet", backend="skypilot", preset="smoke", overrides=overrides, gpu="T4:1", nodes=2, output=BUCKET
    )
    job = remote.build_job(request, {"kind": "dir", "path": str(data), "layout": "shards"}, "seresnet-2nodes")
    task = _render(job, tmp_path / "home", tmp_path / "kernel")
    assert task.num_nodes == 2

    mount, port = tmp_path / "mount", _free_port()
    nodes = [
        subprocess.Popen(
            ["bash", "-c", task.run],
            cwd=tmp_path / "kernel",  # SkyPilot runs `run` in the synced workdir
            env=_node_env(task, mount, rank, tmp_path / f"node{rank}", port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=240)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for rank, log in enumerate(logs):
        assert f"--nnodes 2 --node_rank {rank} --master_addr 127.0.0.1 --master_port {port} --nproc_per_node 1" in log

    out = mount / "seresnet-2nodes"  # the run's folder in the bucket
    marker = json.loads((out / "chexvision-status.json").read_text())
    assert marker["status"] == "complete" and marker["run_id"] == "seresnet-2nodes"
    run_log = (out / "train.log").read_text().splitlines()
    assert sum(" started" in line for line in run_log) == 1 and sum(" epoch " in line for line in run_log) == 1
    history = json.loads((out / "history.json").read_text())

    config = json.loads((out / "config.json").read_text())
    cfg = TrainConfig.from_dict(config)
    model = build_from_config(config["model"])
    model.load_state_dict(load_file(str(out / "model.safetensors")))
    loaders = _make_loaders(cfg, data, DistInfo())
    loss = CheXLoss(pos_weight_from_labels(loaders.train_labels, cfg.loss.pos_weight_cap))
    single = validate(Trainer(cfg, DistInfo(), model, loss, None, 1), loaders)
    ddp = history["epochs"][history["best_epoch"] - 1]
    assert single["count"] == loaders.counts["val"]
    assert single["macro_auc"] == pytest.approx(ddp["val_macro_auc"], abs=1e-6)
    assert single["val_loss"] == pytest.approx(ddp["val_loss"], rel=1e-5)


# `python -m jobpkg OUT [--resume]`: prints its arguments and leaves a run.json.
STUB = r"""
import json, sys
from pathlib import Path
print("argv", sys.argv[1:], flush=True)
Path(sys.argv[1], "run.json").write_text(json.dumps({"status": "complete"}))
"""


def _stub_job(tmp_path: Path, parent: str | None = None) -> JobSpec:
    root = tmp_path / "src"
    (root / "jobpkg").mkdir(parents=True, exist_ok=True)
    (root / "jobpkg" / "__init__.py").write_text("")
    (root / "jobpkg" / "__main__.py").write_text(STUB)
    step = Step("train", (PYTHON, "-m", "jobpkg", OUTPUT), resume_if=("config.json",), resume_argv=("--resume",))
    return JobSpec(
        run_id="stub-recover",
        label="stub",
        sources=Sources(root=root, include=("jobpkg",)),
        steps=(step,),
        outputs=Outputs(required=("run.json",), status_file="run.json"),
        resources=Resources(gpu="H100:1", spot=True, output=BUCKET),
    )


def _attempt(task: Any, kernel: Path, mount: Path, tmp_path: Path) -> str:
    env = _node_env(task, mount, 0, tmp_path / "scratch", _free_port())
    env.update(SKYPILOT_NUM_NODES="1", SKYPILOT_NODE_IPS="127.0.0.1")
    proc = subprocess.run(["bash", "-c", task.run], cwd=kernel, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_a_recovered_attempt_continues_from_the_output_storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import_sky(monkeypatch, tmp_path / "sky-home")
    task = _render(_stub_job(tmp_path), tmp_path / "home", tmp_path / "kernel")
    mount = tmp_path / "mount"
    first = _attempt(task, tmp_path / "kernel", mount, tmp_path)
    assert "argv ['" in first and "--resume" not in first  # a fresh start
    # Preempted after its first epoch: the bucket keeps the attempt's files; SkyPilot reruns the same task.
    (mount / "stub-recover" / "config.json").write_text("{}")
    second = _attempt(task, tmp_path / "kernel", mount, tmp_path)
    assert "config.json found in the output folder: continuing the earlier attempt" in second
    assert "'--resume']" in second
    assert json.loads((mount / "stub-recover" / "chexvision-status.json").read_text())["status"] == "complete"


def test_only_node_0_writes_to_the_output_storage(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import_sky(monkeypatch, tmp_path / "sky-home")
    task = _render(_stub_job(tmp_path), tmp_path / "home", tmp_path / "kernel")
    env = _node_env(task, tmp_path / "mount", 1, tmp_path / "scratch", _free_port())
    (tmp_path / "mount" / "stub-recover").mkdir(parents=True)
    proc = subprocess.run(["bash", "-c", task.run], cwd=tmp_path / "kernel", env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "argv" in proc.stdout  # node 1 ran the step (the stub writes its run.json)
    assert not (tmp_path / "mount" / "stub-recover" / "chexvision-status.json").exists()  # the kernel wrote nothing


def test_setup_installs_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`setup` runs the kernel in install-only mode: no step runs, no marker is written."""
    import_sky(monkeypatch, tmp_path / "sky-home")
    task = _render(_stub_job(tmp_path), tmp_path / "home", tmp_path / "kernel")
    env = {**os.environ, "DISPATCH_KERNEL_INSTALL_ONLY": "1", "DISPATCH_KERNEL_SKIP_INSTALL": "1"}
    env["DISPATCH_KERNEL_WORKING"] = str(tmp_path / "mount" / "stub-recover")
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=tmp_path / "kernel", env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "install: skipped" in proc.stdout and "argv" not in proc.stdout
    assert not (tmp_path / "mount").exists()
    assert 'DISPATCH_KERNEL_INSTALL_ONLY=1 "$HOME/.dispatch-venv/bin/python" train.py' in task.setup
