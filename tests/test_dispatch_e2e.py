"""The real kernel, end to end: the local backend runs `data synth` and `chexvision train` (smoke preset),
then fetch downloads and verifies the run directory. Plus: templates render from a built wheel."""

from __future__ import annotations

import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chexvision import remote as runs
from chexvision.cli.main import app
from chexvision.rundir import verify_run_dir
from dispatch.status import RunStatus

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_local_smoke_run_fetches_a_valid_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_KERNEL_SKIP_PROBES", "1")
    out = CliRunner().invoke(
        app,
        [
            "dispatch",
            "train",
            "--model",
            "densenet",
            "--backend",
            "local",
            "--preset",
            "smoke",
            "--data",
            "synthetic:160:64",
            "--set",
            "schedule.epochs=1",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    run_id = __import__("json").loads(out.stdout)["run_id"]
    deadline = time.monotonic() + 240
    record = runs.get_run(run_id)
    while not record.status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
        record = runs.get_run(run_id)
    assert record.status == RunStatus.COMPLETE, f"{record.failure_reason}\n{runs.run_logs(run_id)[-3000:]}"
    fetched = CliRunner().invoke(app, ["fetch", "--run", run_id, "--no-publish"])
    assert fetched.exit_code == 0, fetched.output
    run_dir = Path(fetched.stdout.strip().splitlines()[-1])
    assert verify_run_dir(run_dir) == []  # last.ckpt and train.log present too
    assert runs.get_run(run_id).output_dir == str(run_dir.resolve())


@pytest.mark.slow
def test_templates_render_from_a_built_wheel(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")  # in the dev extra; skipped only outside it
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = (tmp_path / "dist").glob("chexvision-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"dispatch/kernels/train.py.j2", "dispatch/kernels/kernel-metadata.json.j2"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import dispatch.render as r; from pathlib import Path;"
        "assert Path(r.__file__).is_relative_to(sys.argv[1]), r.__file__;"
        "assert r.templates_dir() == Path(sys.argv[1]).resolve() / 'dispatch' / 'kernels', r.templates_dir();"
        "from dispatch.job import JobSpec, Sources, Step; from dispatch.bundle import Bundle;"
        "j = JobSpec('densenet-x', 'densenet', Sources(Path('.'), ()), (Step('train', ('{python}', '-V')),));"
        "assert 'densenet-x' in r.render_script(r.script_variables(j, Bundle(b'z', '0', ()), git_sha=None));"
        "from dispatch.backends.kaggle.metadata import MetadataSpec, render_metadata;"
        "m = MetadataSpec(kernel_id='a/chexvision-x', title='chexvision x', machine_shape='NvidiaTeslaT4');"
        "assert render_metadata(m)['is_private'] is True; print('ok')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(site)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
