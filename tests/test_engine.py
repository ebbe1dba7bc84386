"""The training engine on real pieces: tiny models, real loaders over small synthetic shards, CPU.

In-process runs use `data.workers=0`: forking DataLoader workers from a process that already ran cv2 can hang.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from chexvision.config import TrainConfig, load_config
from chexvision.data.shards import ShardRow, encode_png, write_shard
from chexvision.data.synthetic import generate, write_synthetic
from chexvision.engine import train as train_mod
from chexvision.engine.checkpoint import load_checkpoint
from chexvision.engine.distributed import DistInfo
from chexvision.engine.loss import CheXLoss, pos_weight_from_labels
from chexvision.engine.metrics import validation_metrics
from chexvision.engine.optim import build_optimizer, build_scheduler, param_groups, plan_phases
from chexvision.engine.train import Trainer, _make_loaders, fit, train_one_epoch
from chexvision.errors import BadInputError, RunFailedError
from chexvision.labels import LABELS, format_labels, parse_labels
from chexvision.models import create_model, tiny_kwargs

TINY = ["data.workers=0", "data.size=64", "data.batch_size=32", "cpu_threads=1"]


def _cfg(model: str, *extra: str) -> TrainConfig:
    cfg = load_config("smoke", None, [f"model.name={model}", *TINY, *extra])
    cfg.model.kwargs = tiny_kwargs(model)  # the registry's test-size variant
    return cfg


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, 240, 64, 3)
    return out


@pytest.fixture(scope="module")
def no_hernia(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic images with Hernia removed from every label: the class has no positives anywhere."""
    out = tmp_path_factory.mktemp("nohernia")
    rows = []
    for s in generate(200, 64, 5):
        names = [n for n in parse_labels(s.labels) if n != "Hernia"]
        rows.append(ShardRow(filename=s.filename, labels=format_labels(names), image=encode_png(s.image)))
    (out / "data").mkdir()
    write_shard(out / "data" / "data-00000-of-00001.parquet", rows)
    (out / "dataset.json").write_text(json.dumps({"source": "synthetic", "default_split_scheme": "patient"}))
    return out


# --- pieces -----------------------------------------------------------------------------------------------------


def test_pos_weight_is_neg_over_pos_capped() -> None:
    labels = np.zeros((100, 3), dtype=np.float32)
    labels[:20, 0] = 1  # 80/20 = 4
    labels[:1, 1] = 1  # 99/1 capped at 10
    weight = pos_weight_from_labels(labels, cap=10.0)
    assert weight.tolist() == pytest.approx([4.0, 10.0, 10.0])  # no positives -> the cap


def test_loss_is_weighted_sum_of_the_two_bce_terms() -> None:
    multi, binary = torch.zeros(4, 14), torch.zeros(4)
    y14, ybin = torch.ones(4, 14), torch.ones(4)
    loss = CheXLoss(torch.full((14,), 2.0), binary_weight=0.5)(multi, binary, y14, ybin)
    assert float(loss) == pytest.approx(2.0 * math.log(2) + 0.5 * math.log(2))


def test_weight_decay_skips_norms_and_biases() -> None:
    model = create_model("seresnet", depths=(1, 1, 1, 1), widths=(8, 16, 32, 64))
    decay, no_decay = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])  # type: ignore[attr-defined]
    norms = {id(m.weight) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert norms <= {id(p) for p in no_decay["params"]}  # type: ignore[attr-defined]


def test_schedule_warms_up_to_the_peak_then_decays_per_step() -> None:
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, load_config().optim, lr=1e-3)
    sched = build_scheduler(opt, total_steps=20, warmup_steps=4, min_lr_ratio=0.0)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[4] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    assert all(a > b for a, b in itertools.pairwise(lrs[4:])) and lrs[-1] < 1e-5
    assert sched.base_lrs == [1e-3, 1e-3]


def test_metrics_leave_classes_without_positives_out() -> None:
    rng = np.random.default_rng(0)
    y14 = (rng.random((50, 14)) < 0.3).astype(np.float32)
    y14[:, 13] = 0
    prob = np.clip(y14 * 0.5 + rng.random((50, 14)) * 0.5, 0, 1)
    m = validation_metrics(prob, prob[:, 0], y14, y14[:, 0])
    assert m["per_class_auc"]["Hernia"] is None
    assert m["macro_auc"] == pytest.approx(np.mean([m["per_class_auc"][n] for n in LABELS[:13]]))
    assert json.loads(json.dumps(m))["per_class_auc"]["Hernia"] is None


