"""The SkyPilot backend against a fake API server at the SDK boundary (tests/fakes/skypilot.py): the launch request
read off the real `sky.Task` our client built, every managed-job status, logs, cancel, fetch from the bucket, and
errors in one line. Everything above `sky.jobs.*` / `sky.get` / the storage command is our real code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.skypilot import FakeSky, import_sky
from typer.testing import CliRunner

from chexvision import remote
from chexvision.cli.main import app
from dispatch import runs
from dispatch.backends import get_backend
from dispatch.backends.skypilot import task as sky_task
from dispatch.backends.skypilot.status import SKYPILOT_STATUS_MAP
from dispatch.errors import BackendUnavailableError
from dispatch.job import OUTPUT, PYTHON, JobSpec, Outputs, Resources, Sources, Step
from dispatch.status import RunStatus

BUCKET = "s3://team-bucket/chexvision"
runner = CliRunner()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeSky:
    monkeypatch.setenv("DISPATCH_KERNEL_SKIP_PROBES", "1")
    return FakeSky(tmp_path / "bucket").install(monkeypatch)


def _job(tmp_path: Path, run_id: str, **resources: object) -> JobSpec:
    root = tmp_path / "src"
    (root / "jobpkg").mkdir(parents=True, exist_ok=True)
    (root / "jobpkg" / "__init__.py").write_text("")
    res = {"gpu": "H100:8", "output": BUCKET, **resources}
    return JobSpec(
        run_id=run_id,
        label="stub",
        sources=Sources(root=root, include=("jobpkg",)),
        steps=(Step("job", (PYTHON, "-m", "jobpkg", OUTPUT), distributed=True),),
        outputs=Outputs(required=("run.json",), status_file="run.json"),
        resources=Resources(**res),  # type: ignore[arg-type]
    )


def test_the_launch_request(fake: FakeSky, tmp_path: Path) -> None:
    job = _job(tmp_path, "sky-launch", nodes=2, spot=True, infra="gcp")
    done = runs.submit(job, tmp_path / "home", backend="skypilot")
    assert done.status == RunStatus.QUEUED and done.handle == f"managed job 1 -> {BUCKET}/sky-launch"
    (task, name) = fake.launched[0]
    assert name == "sky-launch" and task.name == "sky-launch" and task.num_nodes == 2
    (res,) = task.resources
    assert res.accelerators == {"H100": 8} and res.use_spot and str(res.cloud) == "GCP"
    assert res.job_recovery["max_restarts_on_errors"] == 0  # preemptions recover; a failing kernel is not rerun
    (mount, storage) = next(iter(task.storage_mounts.items()))
    assert mount == sky_task.MOUNT and storage.source == BUCKET and storage.mode.value == "MOUNT_CACHED"
    assert task.envs["DISPATCH_KERNEL_WORKING"] == f"{sky_task.MOUNT}/sky-launch"
    assert task.envs["DISPATCH_KERNEL_INPUT"] == sky_task.MOUNT
    for variable in ("SKYPILOT_NODE_RANK", "SKYPILOT_NODE_IPS", "SKYPILOT_NUM_GPUS_PER_NODE", "SKYPILOT_NUM_NODES"):
        assert variable in task.run
    assert "DISPATCH_KERNEL_INSTALL_ONLY=1" in task.setup
    assert (Path(task.workdir) / "train.py").is_file()  # the rendered kernel, synced as the workdir
    record = runs.get_run(tmp_path / "home", "sky-launch", refresh=False)
    assert record.handle == {"job_id": 1, "name": "sky-launch", "output": f"{BUCKET}/sky-launch"}


def test_a_plain_job_asks_for_on_demand_machines_anywhere(fake: FakeSky, tmp_path: Path) -> None:
    runs.submit(_job(tmp_path, "sky-plain", gpu=None), tmp_path / "home", backend="skypilot")
    (task, _), (res,) = fake.launched[0], fake.launched[0][0].resources
    assert task.num_nodes == 1 and res.accelerators == {"L4": 1} and not res.use_spot and res.cloud is None


def test_every_skypilot_status_is_mapped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ManagedJobStatus = import_sky(monkeypatch, tmp_path).jobs.ManagedJobStatus
    assert {s.name for s in ManagedJobStatus} <= set(SKYPILOT_STATUS_MAP)
    terminal = {s.name for s in ManagedJobStatus.terminal_statuses()}
    assert terminal == {name for name, ours in SKYPILOT_STATUS_MAP.items() if ours.is_terminal()} - {"SUBMITTED"}


@pytest.mark.parametrize(
    ("status", "ours", "reason"),
    [
        ("PENDING", RunStatus.QUEUED, None),
        ("DEPRECATED_SUBMITTED", RunStatus.QUEUED, None),
        ("STARTING", RunStatus.QUEUED, None),
        ("RUNNING", RunStatus.RUNNING, None),
        ("WINDING_DOWN", RunStatus.RUNNING, None),
        ("RECOVERING", RunStatus.RUNNING, "relaunching it"),
        ("CANCELLING", RunStatus.CANCELLING, None),
        ("SUCCEEDED", RunStatus.COMPLETE, None),
        ("CANCELLED", RunStatus.CANCELLED, None),
        ("FAILED", RunStatus.ERROR, "SkyPilot job FAILED: the kernel failed; see `chexvision logs sky-status`"),
        ("FAILED_SETUP", RunStatus.ERROR, "setup command failed"),
        ("FAILED_PRECHECKS", RunStatus.ERROR, "refused the task"),
        ("FAILED_NO_RESOURCE", RunStatus.ERROR, "no machine with these resources"),
        ("FAILED_CONTROLLER", RunStatus.ERROR, "jobs controller failed"),
    ],
)
def test_status(fake: FakeSky, tmp_path: Path, status: str, ours: RunStatus, reason: str | None) -> None:
    runs.submit(_job(tmp_path, "sky-status"), tmp_path / "home", backend="skypilot")
    fake.status = status
    record = runs.get_run(tmp_path / "home", "sky-status")
    assert record.status == ours
    if reason is None:
        assert record.failure_reason is None
    else:
        assert record.failure_reason is not None and reason in record.failure_reason


def test_skypilot_failure_reason_and_recoveries_are_kept(fake: FakeSky, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs.submit(_job(tmp_path, "sky-reason"), home, backend="skypilot")
    fake.status, fake.recovery_count = "RUNNING", 2
    assert runs.get_run(home, "sky-reason").failure_reason == "recovered from 2 preemptions"
    fake.status, fake.failure_reason = "FAILED", "run command exited 1"
    reason = runs.get_run(home, "sky-reason").failure_reason
    assert reason == "SkyPilot job FAILED: run command exited 1; see `chexvision logs sky-reason`"


def test_the_kernels_marker_gives_the_reason(fake: FakeSky, tmp_path: Path) -> None:
    """As on Kaggle: a failed kernel's own reason, and a run stopped at its time budget says how to continue."""
    home = tmp_path / "home"
    runs.submit(_job(tmp_path, "sky-marker"), home, backend="skypilot")
    marker = {"status": "complete", "reason": "stopped at the time budget; continue with --resume-from sky-marker"}
    fake.write_outputs(f"{BUCKET}/sky-marker", {"chexvision-status.json": json.dumps(marker).encode()})
    fake.status = "SUCCEEDED"
    assert runs.get_run(home, "sky-marker").failure_reason == marker["reason"]
    runs.submit(_job(tmp_path, "sky-failed"), home, backend="skypilot")
    marker = {"status": "error", "reason": "train failed with exit code 1: CUDA out of memory"}
    fake.write_outputs(f"{BUCKET}/sky-failed", {"chexvision-status.json": json.dumps(marker).encode()})
    fake.status = "FAILED"
    assert runs.get_run(home, "sky-failed").failure_reason == (
        "SkyPilot job FAILED: train failed with exit code 1: CUDA out of memory; see `chexvision logs sky-failed`"
    )


