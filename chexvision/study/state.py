"""A study's durable record: `$CHEXVISION_HOME/studies/<name>/study.json`, rewritten atomically after every change.

Why a state file and not a table in dispatch's registry: dispatch must stay free of X-ray knowledge, and what a
study records (model, seed, chain of continued runs, test AUC, evaluation and publication) is chexvision's; the
runs themselves stay in the registry, linked by run id. One writer at a time: every change happens under an
exclusive `fcntl` lock on `study.lock` (a `study run` from a laptop and the scheduled workflow cannot interleave),
and each write replaces the file whole (a killed process leaves the previous state, never half of one).

A logical run (one model x one seed) moves through `Phase`; the chain lists every session's run id (the first,
then each continuation with `resume_from`), `run_id` is the last.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from chexvision.errors import BadInputError
from chexvision.files import atomic_write_text
from chexvision.study.spec import StudySpec, spec_from_json

__all__ = ["LogicalRun", "Phase", "StudyState", "list_studies", "locked", "study_dir"]

STATE_FILE = "study.json"
LOCK_FILE = "study.lock"


class Phase(StrEnum):
    """Where one logical run stands; declaration order = lifecycle."""

    QUEUED = "queued"  # waiting for capacity or quota (`waiting` says which)
    DISPATCHING = "dispatching"  # a run id was chosen and is being pushed (a killed push is found again by it)
    RUNNING = "running"  # the chain's last session runs on the backend
    FINISHING = "finishing"  # complete: fetching, evaluating, publishing
    DONE = "done"  # evaluated and published
    FAILED = "failed"  # a session ended in error, or the chain used up max_sessions
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        return self in (Phase.DONE, Phase.FAILED, Phase.CANCELLED)


@dataclass
class LogicalRun:
    model: str
    seed: int
    phase: Phase = Phase.QUEUED
    chain: list[str] = field(default_factory=list)  # every session's run id, first to last
    pending_id: str | None = None  # the id being dispatched (DISPATCHING)
    resume_from: str | None = None  # the session the next dispatch continues
    waiting: str | None = None  # why a queued run waits (capacity, quota)
    error: str | None = None
    run_dir: str | None = None
    test_macro_auc: float | None = None
    published: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.model}-s{self.seed}"

    @property
    def run_id(self) -> str | None:
        return self.chain[-1] if self.chain else None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "phase": str(self.phase)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LogicalRun:
        return cls(**{**doc, "phase": Phase(doc["phase"])})


@dataclass
class StudyState:
    spec: StudySpec
    runs: list[LogicalRun]
    cancelled: bool = False
    report: dict[str, str] | None = None  # kind (html, markdown, summary) -> path
    published_report: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.runs and all(r.phase.is_terminal() for r in self.runs):
            return (
                "complete"
                if self.report
                else ("failed" if all(r.phase != Phase.DONE for r in self.runs) else "reporting")
            )
        return "running" if any(r.chain for r in self.runs) else "queued"

    @classmethod
    def new(cls, spec: StudySpec) -> StudyState:
        return cls(spec, [LogicalRun(m.name, seed) for seed in spec.seeds for m in spec.models])

    def with_spec(self, spec: StudySpec) -> None:
        """Take a re-read study file: keep every run already known, add the new (model, seed) pairs."""
        self.spec = spec
        known = {r.key for r in self.runs}
        self.runs += [r for r in StudyState.new(spec).runs if r.key not in known]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "state": self.state, "spec": self.spec.to_json(),
            "runs": [r.to_json() for r in self.runs], "cancelled": self.cancelled, "report": self.report,
            "published_report": self.published_report,
        }  # fmt: skip

    def save(self, home: Path) -> None:
        folder = study_dir(home, self.name)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / STATE_FILE, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, home: Path, name: str) -> StudyState:
        path = study_dir(home, name) / STATE_FILE
        if not path.is_file():
            known = ", ".join(list_studies(home)) or "none yet"
            raise BadInputError(f"no study named {name!r}", f"known studies: {known}; start one with `study run FILE`")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                spec_from_json(doc["spec"]), [LogicalRun.from_json(r) for r in doc["runs"]],
                cancelled=bool(doc.get("cancelled")), report=doc.get("report"),
                published_report=doc.get("published_report"),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInputError(
                f"{path} is not a study state file ({exc})", "move it aside and run the study again"
            ) from None


def study_dir(home: Path, name: str) -> Path:
    return Path(home) / "studies" / name


def list_studies(home: Path) -> list[str]:
    root = Path(home) / "studies"
    return sorted(p.name for p in root.iterdir() if (p / STATE_FILE).is_file()) if root.is_dir() else []


@contextlib.contextmanager
def locked(home: Path, name: str) -> Iterator[None]:
    """Hold the study's exclusive lock (blocks while another process advances the same study)."""
    folder = study_dir(home, name)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
