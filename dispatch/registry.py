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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dispatch.errors import RegistryCorruptError, RegistryError, UnknownRunError
from dispatch.status import RunStatus

__all__ = ["DB_NAME", "MIGRATIONS", "Registry", "RunRecord", "repair_registry", "utcnow"]

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
# What SQLite says of a file that is not (or no longer) a database; other errors (locked, cannot open) are not that.
_CORRUPT_MESSAGES = ("not a database", "malformed", "corrupt", "file is encrypted", "disk image")


@contextmanager
def _translated(path: Path) -> Iterator[None]:
    """Turn SQLite's failures into typed errors naming the registry file (and, for a bad file, the way out)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if not isinstance(exc, sqlite3.OperationalError) or any(m in text for m in _CORRUPT_MESSAGES):
            raise RegistryCorruptError(path, text) from None
        raise RegistryError(path, text, "check the file and folder permissions, or retry when it is free") from None


class Registry:
    """The run registry. Use `with Registry.open() as reg:`; nothing is opened at import."""

    def __init__(self, conn: sqlite3.Connection, path: Path, created: tuple[Path, ...] = ()) -> None:
        self._conn = conn
        self.path = path
        self._created = created  # the -wal/-shm files this connection made (removed again if the file is damaged)
        self._damaged = False

    @classmethod
    def open(cls, path: Path) -> Registry:
        """Open (creating and migrating) the database file `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        _check_header(path)
        created = tuple(c for c in _companions(path) if not c.exists())
        with _translated(path):
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a writer takes the lock up front.
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        registry = cls(conn, path, created)
        try:
            with registry._guard():
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                _set_wal(conn)
                conn.execute("PRAGMA foreign_keys = ON")
            registry._migrate()
        except BaseException:
            registry.close()
            raise
        return registry

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            with _translated(self.path):
                yield
        except RegistryCorruptError:
            self._damaged = True
            raise

    @classmethod
    def at(cls, home: Path) -> Registry:
        """The registry of the home folder `home` (`<home>/runs.db`)."""
        return cls.open(home / DB_NAME)

    def close(self) -> None:
        self._conn.close()
        if self._damaged:  # leave a damaged file exactly as it was found: no -wal/-shm of ours beside it
            for companion in self._created:
                if companion.is_file() and (companion.name.endswith("-shm") or companion.stat().st_size == 0):
                    companion.unlink(missing_ok=True)

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._guard():
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._guard():
            return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
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
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise UnknownRunError(run_id)
        return RunRecord.from_row(rows[0])

    def list(self, limit: int | None = None) -> list[RunRecord]:
        sql = "SELECT * FROM runs ORDER BY created_at DESC, run_id DESC"
        rows = self._read(sql + (f" LIMIT {int(limit)}" if limit else ""))
        return [RunRecord.from_row(r) for r in rows]

    def update(self, run_id: str, *, expect: Mapping[str, Any] | None = None, **fields: Any) -> RunRecord:
        """Set `fields` of the run and return the row as stored.

        With `expect` ({column: value}), only while the row still holds those values: a caller that read the row,
        asked a backend (seconds) and writes what it saw must not overwrite what another process wrote meanwhile;
        when the row changed, nothing is written and the newer row is returned. Whatever the caller, a status never
        moves backwards in the lifecycle and an ended run keeps its status (`complete` never becomes `error`):
        such a change is dropped with its reason and finish time, the other fields still written.
        """
        unknown = (set(fields) | set(expect or {})) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        with self._write() as conn:
            rows = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchall()
            if not rows:
                raise UnknownRunError(run_id)
            current = RunRecord.from_row(rows[0])
            if expect and any(_differs(getattr(current, k), v) for k, v in expect.items()):
                return current
            if "status" in fields and not _may_move(current.status, RunStatus(fields["status"])):
                fields = {k: v for k, v in fields.items() if k not in ("status", "failure_reason", "finished_at")}
            if not fields:
                return current
            encoded = _encode({**fields, "updated_at": utcnow()})
            assignments = ", ".join(f"{k} = ?" for k in encoded)
            conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", [*encoded.values(), run_id])
            return RunRecord.from_row(conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone())


def _differs(stored: Any, expected: Any) -> bool:
    if isinstance(stored, RunStatus) and expected is not None:
        return stored != RunStatus(expected)
    return bool(stored != expected)


def _may_move(current: RunStatus, new: RunStatus) -> bool:
    """The lifecycle only goes forward: an ended run stays as it ended; a live one never returns to an earlier state."""
    if new == current:
        return True
    return not current.is_terminal() and new > current


_SQLITE_HEADER = b"SQLite format 3\x00"


def _companions(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite, or shorter than its header says, before SQLite reads or writes anything.

    The header (https://sqlite.org/fileformat.html) holds the page size (offset 16) and, when valid (the change
    counter at 24 equals the one at 92), the size in pages (offset 28): a truncated file is shorter than that.
    While a WAL or journal holds pages not yet copied back, the file may be shorter; SQLite itself judges then.
    """
    try:
        with path.open("rb") as f:
            head = f.read(100)
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RegistryError(path, exc.strerror or str(exc), "check the file's permissions") from None
    if not head:
        return  # an empty file: SQLite makes it a new database
    if not head.startswith(_SQLITE_HEADER) or len(head) < 100:
        raise RegistryCorruptError(path, "the file does not start with the SQLite header")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    wal, journal = path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")
    pending = (wal.is_file() and wal.stat().st_size > 0) or journal.exists()  # the file may be mid-checkpoint
    if not pending and head[24:28] == head[92:96] and pages and size < pages * page_size:
        raise RegistryCorruptError(path, f"truncated: {size:,} bytes of {pages * page_size:,}")


def repair_registry(home: Path) -> Path | None:
    """Move an unreadable `<home>/runs.db` (and its -wal/-shm files) aside; None when it is healthy or absent.

    Nothing is deleted: the file is renamed `runs.db.corrupt-<UTC time>` beside it, and the next command starts a
    new empty registry. Nothing else under `home` is touched.
    """
    path = home / DB_NAME
    if not path.exists():
        return None
    try:
        with Registry.open(path) as reg, reg._guard():
            result = reg._conn.execute("PRAGMA integrity_check").fetchone()
            if result is not None and result[0] == "ok":
                return None
    except RegistryCorruptError:
        pass
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{DB_NAME}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        companion = path.with_name(DB_NAME + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    return target


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
