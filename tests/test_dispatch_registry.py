"""The SQLite run registry: migrations, round trips, and two real processes at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chexvision.rundir import new_run_id
from dispatch.errors import UnknownRunError
from dispatch.registry import MIGRATIONS, Registry, RunRecord
from dispatch.status import RunStatus

# The schema of version 2 exactly as registry.py created it before backends owned their handles (MIGRATIONS[0]
# and [1] of that time), so the migration is tested against a real old database, whatever MIGRATIONS becomes.
SCHEMA_V2 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    preset TEXT,
    status TEXT NOT NULL,
    failure_reason TEXT,
    command TEXT NOT NULL DEFAULT '[]',
    git_sha TEXT,
    bundle_sha256 TEXT,
    bundle_size INTEGER,
    parent_run_id TEXT REFERENCES runs(run_id),
    kaggle_owner TEXT,
    kaggle_slug TEXT,
    kaggle_version INTEGER,
    pid INTEGER,
    pid_start TEXT,
    local_dir TEXT,
    output_dir TEXT,
    best_val_auc REAL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX runs_created ON runs(created_at);
ALTER TABLE runs ADD COLUMN hub_repo TEXT;
ALTER TABLE runs ADD COLUMN hub_revision TEXT;
ALTER TABLE runs ADD COLUMN hub_commit TEXT;
ALTER TABLE runs ADD COLUMN hub_tag TEXT;
ALTER TABLE runs ADD COLUMN data_source TEXT;
PRAGMA user_version = 2;
"""


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
                label="densenet",
                command=["python", "-m", "x"],
                handle={"owner": "o", "slug": "s", "version": 3},
            )
        )
        record = reg.update("a", status=RunStatus.RUNNING, hub_repo="me/chexvision-densenet", summary={"auc": 0.5})
        assert record.status is RunStatus.RUNNING and record.command == ["python", "-m", "x"]
        assert (
            record.handle == {"owner": "o", "slug": "s", "version": 3} and record.hub_repo == "me/chexvision-densenet"
        )
        assert record.summary == {"auc": 0.5}
        with pytest.raises(UnknownRunError):
            reg.get("nope")
        with pytest.raises(ValueError, match="unknown registry columns"):
            reg.update("a", colour="red")


def test_wal_and_explicit_open(tmp_path: Path) -> None:
    code = "import dispatch.runs, dispatch.registry, chexvision.cli.main, chexvision.remote"  # the CLI's start-up
    env = {**os.environ, "CHEXVISION_HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    path = tmp_path / "runs.db"
    assert not path.exists()  # nothing opened at import
    with Registry.at(tmp_path):
        pass
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrates_an_old_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path)
    first = MIGRATIONS[0]
    assert isinstance(first, str)
    conn.executescript(first)
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


def test_migrates_backend_columns_into_handles(tmp_path: Path) -> None:
    """A version-2 database (kaggle_* and pid columns) opens with each backend's handle as JSON."""
    path = tmp_path / "runs.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_V2)
    rows = [
        ("k", "kaggle", "densenet", "kaggle-t4", "complete", "o", "chexvision-k", 2, None, None, None, 0.81),
        ("l", "local", "seresnet", None, "running", None, None, None, 4242, "1234", "/home/x/local/l", None),
    ]
    conn.executemany(
        "INSERT INTO runs (run_id, backend, model, preset, status, kaggle_owner, kaggle_slug, kaggle_version, pid,"
        " pid_start, local_dir, best_val_auc, command, parent_run_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '[\"python\"]', NULL,"
        " '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        rows,
    )
    conn.execute("UPDATE runs SET parent_run_id = 'k' WHERE run_id = 'l'")
    conn.commit()
    conn.close()
    with Registry.open(path) as reg:
        assert reg.schema_version == len(MIGRATIONS)
        kaggle, local = reg.get("k"), reg.get("l")
    assert kaggle.handle == {"owner": "o", "slug": "chexvision-k", "version": 2}
    assert kaggle.summary == {"best_val_auc": 0.81} and kaggle.meta == {"model": "densenet", "preset": "kaggle-t4"}
    assert kaggle.label == "densenet" and kaggle.command == ["python"] and kaggle.status is RunStatus.COMPLETE
    assert local.handle == {"pid": 4242, "pid_start": "1234", "dir": "/home/x/local/l"}
    assert local.summary == {} and local.meta == {"model": "seresnet"} and local.parent_run_id == "k"
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(runs)")}
    assert not columns & {"kaggle_owner", "kaggle_slug", "kaggle_version", "pid", "pid_start", "local_dir", "model"}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dispatch.registry import Registry, RunRecord
    path, tag = Path(sys.argv[1]), sys.argv[2]
    for i in range(60):
        with Registry.open(path) as reg:
            reg.add(RunRecord(run_id=f"{tag}-{i}", backend="local", label="densenet"))
            reg.update(f"{tag}-{i}", status="running", summary={"best_val_auc": i / 100})
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


