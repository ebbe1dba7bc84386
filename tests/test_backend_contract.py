"""The backend contract, parametrised over the backend registry: every backend renders, submits, polls to a
terminal state, shows logs, cancels and downloads the same way.

The job is generic (a stub package, not chexvision): dispatch must run any JobSpec. `local` runs it for real;
`kaggle` runs against the fake client at its HTTP boundary (the `fake_kaggle` fixture), which plays the remote
machine. A new backend joins by adding a harness below (and its fake, when it talks to a service).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kagglesdk.kernels.types.kernels_enums import KernelWorkerStatus

from dispatch import runs
from dispatch.backends import BACKENDS, Capabilities, backend_class, backend_names, get_backend, register_backend
from dispatch.errors import CapabilityError, UnknownBackendError
from dispatch.job import OUTPUT, PYTHON, DataSource, JobSpec, Outputs, Sources, Step
from dispatch.status import RunStatus

if TYPE_CHECKING:
    from fakes.kaggle import FakeKaggle

# `python -m jobpkg OUT [sleep]`: writes the two declared outputs and a status file (or sleeps first).
STUB = r"""
import json, os, sys, time
from pathlib import Path
out = Path(sys.argv[1])
print("stub job", os.environ.get("DISPATCH_RUN_ID"), flush=True)
if len(sys.argv) > 2:
    time.sleep(120)
