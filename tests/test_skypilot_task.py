"""The SkyPilot task as SkyPilot's own schema and parser read it (`--dry-run` writes it), the optional extra, the
cloud options refused where they cannot work, Kaggle's other accelerators, and credentials kept out of the bundle."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from fakes.skypilot import import_sky
from typer.testing import CliRunner

from chexvision import remote
from chexvision.cli.main import app
from dispatch.backends.skypilot import backend as sky_backend

runner = CliRunner()
DRY = ["dispatch", "train", "--model", "densenet", "--dry-run"]


@pytest.fixture
def sky(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return import_sky(monkeypatch, tmp_path / "sky-home")


def _tiny_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    tiny = tmp_path / "tree"
    (tiny / "chexvision").mkdir(parents=True)
    (tiny / "chexvision" / "__init__.py").write_text("")
    monkeypatch.setattr(remote, "repo_root", lambda: tiny)
    return tiny


def test_dry_run_writes_a_task_skypilot_accepts(sky: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real chexvision tree, 8 x H100 on two spot nodes on AWS, outputs to a bucket: nothing launched."""
    from sky.utils import common_utils, schemas, yaml_utils

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # stays with the CLI
    out = tmp_path / "kernel"
    args = ["--backend", "skypilot", "--gpu", "H100:8", "--nodes", "2", "--infra", "aws", "--spot"]
    result = runner.invoke(app, [*DRY, *args, "--output", "s3://team-bucket/chexvision", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    assert sorted(p.name for p in out.iterdir()) == ["task.yaml", "train.py"]
    ast.parse((out / "train.py").read_text())

    config = yaml_utils.read_yaml(str(out / "task.yaml"))
    common_utils.validate_schema(config, schemas.get_task_schema(), "Invalid task YAML: ")  # SkyPilot's schema
    task = sky.Task.from_yaml(str(out / "task.yaml"))  # and its parser, as `sky jobs launch task.yaml` reads it
    assert task.name == run_id and task.num_nodes == 2 and task.workdir == str(out)
    (res,) = task.resources
    assert res.accelerators == {"H100": 8} and res.use_spot and str(res.cloud) == "AWS"
    storage = task.storage_mounts["/chexvision-output"]
    assert storage.source == "s3://team-bucket/chexvision" and storage.mode.value == "MOUNT_CACHED"
    assert task.envs["DISPATCH_KERNEL_WORKING"] == f"/chexvision-output/{run_id}"
    for text in ((out / "task.yaml").read_text(), (out / "train.py").read_text()):
        assert "wJalrXUtnFEMI" not in text and "AWS_SECRET" not in text  # credentials stay with SkyPilot
    assert runner.invoke(app, ["status", run_id]).exit_code == 2  # a dry run registers nothing


def test_the_kernel_installs_the_cloud_stack_only_on_skypilot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cloud image lacks torch and the rest; Kaggle's image has them (its requirement list is unchanged)."""
    sky_job = remote.build_job(remote.TrainRequest(model="densenet", backend="skypilot"), {"kind": "synthetic",
                               "images": 8, "size": 64, "seed": 0}, "r1")  # fmt: skip
    kaggle_job = remote.build_job(remote.TrainRequest(model="densenet", backend="kaggle"), {"kind": "synthetic",
                                  "images": 8, "size": 64, "seed": 0}, "r2")  # fmt: skip
    assert {"torch", "torchvision", "pyarrow"} <= {r.distribution for r in sky_job.requirements}
    assert [r.distribution for r in kaggle_job.requirements] == [r[0] for r in remote.REQUIREMENTS]
    assert sky_job.main.resume_if == ("config.json",) and sky_job.main.resume_argv == ("--resume",)


def test_without_skypilot_the_backend_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _tiny_tree(monkeypatch, tmp_path)
    monkeypatch.setattr(sky_backend, "sdk_installed", lambda: False)
    out = runner.invoke(app, [*DRY, "--backend", "skypilot", "--output", "s3://b/x", "--out", str(tmp_path / "k")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    (line,) = out.stderr.strip().splitlines()
    assert "needs SkyPilot, which is not installed" in line and "pip install 'chexvision[skypilot]'" in line
    assert not (tmp_path / "k").exists()  # refused before anything is written
    assert sky_backend.SkyPilotBackend.unavailable_reason() == (
        "SkyPilot is not installed (pip install 'chexvision[skypilot]')"
    )


def test_infra_is_checked_by_skypilots_schema_before_anything_is_written(
    sky: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _tiny_tree(monkeypatch, tmp_path)
    args = ["--backend", "skypilot", "--infra", "mars", "--output", "s3://b/x", "--out", str(tmp_path / "k")]
    out = runner.invoke(app, [*DRY, *args])
    assert out.exit_code == 2 and "Traceback" not in out.output
    (line,) = out.stderr.strip().splitlines()
    assert "SkyPilot refused the resources: Invalid resources YAML: 'mars' does not match" in line
    assert not (tmp_path / "k").exists()
    args[3] = "slurm/hpc-a"  # a Slurm cluster SkyPilot knows by name (0.12+)
    assert runner.invoke(app, [*DRY, *args]).exit_code == 0


def test_an_unknown_accelerator_lists_skypilots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _tiny_tree(monkeypatch, tmp_path)
    out = runner.invoke(app, [*DRY, "--backend", "skypilot", "--gpu", "H100x8", "--out", str(tmp_path / "k")])
    assert out.exit_code == 2 and "unknown GPU 'H100x8'" in out.stderr and "H100:8" in out.stderr


@pytest.mark.parametrize(
    ("backend", "flags", "message"),
    [
        ("local", ["--spot"], "--spot: the local backend runs on this machine"),
        ("local", ["--output", "s3://b/x"], "--output: the local backend runs on this machine"),
        ("kaggle", ["--nodes", "2"], "--nodes: a Kaggle kernel is one machine"),
        ("kaggle", ["--infra", "gcp", "--output", "s3://b/x"], "--infra, --output: a Kaggle kernel is one machine"),
        ("skypilot", ["--nodes", "0", "--output", "s3://b/x"], "--nodes 0 is not a number of machines"),
    ],
)
def test_cloud_options_are_refused_where_they_cannot_work(
    fake_kaggle: Any, tmp_path: Path, backend: str, flags: list[str], message: str
) -> None:
    out = runner.invoke(app, [*DRY, "--backend", backend, *flags, "--out", str(tmp_path / "k")])
    assert out.exit_code == 2 and message in out.stderr, out.output


def test_kaggle_l4(fake_kaggle: Any, tmp_path: Path) -> None:
    out = runner.invoke(app, [*DRY, "--backend", "kaggle", "--gpu", "l4", "--out", str(tmp_path / "k")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "k" / "kernel-metadata.json").read_text())["machine_shape"] == "NvidiaL4"


@pytest.mark.parametrize(("gpu", "why"), [("p100", "sm_60"), ("tpu", "XLA")])
def test_kaggle_accelerators_the_kernel_cannot_use_are_refused(
    fake_kaggle: Any, tmp_path: Path, gpu: str, why: str
) -> None:
    out = runner.invoke(app, [*DRY, "--backend", "kaggle", "--gpu", gpu, "--out", str(tmp_path / "k")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    (line,) = out.stderr.strip().splitlines()
    assert f"--gpu {gpu}:" in line and why in line and "use --gpu t4x2 or l4" in line
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("sky-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"),  # SkyPilot's SSH key
        ("gcp-sa.json", json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE"})),
    ],
)
def test_cloud_credentials_in_the_tree_stop_the_bundle(
    sky: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, body: str
) -> None:
    tiny = _tiny_tree(monkeypatch, tmp_path)
    (tiny / "chexvision" / name).write_text(body)
    out = runner.invoke(app, [*DRY, "--backend", "skypilot", "--output", "s3://b/x", "--out", str(tmp_path / "k")])
    assert out.exit_code == 2 and f"refusing to bundle chexvision/{name}" in out.stderr and "private key" in out.stderr
