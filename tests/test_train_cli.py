"""`chexvision train`: the run directory it writes (DESIGN §4), and the errors users see."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.data.synthetic import write_synthetic
from chexvision.labels import LABELS

runner = CliRunner()
FAST = ["--preset", "smoke", "--set", "data.workers=0", "--set", "data.batch_size=32", "--set", "cpu_threads=1"]
TINY_SE = ["--set", "model.kwargs.widths=[8, 16, 32, 64]"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, 200, 64, 11)
    return out


@pytest.fixture(scope="module")
def run_dir(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["train", "--model", "seresnet", "--data", str(synth), "--out", str(out), *FAST, *TINY_SE,
            "--set", "schedule.epochs=2", "--run-id", "seresnet-test-0001", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "complete" and summary["run_id"] == "seresnet-test-0001"
    return out


def test_run_directory_has_every_design_file(run_dir: Path) -> None:
    names = {p.name for p in run_dir.iterdir()}
    assert {"run.json", "config.json", "history.json", "metrics.json", "model.safetensors", "last.ckpt",
            "train.log"} <= names  # fmt: skip
    assert not [n for n in names if n.endswith(".tmp")]


def test_run_json(run_dir: Path) -> None:
    run = json.loads((run_dir / "run.json").read_text())
    assert run["run_id"] == "seresnet-test-0001" and run["model"] == "seresnet" and run["preset"] == "smoke"
    assert run["status"] == "complete" and run["started_at"] and run["finished_at"]
    assert {"git_sha", "bundle_sha256"} <= set(run)
    assert run["dataset"]["source"] == "synthetic" and run["dataset"]["split_scheme"] == "patient"
    assert run["dataset"]["clahe"] is False  # synthetic images get no CLAHE: prediction must not add it
    assert sum(run["dataset"]["counts"].values()) == 200
    assert {"python", "torch", "cuda", "gpus"} <= set(run["env"]) and isinstance(run["env"]["gpus"], list)


def test_history_metrics_and_log(run_dir: Path) -> None:
    history = json.loads((run_dir / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    keys = {"epoch", "phase", "lr", "train_loss", "val_loss", "val_macro_auc", "val_binary_auc", "val_binary_f1",
            "val_per_class_auc", "seconds", "images_per_second"}  # fmt: skip
    assert all(set(e) == keys for e in history["epochs"])
    assert list(history["epochs"][0]["val_per_class_auc"]) == list(LABELS)
    best = history["epochs"][history["best_epoch"] - 1]
    assert history["best_val_macro_auc"] == best["val_macro_auc"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split_scheme"] == "patient"
    assert metrics["val"]["epoch"] == history["best_epoch"] and metrics["val"]["macro_auc"] == best["val_macro_auc"]
    assert {"binary_auc", "binary_f1", "per_class_auc"} <= set(metrics["val"])
    epoch_lines = [line for line in (run_dir / "train.log").read_text().splitlines() if " epoch " in line]
    assert len(epoch_lines) == 2 and "val_macro_auc" in epoch_lines[0]


def test_config_json_rebuilds_the_best_model(run_dir: Path) -> None:
    import torch

    from chexvision.models import build_from_config

    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["name"] == "seresnet" and config["model"]["kwargs"]["widths"] == [8, 16, 32, 64]
    assert (config["data"]["size"], config["data"]["mean"], config["data"]["std"]) == (64, 0.449, 0.226)
    assert config["data"]["split_scheme"] == "patient"  # resolved from dataset.json
    model = build_from_config(config["model"])
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    multi, binary = model.eval()(torch.zeros(2, 1, 64, 64))
    assert multi.shape == (2, 14) and binary.shape == (2,)


def test_existing_run_needs_resume(run_dir: Path, synth: Path) -> None:
    before = (run_dir / "history.json").read_text()
    result = runner.invoke(app, ["train", "--model", "seresnet", "--data", str(synth), "--out", str(run_dir), *FAST])
    assert result.exit_code == 2
    assert "already holds a run" in result.output and "--resume" in result.output
    assert (run_dir / "history.json").read_text() == before


def test_resume_of_a_finished_run_is_a_no_op_and_checks_the_model(run_dir: Path, synth: Path) -> None:
    base = ["train", "--data", str(synth), "--out", str(run_dir), *FAST, "--resume"]
    wrong = runner.invoke(app, [*base, "--model", "densenet"])
    assert wrong.exit_code == 2 and "--model seresnet" in wrong.output
    same = runner.invoke(app, [*base, "--model", "seresnet", "--json"])
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout.strip().splitlines()[-1])["stop_reason"] == "already_complete"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"


def test_resume_with_a_new_run_id_records_the_parent(run_dir: Path, synth: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "restored"  # the parent's output, restored where the continued run writes
    shutil.copytree(run_dir, copy)
    args = ["train", "--model", "seresnet", "--data", str(synth), "--out", str(copy), *FAST, "--resume",
            "--run-id", "seresnet-child-0002", "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["run_id"] == "seresnet-child-0002"
    run = json.loads((copy / "run.json").read_text())
    assert (run["run_id"], run["parent_run_id"], run["status"]) == ("seresnet-child-0002", "seresnet-test-0001",
                                                                    "complete")  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "optim.lrr=1"], "optim.lr"),
        (["--set", "optim.lr=fast"], "optim.lr"),
        (["--preset", "tiny"], "smoke"),
        (["--weights", "/nonexistent/w.pth"], "not found"),
    ],
)
def test_bad_input_exits_2_with_a_hint(synth: Path, tmp_path: Path, extra: list[str], needle: str) -> None:
    args = ["train", "--model", "densenet", "--data", str(synth), "--out", str(tmp_path / "r"), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and needle in result.output
    assert not (tmp_path / "r").exists()


def test_cli_module_does_not_import_torch() -> None:
    code = "import sys, chexvision.cli.train; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_time_budget_marks_incomplete_then_resume_completes(synth: Path, tmp_path: Path) -> None:
    base = ["train", "--model", "seresnet", "--data", str(synth), "--out", str(tmp_path / "r"), *FAST, *TINY_SE,
            "--set", "schedule.epochs=2", "--json"]  # fmt: skip
    first = runner.invoke(app, [*base, "--time-budget", "0.000001"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout.strip().splitlines()[-1])["status"] == "incomplete"
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "incomplete"
    second = runner.invoke(app, [*base, "--resume"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout.strip().splitlines()[-1])["epochs"] == 2


def test_failed_run_exits_1(synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chexvision.engine import train as train_mod
    from chexvision.errors import RunFailedError

    def diverge(*args: object, **kwargs: object) -> None:
        raise RunFailedError("training diverged: non-finite loss (nan) at epoch 1, step 1", "lower the lr")

    monkeypatch.setattr(train_mod, "train_one_epoch", diverge)
    args = ["train", "--model", "seresnet", "--data", str(synth), "--out", str(tmp_path / "r"), *FAST, *TINY_SE]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "error: training diverged" in result.output
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "error"


@pytest.fixture(scope="module")
def corrupt_synth(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic set plus a shard of undecodable images (ten patients: some land in train and val)."""
    import shutil

    from chexvision.data.shards import ShardRow, write_shard

    out = tmp_path_factory.mktemp("corrupt")
    shutil.copytree(synth, out, dirs_exist_ok=True)
    rows = [ShardRow(f"9009999{i}_000.png", "Mass", b"not an image") for i in range(10)]
    write_shard(out / "data" / "zz-bad.parquet", rows)
    return out


def test_corrupt_image_is_skipped_and_counted(corrupt_synth: Path, tmp_path: Path) -> None:
    args = ["train", "--model", "seresnet", "--data", str(corrupt_synth), "--out", str(tmp_path / "r"), *FAST,
            *TINY_SE, "--set", "schedule.epochs=1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"skipped [1-9]\d* unreadable images", (tmp_path / "r" / "train.log").read_text())


def test_corrupt_image_with_strict_is_exit_2_naming_shard_and_row(corrupt_synth: Path, tmp_path: Path) -> None:
    args = ["train", "--model", "seresnet", "--data", str(corrupt_synth), "--out", str(tmp_path / "r"), *FAST,
            *TINY_SE, "--set", "schedule.epochs=1", "--strict"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert re.search(r"zz-bad\.parquet row \d \(9009999\d_000\.png\)", result.output)
