"""How `status`, `status ID` and `status --watch` draw runs: tables that fit the terminal without folding a word,
detail lines that keep paths whole, progress lines from the run's train.log (rich loads inside the functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatch.registry import RunRecord

_BOX_CHARS = frozenset(chr(c) for c in range(0x2500, 0x2580))  # rich's table rules: a log tail never starts in one
_LOG_TAIL = 20


def stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    seconds = int(((end or datetime.now(UTC)) - start).total_seconds())
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def auc(r: RunRecord) -> str:
    from chexvision.remote import best_val_auc

    best = best_val_auc(r)
    return f"{best:.4f}" if best is not None else "-"


def model(r: RunRecord) -> str:
    return str(r.meta.get("model") or r.label)


def record_json(r: RunRecord) -> dict[str, Any]:
    """The registry record plus the chexvision view of it (model, preset, best val AUC, handle in words)."""
    from chexvision.remote import best_val_auc, describe_handle

    data = r.to_json()
    data.update(model=model(r), preset=r.meta.get("preset"), best_val_auc=best_val_auc(r))
    data["location"] = describe_handle(r)
    start, end = parse_time(r.started_at), parse_time(r.finished_at)
    data["elapsed_seconds"] = int(((end or datetime.now(UTC)) - start).total_seconds()) if start else None
    return data


def progress_line(r: RunRecord, progress: Any) -> str:
    """`run: running, epoch 3/10, loss 0.2431, val AUC 0.7120 (best), 41 s/epoch, ETA 4m47s`."""
    parts = [f"{r.run_id}: {r.status}"]
    if progress is not None:
        auc = "n/a" if progress.val_macro_auc is None else f"{progress.val_macro_auc:.4f}"
        parts += [
            f"epoch {progress.epoch}/{progress.total_epochs}",
            f"loss {progress.train_loss:.4f}",
            f"val AUC {auc}" + (" (best)" if progress.best else ""),
            f"{progress.seconds_per_epoch:.{1 if progress.seconds_per_epoch < 10 else 0}f} s/epoch",
        ]
        if not r.status.is_terminal() and progress.epoch < progress.total_epochs:
            parts.append(f"ETA {seconds(progress.eta_seconds)}")
    elif not r.status.is_terminal():
        parts.append("no epoch finished yet")
    return ", ".join(parts) + (f" — {r.failure_reason}" if r.failure_reason else "")


def seconds(value: float) -> str:
    now = datetime.now(UTC)
    return duration(now - timedelta(seconds=value), now)


# (header, cell, priority): on a narrow terminal the lowest priorities move to the detail view (`status ID`).
COLUMNS: list[tuple[str, Any, int]] = [
    ("run id", lambda r: r.run_id, 0),
    ("status", lambda r: str(r.status), 0),
    ("model", model, 1),
    ("val AUC", auc, 2),
    ("elapsed", lambda r: duration(parse_time(r.started_at), parse_time(r.finished_at)), 3),
    ("backend", lambda r: r.backend, 4),
    ("age", lambda r: duration(parse_time(r.created_at), None), 5),
]
GAP = 2  # spaces between columns


def fitting_columns(records: list[RunRecord], width: int) -> list[tuple[str, list[str]]]:
    """The columns that fit `width` whole (never a word folded), in their display order, with their cells."""
    cells = {name: [str(cell(r)) for r in records] for name, cell, _ in COLUMNS}
    need = {name: max(len(name), *(len(c) for c in cells[name])) for name, _, _ in COLUMNS}
    kept: set[str] = set()
    used = -GAP
    for name, _, _ in sorted(COLUMNS, key=lambda c: c[2]):
        if used + GAP + need[name] <= width or not kept or name in ("run id", "status"):
            kept.add(name)
            used += GAP + need[name]
    return [(name, cells[name]) for name, _, _ in COLUMNS if name in kept]


def print_table(records: list[RunRecord], console: Any = None) -> None:
    """One row per run; columns that do not fit move to `status ID`; failure reasons as plain lines below."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    columns = fitting_columns(records, console.width)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2))
    for name, _ in columns:
        right = name in ("val AUC", "elapsed", "age")
        table.add_column(name, no_wrap=True, justify="right" if right else "left")
    for i in range(len(records)):
        table.add_row(*(cells[i] for _, cells in columns))
    console.print(table)
    failed = [r for r in records if r.failure_reason]
    for r in failed:  # whole lines the terminal wraps, never a reason folded inside a cell
        console.print(f"{r.run_id}: {r.failure_reason}", markup=False, soft_wrap=True)
    if len(columns) < len(COLUMNS):
        hidden = ", ".join(name for name, _, _ in COLUMNS if name not in dict(columns))
        console.print(f"({hidden}: `chexvision status RUN_ID`, or a wider terminal)", style="dim", soft_wrap=True)


def log_tail(text: str, lines: int = _LOG_TAIL) -> list[str]:
    """The last `lines` lines, starting after a table the cut would enter mid-way."""
    tail = text.rstrip().splitlines()[-lines:]
    while tail and _BOX_CHARS.intersection(tail[0]):
        tail.pop(0)
    return tail


def print_detail(r: RunRecord, log_text: str | None, console: Any = None) -> None:
    from rich.console import Console

    from chexvision.remote import describe_handle

    console = console or Console(highlight=False)
    for label, value in [
        ("run", r.run_id),
        ("status", str(r.status)),
        ("model", model(r)),
        ("backend", f"{r.backend} ({describe_handle(r)})"),
        ("preset", r.meta.get("preset") or "-"),
        ("parent", r.parent_run_id or "-"),
        ("created", f"{r.created_at} ({duration(parse_time(r.created_at), None)} ago)"),
        ("elapsed", duration(parse_time(r.started_at), parse_time(r.finished_at))),
        ("best val AUC", auc(r)),
        ("bundle", f"{r.bundle_sha256 or '-'} ({r.bundle_size or 0:,} bytes)"),
        ("git", r.git_sha or "-"),
        ("output", r.output_dir or "-"),
        ("hub", f"{r.hub_repo}@{r.hub_tag or r.hub_revision}" if r.hub_repo else "-"),
        ("failure", r.failure_reason or "-"),
    ]:  # soft_wrap: a path or a reason stays whole (the terminal wraps it, copy-paste keeps it)
        console.print(f"[bold]{label:>13}[/] ", end="")
        console.print(value, markup=False, soft_wrap=True)
    tail = log_tail(log_text or "")
    if tail:
        console.print(f"[bold]{'last log lines':>13}[/]")
        console.print("\n".join(tail), markup=False, soft_wrap=True)
