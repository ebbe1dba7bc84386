"""Reliability of the dispatch side (issue 10, defects 1, 2, 5, 10): bad inputs and faults as a user meets them.

One table: each case prepares the fault, names the command, what its one error line must name, and what must be
left byte-identical; `expect_clean_error` checks exit code, the one `error:` line, no traceback and the folders.
The secret cases also check that the planted secret appears nowhere in what the user sees.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chexvision import remote
from chexvision.cli.main import app
from dispatch.registry import Registry, RunRecord

RUN = "densenet-20260101-0000-abcd"
HF_TOKEN = "hf_" + "Zq7Xw2Lm9Pv4Rt6Yb8Nc1Kd3Fg5Hj0Ls2Ua"  # the shape of a real token: hf_ + 34 letters and digits
KAGGLE_KEY = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"  # 32 hex digits
SECRETS = (HF_TOKEN, KAGGLE_KEY)
LOCAL_TRAIN = ["dispatch", "train", "--model", "densenet", "--backend", "local"]


@dataclass
class Case:
    args: list[str]
    names: list[str]
    keep: list[Path] = field(default_factory=list)
    exit_code: int = 2


@dataclass
class Env:
    home: Path
    kaggle: Path
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest


# --- faults ------------------------------------------------------------------------------------------------------


def _registry_with_a_run(home: Path) -> Path:
    db = home / "runs.db"
    with Registry.open(db) as reg:
        for i in range(200):  # many pages, so that half the file is a real truncation
            reg.add(RunRecord(run_id=f"densenet-20260101-0000-{i:04x}", backend="local", label="densenet"))
        reg.add(RunRecord(run_id=RUN, backend="local", label="densenet"))
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def _damaged(kind: str, args: list[str]) -> Callable[[Env], Case]:
    def setup(env: Env) -> Case:
        db = _registry_with_a_run(env.home)
        (env.home / "runs" / RUN).mkdir(parents=True)  # a fetched run: must stay as it is
        (env.home / "runs" / RUN / "run.json").write_text("{}")
        if kind == "truncated":
            db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
        elif kind == "garbage":
            db.write_bytes(os.urandom(8192))
        else:  # another kind of file under the name
            db.write_bytes(gzip.compress(b"not a database", mtime=0))
        return Case(args, names=[str(db), "not a readable SQLite database", "--repair"], keep=[env.home])

    return setup


def _bad_override(item: str, named: str) -> Callable[[Env], Case]:
    def setup(env: Env) -> Case:
        out = env.tmp / "kernel"
        return Case([*LOCAL_TRAIN, "--set", item, "--dry-run", "--out", str(out)], [named], keep=[env.home, out])

    return setup


def _kaggle_json(content: str, problem: str) -> Callable[[Env], Case]:
    def setup(env: Env) -> Case:
        env.request.getfixturevalue("fake_kaggle")  # the fake client: nothing may reach it
        path = env.kaggle / "kaggle.json"
        path.write_text(content)
        path.chmod(0o600)
        args = ["dispatch", "train", "--model", "densenet", "--backend", "kaggle"]
        return Case(args, [str(path), problem], keep=[env.home, env.kaggle])

    return setup


def _planted(name: str, content: bytes) -> Callable[[Env], Case]:
    def setup(env: Env) -> Case:
        tree = env.tmp / "tree"
        shutil.copytree(
            remote.repo_root() / "chexvision",
            tree / "chexvision",
            ignore=shutil.ignore_patterns("__pycache__", "Data_Entry*", "BBox*", "*train_val*", "chexnet_*"),
        )
        (tree / "chexvision" / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / "chexvision" / name).write_bytes(content)
        env.monkeypatch.setattr(remote, "repo_root", lambda: tree)
        out = env.tmp / "kernel"
        args = [*LOCAL_TRAIN, "--dry-run", "--out", str(out)]
        return Case(args, [f"refusing to bundle chexvision/{name}"], keep=[env.home, tree, out])

    return setup


CASES: dict[str, Callable[[Env], Case]] = {
    # defect 2: a damaged registry, on every registry command
    **{
        f"runs.db {kind}: {' '.join(args)}": _damaged(kind, args)
        for kind in ("truncated", "garbage", "other-format")
        for args in (
            ["status"],
            ["status", RUN],
            ["status", "--watch"],
            ["logs", RUN],
            ["cancel", RUN],
            ["fetch", "--run", RUN, "--no-publish"],
            [*LOCAL_TRAIN, "--resume-from", RUN],
            [*LOCAL_TRAIN, "--data", "synthetic:40:32"],
        )
    },
    # defect 5: an override is checked against the schema before anything is bundled
    "--set data.batch_size=abc": _bad_override("data.batch_size=abc", "data.batch_size"),
    "--set unknown key": _bad_override("nosuch.key=1", "nosuch.key"),
    "--set without =": _bad_override("train.epochs", "train.epochs"),
    "--set out of range": _bad_override("data.batch_size=-3", "data.batch_size"),
    "--set wrong type": _bad_override("data.size=1.5", "data.size"),
    "--set holding a token": _bad_override(f"train.note={HF_TOKEN}", "Hugging Face token"),
    # defect 10: a kaggle.json that cannot work
    "kaggle.json bad JSON": _kaggle_json('{"username": "alice", "key": "' + KAGGLE_KEY + '"', "not valid JSON"),
    "kaggle.json without key": _kaggle_json(json.dumps({"username": "alice"}), 'no "key"'),
    "kaggle.json without username": _kaggle_json(json.dumps({"key": KAGGLE_KEY}), 'no "username"'),
    "kaggle.json not an object": _kaggle_json(json.dumps([KAGGLE_KEY]), "not a JSON object"),
    # defect 1: a secret anywhere in what would be bundled
    "hf_ token in a .py": _planted("cfg.py", f"TOKEN = '{HF_TOKEN}'\n".encode()),
    "kaggle_key in a .py": _planted("keys.py", f'kaggle_key = "{KAGGLE_KEY}"\n'.encode()),
    "hf_ token in a 2.4 MB file": _planted("big.py", b"x = 1\n" * 400_000 + f"t = '{HF_TOKEN}'\n".encode()),
    "hf_ token in a .gz": _planted("data/stats.json.gz", gzip.compress(f'{{"t": "{HF_TOKEN}"}}'.encode(), mtime=0)),
    "kaggle.json in the tree": _planted("data/kaggle.json", json.dumps({"username": "a", "key": KAGGLE_KEY}).encode()),
    "corrupt .gz": _planted("data/broken.txt.gz", gzip.compress(b"text " * 500, mtime=0)[:30]),
}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Env:
    monkeypatch.setenv("DISPATCH_KERNEL_SKIP_PROBES", "1")
    home = Path(os.environ["CHEXVISION_HOME"])
    return Env(home, Path(os.environ["KAGGLE_CONFIG_DIR"]), tmp_path, monkeypatch, request)


@pytest.mark.parametrize("name", list(CASES))
def test_dispatch_fault(name: str, env: Env, expect_clean_error: Callable[..., str]) -> None:
    case = CASES[name](env)
    line = expect_clean_error(case.args, keep=case.keep, exit_code=case.exit_code, names=case.names)
    assert not any(secret in line for secret in SECRETS)
    if name.startswith(("hf_", "kaggle_key", "kaggle.json in")):  # the secret appears nowhere the user looks
        result = CliRunner().invoke(app, case.args)
        assert not any(secret in result.stdout + result.stderr for secret in SECRETS)


def test_status_repair_moves_the_damaged_registry_aside_and_touches_nothing_else(env: Env) -> None:
    db = _registry_with_a_run(env.home)
    db.write_bytes(db.read_bytes()[:5000])
    (env.home / "runs" / RUN).mkdir(parents=True)
    (env.home / "runs" / RUN / "run.json").write_text("{}")
    damaged = db.read_bytes()
    others = {p: p.read_bytes() for p in env.home.rglob("*") if p.is_file() and p != db}

    repaired = CliRunner().invoke(app, ["status", "--repair", "--json"])
    assert repaired.exit_code == 0, repaired.output
    moved = Path(json.loads(repaired.stdout)["moved_to"])
    assert moved.parent == env.home and moved.read_bytes() == damaged and not db.exists()
    assert {p: p.read_bytes() for p in others} == others

    listed = CliRunner().invoke(app, ["status", "--json"])  # a fresh registry works again
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    again = CliRunner().invoke(app, ["status", "--repair"])
    assert again.exit_code == 0 and "nothing to repair" in again.stderr


def test_a_kaggle_json_readable_by_others_is_warned_about_on_stderr(env: Env) -> None:
    """As a user runs it (a real process: the warning must reach the terminal), offline: a dry run needs no API."""
    path = env.kaggle / "kaggle.json"
    path.write_text(json.dumps({"username": "alice", "key": KAGGLE_KEY}))
    path.chmod(0o644)
    out = env.tmp / "kernel"
    args = ["dispatch", "train", "--model", "densenet", "--backend", "kaggle", "--dry-run", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "chexvision", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert f"readable by other users; run `chmod 600 {path}`" in result.stderr  # a warning, not a refusal
    assert KAGGLE_KEY not in result.stdout + result.stderr
    assert (out / "kernel-metadata.json").is_file()
