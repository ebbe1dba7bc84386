"""The local backend end to end with a stub `chexvision` package (fast, no torch): dispatch -> status -> logs ->
fetch -> verify, plus cancel, a vanished process and a failing kernel."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chexvision import remote as runs
from chexvision.cli.main import app
from dispatch.registry import Registry
from dispatch.status import RunStatus

# A stand-in for `python -m chexvision`: `data synth` makes a folder, `train` writes a valid run directory.
# CHEXVISION_STUB_MODE in the environment selects a failure or a long sleep.
STUB_MAIN = r"""
import json, os, struct, sys, time
from pathlib import Path
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
mode = os.environ.get("CHEXVISION_STUB_MODE", "ok")
if args[:2] == ["data", "synth"]:
    Path(opt("--out")).mkdir(parents=True, exist_ok=True)
    print("synth done")
    sys.exit(0)
if args[0] == "train":
    print("training", " ".join(args), flush=True)
    if mode == "fail":
        print("loss is NaN", flush=True)
        sys.exit(3)
    if mode == "sleep":
        time.sleep(120)
    out = Path(opt("--out"))
    out.mkdir(parents=True, exist_ok=True)
    if mode == "env":  # what the kernel's step was given
        (out / "env.json").write_text(json.dumps(dict(os.environ)))
    for name, data in {"run.json": {"run_id": opt("--run-id"), "status": "complete", "resumed": "--resume" in args},
                       "config.json": {"model": {"name": opt("--model"), "kwargs": {}}},
                       "history.json": {"epochs": [], "best_epoch": 1, "best_val_macro_auc": 0.93},
                       "metrics.json": {"val": {"macro_auc": 0.93}}}.items():
        (out / name).write_text(json.dumps(data))
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (out / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    (out / "last.ckpt").write_bytes(b"ckpt")
    (out / "train.log").write_text("ok\n")
    sys.exit(0)
sys.exit(f"stub: unknown command {args}")
"""


@pytest.fixture(autouse=True)
def _no_torch_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_KERNEL_SKIP_PROBES", "1")


@pytest.fixture
def stub_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "src"
    pkg = root / "chexvision"
    (pkg / "data" / "resources").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(STUB_MAIN)
    (pkg / "data" / "resources" / "official_test.txt.gz").write_bytes(b"x")
    monkeypatch.setattr(runs, "repo_root", lambda: root)
    return root


def _wait_terminal(run_id: str, timeout: float = 30.0) -> runs.RunRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = runs.get_run(run_id)
        if record.status.is_terminal():
            return record
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end: {record.status}")


def test_local_run_dispatch_status_logs_fetch(stub_tree: Path, tmp_path: Path) -> None:
    result = runs.dispatch_train(runs.TrainRequest(model="densenet", backend="local", preset=None))
    assert result.status == RunStatus.RUNNING
    record = _wait_terminal(result.run_id)
    assert record.status == RunStatus.COMPLETE, record.failure_reason
    assert runs.best_val_auc(record) == pytest.approx(0.93)
    log = runs.run_logs(result.run_id)
    assert "training train --model densenet" in log and "--run-id " + result.run_id in log
    fetched = runs.fetch_run(result.run_id)
    assert fetched.run_dir == Path(os.environ["CHEXVISION_HOME"]) / "runs" / result.run_id
    assert (fetched.run_dir / "model.safetensors").is_file()
    assert json.loads((fetched.run_dir / "chexvision-status.json").read_text())["status"] == "complete"
    with Registry.at(runs.home()) as reg:
        assert reg.get(result.run_id).output_dir == str(fetched.run_dir.resolve())
    again = runs.fetch_run(result.run_id)  # idempotent
    assert sorted(again.files) == sorted(fetched.files)


def test_resume_links_parent_and_passes_resume(stub_tree: Path) -> None:
    parent = runs.dispatch_train(runs.TrainRequest(model="seresnet", backend="local"))
    _wait_terminal(parent.run_id)
    child = runs.dispatch_train(runs.TrainRequest(model="seresnet", backend="local", resume_from=parent.run_id))
    record = _wait_terminal(child.run_id)
    assert record.status == RunStatus.COMPLETE, record.failure_reason
    assert record.parent_run_id == parent.run_id
    assert "--resume" in record.command
    run_json = Path(record.handle["dir"]) / "working" / "run.json"
    assert json.loads(run_json.read_text())["resumed"] is True


def test_failing_kernel_leaves_reason(stub_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEXVISION_STUB_MODE", "fail")
    result = runs.dispatch_train(runs.TrainRequest(model="densenet", backend="local"))
    record = _wait_terminal(result.run_id)
    assert record.status == RunStatus.ERROR
    assert "train failed with exit code 3" in (record.failure_reason or "")
    assert "loss is NaN" in (record.failure_reason or "")
    out = CliRunner().invoke(app, ["status", result.run_id, "--json"])
    assert out.exit_code == 1
    assert json.loads(out.stdout)["failure_reason"] == record.failure_reason
    fetched = CliRunner().invoke(app, ["fetch", "--run", result.run_id])
    assert fetched.exit_code == 1 and "ended error" in fetched.stderr


def test_the_kernel_gets_no_token_of_this_environment(stub_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10, defect 1: the local kernel sees only what it needs, as a Kaggle kernel does — never a credential."""
    token, key = "hf_" + "Zq7Xw2Lm9Pv4Rt6Yb8Nc1Kd3Fg5Hj0Ls2Ua", "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"
    planted = {
        "HF_TOKEN": token,
        "HUGGING_FACE_HUB_TOKEN": token,
        "KAGGLE_USERNAME": "alice",
        "KAGGLE_KEY": key,
        "AWS_SECRET_ACCESS_KEY": "abc/def",
        "CHEXVISION_HF_TOKEN": token,  # an allowed prefix does not let a token through
        "CHEXVISION_NOTE": f"see {token}",  # nor does a harmless name with a token for a value
        "HTTPS_PROXY": "http://bob:hunter2@proxy:3128",
        "CHEXVISION_STUB_MODE": "env",
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)
    result = runs.dispatch_train(runs.TrainRequest(model="densenet", backend="local"))
    record = _wait_terminal(result.run_id)
    assert record.status == RunStatus.COMPLETE, record.failure_reason
    env = json.loads((Path(record.handle["dir"]) / "working" / "env.json").read_text())
    assert not (set(planted) - {"CHEXVISION_STUB_MODE"}) & set(env), sorted(env)
    assert not any(secret in value for value in env.values() for secret in (token, key, "hunter2"))
    assert env["HF_HUB_DISABLE_IMPLICIT_TOKEN"] == "1"  # a token saved under HF_HOME is not picked up either
    assert env["PATH"] == os.environ["PATH"] and env["CHEXVISION_STUB_MODE"] == "env"  # what it needs is there
    assert env["DISPATCH_RUN_ID"] == result.run_id


def test_cancel_terminates_process_group(stub_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEXVISION_STUB_MODE", "sleep")
    result = runs.dispatch_train(runs.TrainRequest(model="densenet", backend="local"))
    record = runs.get_run(result.run_id)
    pid, pid_start = record.handle["pid"], record.handle["pid_start"]
    assert record.status == RunStatus.RUNNING and pid
    marker_path = Path(record.handle["dir"]) / "working" / "chexvision-status.json"
    deadline = time.monotonic() + 30  # the kernel installs its SIGTERM handler, then writes "running"
    while time.monotonic() < deadline and not marker_path.is_file():
        time.sleep(0.1)
    assert json.loads(marker_path.read_text())["status"] == "running"
    out = CliRunner().invoke(app, ["cancel", result.run_id])
    assert out.exit_code == 0, out.output
    assert runs.get_run(result.run_id).status == RunStatus.CANCELLED
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and runs_process_alive(pid, pid_start):
        time.sleep(0.1)
    assert not runs_process_alive(pid, pid_start)
    assert CliRunner().invoke(app, ["status", result.run_id]).exit_code == 1
    marker = json.loads(marker_path.read_text())
    assert marker["status"] == "error" and "SIGTERM" in marker["reason"]  # the kernel said why it stopped


def runs_process_alive(pid: int | None, start: str | None) -> bool:
    from dispatch.backends.local import process_alive

    return process_alive(pid, start)


def test_vanished_process_reads_error(stub_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHEXVISION_STUB_MODE", "sleep")
    result = runs.dispatch_train(runs.TrainRequest(model="densenet", backend="local"))
    record = runs.get_run(result.run_id)
    assert record.handle["pid"]
    os.killpg(record.handle["pid"], signal.SIGKILL)  # killed from outside: no marker written
    record = _wait_terminal(result.run_id)
    assert record.status == RunStatus.ERROR
    assert "exited without a final status marker" in (record.failure_reason or "")


def test_local_process_outlives_the_cli(stub_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatch from a separate CLI process that exits at once; the run still completes."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    code = (
        "import sys, chexvision.remote as r; from pathlib import Path; r.repo_root = lambda: Path(sys.argv[1]);"
        "from chexvision.cli.main import app; app(['dispatch', 'train', '--model', 'densenet', '--backend', 'local'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(stub_tree)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip().splitlines()[-1]
    assert _wait_terminal(run_id).status == RunStatus.COMPLETE


def test_wait_and_follow(stub_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = CliRunner().invoke(
        app, ["dispatch", "train", "--model", "densenet", "--backend", "local", "--wait", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["status"] == "complete" and data["bundle_size"] > 0
    follow = CliRunner().invoke(app, ["logs", data["run_id"], "--follow"])
    assert follow.exit_code == 0 and "[chexvision" in follow.stdout and "complete" in follow.stdout
    monkeypatch.setenv("CHEXVISION_STUB_MODE", "fail")
    failed = CliRunner().invoke(app, ["dispatch", "train", "--model", "densenet", "--backend", "local", "--wait"])
    assert failed.exit_code == 1
