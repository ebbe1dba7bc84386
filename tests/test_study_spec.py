"""The study file: the shipped studies load, every problem is one line naming the key and the file (exit 2), and
the kaggle-t4 preset keeps the original's global batch of 96 on Kaggle's two GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chexvision.cli.main import app
from chexvision.errors import BadInputError
from chexvision.study.spec import load_study, parse_study

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = 'name = "t"\nseeds = [0]\n[[models]]\nname = "densenet"\npreset = "smoke"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_shipped_studies_load() -> None:
    h2h = load_study(ROOT / "studies" / "head-to-head.toml")
    assert [m.name for m in h2h.models] == ["seresnet", "densenet"] and h2h.seeds == (0, 1, 2)
    assert (h2h.backend.name, h2h.backend.gpu, h2h.backend.max_concurrent) == ("kaggle", "t4x2", 2)
    assert all(m.preset == "kaggle-t4" for m in h2h.models) and not h2h.publishing.public
    smoke = load_study(ROOT / "studies" / "smoke.toml")
    assert smoke.backend.name == "local" and smoke.seeds == (0,) and smoke.data and smoke.data.startswith("synthetic")
    assert {m.name for m in smoke.models} == {"densenet", "seresnet"} and smoke.publishing.target == "folder"
    assert smoke.repo_for("densenet") == "chexvision-smoke-densenet"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("colour = 1\n", "unknown key 'colour' in the top level"),
        ("[backend]\nnmae = 'local'\n", "unknown key 'nmae' in [backend] — did you mean 'name'?"),
        ("[evaluation]\nbootstrap = 'many'\n", "[evaluation] bootstrap must be an integer"),
        ("[evaluation]\nsplit = 'train'\n", "[evaluation] split must be test or val"),
        ("[data]\nsplit_scheme = 'random'\n", "[data] split_scheme 'random' unknown"),
        ("[backend]\nmax_concurrent = 0\n", "[backend] max_concurrent must be at least 1"),
        ("[publish]\nrepo = 'x-{user}'\n", "[publish] repo 'x-{user}' is not a pattern"),
        ("[[models]]\nname = 'densenet'\n", "a model is listed twice"),
    ],
)
def test_a_bad_study_file_is_one_line_naming_the_key_and_file(tmp_path: Path, extra: str, words: str) -> None:
    path = _write(tmp_path, MINIMAL + extra if extra.startswith("[") else extra + MINIMAL)  # TOML: keys before tables
    with pytest.raises(BadInputError) as info:
        load_study(path)
    assert words in info.value.one_line() and str(path) in info.value.one_line()
    result = CliRunner().invoke(app, ["study", "run", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.output


def test_a_model_key_in_the_wrong_place_names_the_model(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace('preset = "smoke"', 'preset = "smoke"\nepochs = 3'))
    with pytest.raises(BadInputError, match=r"unknown key 'epochs' in \[models\[0\]\]"):
        load_study(path)


def test_bad_overrides_and_models_are_refused_before_anything_is_dispatched(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_key = _write(tmp_path, MINIMAL + 'set = ["schedule.epoch=3"]\n')
    result = runner.invoke(app, ["study", "run", str(bad_key)])
    assert result.exit_code == 2 and "schedule.epoch" in result.stderr
    bad_model = _write(tmp_path, MINIMAL.replace('"densenet"', '"densnet"'))
    result = runner.invoke(app, ["study", "run", str(bad_model)])
    assert result.exit_code == 2 and "did you mean 'densenet'" in result.stderr
    assert not (Path(os.environ["CHEXVISION_HOME"]) / "runs.db").exists()


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["study", "run", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "nope.toml not found" in result.stderr
    result = CliRunner().invoke(app, ["study", "run", str(_write(tmp_path, "name = \n"))])
    assert result.exit_code == 2 and "is not valid TOML" in result.stderr
    result = CliRunner().invoke(app, ["study", "status", "nothing-here"])
    assert result.exit_code == 2 and "no study named 'nothing-here'" in result.stderr


def test_parse_study_rejects_bad_seeds_and_names() -> None:
    cases = (({"name": "Bad Name"}, "not a study name"), ({"name": "a", "seeds": [0, 0]}, "seed is listed twice"),
             ({"name": "a", "seeds": [True]}, "seeds must be"))  # fmt: skip
    for doc, words in cases:
        with pytest.raises(BadInputError, match=words):
            parse_study(doc, "x.toml")


def test_kaggle_t4_keeps_the_original_global_batch_of_96_on_two_gpus() -> None:
    """Batch size and accumulation are per process (each rank's sampler takes its own share, DDP averages the
    gradients); Kaggle's t4x2 is two processes: 24 x 2 x 2 = 96 images per optimizer step, as 24 x 4 on one GPU."""
    from chexvision.config import load_config
    from chexvision.data.loader import BlockShuffleSampler
    from dispatch.backends.kaggle.metadata import GPU_SHAPES

    gpus = 2  # t4x2: NvidiaTeslaT4 is two T4s
    assert GPU_SHAPES["t4x2"] == "NvidiaTeslaT4"
    import numpy as np

    for model in ("densenet", "seresnet"):
        cfg = load_config("kaggle-t4", None, [f"model.name={model}"])
        groups = [np.arange(i * 100, (i + 1) * 100) for i in range(10)]
        shares = [len(list(BlockShuffleSampler(groups, seed=0, num_replicas=gpus, rank=r))) for r in range(gpus)]
        assert shares == [500, 500]  # each rank sees its own half: its micro-batches are its own images
        global_batch = cfg.data.batch_size * cfg.optim.accumulation * gpus
        assert (cfg.data.batch_size, cfg.optim.accumulation, global_batch) == (24, 2, 96)


def test_study_status_and_a_dispatch_pass_import_no_torch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    study = _write(tmp_path, MINIMAL + '[data]\nsource = "synthetic:64:32"\n[publish]\nenabled = false\n')
    code = (
        "import sys, json\nfrom chexvision.cli.main import app\n"
        "for args in ({!r}, ['study', 'status', 't', '--json']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
        "print('HEAVY:', sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    ).format(["study", "run", str(study), "--json"])
    env = {**os.environ, "CHEXVISION_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "HEAVY: []" in proc.stdout, proc.stdout + proc.stderr
    status = json.loads(proc.stdout.splitlines()[1])
    assert status["name"] == "t" and status["report"] is None
    (run,) = status["runs"]
    assert set(run) == {"model", "seed", "run_id", "status", "chain", "test_macro_auc"}
    assert run["status"] == "running" and run["chain"] == [run["run_id"]]
    subprocess.run([sys.executable, "-m", "chexvision", "study", "cancel", "t"], env=env, timeout=120, check=True,
                   capture_output=True)  # fmt: skip


@pytest.mark.parametrize(
    ("backend", "want"),
    [
        ('[backend]\nname = "local"\n', 1),  # local: one run at a time by default
        ('[backend]\nname = "local"\nmax_concurrent = 2\n', 2),  # unless the study says
        ('[backend]\nname = "kaggle"\n', 2),  # Kaggle: its two sessions
        ('[backend]\nname = "kaggle"\nmax_concurrent = 5\n', 2),  # never more than the backend allows
    ],
)
def test_runs_at_once_follow_the_backend_and_the_study(tmp_path: Path, backend: str, want: int) -> None:
    from chexvision.study.driver import _limit

    assert _limit(load_study(_write(tmp_path, MINIMAL + backend))) == want
