"""The training loop: `fit` (run directory, phases, early stopping, resume, time budget), `train_one_epoch`, `validate`.

One code path for CPU, one GPU and `torchrun` DDP. Every epoch ends with an atomic checkpoint and history.json, so a
run killed at any point resumes exactly (`fit(..., resume=True)`) from its last finished epoch. The RNGs are reseeded
from (seed, epoch, rank) at the start of every epoch, which is what makes a resumed run draw the same shuffles,
augmentations and dropout masks as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chexvision.config import TrainConfig
from chexvision.engine.checkpoint import checkpoint_state, checkpoint_writer, open_run, restore_rng, safetensors_writer
from chexvision.engine.distributed import (
    DistInfo,
    all_gather_rows,
    barrier,
    broadcast_buffers,
    init_distributed,
    sum_all,
)
from chexvision.engine.loss import CheXLoss, pos_weight_from_labels
from chexvision.engine.metrics import validation_metrics
from chexvision.engine.optim import Phase, phase_of_epoch, plan_phases
from chexvision.engine.speed import compile_model, resolve_channels_last, resolve_compile
from chexvision.engine.state import FitResult, NullReporter, Reporter, Trainer, environment_info, resolve_amp
from chexvision.engine.telemetry import Telemetry, check_tracking
from chexvision.errors import BadInputError, RunFailedError
from chexvision.files import is_disk_full
from chexvision.rundir import (
    HISTORY_JSON,
    LAST_CKPT,
    METRICS_JSON,
    WEIGHTS,
    DiskFullError,
    RunDir,
    Writer,
    dataset_info,
    epoch_log_line,
    new_run_id,
)

if TYPE_CHECKING:
    from chexvision.models import CheXModel

__all__ = ["FitResult", "NullReporter", "Reporter", "Trainer", "fit", "resolve_amp", "train_one_epoch", "validate"]

logger = logging.getLogger(__name__)


def _seed_epoch(seed: int, epoch: int, rank: int, loaders: Any) -> None:
    """Every RNG the epoch touches, from (seed, epoch, rank): a resumed epoch draws what the original drew."""
    value = (seed * 1_000_003 + epoch * 1_009 + rank) % (2**31)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    loaders.set_epoch(epoch)  # the training order and the augmentation draws of this epoch


def _check_finite(loss: float, dist: DistInfo, where: str) -> None:
    bad = 0.0 if math.isfinite(loss) else 1.0
    if dist.enabled:  # every rank stops together, or the others hang in the next all-reduce
        bad = sum_all([bad], dist)[0]
    if bad:
        raise RunFailedError(
            f"training diverged: non-finite loss ({loss}) at {where}",
            "lower the learning rate (--set optim.lr=...) or set optim.amp=off; last.ckpt keeps the last good epoch",
        )


def train_one_epoch(tr: Trainer, loaders: Any, epoch: int, reporter: Reporter) -> dict[str, float]:
    """One pass over the training loader -> {"train_loss", "lr", "seconds", "images_per_second"} (all ranks)."""
    assert tr.optimizer is not None and tr.scheduler is not None and tr.scaler is not None and tr.net is not None
    net, optimizer, scheduler, scaler = tr.net, tr.optimizer, tr.scheduler, tr.scaler
    accumulation = max(1, tr.cfg.optim.accumulation)
    n_batches = len(loaders.train)
    tr.model.train()  # CheXModel keeps frozen BatchNorm layers in eval mode
    optimizer.zero_grad(set_to_none=True)
    started = time.perf_counter()
    loss_sum, images, lr = 0.0, 0, optimizer.param_groups[0]["lr"]
    group_loss, group_images = torch.zeros((), device=tr.dist.device), 0
    channels_last = resolve_channels_last(tr.cfg.channels_last, tr.dist.device)
    for i, batch in enumerate(loaders.train):
        x, y14, ybin = loaders.batch_to_device(batch, True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        group_size = min(accumulation, n_batches - (i // accumulation) * accumulation)
        last_in_group = (i % accumulation) == group_size - 1
        skip_sync = tr.dist.enabled and not last_in_group  # DDP all-reduces only on the group's last backward
        with net.no_sync() if skip_sync else contextlib.nullcontext():  # type: ignore[operator]
            with tr.autocast():
                multi, binary = net(x)
                loss = tr.loss_fn(multi, binary, y14, ybin)
            scaler.scale(loss / group_size).backward()
        group_loss += loss.detach() * x.shape[0]
        group_images += x.shape[0]
        if not last_in_group:
            continue
        step_loss_sum = float(group_loss.item())  # a CPU-GPU sync point, once per optimizer step
        _check_finite(step_loss_sum, tr.dist, f"epoch {epoch}, step {i // accumulation + 1}")
        if tr.cfg.optim.clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_([p for p in tr.model.parameters() if p.requires_grad], tr.cfg.optim.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        loss_sum += step_loss_sum
        images += group_images
        elapsed = time.perf_counter() - started
        reporter.step(step=i // accumulation + 1, loss=step_loss_sum / group_images, lr=lr,
                      images_per_second=images / max(elapsed, 1e-9))  # fmt: skip
        group_loss.zero_()
        group_images = 0
    broadcast_buffers(tr.model, tr.dist)
    seconds = time.perf_counter() - started
    loss_total, image_total = sum_all([loss_sum, float(images)], tr.dist)
    return {
        "train_loss": loss_total / max(image_total, 1.0),
        "lr": lr,
        "seconds": seconds,
        "images_per_second": image_total / max(seconds, 1e-9),
    }


def _sample_ids(loader: Any, count: int) -> torch.Tensor | None:
    """Dataset indices this rank's val loader visits (DistributedSampler pads by repeating some), if knowable."""
    try:
        ids = torch.tensor(list(iter(loader.sampler)), dtype=torch.int64)
    except TypeError:
        return None
    return ids if len(ids) == count else None


