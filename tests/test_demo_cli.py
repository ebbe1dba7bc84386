"""`chexvision demo` (checks, then Streamlit) and `chexvision demo export` (the Space folder), and space.yml.

The server itself runs in tests/test_demo_browser.py; here `subprocess.Popen`, the one call that would start it,
is replaced by a recorder, and everything before it (spec checks, port check, the command line) is real.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from chexvision import __version__
from chexvision.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
SPACE_YML = ROOT / ".github" / "workflows" / "space.yml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("demo-cli") / "run")


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


class _Recorder:
    """Stands in for `subprocess.Popen`: records the command and environment, exits like Streamlit on Ctrl-C."""

    calls: ClassVar[list[tuple[list[str], dict[str, str]]]] = []

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        type(self).calls.append((argv, env))

    def wait(self) -> int:
        return 0


def test_demo_runs_streamlit_on_the_app_with_the_models(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _Recorder.calls.clear()
    monkeypatch.setattr(subprocess, "Popen", _Recorder)
    second = tmp_path / "second"
    second.symlink_to(run_dir)
    res = _cli("demo", "--model", str(run_dir), "--model", str(second), "--port", "8599")
    assert res.exit_code == 0, res.output
    ((argv, env),) = _Recorder.calls
    assert argv[:4] == [sys.executable, "-m", "streamlit", "run"]
    app_file = Path(argv[4])
    assert app_file.is_file() and app_file.name == "app.py" and app_file.parent.name == "demo"
    assert argv[argv.index("--server.port") + 1] == "8599"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert env["CHEXVISION_DEMO_MODELS"].split(os.pathsep) == [str(run_dir), str(second)]
    assert "http://127.0.0.1:8599" in res.stderr


def test_demo_refuses_bad_input_in_one_line(run_dir: Path, tmp_path: Path) -> None:
    none = _cli("demo")
    assert none.exit_code == 2 and none.stderr.startswith("error: no model given — pass --model SPEC")
    bad = _cli("demo", "--model", str(tmp_path / "missing" / "model"))
    assert bad.exit_code == 2 and "neither a folder nor a Hub repo" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _cli("demo", "--model", str(empty))
    assert res.exit_code == 2 and "has no config.json" in res.stderr, res.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = _cli("demo", "--model", str(run_dir), "--port", port)
    assert taken.exit_code == 2 and f"cannot serve on 127.0.0.1:{port}" in taken.stderr and "--port" in taken.stderr


def test_demo_without_streamlit_names_the_extra(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    res = _cli("demo", "--model", str(run_dir))
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: the demo needs Streamlit, which is not installed — pip install 'chexvision[demo]'"
    )


def test_demo_help_imports_neither_torch_nor_streamlit() -> None:
    code = (
        "import sys\nfrom chexvision.cli.main import app\n"
        "for args in (['demo', '--help'], ['demo', 'export', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
        "print('HEAVY:', sorted(m for m in ('torch', 'streamlit', 'pydicom', 'cv2') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY: []" in proc.stdout, proc.stdout + proc.stderr


# --- demo export --------------------------------------------------------------------------------------------


def test_export_writes_a_space_folder(tmp_path: Path) -> None:
    from huggingface_hub import SpaceCard

    out = tmp_path / "space"
    specs = ["me/chexvision-densenet@densenet-20261126-0912-3fa1", "me/chexvision-seresnet@v2"]
    res = _cli("demo", "export", "--model", specs[0], "--model", specs[1], "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert sorted(doc["files"]) == ["README.md", "app.py", "requirements.txt"]
    card = SpaceCard.load(out / "README.md")
    assert card.data.sdk == "streamlit" and card.data.app_file == "app.py"
    assert card.data.models == ["me/chexvision-densenet", "me/chexvision-seresnet"]
    assert card.data.sdk_version  # the Streamlit this release was tested with
    assert "not for clinical use" in card.text.lower()
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert f"chexvision[demo]=={__version__}" in requirements
    from chexvision.demo.export import TESTED_TORCH

    assert set(TESTED_TORCH) <= set(requirements)
    makefile = (ROOT / "Makefile").read_text()  # the pair the project installs and tests with
    assert f"TORCH_PINS := {' '.join(TESTED_TORCH)}" in makefile
    source = (out / "app.py").read_text()
    ast.parse(source)
    assert json.dumps(specs) in source and "from chexvision.demo.page import main" in source
    again = _cli("demo", "export", "--model", specs[0], "--model", specs[1], "--out", str(out),
                 "--package", "chexvision[demo] @ git+https://github.com/o/r@abc123")  # fmt: skip
    assert again.exit_code == 0, again.output  # an export may overwrite its own files
    assert "chexvision[demo] @ git+https://github.com/o/r@abc123" in (out / "requirements.txt").read_text()


def test_export_refuses_local_models_and_foreign_files(run_dir: Path, tmp_path: Path) -> None:
    local = _cli("demo", "export", "--model", str(run_dir), "--out", str(tmp_path / "s"))
    assert local.exit_code == 2 and "a Space can only load models from the Hub" in local.stderr
    assert not (tmp_path / "s").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# my notes\n")
    res = _cli("demo", "export", "--model", "me/chexvision-densenet", "--out", str(mine))
    assert res.exit_code == 2 and "was not written by `chexvision demo export`" in res.stderr
    assert (mine / "README.md").read_text() == "# my notes\n" and not (mine / "app.py").exists()


def test_the_exported_app_runs_the_page(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Space's app.py under AppTest: the models it names are Hub repos, so the test serves a local run in
    their place through the environment variable the file only sets by default."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    out = tmp_path / "space"
    assert _cli("demo", "export", "--model", "me/chexvision-densenet@v1", "--out", str(out)).exit_code == 0
    monkeypatch.setenv("CHEXVISION_DEMO_MODELS", str(run_dir))
    at = AppTest.from_file(str(out / "app.py"), default_timeout=180).run()
    assert not at.exception and not at.error
    assert any(list(d.value.columns) == ["densenet-20261126-0912-3fa1"] for d in at.dataframe)


# --- .github/workflows/space.yml --------------------------------------------------------------------------------


def _tool(name: str) -> str:
    import shutil

    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed")
    return found


def test_space_workflow_validates_offline() -> None:
    schema = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(SPACE_YML)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = subprocess.run([_tool("zizmor"), "--offline", str(SPACE_YML)], capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_space_workflow_contract() -> None:
    import yaml

    doc = yaml.safe_load(SPACE_YML.read_text())
    triggers = doc[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read"}
    steps = doc["jobs"]["deploy"]["steps"]
    export = next(s for s in steps if "demo export" in s.get("run", ""))
    assert "git+https://github.com/${REPO}@${SHA}" in export["run"]
    secret_steps = [s for s in steps if "secrets." in json.dumps(s)]
    assert len(secret_steps) == 1 and secret_steps[0]["env"]["HF_TOKEN"] == "${{ secrets.HF_SPACE_TOKEN }}"
    assert "--repo-type space" in secret_steps[0]["run"]
    assert "HF_SPACE_TOKEN" not in export["run"] and "secrets" not in json.dumps(export)


# --- predict with several models (the ensemble the page shows) --------------------------------------------------


def test_predict_with_two_models_gives_each_and_the_mean(
    run_dir: Path, tmp_path: Path, make_run_dir: Callable[..., Path]
) -> None:
    from chexvision.demo.analysis import load_samples

    other = make_run_dir(tmp_path / "se", run_id="seresnet-20261126-0913-aaaa", model="seresnet", seed=1)
    image = tmp_path / "case.jpg"
    image.write_bytes(load_samples()[0].read_bytes())
    single = json.loads(_cli("predict", str(image), "--model", str(run_dir), "--json", "--device", "cpu").stdout)[0]
    res = _cli("predict", str(image), "--model", str(run_dir), "--model", str(other), "--json", "--device", "cpu")
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["ensemble"] == {"rule": "mean probability",
                               "members": ["densenet-20261126-0912-3fa1", "seresnet-20261126-0913-aaaa"]}  # fmt: skip
    first, second = row["models"]
    assert first["probabilities"] == pytest.approx(single["probabilities"], abs=1e-9)  # the same model, alone
    assert first["model"]["run_id"] == "densenet-20261126-0912-3fa1" and second["model"]["architecture"] == "seresnet"
    for label, p in row["probabilities"].items():
        assert p == pytest.approx((first["probabilities"][label] + second["probabilities"][label]) / 2)
    assert row["abnormal"] == pytest.approx((first["abnormal"] + second["abnormal"]) / 2)
    assert row["decisions"] == {}  # no operating point was chosen for the mean
    args = ["predict", str(image), "--model", str(run_dir), "--model", str(run_dir), "--device", "cpu"]
    table = CliRunner().invoke(app, args, env={"COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert "2 densenet: model densenet-20261126-0912-3fa1 #2 from" in table.stdout
    rows = [line for line in table.stdout.splitlines() if line[:1] in "┃│┏┡├└"]
    assert "1 densenet" in rows[1] and "ensemble" in rows[1]  # short column names: the table fits 80 columns
    assert all(len(line) <= 80 for line in rows) and "…" not in table.stdout
    assert any(line.startswith("│ Pleural_Thickening ") for line in rows)  # no word cut or wrapped
