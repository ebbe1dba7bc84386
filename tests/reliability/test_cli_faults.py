"""The catalogue of bad command lines: every command, every kind of bad input, one clean line each.

One table (`CASES`): the arguments (with `{placeholders}` for the files of a small world built once per module),
the words the one error line must name, and the exit code (2 unless said). Each case also checks, through
`expect_clean_error`, that nothing under the world folder or `$CHEXVISION_HOME` changed or appeared: a refused
command writes nothing. Cases that need a missing GPU skip on a machine that has one.

Not here (their own files): dispatch/registry/secrets/kaggle.json/status, run-dir tampering/disk full/resume config,
data labels/overwrites, evaluate --predictions duplicates.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner

if TYPE_CHECKING:
    from chexvision.config import TrainConfig

ExpectCleanError = Callable[..., str]  # the `expect_clean_error` fixture of tests/reliability/conftest.py

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class World:
    root: Path  # everything the cases may read; nothing under it may change
    paths: dict[str, str]  # placeholder -> path

    def fill(self, text: str) -> str:
        return text.format(**self.paths)


def _write_images(root: Path) -> None:
    import cv2

    cv2.imwrite(str(root / "ok.png"), (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64))
    (root / "corrupt.png").write_bytes(PNG_MAGIC + b"garbage" * 20)  # what makes OpenCV log its own warnings
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("not an image at all\n")


def _write_configs(root: Path) -> None:
    (root / "bad.toml").write_text("[optim\nlr = 3e-4\n")
    (root / "bad.json").write_text('{"optim": {"lr": 3e-4,}}')
    (root / "list.json").write_text("[1, 2, 3]")
    (root / "unknown-key.toml").write_text("[optim]\nlrr = 3e-4\n")
    (root / "wrong-type.toml").write_text('[data]\nbatch_size = "many"\n')
    (root / "config.yaml").write_text("optim:\n  lr: 3e-4\n")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, make_run_dir: Callable[..., Path]) -> World:
    from chexvision.cli.main import app

    root = tmp_path_factory.mktemp("world")
    synth = ["data", "synth", "--out", str(root / "data"), "--images", "40", "--size", "64", "--workers", "1"]
    made = CliRunner().invoke(app, synth)
    assert made.exit_code == 0, made.output
    make_run_dir(root / "run")
    _write_images(root)
    _write_configs(root)
    (root / "empty-dir").mkdir()
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("a folder, but no run.json\n")
    names = ("run", "data", "empty-dir", "not-a-run", "ok.png", "corrupt.png", "empty.png", "notes.png")
    paths = {name.replace(".", "_").replace("-", "_"): str(root / name) for name in names}
    paths |= {p.stem.replace("-", "_") + "_" + p.suffix[1:]: str(p) for p in root.glob("*.*") if p.suffix != ".png"}
    paths |= {"root": str(root), "missing": str(root / "missing"), "new": str(root / "new")}
    return World(root, paths)


def _case(id: str, args: str, *names: str, code: int = 2, no_cuda: bool = False) -> object:
    marks = [pytest.mark.skipif(_has_cuda(), reason="needs a machine without CUDA")] if no_cuda else []
    return pytest.param(args, names, code, id=id, marks=marks)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


TRAIN = "train --model densenet --data {data} --out {new}"
GE0, GE1 = "greater than or equal to 0", "greater than or equal to 1"  # click's words for min=0, min=1
CASES = [
    # unknown names: the line names the value and the valid choices
    _case("unknown-command", "trian", "trian", "train"),
    _case("train-unknown-model", "train --model vgg --data {data} --out {new}", "--model", "vgg", "densenet"),
    _case("train-unknown-option", "train --modle densenet --data {data} --out {new}", "--modle"),
    _case("train-missing-option", "train --data {data} --out {new}", "--model"),
    _case("train-unknown-preset", TRAIN + " --preset smok", "smok", "smoke"),
    _case("train-unknown-split-scheme", TRAIN + " --split-scheme random", "random", "official"),
    _case("train-unknown-device", TRAIN + " --device tpu", "--device", "tpu", "cuda"),
    _case("train-set-unknown-device", TRAIN + ' --set device="tpu"', "tpu", "cuda"),
    _case("predict-unknown-device", "predict {ok_png} --model {run} --device gpu", "gpu", "cuda"),
    _case("evaluate-unknown-device", "evaluate {run} --data {data} --device tpu", "tpu", "cuda"),
    _case("cam-unknown-device", "cam {run} {ok_png} --out {new} --device tpu", "tpu", "cuda"),
    _case("bench-train-unknown-device", "bench train --tiny --device tpu", "tpu", "cuda"),
    _case("bench-train-unknown-model", "bench train --model vgg --tiny", "vgg", "densenet"),
    _case("bench-loader-unknown-mode", "bench loader --data {data} --mode tpu", "tpu", "gpu"),
    _case("cam-unknown-label", "cam {run} {ok_png} --out {new} --label Foo", "Foo", "Cardiomegaly"),
    _case("evaluate-unknown-split", "evaluate {run} --data {data} --split train", "train", "test"),
    _case("dispatch-unknown-backend", "dispatch train --model densenet --backend nope --dry-run --out {new}", "nope"),
    # a device that is not there: one line, exit 2
    _case("predict-cuda-absent", "predict {ok_png} --model {run} --device cuda", "cuda", no_cuda=True),
    _case("evaluate-cuda-absent", "evaluate {run} --data {data} --device cuda", "cuda", no_cuda=True),
    _case("cam-cuda-absent", "cam {run} {ok_png} --out {new} --device cuda", "cuda", no_cuda=True),
    _case("train-cuda-absent", TRAIN + " --device cuda", "cuda", no_cuda=True),
    _case("train-set-device-cuda-absent", TRAIN + ' --set device="cuda"', "cuda", no_cuda=True),
    _case("bench-train-cuda-absent", "bench train --tiny --device cuda", "cuda", no_cuda=True),
    # missing files and folders, for every command that takes a path
    _case("predict-missing-image", "predict {missing}.png --model {run}", "missing.png"),
    _case("predict-missing-model-folder", "predict {ok_png} --model {missing}", "missing"),
    _case("predict-no-images", "predict --model {run}", "images"),
    _case("evaluate-missing-run", "evaluate {missing} --data {data} --out {new}", "missing"),
    _case("evaluate-missing-data", "evaluate {run} --data {missing} --out {new}", "missing"),
    _case("evaluate-missing-predictions", "evaluate --predictions {missing}.csv --labels {missing}.csv", "missing"),
    _case("compare-missing-runs", "compare {missing} {run} --out {new}", "missing"),
    _case("cam-missing-run", "cam {missing} {ok_png} --out {new}", "missing"),
    _case("cam-missing-image", "cam {run} {missing}.png --out {new}", "missing.png"),
    _case("publish-missing-run", "publish {missing} --hub-dir {new}", "missing"),
    _case("train-missing-data", "train --model densenet --data {missing} --out {new}", "missing"),
    _case("train-missing-config", TRAIN + " --config {missing}.toml", "missing.toml"),
    _case("train-missing-weights", TRAIN + " --weights {missing}.pth", "missing.pth"),
    _case("bench-loader-missing-data", "bench loader --data {missing}", "missing"),
    # config files that are not configs
    _case("train-config-bad-toml", TRAIN + " --config {bad_toml}", "bad.toml"),
    _case("train-config-bad-json", TRAIN + " --config {bad_json}", "bad.json"),
    _case("train-config-json-list", TRAIN + " --config {list_json}", "list.json"),
    _case("train-config-unknown-key", TRAIN + " --config {unknown_key_toml}", "optim.lrr", "optim.lr"),
    _case("train-config-wrong-type", TRAIN + " --config {wrong_type_toml}", "data.batch_size"),
    _case("train-config-yaml", TRAIN + " --config {config_yaml}", "config.yaml"),
    _case("train-config-is-a-folder", TRAIN + " --config {empty_dir}", "empty-dir"),
    # folders that are not run directories
    _case("predict-model-not-a-run", "predict {ok_png} --model {not_a_run}", "not-a-run"),
    _case("predict-model-is-data", "predict {ok_png} --model {data}", "data"),
    _case("evaluate-not-a-run", "evaluate {not_a_run} --data {data} --out {new}", "not-a-run"),
    _case("publish-not-a-run", "publish {not_a_run} --hub-dir {new}", "not-a-run"),
    _case("cam-not-a-run", "cam {empty_dir} {ok_png} --out {new}", "empty-dir"),
    _case("compare-not-evaluated", "compare {run} {run} --out {new}", "run"),
    _case("train-data-is-a-run", "train --model densenet --data {run} --out {new}", "run"),
    # an output path the OS refuses: a file where a folder goes
    _case("train-out-is-a-file", "train --model densenet --data {data} --out {ok_png}", "ok.png", "not a folder"),
    _case("cam-out-is-a-file", "cam {run} {ok_png} --out {notes_png}", "notes.png", "not a folder"),
    _case("publish-hub-dir-is-a-file", "publish {run} --hub-dir {ok_png}", "ok.png", "a file where a folder"),
    # bad --set
    _case("set-unknown-key", TRAIN + " --set optim.lrr=1e-3", "optim.lrr", "optim.lr"),
    _case("set-wrong-type", TRAIN + " --set data.batch_size=abc", "data.batch_size", "abc"),
    _case("set-out-of-range", TRAIN + " --set data.size=-5", "data.size", "at least 32"),
    _case("set-no-equals", TRAIN + " --set optim.lr", "optim.lr"),
    # images that are not images
    _case("predict-corrupt-png", "predict {corrupt_png} --model {run}", "corrupt.png"),
    _case("predict-zero-byte-image", "predict {empty_png} --model {run}", "empty.png"),
    _case("predict-text-as-image", "predict {notes_png} --model {run}", "notes.png"),
    _case("predict-folder-as-image", "predict {empty_dir} --model {run}", "empty-dir", "folder"),
    _case("cam-corrupt-png", "cam {run} {corrupt_png} --out {new}", "corrupt.png"),
    _case("cam-zero-byte-image", "cam {run} {empty_png} --out {new}", "empty.png"),
    # numbers out of range: click's bound, named with the option
    _case("evaluate-bootstrap-negative", "evaluate {run} --data {data} --bootstrap -1 --out {new}", "--bootstrap", GE0),
    _case("evaluate-batch-size-zero", "evaluate {run} --data {data} --batch-size 0 --out {new}", "--batch-size", GE1),
    _case("compare-bootstrap-negative", "compare {run} {run} --bootstrap -1 --out {new}", "--bootstrap", GE0),
    _case("cam-top-zero", "cam {run} {ok_png} --out {new} --top 0", "--top 0", "--top 1"),
    _case(
        "evaluate-target-sensitivity-above-1",
        "evaluate {run} --data {data} --target-sensitivity 2 --out {new}",
        "--target-sensitivity",
        "less than or equal to 1",
    ),
    _case(
        "evaluate-bbox-frame-negative", "evaluate {run} --data {data} --bbox-frame -3 --out {new}", "--bbox-frame", GE1
    ),
    _case(
        "evaluate-missing-localization",
        "evaluate {run} --data {data} --localization {missing}.csv --out {new}",
        "--localization",
        "missing.csv",
    ),
    _case("train-time-budget-negative", TRAIN + " --time-budget -1", "--time-budget", GE0),
    _case("bench-train-steps-zero", "bench train --tiny --steps 0", "steps=0"),
    _case("bench-loader-batches-zero", "bench loader --data {data} --batches 0", "batches=0"),
    # conflicting or incomplete options
    _case(
        "evaluate-runs-and-predictions", "evaluate {run} --predictions {ok_png} --out {new}", "--predictions", "RUN_DIR"
    ),
    _case("evaluate-predictions-without-labels", "evaluate --predictions {ok_png}", "--labels"),
    _case("evaluate-runs-without-data", "evaluate {run} --out {new}", "--data"),
    _case("evaluate-nothing", "evaluate", "RUN_DIR"),
    _case("compare-one-run", "compare {run} --out {new}", "two"),
    _case("train-resume-nothing-there", TRAIN + " --resume", "nothing to resume", "{new}", "drop --resume"),
    _case("publish-repo-and-hub-dir-bad-repo", "publish {run} --hub-dir {new} --repo 'not a repo'", "not a repo"),
]


@pytest.mark.parametrize(("args", "names", "code"), CASES)
def test_bad_input_is_one_clean_line(
    world: World, expect_clean_error: ExpectCleanError, monkeypatch: pytest.MonkeyPatch,
    args: str, names: tuple[str, ...], code: int,
) -> None:  # fmt: skip
    monkeypatch.chdir(world.root)  # a default output folder (`cam`, `compare`) would land in the world and be seen
    argv = [world.fill(a) for a in _split(args)]
    home = Path(os.environ["CHEXVISION_HOME"])
    new = Path(world.paths["new"])
    try:
        line = expect_clean_error(argv, keep=[world.root, home], exit_code=code, names=[world.fill(n) for n in names])
        assert not new.exists(), f"a refused command created {new}"
    finally:
        shutil.rmtree(new, ignore_errors=True)  # one failing case must not fail the next
    assert "Usage:" not in line and "╭" not in line


def _split(args: str) -> list[str]:
    import shlex

    return shlex.split(args)


def test_corrupt_png_prints_only_our_line_in_a_real_process(world: World) -> None:
    """OpenCV logs `[ WARN:0@...] grfmt_png.cpp` on the C stderr, out of CliRunner's sight: run a real process."""
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "chexvision", "predict", world.paths["corrupt_png"], "--model", world.paths["run"]],
        capture_output=True, text=True, timeout=300, env=env, cwd=world.root,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "corrupt.png" in lines[0], proc.stderr
    assert "WARN" not in proc.stderr + proc.stdout