@torch.no_grad()
def validate(tr: Trainer, loaders: Any) -> dict[str, Any]:
    """Loss and metrics over the whole validation split, gathered over ranks (padding dropped); same on all ranks."""
    tr.model.eval()
    outputs: list[list[torch.Tensor]] = [[], [], [], []]
    channels_last = resolve_channels_last(tr.cfg.channels_last, tr.dist.device)
    for batch in loaders.val:
        x, y14, ybin = loaders.batch_to_device(batch, False)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with tr.autocast():
            multi, binary = tr.model(x)
        for store, value in zip(outputs, (multi, binary, y14, ybin), strict=True):
            store.append(value.float().reshape(value.shape[0], -1).cpu())
    rows = torch.cat([torch.cat(o) for o in outputs], dim=1) if outputs[0] else torch.zeros(0, 30)  # 14+1+14+1
    if tr.dist.enabled:
        ids = _sample_ids(loaders.val, rows.shape[0])
        if ids is not None:
            rows = torch.cat([rows, ids.to(rows.dtype).unsqueeze(1)], dim=1)
        rows = torch.cat(all_gather_rows(rows, tr.dist))
        if ids is not None:
            order = rows[:, -1].to(torch.int64)
            _, first = np.unique(order.numpy(), return_index=True)
            rows = rows[torch.as_tensor(first)][:, :-1]
    multi, binary, y14, ybin = rows[:, :14], rows[:, 14], rows[:, 15:29], rows[:, 29]
    pos_weight = tr.loss_fn.pos_weight.cpu()
    val_loss = tr.loss_fn.multi_weight * F.binary_cross_entropy_with_logits(multi, y14, pos_weight=pos_weight)
    val_loss += tr.loss_fn.binary_weight * F.binary_cross_entropy_with_logits(binary, ybin)
    metrics = validation_metrics(torch.sigmoid(multi).numpy(), torch.sigmoid(binary).numpy(), y14.numpy(), ybin.numpy())
    return {"val_loss": float(val_loss), "count": int(rows.shape[0]), **metrics}


# --------------------------------------------------------------------------------------------------------------


def _configure_torch(cfg: TrainConfig, dist: DistInfo) -> None:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for determinism
        torch.use_deterministic_algorithms(True)
    if dist.device.type == "cpu" and cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)  # small CPU models lose more to thread spin-waits than they gain
    if dist.device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic  # fixed input size: let cuDNN pick the kernels


