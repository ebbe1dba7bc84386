"""The SQLite run registry: migrations, round trips, and two real processes at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dispatch.errors import UnknownRunError
from dispatch.registry import MIGRATIONS, Registry, RunRecord, new_run_id
from dispatch.status import RunStatus


def test_run_id_format() -> None:
    run_id = new_run_id("densenet")
    model, day, hhmm, tail = run_id.split("-")
    assert model == "densenet" and len(day) == 8 and len(hhmm) == 4 and len(tail) == 4


def test_round_trip_and_update(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "runs.db") as reg:
        assert reg.schema_version == len(MIGRATIONS)
        reg.add(
            RunRecord(
                run_id="a",
                backend="kaggle",
                model="densenet",
                command=["python", "-m", "x"],
                kaggle_owner="o",
                kaggle_slug="s",
                kaggle_version=3,
            )
        )
        record = reg.update("a", status=RunStatus.RUNNING, hub_repo="me/chexvision-densenet")
        assert record.status is RunStatus.RUNNING and record.command == ["python", "-m", "x"]
        assert record.kaggle_handle == "o/s/3" and record.hub_repo == "me/chexvision-densenet"
        with pytest.raises(UnknownRunError):
            reg.get("nope")
        with pytest.raises(ValueError, match="unknown registry columns"):
            reg.update("a", colour="red")


def test_wal_and_explicit_open(tmp_path: Path) -> None:
    code = "import dispatch.runs, dispatch.registry, chexvision.cli.main"  # what the CLI imports on start-up
    env = {**os.environ, "CHEXVISION_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    path = tmp_path / "runs.db"
    assert not path.exists()  # nothing opened at import
    with Registry.open(path):
        pass
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrates_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute(
        "INSERT INTO runs (run_id, backend, model, status, created_at, updated_at) "
        "VALUES ('old', 'local', 'seresnet', 'complete', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Registry.open(path) as reg:
        assert reg.schema_version == len(MIGRATIONS)
        old = reg.get("old")
        assert old.status is RunStatus.COMPLETE and old.hub_tag is None
        reg.update("old", hub_tag="seresnet-x")


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dispatch.registry import Registry, RunRecord
    path, tag = Path(sys.argv[1]), sys.argv[2]
    for i in range(60):
        with Registry.open(path) as reg:
            reg.add(RunRecord(run_id=f"{tag}-{i}", backend="local", model="densenet"))
            reg.update(f"{tag}-{i}", status="running", best_val_auc=i / 100)
            reg.list()
""")


def test_two_processes_at_once(tmp_path: Path) -> None:
    """A `status --watch`-like and a `fetch`-like process: neither corrupts nor locks the other out."""
    path = tmp_path / "runs.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag], stderr=subprocess.PIPE, text=True)
        for tag in ("watch", "fetch")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with Registry.open(path) as reg:
        runs = reg.list()
        assert len(runs) == 120 and all(r.status is RunStatus.RUNNING for r in runs)
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