def test_catalogue_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)  # type: ignore[attr-defined]


def test_world_files_are_what_the_cases_say(world: World) -> None:
    assert json.loads((world.root / "list.json").read_text()) == [1, 2, 3]
    assert (world.root / "empty.png").stat().st_size == 0


def _screen(raw: str) -> list[str]:
    """What a terminal shows after `raw`: enough of VT100 for rich's live display (CR, LF, cursor up, erase line)."""
    rows: list[list[str]] = [[]]
    row = col = 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]", raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            row, col = row + 1, 0
            rows.extend([] for _ in range(row + 1 - len(rows)))
        elif token.startswith("\x1b["):
            if token.endswith("A"):  # cursor up
                row = max(0, row - int(token[2:-1] or 1))
            elif token == "\x1b[2K":  # erase the line
                rows[row] = []
        else:
            line = rows[row]
            line.extend(" " for _ in range(col + 1 - len(line)))
            line[col] = token
            col += 1
    return [text for text in ("".join(r).rstrip() for r in rows) if text]


def test_an_error_under_a_progress_bar_leaves_only_its_line_on_a_terminal(tmp_path: Path) -> None:
    """Issue 10 #13: `data build` drew its rich bar, then the error below it; on a terminal only the error remains."""
    images = tmp_path / "pngs"
    images.mkdir()
    (images / "00000001_000.png").write_bytes(PNG_MAGIC + b"garbage" * 20)
    leader, follower = pty.openpty()
    args = [sys.executable, "-m", "chexvision", "data", "build", "--images", str(images), "--out", str(tmp_path / "o"),
            "--strict", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=tmp_path)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=300) == 2
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert "building shards" in raw, raw  # the bar was drawn: the test saw a terminal
    screen = _screen(raw)
    assert len(screen) == 1 and screen[0].startswith("error: corrupt image"), screen
    assert "WARN" not in raw  # OpenCV's own lines are silenced too