def _make_loaders(cfg: TrainConfig, data_dir: Path, dist: DistInfo) -> Any:
    from chexvision.data.loader import make_loaders

    loaders = make_loaders(
        data_dir, size=cfg.data.size, batch_size=cfg.data.batch_size, split_scheme=cfg.data.split_scheme,
        seed=cfg.data.seed, workers=cfg.data.workers, device=dist.device, aug=cfg.data.aug,
        distributed=dist.enabled, strict=cfg.data.strict, mean=cfg.data.mean, std=cfg.data.std,
    )  # fmt: skip
    if loaders.train is None or len(loaders.train) == 0:
        raise BadInputError(f"{data_dir} has no training images for split {loaders.split_scheme!r}", "check --data")
    if loaders.val is None or len(loaders.val) == 0:
        raise BadInputError(f"{data_dir} has no validation images for split {loaders.split_scheme!r}", "check --data")
    return loaders


def _build_model(cfg: TrainConfig, resuming: bool, dist: DistInfo) -> CheXModel:
    from chexvision.models import create_model

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every rerun
    model = create_model(
        cfg.model.name,
        pretrained=cfg.model.pretrained and not resuming,  # a resumed run's weights come from last.ckpt
        weights=None if resuming else cfg.model.weights,
        **cfg.model.kwargs,
    )
    model.to(dist.device)
    if resolve_channels_last(cfg.channels_last, dist.device):
        model.to(memory_format=torch.channels_last)
    return model


def _record(epoch: int, tr: Trainer, train: dict[str, float], val: dict[str, Any], seconds: float) -> dict[str, Any]:
    assert tr.phase is not None
    return {
        "epoch": epoch, "phase": tr.phase.index, "lr": train["lr"], "train_loss": train["train_loss"],
        "val_loss": val["val_loss"], "val_macro_auc": val["macro_auc"], "val_binary_auc": val["binary_auc"],
        "val_binary_f1": val["binary_f1"], "val_per_class_auc": val["per_class_auc"], "seconds": seconds,
        "images_per_second": train["images_per_second"],
    }  # fmt: skip


def _is_done(cfg: TrainConfig, epoch: int, best: dict[str, Any]) -> bool:
    patience = cfg.schedule.patience
    return epoch >= cfg.schedule.epochs or (patience > 0 and best["bad_epochs"] >= patience)


def fit(
    cfg: TrainConfig,
    data_dir: Path,
    out_dir: Path,
    *,
    resume: bool = False,
    time_budget_hours: float | None = None,
    run_id: str | None = None,
    reporter: Reporter | None = None,
    dist: DistInfo | None = None,
    started: float | None = None,
) -> FitResult:
    """Train `cfg` on `data_dir` into the run directory `out_dir` (DESIGN §4); see the module docstring."""
    started = time.monotonic() if started is None else started
    reporter = reporter or NullReporter()
    dist = dist or init_distributed(cfg.device)
    check_tracking(cfg)  # MLflow asked for but not installed: exit 2 before anything is read or written
    run = RunDir(Path(out_dir))
    ckpt = open_run(run, resume, dist.is_main)
    resumed = run.read_run().get("run_id")
    barrier(dist)  # every rank has looked at the directory before rank 0 writes to it
    _configure_torch(cfg, dist)
    loaders = _make_loaders(cfg, Path(data_dir), dist)
    model = _build_model(cfg, ckpt is not None, dist)
    pos_weight = pos_weight_from_labels(loaders.train_labels, cfg.loss.pos_weight_cap).to(dist.device)
    loss_fn = CheXLoss(pos_weight, multi_weight=cfg.loss.multi_weight, binary_weight=cfg.loss.binary_weight)
    steps = math.ceil(len(loaders.train) / max(1, cfg.optim.accumulation))
    tr = Trainer(cfg, dist, model, loss_fn, resolve_amp(cfg.optim.amp, dist.device), steps)
    phases = plan_phases(cfg.schedule, cfg.optim)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"best_auc": None, "best_epoch": None, "bad_epochs": 0}
    epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        epoch, history, best = int(ckpt["epoch"]), list(ckpt["history"]), dict(ckpt["early_stop"])
    run_id = run_id or resumed or new_run_id(cfg.model.name)  # a new id over a restored run: a child run
    scheme = loaders.split_scheme

    if ckpt is not None and _is_done(cfg, epoch, best):  # e.g. killed between the last checkpoint and run.json
        if dist.is_main and run_id != resumed:
            _record_start(cfg, model, Path(data_dir), loaders, run, run_id)  # the child's own identity
        if dist.is_main and run.read_run().get("status") != "complete":
            run.set_status("complete")
        return FitResult(
            "complete", "already_complete", run.path, run_id, best["best_epoch"], best["best_auc"], history
        )
    if dist.is_main:
        _record_start(cfg, model, Path(data_dir), loaders, run, run_id)
    telemetry = Telemetry.open(cfg, run.path, dist.rank, steps_per_epoch=steps, history=history,
                               world_size=dist.world_size, log=run.append_log)  # fmt: skip
    reporter = telemetry.tee(reporter)  # TensorBoard / MLflow see what the progress bars see (rank 0 writes)
    with telemetry.ending_on_error(), _failures_recorded(run, cfg, dist):
        status, reason = _epochs(tr, loaders, phases, run, epoch, ckpt, history, best, reporter, scheme,
                                 started, time_budget_hours)  # fmt: skip
        if dist.is_main and best["best_epoch"] is None:  # no epoch had a defined AUC: publish the last weights
            run.commit({WEIGHTS: safetensors_writer(model.state_dict())})
    if dist.is_main:
        run.set_status(status, None if status == "complete" else reason)
        if loaders.skipped:
            run.append_log(f"skipped {loaders.skipped} unreadable images (reported above; --strict makes them fatal)")
        run.append_log(f"run {status} ({reason})")
    telemetry.finish(status)  # MLflow gets the final run.json and metrics.json
    return FitResult(status, reason, run.path, run_id, best["best_epoch"], best["best_auc"], history)