out.mkdir(parents=True, exist_ok=True)
(out / "run.json").write_text(json.dumps({"status": "complete", "sha": os.environ.get("DISPATCH_BUNDLE_SHA256")}))
(out / "model.safetensors").write_bytes(b"weights")
"""
OUTPUTS = Outputs(required=("run.json", "model.safetensors"), status_file="run.json")


@dataclass
class Harness:
    """Plays the remote side of one backend: how a run is made to finish or to keep running."""

    name: str
    fake: Any = None

    def hold(self) -> tuple[str, ...]:
        """Extra argv that makes the stub job keep running."""
        if self.fake is not None:
            self.fake.status = KernelWorkerStatus.RUNNING
        return ("sleep",)

    def finish(self) -> None:
        if self.fake is not None:  # the remote machine completes the kernel
            self.fake.status = KernelWorkerStatus.COMPLETE
            self.fake.pages = [["run.json"], ["model.safetensors"]]


@dataclass
class SkyPilotHarness(Harness):
    """The fake SkyPilot API server (tests/fakes/skypilot.py) plays the managed job and its bucket."""

    def hold(self) -> tuple[str, ...]:
        self.fake.status = "RUNNING"
        return ("sleep",)

    def finish(self) -> None:
        self.fake.finish({"run.json": b'{"status": "complete"}', "model.safetensors": b"weights"})


@pytest.fixture(params=backend_names())
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setenv("DISPATCH_KERNEL_SKIP_PROBES", "1")
    name = request.param
    if name == "kaggle":
        fake: FakeKaggle = request.getfixturevalue("fake_kaggle")
        yield Harness(name, fake)
    elif name == "local":
        yield Harness(name)
    elif name == "skypilot":
        from fakes.skypilot import FakeSky

        monkeypatch.setenv("DISPATCH_SKYPILOT_OUTPUT", "s3://contract-bucket/runs")
        tmp = request.getfixturevalue("tmp_path")
        yield SkyPilotHarness(name, FakeSky(tmp / "bucket").install(monkeypatch))
    else:
        pytest.fail(f"backend {name!r} has no contract harness: add one to tests/test_backend_contract.py")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _job(tmp_path: Path, run_id: str, *extra: str) -> JobSpec:
    root = tmp_path / "src"
    (root / "jobpkg").mkdir(parents=True, exist_ok=True)
    (root / "jobpkg" / "__init__.py").write_text("")
    (root / "jobpkg" / "__main__.py").write_text(STUB)
    return JobSpec(
        run_id=run_id,
        label="stub",
        sources=Sources(root=root, include=("jobpkg",)),
        steps=(Step("job", (PYTHON, "-m", "jobpkg", OUTPUT, *extra)),),
        outputs=OUTPUTS,
        meta={"kind": "contract"},
    )


def _wait(home: Path, run_id: str, timeout: float = 30.0) -> runs.RunRecord:
    deadline = time.monotonic() + timeout
    record = runs.get_run(home, run_id)
    while not record.status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
        record = runs.get_run(home, run_id)
    return record


def test_capabilities_are_declared(harness: Harness) -> None:
    cls = backend_class(harness.name)
    assert cls.name == harness.name and isinstance(cls.capabilities, Capabilities)
    assert "prepared" in cls.capabilities.data_kinds  # every backend runs a job that prepares its own data
    with pytest.raises(AttributeError):
        cls.capabilities.max_active_runs = 99  # type: ignore[misc]  # frozen


def test_render_writes_a_runnable_script(harness: Harness, home: Path, tmp_path: Path) -> None:
    done = runs.submit(_job(tmp_path, "contract-render"), home, backend=harness.name, dry_run_out=tmp_path / "k")
    script = tmp_path / "k" / "train.py"
    ast.parse(script.read_text())
    assert done.status == RunStatus.SUBMITTING and done.script_size == script.stat().st_size
    assert done.source_limit is None or done.script_size < done.source_limit
    assert runs.list_runs(home, refresh=False) == []  # a dry run records nothing


def test_submit_poll_logs_download(harness: Harness, home: Path, tmp_path: Path) -> None:
    done = runs.submit(_job(tmp_path, "contract-run"), home, backend=harness.name)
    assert done.status in (RunStatus.QUEUED, RunStatus.RUNNING) and done.handle not in (None, "-")
    record = runs.get_run(home, done.run_id, refresh=False)
    assert json.loads(json.dumps(record.handle)) == record.handle and record.meta == {"kind": "contract"}
    assert runs.describe_handle(home, record) == done.handle
    harness.finish()
    record = _wait(home, done.run_id)
    assert record.status == RunStatus.COMPLETE, record.failure_reason
    assert runs.run_logs(home, done.run_id)  # some log text
    fetched = runs.fetch_outputs(home, done.run_id)
    assert {"run.json", "model.safetensors"} <= {p.name for p in fetched.files}
    assert runs.get_run(home, done.run_id).output_dir == str(fetched.run_dir.resolve())
    if harness.fake is None:  # a real run: the kernel passed the bundle's sha256 to the job (provenance)
        run_json = json.loads((fetched.run_dir / "run.json").read_text())
        assert run_json["sha"] == done.bundle_sha256 == runs.get_run(home, done.run_id).bundle_sha256
    again = runs.fetch_outputs(home, done.run_id)  # resumable and idempotent
    assert sorted(p.name for p in again.files) == sorted(p.name for p in fetched.files)


def test_cancel_converges(harness: Harness, home: Path, tmp_path: Path) -> None:
    job = _job(tmp_path, "contract-cancel", *harness.hold())
    runs.submit(job, home, backend=harness.name)
    assert not runs.get_run(home, job.run_id).status.is_terminal()
    assert runs.cancel_run(home, job.run_id).status == RunStatus.CANCELLED
    assert runs.cancel_run(home, job.run_id).status == RunStatus.CANCELLED  # twice: nothing more to do


def test_a_data_source_it_cannot_provide_is_refused(harness: Harness, home: Path, tmp_path: Path) -> None:
    job = _job(tmp_path, "contract-data")
    odd = dataclasses.replace(job, data=DataSource("carrier-pigeon", "coo"))
    with pytest.raises(CapabilityError, match="carrier-pigeon"):
        runs.submit(odd, home, backend=harness.name, dry_run_out=tmp_path / "k")


def test_registry_of_backends(home: Path) -> None:
    assert set(backend_names()) == set(BACKENDS) >= {"kaggle", "local"}
    with pytest.raises(ValueError, match="already registered"):
        register_backend("local", "dispatch.backends.local:LocalBackend")
    with pytest.raises(UnknownBackendError) as info:
        get_backend("moon", home)
    assert info.value.exit_code == 2 and "kaggle, local, skypilot" in info.value.one_line()


def test_default_backend_is_chosen_by_priority(monkeypatch: pytest.MonkeyPatch, fake_kaggle: FakeKaggle) -> None:
    assert runs.choose_backend() == ("kaggle", None)
    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").unlink()
    name, notice = runs.choose_backend()
    assert name == "local" and notice == (
        "no Kaggle credentials configured: running on the local backend (--backend kaggle to change)"
    )