def _train_config(tmp_path: Path, overrides: list[str], device_flag: str | None) -> TrainConfig:
    from chexvision.engine.launch import flag_overrides, resolve_train_config

    flags = flag_overrides("densenet", None, False, None, device_flag, False)
    return resolve_train_config(out=tmp_path / "run", resume=False, preset=None, config=None, overrides=overrides,
                                flags=flags, model="densenet", device=device_flag)  # fmt: skip


def test_train_honours_the_device_config_key_and_the_flag_wins(tmp_path: Path) -> None:
    """Issue 10 #12: `--set device=cpu` was replaced by the `--device` default (auto) without a word."""
    assert _train_config(tmp_path, ['device="cpu"'], None).device == "cpu"
    assert _train_config(tmp_path, [], None).device == "auto"  # the default everywhere
    assert _train_config(tmp_path, ['device="cpu"'], "auto").device == "auto"  # an explicit flag wins
    assert not (tmp_path / "run").exists()


def test_train_checks_the_device_key_before_anything_is_written(tmp_path: Path) -> None:
    from chexvision.errors import BadInputError, UnknownName

    with pytest.raises(UnknownName, match="unknown device 'tpu'"):
        _train_config(tmp_path, ['device="tpu"'], None)
    if not _has_cuda():
        with pytest.raises(BadInputError, match="CUDA is not available"):
            _train_config(tmp_path, ['device="cuda"'], None)