def _record_start(cfg: TrainConfig, model: CheXModel, data_dir: Path, loaders: Any, run: RunDir, run_id: str) -> None:
    """Write config.json and run.json (status running) of a new or continued run."""
    from chexvision.data.shards import read_dataset_meta
    from chexvision.models import model_config

    scheme = loaders.split_scheme
    config = cfg.to_dict()
    config["model"]["kwargs"] = model_config(model)["kwargs"]  # exactly what rebuilds the architecture
    config["data"]["split_scheme"] = scheme  # resolved (dataset.json default): evaluation re-splits the same way
    meta = read_dataset_meta(data_dir)
    dataset = dataset_info(meta, scheme, loaders.counts, loaders.clahe, seed=cfg.data.seed,
                           **_split_record(cfg, data_dir, scheme))  # fmt: skip
    if meta.get("labels"):  # which metadata labelled a built set (`data build`: the shipped v2020 CSV)
        dataset["labels"] = meta["labels"]
    run.start(run_id=run_id, model=cfg.model.name, preset=cfg.preset, config=config, dataset=dataset,
              env=environment_info())  # fmt: skip


def _split_record(cfg: TrainConfig, data_dir: Path, scheme: str) -> dict[str, Any]:
    """run.json dataset.split_rule and split_fingerprints: the split exactly as the loaders drew it (same index, scheme
    and seed), so `evaluate` can tell which images training saw."""
    from chexvision.data.shards import ShardIndex
    from chexvision.data.splits import SPLIT_RULE, make_split, split_fingerprints

    shards_log = logging.getLogger("chexvision.data.shards")
    quiet, shards_log.disabled = shards_log.disabled, True  # the loaders have already warned about any bad row
    try:
        index = ShardIndex.open(data_dir, strict=cfg.data.strict)
    finally:
        shards_log.disabled = quiet
    split = make_split(index.filenames, scheme, cfg.data.seed)
    return {"split_rule": SPLIT_RULE, "split_fingerprints": split_fingerprints(index.filenames, split)}


@contextlib.contextmanager
def _failures_recorded(run: RunDir, cfg: TrainConfig, dist: DistInfo) -> Iterator[None]:
    """Leave run.json saying why a run stopped (error / interrupted); CUDA OOM becomes a RunFailedError with the fix."""
    try:
        yield
    except RunFailedError as exc:
        _fail(run, dist, exc.message)
        raise
    except OSError as exc:
        if not is_disk_full(exc):
            _fail(run, dist, f"{type(exc).__name__}: {exc}")
            raise
        full = DiskFullError(run.path, None)  # e.g. the data loader's or torch's own writes
        _fail(run, dist, full.message)
        raise full from exc
    except torch.OutOfMemoryError as exc:
        _fail(run, dist, "CUDA out of memory")
        raise RunFailedError(
            f"CUDA out of memory at batch size {cfg.data.batch_size} x accumulation {cfg.optim.accumulation}",
            f"halve data.batch_size and double optim.accumulation (same effective batch): --set data.batch_size="
            f"{max(1, cfg.data.batch_size // 2)} --set optim.accumulation={cfg.optim.accumulation * 2}",
        ) from exc
    except KeyboardInterrupt:
        if dist.is_main:
            run.set_status("incomplete", "interrupted")
        raise
    except Exception as exc:
        _fail(run, dist, f"{type(exc).__name__}: {exc}")
        raise