# --- the loop ---------------------------------------------------------------------------------------------------


def _trainer(cfg: TrainConfig, data: Path) -> tuple[Trainer, Any]:
    dist = DistInfo()
    train_mod._configure_torch(cfg, dist)  # cpu_threads=1, as fit does
    loaders = _make_loaders(cfg, data, dist)
    model = create_model(cfg.model.name, **cfg.model.kwargs)
    loss = CheXLoss(pos_weight_from_labels(loaders.train_labels, 50.0))
    return Trainer(cfg, dist, model, loss, None, len(loaders.train)), loaders


def test_densenet_phases_freeze_backbone_and_apply_both_rates(synth: Path) -> None:
    cfg = _cfg("densenet", "schedule.epochs=3", "schedule.frozen_epochs=1", "optim.lr=1e-4",
               "schedule.frozen_lr=1e-3", "optim.warmup_steps=1")  # fmt: skip
    tr, loaders = _trainer(cfg, synth)
    phase1, phase2 = plan_phases(cfg.schedule, cfg.optim)
    tr.enter_phase(phase1)
    assert tr.scheduler is not None and tr.scheduler.base_lrs == pytest.approx([1e-3] * len(tr.scheduler.base_lrs))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    lrs: list[float] = []

    class Steps:
        def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
            lrs.append(lr)

    train_one_epoch(tr, loaders, 1, Steps())  # type: ignore[arg-type]
    after = {k: v.clone() for k, v in tr.model.state_dict().items()}
    backbone = [k for k in before if k.startswith("features.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(before[k], after[k]) for k in backbone)  # weights and BatchNorm statistics
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("head."))
    assert max(lrs) == pytest.approx(1e-3)

    tr.enter_phase(phase2)
    assert tr.scheduler.base_lrs == pytest.approx([1e-4] * len(tr.scheduler.base_lrs))
    lrs.clear()
    train_one_epoch(tr, loaders, 2, Steps())  # type: ignore[arg-type]
    assert max(lrs) == pytest.approx(1e-4)
    assert not all(torch.equal(after[k], tr.model.state_dict()[k]) for k in backbone)


def test_fit_writes_history_and_marks_undefined_auc_null(no_hernia: Path, tmp_path: Path) -> None:
    cfg = _cfg("densenet", "schedule.epochs=2", "schedule.frozen_epochs=1", "optim.lr=1e-4")
    result = fit(cfg, no_hernia, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [e["phase"] for e in history["epochs"]] == [1, 2]
    assert all(e["val_per_class_auc"]["Hernia"] is None for e in history["epochs"])
    assert result.status == "complete" and history["best_epoch"] == result.best_epoch
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["dataset"]["source"] == "synthetic"


def test_non_finite_loss_stops_with_error_and_keeps_last_good_checkpoint(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg("seresnet", "schedule.epochs=3")
    original = train_mod.train_one_epoch

    def diverge_in_epoch_2(tr: Trainer, loaders: Any, epoch: int, reporter: Any) -> dict[str, float]:
        if epoch == 2:  # what a diverged model produces
            tr.model.head.multi.bias.data.fill_(float("nan"))  # type: ignore[union-attr, operator]
        return original(tr, loaders, epoch, reporter)

    monkeypatch.setattr(train_mod, "train_one_epoch", diverge_in_epoch_2)
    with pytest.raises(RunFailedError, match="non-finite loss"):
        fit(cfg, synth, tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "error" and "non-finite" in run["reason"]
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["epoch"] == 1


def test_cuda_oom_names_batch_and_accumulation(synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(*args: Any, **kwargs: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_mod, "train_one_epoch", oom)
    with pytest.raises(RunFailedError) as info:
        fit(_cfg("seresnet", "optim.accumulation=2"), synth, tmp_path / "run")
    text = info.value.one_line()
    assert "batch size 32" in text and "accumulation 2" in text and "--set data.batch_size=16" in text
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "error"


def test_time_budget_stops_incomplete_and_resume_finishes(synth: Path, tmp_path: Path) -> None:
    cfg = _cfg("seresnet", "schedule.epochs=3")
    first = fit(cfg, synth, tmp_path / "run", time_budget_hours=1e-6)
    assert (first.status, first.stop_reason, len(first.history)) == ("incomplete", "time_budget", 1)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "incomplete"
    second = fit(cfg, synth, tmp_path / "run", resume=True)
    assert second.status == "complete" and [e["epoch"] for e in second.history] == [1, 2, 3]
    assert second.run_id == first.run_id
    again = fit(cfg, synth, tmp_path / "run", resume=True)
    assert again.stop_reason == "already_complete"


def test_resume_under_a_new_run_id_is_a_child_run_linked_to_its_parent(synth: Path, tmp_path: Path) -> None:
    cfg = _cfg("seresnet", "schedule.epochs=2")
    parent = fit(cfg, synth, tmp_path / "run", time_budget_hours=1e-6)  # what dispatch restores, unfinished
    child = fit(cfg, synth, tmp_path / "run", resume=True, run_id="seresnet-child-0001")  # --resume-from
    assert (child.status, child.run_id, [e["epoch"] for e in child.history]) == ("complete", "seresnet-child-0001",
                                                                                 [1, 2])  # fmt: skip
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (run["run_id"], run["parent_run_id"], run["status"]) == ("seresnet-child-0001", parent.run_id, "complete")


def test_existing_run_is_never_overwritten(synth: Path, tmp_path: Path) -> None:
    cfg = _cfg("seresnet", "schedule.epochs=1")
    fit(cfg, synth, tmp_path / "run")
    with pytest.raises(BadInputError, match="already holds a run"):
        fit(cfg, synth, tmp_path / "run")


def test_early_stopping_on_patience(synth: Path, tmp_path: Path) -> None:
    cfg = _cfg("seresnet", "schedule.epochs=6", "schedule.patience=1", "schedule.min_delta=1.0")
    result = fit(cfg, synth, tmp_path / "run")  # min_delta 1.0: no epoch after the first can improve
    assert (result.stop_reason, len(result.history), result.best_epoch) == ("early_stop", 2, 1)


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_amp_channels_last_and_gpu_augmentation(synth: Path, tmp_path: Path, amp: str) -> None:
    cfg = load_config(
        "smoke", None, ["model.name=densenet", "data.workers=0", "schedule.epochs=2", "schedule.frozen_epochs=1",
                        f"optim.amp={amp}", "device=cuda", "data.aug.pipeline=gpu", "optim.accumulation=2"],
    )  # fmt: skip
    result = fit(cfg, synth, tmp_path / "run")
    assert result.status == "complete" and all(math.isfinite(e["train_loss"]) for e in result.history)
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")["scaler"] or amp == "bf16"  # GradScaler state for fp16


def test_a_full_disk_keeps_one_consistent_epoch_and_resume_continues_exactly(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from safetensors.torch import load_file

    from chexvision.engine import checkpoint as ckpt_mod
    from chexvision.rundir import DiskFullError, check_files

    cfg = _cfg("seresnet", "schedule.epochs=2")
    full = fit(cfg, synth, tmp_path / "full")
    real_write = ckpt_mod.write_checkpoint

    def disk_full_at_epoch_2(path: Path, state: dict[str, Any]) -> None:
        if state["epoch"] == 2:
            path.write_bytes(b"\0" * 4096)  # part of the checkpoint lands, then no space is left
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, state)

    monkeypatch.setattr(ckpt_mod, "write_checkpoint", disk_full_at_epoch_2)
    out = tmp_path / "run"
    with pytest.raises(DiskFullError, match="needs at least") as info:
        fit(cfg, synth, out)
    assert str(out) in info.value.message
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "error" and "disk full" in run["reason"]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]  # temporary files removed
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1] and load_checkpoint(out / "last.ckpt")["epoch"] == 1
    best = history["best_epoch"]
    assert json.loads((out / "metrics.json").read_text())["val"]["epoch"] == best  # weights/metrics not ahead
    check_files(out)  # every file is the one run.json records: the directory is one epoch, whole

    monkeypatch.setattr(ckpt_mod, "write_checkpoint", real_write)  # space freed
    resumed = fit(cfg, synth, out, resume=True)
    assert resumed.status == "complete"
    timing = {"seconds", "images_per_second"}
    strip = [{k: v for k, v in e.items() if k not in timing} for e in resumed.history]
    assert strip == [{k: v for k, v in e.items() if k not in timing} for e in full.history]
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    check_files(out)