def test_logs_and_follow(fake: FakeSky, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs.submit(_job(tmp_path, "sky-logs"), home, backend="skypilot")
    fake.status = "RUNNING"
    assert runs.run_logs(home, "sky-logs") == fake.log_text
    chunks = []
    for chunk in runs.follow_logs(home, "sky-logs", sleep=lambda s: None):
        chunks.append(chunk)
        if len(chunks) == 1:  # the job writes more, then ends: follow yields the rest and stops
            fake.log_text += "epoch 2/2 ...\n"
            fake.status = "SUCCEEDED"
    assert len(chunks) == 2 and "".join(chunks) == fake.log_text


def test_cancel_converges(fake: FakeSky, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs.submit(_job(tmp_path, "sky-cancel"), home, backend="skypilot")
    fake.status = "RUNNING"
    assert runs.cancel_run(home, "sky-cancel").status == RunStatus.CANCELLED
    assert runs.cancel_run(home, "sky-cancel").status == RunStatus.CANCELLED
    assert fake.cancelled == [1]  # once: the second cancel finds it ended


def test_a_job_that_ended_before_the_cancel_keeps_its_status(fake: FakeSky, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs.submit(_job(tmp_path, "sky-late"), home, backend="skypilot")
    fake.status = "RUNNING"
    runs.get_run(home, "sky-late")
    fake.status = "SUCCEEDED"  # between the last poll and the cancel
    state = get_backend("skypilot", home).cancel(runs.get_run(home, "sky-late", refresh=False))
    assert state.status == RunStatus.COMPLETE and fake.cancelled == []


def test_fetch_syncs_the_output_folder_with_skypilots_command(fake: FakeSky, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs.submit(_job(tmp_path, "sky-fetch"), home, backend="skypilot")
    fake.finish({"run.json": b'{"status": "complete"}', "sub/history.json": b"{}"})
    assert runs.get_run(home, "sky-fetch").status == RunStatus.COMPLETE
    fetched = runs.fetch_outputs(home, "sky-fetch", tmp_path / "got")
    assert sorted(p.relative_to(fetched.run_dir).as_posix() for p in fetched.files) == ["run.json", "sub/history.json"]
    marker, sync = fake.commands  # the poll read the kernel's marker, fetch synced the folder: SkyPilot's commands
    assert f"s3 cp {BUCKET}/sky-fetch/chexvision-status.json " in marker
    assert f"s3 sync --no-follow-symlinks {BUCKET}/sky-fetch {tmp_path / 'got'}" in sync


def test_a_launch_error_is_one_line_and_recorded(fake: FakeSky, tmp_path: Path) -> None:
    from sky import exceptions

    fake.launch_error = exceptions.ResourcesUnavailableError(
        "Failed to acquire resources in all zones in gcp for {H100:8}.\nTo fix: relax its resource requirements."
    )
    home = tmp_path / "home"
    with pytest.raises(BackendUnavailableError) as info:
        runs.submit(_job(tmp_path, "sky-fail", infra="gcp"), home, backend="skypilot")
    line = info.value.one_line()
    assert "\n" not in line and info.value.exit_code == 3
    assert line.startswith("SkyPilot could not launch the managed job: Failed to acquire resources in all zones")
    record = runs.get_run(home, "sky-fail", refresh=False)
    assert record.status == RunStatus.ERROR and "Failed to acquire" in (record.failure_reason or "")


def test_cli_dispatch_status_logs_cancel(fake: FakeSky, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tiny = tmp_path / "tree"
    (tiny / "chexvision").mkdir(parents=True)
    (tiny / "chexvision" / "__init__.py").write_text("")
    monkeypatch.setattr(remote, "repo_root", lambda: tiny)
    args = ["dispatch", "train", "--model", "densenet", "--backend", "skypilot", "--gpu", "A100:4", "--nodes", "2"]
    out = runner.invoke(app, [*args, "--spot", "--output", BUCKET, "--json"])
    assert out.exit_code == 0, out.output
    run_id = json.loads(out.stdout)["run_id"]
    (task, _) = fake.launched[0]
    assert task.num_nodes == 2 and next(iter(task.resources)).accelerators == {"A100": 4}
    fake.status = "RECOVERING"
    status = json.loads(runner.invoke(app, ["status", run_id, "--json"]).stdout)
    assert status["status"] == "running" and "relaunching" in status["failure_reason"]
    assert runner.invoke(app, ["logs", run_id]).stdout == fake.log_text
    out = runner.invoke(app, ["cancel", run_id])
    assert out.exit_code == 0 and fake.cancelled == [1]


def test_cli_refuses_bad_storage_and_launch_failures_in_one_line(
    fake: FakeSky, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sky import exceptions

    tiny = tmp_path / "tree"
    (tiny / "chexvision").mkdir(parents=True)
    (tiny / "chexvision" / "__init__.py").write_text("")
    monkeypatch.setattr(remote, "repo_root", lambda: tiny)
    monkeypatch.delenv("DISPATCH_SKYPILOT_OUTPUT", raising=False)
    base = ["dispatch", "train", "--model", "densenet", "--backend", "skypilot"]
    out = runner.invoke(app, base)
    assert out.exit_code == 2 and "--output BUCKET_URL" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = runner.invoke(app, [*base, "--output", "/tmp/not-a-bucket"])
    assert out.exit_code == 2 and "is not a storage URL SkyPilot mounts" in out.stderr
    fake.launch_error = exceptions.ApiServerConnectionError("http://127.0.0.1:46580")
    out = runner.invoke(app, [*base, "--output", BUCKET])
    assert out.exit_code == 3 and "could not reach the SkyPilot API server" in out.stderr
    assert "Traceback" not in out.output and len(out.stderr.strip().splitlines()) == 1