def _fail(run: RunDir, dist: DistInfo, reason: str) -> None:
    if dist.is_main and run.run_json.exists():
        run.set_status("error", reason)  # in place if the disk is still full
        with contextlib.suppress(OSError, RunFailedError):  # a full disk may not take the log line
            run.append_log(f"run error: {reason}")


def _epochs(
    tr: Trainer, loaders: Any, phases: list[Phase], run: RunDir, done: int, ckpt: dict[str, Any] | None,
    history: list[dict[str, Any]], best: dict[str, Any], reporter: Reporter, scheme: str, started: float,
    budget_hours: float | None,
) -> tuple[str, str]:  # fmt: skip
    """Epochs done+1 ... until the budget, early stopping or the time budget; returns (status, reason)."""
    cfg, dist = tr.cfg, tr.dist
    durations: list[float] = []
    for epoch in range(done + 1, cfg.schedule.epochs + 1):
        phase = phase_of_epoch(phases, epoch)
        if tr.phase != phase:
            tr.enter_phase(phase)
            tr.net = compile_model(tr.net, resolve_compile(cfg.compile, dist.device))  # per phase: freezing recompiles
            if ckpt is not None and int(ckpt["phase"]) == phase.index:  # resuming inside this phase
                assert tr.optimizer is not None and tr.scheduler is not None and tr.scaler is not None
                tr.optimizer.load_state_dict(ckpt["optimizer"])
                tr.scheduler.load_state_dict(ckpt["scheduler"])
                tr.scaler.load_state_dict(ckpt["scaler"])
                restore_rng(ckpt["rng"])
        epoch_started = time.perf_counter()
        _seed_epoch(cfg.seed, epoch, dist.rank, loaders)
        reporter.start_epoch(epoch, cfg.schedule.epochs, phase.index, tr.steps_per_epoch)
        train = train_one_epoch(tr, loaders, epoch, reporter)
        val = validate(tr, loaders)
        seconds = time.perf_counter() - epoch_started
        durations.append(seconds)
        record = _record(epoch, tr, train, val, seconds)
        history.append(record)
        auc = record["val_macro_auc"]
        improved = auc is not None and (best["best_auc"] is None or auc > best["best_auc"] + cfg.schedule.min_delta)
        if improved:
            best.update(best_auc=auc, best_epoch=epoch, bad_epochs=0)
        else:
            best["bad_epochs"] += 1
        if dist.is_main:
            _save_epoch(tr, run, epoch, history, best, improved, scheme)
        reporter.end_epoch(record)
        if _is_done(cfg, epoch, best):
            return "complete", "epochs" if epoch >= cfg.schedule.epochs else "early_stop"
        if budget_hours is not None:
            over = time.monotonic() - started + max(durations) > budget_hours * 3600
            if sum_all([float(over)], dist)[0] > 0:  # all ranks stop at the same epoch
                return "incomplete", "time_budget"
    return "complete", "epochs"


def _save_epoch(
    tr: Trainer, run: RunDir, epoch: int, history: list[dict[str, Any]], best: dict[str, Any], improved: bool,
    scheme: str,
) -> None:  # fmt: skip
    """One commit per epoch (best weights + metrics when improved, last.ckpt, history.json, run.json's hashes), then
    the log line: a kill or a full disk anywhere leaves the files of one epoch, and `--resume` continues from it."""
    record = history[-1]
    files: dict[str, Writer | dict[str, Any]] = {}
    if improved:
        files[WEIGHTS] = safetensors_writer(tr.model.state_dict(), metadata={"epoch": str(epoch)})
        files[METRICS_JSON] = run.best_metrics_doc(scheme, record)
    files[LAST_CKPT] = checkpoint_writer(checkpoint_state(tr, epoch, history, best))
    files[HISTORY_JSON] = run.history_doc(history, best["best_epoch"], best["best_auc"])
    run.commit(files)
    run.append_log(epoch_log_line(record, tr.cfg.schedule.epochs, improved))
