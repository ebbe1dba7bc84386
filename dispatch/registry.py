"""The run registry: SQLite at `$CHEXVISION_HOME/runs.db`, opened explicitly, safe for several processes.

WAL lets a `status --watch` reader and a `fetch` writer work at once; `busy_timeout` makes a writer wait for
another instead of failing; writes are short `BEGIN IMMEDIATE` transactions. The schema is versioned with
`PRAGMA user_version` and upgraded by the ordered MIGRATIONS list (append, never edit).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dispatch.errors import UnknownRunError
from dispatch.status import RunStatus

__all__ = ["MIGRATIONS", "Registry", "RunRecord", "chexvision_home", "new_run_id", "utcnow"]

BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's transaction before failing

MIGRATIONS: list[str] = [
    # 1: the runs table
    """
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
    """,
    # 2: columns for the hub publisher (chexvision.hub) and the data source of the run
    """
    ALTER TABLE runs ADD COLUMN hub_repo TEXT;
    ALTER TABLE runs ADD COLUMN hub_revision TEXT;
    ALTER TABLE runs ADD COLUMN hub_commit TEXT;
    ALTER TABLE runs ADD COLUMN hub_tag TEXT;
    ALTER TABLE runs ADD COLUMN data_source TEXT;
    """,
]


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def chexvision_home() -> Path:
    return Path(os.environ.get("CHEXVISION_HOME") or Path.home() / ".chexvision")


def new_run_id(model: str, now: datetime | None = None) -> str:
    """`densenet-20261126-0912-3fa1`: readable, sortable by time, unique enough with 16 random bits."""
    now = now or datetime.now(UTC)
    return f"{model}-{now:%Y%m%d-%H%M}-{secrets.token_hex(2)}"


@dataclass
class RunRecord:
    """One row of the registry. `command` is the train command line the kernel runs."""

    run_id: str
    backend: str
    model: str
    status: RunStatus = RunStatus.SUBMITTING
    preset: str | None = None
    failure_reason: str | None = None
    command: list[str] = field(default_factory=list)
    git_sha: str | None = None
    bundle_sha256: str | None = None
    bundle_size: int | None = None
    parent_run_id: str | None = None
    kaggle_owner: str | None = None
    kaggle_slug: str | None = None
    kaggle_version: int | None = None
    pid: int | None = None
    pid_start: str | None = None
    local_dir: str | None = None
    output_dir: str | None = None
    best_val_auc: float | None = None
    data_source: str | None = None
    hub_repo: str | None = None
    hub_revision: str | None = None
    hub_commit: str | None = None
    hub_tag: str | None = None
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def kaggle_handle(self) -> str | None:
        """`owner/slug/N`: every Kaggle status/logs/output call is pinned to this version."""
        if not (self.kaggle_owner and self.kaggle_slug and self.kaggle_version):
            return None
        return f"{self.kaggle_owner}/{self.kaggle_slug}/{self.kaggle_version}"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        data["kaggle_handle"] = self.kaggle_handle
        return data

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: row[k] for k in row.keys() if k in known}  # noqa: SIM118 (sqlite3.Row)
        values["status"] = RunStatus(values["status"])
        values["command"] = json.loads(values.get("command") or "[]")
        return cls(**values)


_COLUMNS = [f.name for f in dataclasses.fields(RunRecord)]


class Registry:
    """The run registry. Use `with Registry.open() as reg:`; nothing is opened at import."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path | None = None) -> Registry:
        path = path or chexvision_home() / "runs.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a writer takes the lock up front.
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _set_wal(conn)
        conn.execute("PRAGMA foreign_keys = ON")
        registry = cls(conn, path)
        registry._migrate()
        return registry

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        if self.schema_version >= len(MIGRATIONS):
            return
        with self._write() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])  # re-read under the lock
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def add(self, record: RunRecord) -> RunRecord:
        data = record.to_json()
        data["command"] = json.dumps(record.command)
        values = [data[c] for c in _COLUMNS]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._write() as conn:
            conn.execute(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values)
        return record

    def get(self, run_id: str) -> RunRecord:
        row = self._conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRunError(run_id)
        return RunRecord.from_row(row)

    def list(self, limit: int | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs ORDER BY created_at DESC, run_id DESC"
        rows = self._conn.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    def update(self, run_id: str, **fields: Any) -> RunRecord:
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        fields["updated_at"] = utcnow()
        if "status" in fields:
            fields["status"] = str(RunStatus(fields["status"]))
        if "command" in fields:
            fields["command"] = json.dumps(fields["command"])
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", [*fields.values(), run_id])
            if cur.rowcount == 0:
                raise UnknownRunError(run_id)
        return self.get(run_id)


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL needs a moment of exclusive access; a second process opening at the same instant can see
    # "database is locked" despite busy_timeout, so retry briefly.
    for attempt in range(50):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.05)
