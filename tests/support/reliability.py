"""The reliability harness: run a command as a user would, then check what a user relies on (used by tests/reliability).

Every case in `tests/reliability/` asserts the same four things through `expect_clean_error`: the documented exit
code, exactly one line on stderr that names the thing (and starts with `error:`), no traceback anywhere, and that
nothing already written changed (the digest of the folders the case names, before and after).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (a missing root digests to nothing): what 'nothing changed' compares."""
    digest: dict[str, str] = {}
    for root in roots:
        if root.is_file():
            digest[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file():
                digest[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def invoke(args: Sequence[str], env: dict[str, str] | None = None) -> Outcome:
    """`chexvision ARGS` in-process through Typer's runner (stdout and stderr kept apart)."""
    from chexvision.cli.main import app

    result = CliRunner().invoke(app, list(args), env=env)
    return Outcome(result.exit_code, result.stdout, result.stderr, result.exception)


def check_clean_error(outcome: Outcome, *, exit_code: int = 2, names: Sequence[str] = ()) -> str:
    """Assert the one-line-error contract and return that line."""
    everything = outcome.stdout + outcome.stderr
    assert "Traceback" not in everything, everything
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), repr(outcome.exception)
    assert outcome.exit_code == exit_code, f"exit {outcome.exit_code}, wanted {exit_code}: {everything}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"wanted one line on stderr, got {len(lines)}: {outcome.stderr!r}"
    line = lines[0]
    assert line.startswith("error:"), line
    for name in names:
        assert name in line, f"{name!r} not named in {line!r}"
    return line


ExpectCleanError = Callable[..., str]


def make_expect_clean_error() -> ExpectCleanError:
    """`expect_clean_error(args, keep=[paths], exit_code=2, names=[...], env=None)` -> the error line.

    Runs the command, checks the one-line-error contract and that every file under `keep` is byte-identical after.
    """

    def run(
        args: Sequence[str],
        *,
        keep: Sequence[Path] = (),
        exit_code: int = 2,
        names: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> str:
        before = tree_digest(*keep)
        line = check_clean_error(invoke(args, env), exit_code=exit_code, names=names)
        assert tree_digest(*keep) == before, "the command changed files it must leave alone"
        return line

    return run
