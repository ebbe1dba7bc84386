"""dispatch knows only jobs: importing every one of its modules loads nothing from chexvision, and never torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dispatch

CHECK = """
import importlib, pkgutil, sys
import dispatch
names = sorted(m.name for m in pkgutil.walk_packages(dispatch.__path__, "dispatch."))
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("chexvision", "torch", "kaggle"))
print(len(names), ",".join(leaked))
"""


def test_dispatch_imports_nothing_from_chexvision() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    count, leaked = proc.stdout.split(" ", 1)
    assert int(count) >= 10 and leaked.strip() == "", leaked


def test_no_chexvision_name_in_dispatch_imports() -> None:
    """Not even lazily or for type checking: no import statement in dispatch names chexvision."""
    root = Path(dispatch.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(("import chexvision", "from chexvision"))
    ]
    assert offenders == []