# --- issue 10, defect 2: a corrupt, truncated or non-SQLite runs.db is a typed error and can be moved aside


def _filled(path: Path, runs: int = 300) -> None:
    """A registry big enough to span many pages, checkpointed into the main file."""
    with Registry.open(path) as reg:
        for i in range(runs):
            reg.add(RunRecord(run_id=f"densenet-20260101-0000-{i:04x}", backend="local", label="densenet",
                              command=["--set", "x" * 200]))  # fmt: skip
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()  # the last connection: SQLite removes -wal and -shm
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def _truncate(path: Path) -> None:
    _filled(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _overwrite_pages(path: Path) -> None:
    _filled(path)
    data = bytearray(path.read_bytes())
    data[4096:12288] = os.urandom(8192)  # the pages after the header hold the schema and the first rows
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_text("this is not a database\n"),
        lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(5000)),
        _truncate,
        _overwrite_pages,
    ],
    ids=["text", "zip", "truncated", "overwritten-pages"],
)
def test_a_damaged_registry_is_a_typed_error_naming_the_file(tmp_path: Path, damage: object) -> None:
    from dispatch.errors import RegistryCorruptError

    path = tmp_path / "runs.db"
    damage(path)  # type: ignore[operator]
    before = path.read_bytes()
    with pytest.raises(RegistryCorruptError) as info, Registry.open(path) as reg:
        reg.list()
        reg.get("densenet-20260101-0000-0001")
    assert info.value.exit_code == 2 and str(path) in info.value.one_line()
    assert "chexvision status --repair" in info.value.one_line()
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]  # nothing written beside it


def test_repair_moves_the_damaged_file_and_its_wal_aside(tmp_path: Path) -> None:
    from dispatch.registry import repair_registry

    (tmp_path / "other.txt").write_text("untouched")
    (tmp_path / "runs.db").write_text("garbage")
    (tmp_path / "runs.db-wal").write_text("stale wal")
    moved = repair_registry(tmp_path)
    assert moved is not None and moved.read_text() == "garbage"
    assert moved.with_name(moved.name + "-wal").read_text() == "stale wal"
    assert not (tmp_path / "runs.db").exists() and not (tmp_path / "runs.db-wal").exists()
    assert (tmp_path / "other.txt").read_text() == "untouched"
    with Registry.at(tmp_path) as reg:  # a new, empty registry
        assert reg.list() == []
        reg.add(RunRecord(run_id="a", backend="local", label="m"))
    assert repair_registry(tmp_path) is None  # healthy: nothing to do
    assert repair_registry(tmp_path / "nowhere") is None


def test_repair_finds_a_truncated_file(tmp_path: Path) -> None:
    from dispatch.registry import repair_registry

    _truncate(tmp_path / "runs.db")
    assert repair_registry(tmp_path) is not None and not (tmp_path / "runs.db").exists()


# --- issue 10, defect 11: updates are conditional and the lifecycle only goes forward


def test_an_ended_run_keeps_its_status(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "runs.db") as reg:
        reg.add(RunRecord(run_id="a", backend="local", label="m", status=RunStatus.RUNNING))
        reg.update("a", status=RunStatus.COMPLETE, finished_at="2026-01-01T00:00:00Z")
        after = reg.update("a", status=RunStatus.ERROR, failure_reason="late", finished_at="x", output_dir="/o")
        assert after.status == RunStatus.COMPLETE and after.failure_reason is None
        assert after.finished_at == "2026-01-01T00:00:00Z" and after.output_dir == "/o"  # other fields still set
        reg.add(RunRecord(run_id="b", backend="local", label="m", status=RunStatus.RUNNING))
        assert reg.update("b", status=RunStatus.QUEUED).status == RunStatus.RUNNING  # never backwards
        assert reg.update("b", status=RunStatus.CANCELLED).status == RunStatus.CANCELLED


def test_an_update_expecting_an_older_row_writes_nothing(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "runs.db") as reg:
        reg.add(RunRecord(run_id="a", backend="local", label="m", status=RunStatus.RUNNING))
        stale = reg.get("a")
        reg.update("a", summary={"best_val_auc": 0.9})
        kept = reg.update("a", expect={"summary": stale.summary}, summary={"best_val_auc": 0.5})
        assert kept.summary == {"best_val_auc": 0.9} and reg.get("a").summary == {"best_val_auc": 0.9}
        fresh = reg.update("a", expect={"status": "running", "summary": kept.summary}, summary={"best_val_auc": 0.95})
        assert fresh.summary == {"best_val_auc": 0.95}
        with pytest.raises(ValueError, match="colour"):
            reg.update("a", expect={"colour": "red"}, status="running")
