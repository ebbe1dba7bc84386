"""The GitHub workflows validate offline: check-jsonschema's workflow schema and zizmor --offline."""

from __future__ import annotations

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
