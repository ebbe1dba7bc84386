"""The GitHub workflows validate offline (check-jsonschema's workflow schema, zizmor --offline), install what they run
and start studies from their tags."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.skip(f"{name} not installed")
    return str(path)


def test_workflows_match_the_schema() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_offline_finds_nothing() -> None:
    proc = subprocess.run([_tool("zizmor"), "--offline", str(WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dispatch_workflow_contract() -> None:
    text = (WORKFLOWS / "dispatch.yml").read_text()
    assert '"train-*"' in text and "workflow_dispatch" in text
    assert "cancel-in-progress: false" in text and "group: kaggle-" in text
    assert "HF_TOKEN" not in text  # the HF token is used in fetch.yml only
    assert "HF_TOKEN" in (WORKFLOWS / "fetch.yml").read_text()


def _steps(workflow: str) -> list[dict[str, object]]:
    import yaml

    doc = yaml.safe_load((WORKFLOWS / workflow).read_text())
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def _install_lines(workflow: str) -> list[list[str]]:
    """Each `pip install` command of the workflow's torch-free installs, split as the shell would."""
    import shlex

    lines = []
    for step in _steps(workflow):
        for line in str(step.get("run", "")).splitlines():
            words = shlex.split(line)
            if "pip" in " ".join(words[:1]) and "install" in words and "torch" not in line and "." not in words:
                lines.append([w for w in words[words.index("install") + 1 :] if not w.startswith("-")])
    return lines


def _closure(requirements: list[str]) -> set[str]:
    """The distributions `pip install REQS` brings (as installed here): the named ones and their requirements."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in md.requires(req.name) or ()]
        except md.PackageNotFoundError:
            continue
    return seen


PUBLISH_IMPORTS = """
import sys
at_start = set(sys.modules)  # the interpreter's own (site's .pth hooks: setuptools' _distutils_hack)
import importlib.metadata as md, json
from chexvision.cli.main import app
try:
    app(["publish", sys.argv[1], "--hub-dir", sys.argv[2], "--json"])
except SystemExit as exc:
    assert not exc.code, exc.code
dists = md.packages_distributions()
tops = {m.split(".")[0] for m in set(sys.modules) - at_start} - set(sys.stdlib_module_names)
print(json.dumps(sorted({d for t in tops for d in dists.get(t, ())})))
"""


def test_fetch_installs_everything_publishing_imports(tmp_path: Path, make_run_dir: object) -> None:
    """fetch.yml publishes runs (`chexvision fetch`) with its torch-free install line: every distribution that
    publishing imports must come with it (it once lacked matplotlib, and every fetch failed at the plot)."""
    from packaging.utils import canonicalize_name

    lines = _install_lines("fetch.yml")
    assert lines and all(line == lines[0] for line in lines)  # the plan and fetch jobs install the same
    closure = _closure(lines[0]) | {"chexvision"}
    run_dir = make_run_dir(tmp_path / "run")  # type: ignore[operator]
    proc = subprocess.run([sys.executable, "-c", PUBLISH_IMPORTS, str(run_dir), str(tmp_path / "hub")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported = {canonicalize_name(d) for d in json.loads(proc.stdout.splitlines()[-1])}
    assert "torch" not in imported
    # what a full `pip install chexvision` brings; anything else imported is optional (joblib tries psutil)
    declared = _closure(["chexvision"])
    assert {"matplotlib", "jinja2", "huggingface-hub"} <= imported & declared
    missing = sorted((imported & declared) - closure)
    assert not missing, f"fetch.yml's install line lacks {missing}"


def test_a_study_tag_names_its_study_file(tmp_path: Path) -> None:
    """The tag `study-<name>-<anything>` starts `studies/<name>.toml`; names may hold '-'."""
    (step,) = [s for s in _steps("dispatch.yml") if s.get("name") == "Find the study file the tag names"]
    (tmp_path / "studies").mkdir()
    for name in ("head-to-head", "smoke"):
        (tmp_path / "studies" / f"{name}.toml").write_text("")
    cases = (("study-head-to-head-v1", "studies/head-to-head.toml"), ("study-smoke-2", "studies/smoke.toml"),
             ("study-smoke", "studies/smoke.toml"), ("study-nothing-v1", None))  # fmt: skip
    for tag, expected in cases:
        out = tmp_path / "out"
        out.write_text("")
        proc = subprocess.run(["bash", "-e", "-c", str(step["run"])], cwd=tmp_path, capture_output=True, text=True,
                              env={"REF_NAME": tag, "GITHUB_OUTPUT": str(out), "PATH": "/usr/bin:/bin"})  # fmt: skip
        if expected is None:
            assert proc.returncode == 2 and "names no studies" in proc.stdout
        else:
            assert proc.returncode == 0 and out.read_text().strip() == f"file={expected}", proc.stdout + proc.stderr


def test_study_workflows_contract() -> None:
    dispatch, fetch = (WORKFLOWS / "dispatch.yml").read_text(), (WORKFLOWS / "fetch.yml").read_text()
    assert '"study-*"' in dispatch and "chexvision study run" in dispatch
    assert "chexvision study resume" in fetch and "group: kaggle-" in fetch  # a registry writer: dispatch's group
    assert fetch.count("name: chexvision-studies") == 1 and dispatch.count("name: chexvision-studies") == 1
