"""The run registry: SQLite at `<home>/runs.db`, opened explicitly, safe for several processes.

The caller names the home folder (chexvision passes `$CHEXVISION_HOME`, default `~/.chexvision`); dispatch reads no
environment variable for it. Each backend's remote handle, the caller's summary and metadata and the job's
description are JSON columns: the registry stores them and never looks inside.

WAL lets a `status --watch` reader and a `fetch` writer work at once; `busy_timeout` makes a writer wait for
another instead of failing; writes are short `BEGIN IMMEDIATE` transactions. The schema is versioned with
`PRAGMA user_version` and upgraded by the ordered MIGRATIONS list (append, never edit).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dispatch.errors import UnknownRunError
from dispatch.status import RunStatus

__all__ = ["DB_NAME", "MIGRATIONS", "Registry", "RunRecord", "utcnow"]

DB_NAME = "runs.db"
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another process's transaction before failing


def _backend_handles(conn: sqlite3.Connection) -> None:
    """3: the backend-specific columns become one JSON handle per run; model/preset become the caller's metadata."""
    for column in ("handle", "summary", "meta", "job"):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT NOT NULL DEFAULT '{{}}'")
    rows = conn.execute(
        "SELECT run_id, model, preset, kaggle_owner, kaggle_slug, kaggle_version, pid, pid_start, local_dir,"
        " best_val_auc FROM runs"
    ).fetchall()
    for run_id, model, preset, owner, slug, version, pid, pid_start, local_dir, best in rows:
        # The handle formats of the kaggle and local backends at the time of this migration.
        handle: dict[str, Any] = {}
        if owner and slug and version:
            handle = {"owner": owner, "slug": slug, "version": version}
        elif pid or local_dir:
            handle = {"pid": pid, "pid_start": pid_start, "dir": local_dir}
        summary = {"best_val_auc": best} if best is not None else {}
        meta = {k: v for k, v in (("model", model), ("preset", preset)) if v is not None}
        conn.execute(
            "UPDATE runs SET handle = ?, summary = ?, meta = ? WHERE run_id = ?",
            (json.dumps(handle), json.dumps(summary), json.dumps(meta), run_id),
        )
    conn.execute("ALTER TABLE runs RENAME COLUMN model TO label")
    for column in ("preset", "kaggle_owner", "kaggle_slug", "kaggle_version", "pid", "pid_start", "local_dir"):
        conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    conn.execute("ALTER TABLE runs DROP COLUMN best_val_auc")


# Append, never edit: a script of `;`-separated statements, or a function for a migration that moves data.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
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
    _backend_handles,
]
_JSON_COLUMNS = {"command": list, "handle": dict, "summary": dict, "meta": dict, "job": dict, "data_source": dict}


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunRecord:
    """One row of the registry."""

    run_id: str
    backend: str
    label: str  # the job's display name
    status: RunStatus = RunStatus.SUBMITTING
    failure_reason: str | None = None
    command: list[str] = field(default_factory=list)  # the job's main command line (placeholders kept)
    git_sha: str | None = None
    bundle_sha256: str | None = None
    bundle_size: int | None = None
    parent_run_id: str | None = None
    handle: dict[str, Any] = field(default_factory=dict)  # the backend's own, e.g. Kaggle's owner/slug/version
    output_dir: str | None = None  # where fetch put the outputs on this machine
    summary: dict[str, Any] = field(default_factory=dict)  # what the caller reads from the outputs (a metric)
    meta: dict[str, Any] = field(default_factory=dict)  # the caller's key-values from the JobSpec
    job: dict[str, Any] = field(default_factory=dict)  # JobSpec.describe(): steps, data, outputs, resources
    data_source: dict[str, Any] = field(default_factory=dict)  # the job's DataSource
    hub_repo: str | None = None
    hub_revision: str | None = None
    hub_commit: str | None = None
    hub_tag: str | None = None
    created_at: str = field(default_factory=utcnow)
    updated_at: str = field(default_factory=utcnow)
    started_at: str | None = None
    finished_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: row[k] for k in row.keys() if k in known}  # noqa: SIM118 (sqlite3.Row)
        values["status"] = RunStatus(values["status"])
        for name, kind in _JSON_COLUMNS.items():
            decoded = json.loads(values.get(name) or "null")
            values[name] = decoded if isinstance(decoded, kind) else kind()
        return cls(**values)


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for name in _JSON_COLUMNS.keys() & out.keys():
        out[name] = json.dumps(out[name] if out[name] is not None else _JSON_COLUMNS[name]())
    if "status" in out:
        out["status"] = str(RunStatus(out["status"]))
    return out


_COLUMNS = [f.name for f in dataclasses.fields(RunRecord)]


class Registry:
    """The run registry. Use `with Registry.open() as reg:`; nothing is opened at import."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Registry:
        """Open (creating and migrating) the database file `path`."""
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

    @classmethod
    def at(cls, home: Path) -> Registry:
        """The registry of the home folder `home` (`<home>/runs.db`)."""
        return cls.open(home / DB_NAME)

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
                if callable(script):
                    script(conn)
                else:
                    for statement in filter(str.strip, script.split(";")):
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    def add(self, record: RunRecord) -> RunRecord:
        data = _encode(dataclasses.asdict(record))
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
        fields = _encode({**fields, "updated_at": utcnow()})
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
