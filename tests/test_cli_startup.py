"""`chexvision --help` and `status` never import torch (they must start fast)."""

from __future__ import annotations

import os
import subprocess
import sys

CHECK = """
import sys
from chexvision.cli.main import app
try:
    app({args!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "torchvision", "kaggle", "kagglesdk", "pandas", "matplotlib") if m in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


def _heavy(args: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", CHECK.format(args=args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY:")]
    assert line, proc.stdout + proc.stderr
    return line[-1].removeprefix("HEAVY:").strip()


def test_help_imports_no_torch() -> None:
    assert "torch" not in _heavy(["--help"]).split(",")


def test_status_imports_nothing_heavy() -> None:
    assert _heavy(["status"]) == ""
    assert _heavy(["status", "--json"]) == ""


def test_dispatch_help_imports_no_torch() -> None:
    assert "torch" not in _heavy(["dispatch", "train", "--help"]).split(",")


def test_data_and_bench_help_import_no_torch() -> None:
    for args in (["data", "--help"], ["data", "synth", "--help"], ["bench", "--help"], ["bench", "train", "--help"]):
        assert "torch" not in _heavy(args).split(","), args


def test_dispatch_never_imports_torch() -> None:
    code = (
        "import sys, dispatch.runs, dispatch.bundle, dispatch.render, dispatch.backends.local, "
        "dispatch.backends.kaggle, dispatch.backends.kaggle.client, chexvision.cli.runs; "
        "print(sorted(m for m in ('torch', 'kaggle') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_usage_errors_import_no_torch() -> None:
    """A typo answers at once: the one-line usage error comes before any command imports torch."""
    for args in (["trian"], ["train", "--model", "vgg", "--data", "d", "--out", "o"], ["predict", "--model", "m"]):
        assert "torch" not in _heavy(args).split(","), args


def test_version_logs_and_cancel_help_import_nothing_heavy() -> None:
    """`--version`, the completion options and the run commands' help answer without torch or pandas."""
    for args in (["--version"], ["logs", "--help"], ["cancel", "--help"], ["fetch", "--help"], ["--show-completion"]):
        assert _heavy(args) == "", args
