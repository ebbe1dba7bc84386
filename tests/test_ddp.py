"""DDP under `torchrun --nproc_per_node 2` on CPU (gloo): one run directory written by rank 0 only, and validation
metrics gathered over both ranks equal to a single process evaluating the same weights on the whole split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from chexvision.config import TrainConfig
from chexvision.data.synthetic import write_synthetic
from chexvision.engine.distributed import DistInfo
from chexvision.engine.loss import CheXLoss, pos_weight_from_labels
from chexvision.engine.train import Trainer, _make_loaders, validate
from chexvision.models import build_from_config

pytestmark = pytest.mark.slow  # two training processes start torch: ~15-30 s on 2 shared cores


def test_torchrun_two_cpu_ranks(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    write_synthetic(data, 200, 64, 31)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "chexvision", "train", "--model", "seresnet", "--data", str(data), "--out", str(out),
        "--preset", "smoke", "--device", "cpu", "--set", "schedule.epochs=2", "--set", "data.workers=0",
        "--set", "data.batch_size=16", "--set", "cpu_threads=1",
        "--set", "model.kwargs.widths=[8, 16, 32, 64]", "--json",
    ]  # fmt: skip
    env = {**os.environ, "CI": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(printed) == 1 and json.loads(printed[0])["status"] == "complete"  # rank 0 reports, alone

    log = (out / "train.log").read_text().splitlines()
    assert sum(" started" in line for line in log) == 1 and sum(" epoch " in line for line in log) == 2
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    history = json.loads((out / "history.json").read_text())

    # One process, the same weights, the whole validation split: the metrics DDP gathered.
    config = json.loads((out / "config.json").read_text())
    cfg = TrainConfig.from_dict(config)
    model = build_from_config(config["model"])
    model.load_state_dict(load_file(str(out / "model.safetensors")))
    dist = DistInfo()
    loaders = _make_loaders(cfg, data, dist)
    loss = CheXLoss(pos_weight_from_labels(loaders.train_labels, cfg.loss.pos_weight_cap))
    single = validate(Trainer(cfg, dist, model, loss, None, 1), loaders)
    ddp = history["epochs"][history["best_epoch"] - 1]
    assert single["count"] == loaders.counts["val"]
    assert single["macro_auc"] == pytest.approx(ddp["val_macro_auc"], abs=1e-6)
    assert single["binary_auc"] == pytest.approx(ddp["val_binary_auc"], abs=1e-6)
    assert single["val_loss"] == pytest.approx(ddp["val_loss"], rel=1e-5)
