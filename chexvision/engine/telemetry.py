"""Training telemetry: TensorBoard event files in the run directory, and an optional MLflow run.

`fit` opens one `Telemetry` per process (`Telemetry.open`); only rank 0's writes anything. It sees what the
progress reporter sees (`tee`) and reports the same numbers as history.json:

- per optimizer step: `train/loss`, `train/lr`, `train/images_per_second` (TensorBoard only);
- per epoch: `epoch/*` (train and val loss, lr, seconds, images/s), `val/macro_auc`, `val/binary_auc`,
  `val/binary_f1` and the 14 `val_auc/<label>` (TensorBoard and MLflow). An undefined AUC (a class without
  positives) is left out, as history.json's null.

Steps. One TensorBoard step axis for everything: the number of optimizer steps done, computed from the epoch
(`(epoch - 1) * steps_per_epoch + step - 1` for a step, `epoch * steps_per_epoch` for the epoch's metrics), so a
resumed run continues the same axis. It assumes the steps per epoch of the run (a resume on a different number of
GPUs shifts the axis; nothing is lost). A resumed run appends to the same folder with TensorBoard's own purge
(`SummaryWriter(purge_step=...)`): what a killed run wrote after its last checkpoint is dropped by every reader, and
the checkpointed epoch's metrics are written again, so no step appears twice. MLflow steps are epochs; a resumed run
(same run id) continues its MLflow run, logging only the epochs not logged yet.

Failures. MLflow configured but not installed is a one-line error before anything is read or written
(`check_tracking`, exit 2). Any failure of a backend while training (a server gone, a full disk) is one warning in
train.log and the log, then that backend stays off: telemetry never stops a run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from chexvision.config import TrainConfig
from chexvision.engine.state import Reporter
from chexvision.errors import BadInputError
from chexvision.labels import LABELS
from chexvision.rundir import CONFIG_JSON, HISTORY_JSON, METRICS_JSON, RUN_JSON
from chexvision.rundir.names import TENSORBOARD_DIR

__all__ = ["MLFLOW_EXTRA_HINT", "Telemetry", "check_tracking", "epoch_scalars"]

logger = logging.getLogger(__name__)

MLFLOW_EXTRA_HINT = "pip install 'chexvision[mlflow]'"
ARTIFACTS = (RUN_JSON, CONFIG_JSON, HISTORY_JSON, METRICS_JSON)  # logged to MLflow when the run ends
_MLFLOW_STATUS = {"complete": "FINISHED", "incomplete": "KILLED", "error": "FAILED"}
_PARAM_CHARS = 6000  # MLflow's limit on one param value
_BATCH = 100  # MLflow's limit on params per log_batch call


def _import_mlflow() -> ModuleType:
    """The one place that imports MLflow (the `mlflow` extra)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow's own usage reports would reach the network
    import mlflow

    return mlflow


def check_tracking(cfg: TrainConfig) -> None:
    """Before training: MLflow asked for but not installed -> BadInputError naming the extra (exit 2)."""
    if cfg.tracking.mlflow_uri is None:
        return
    try:
        _import_mlflow()
    except ImportError:
        raise BadInputError(
            "tracking.mlflow_uri is set but MLflow is not installed (the `mlflow` extra)",
            f"{MLFLOW_EXTRA_HINT}, or drop tracking.mlflow_uri",
        ) from None


def epoch_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The per-epoch metrics of one history.json record, by tag; undefined (null, NaN) values left out."""
    per_class = record.get("val_per_class_auc") or {}
    values = {
        "epoch/epoch": record.get("epoch"),
        "epoch/phase": record.get("phase"),
        "epoch/train_loss": record.get("train_loss"),
        "epoch/val_loss": record.get("val_loss"),
        "epoch/lr": record.get("lr"),
        "epoch/seconds": record.get("seconds"),
        "epoch/images_per_second": record.get("images_per_second"),
        "val/macro_auc": record.get("val_macro_auc"),
        "val/binary_auc": record.get("val_binary_auc"),
        "val/binary_f1": record.get("val_binary_f1"),
        **{f"val_auc/{label}": per_class.get(label) for label in LABELS},
    }
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and math.isfinite(v)}


def _flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The config as MLflow params: dotted keys, JSON values (strings as they are)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = (value if isinstance(value, str) else json.dumps(value))[:_PARAM_CHARS]
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class _Backend(Protocol):
    name: str

    def step(self, global_step: int, values: Mapping[str, float]) -> None: ...

    def epoch(self, global_step: int, epoch: int, values: Mapping[str, float]) -> None: ...

    def finish(self, status: str, run_dir: Path) -> None: ...

    def close(self) -> None: ...


class _TensorBoard:
    """`torch.utils.tensorboard.SummaryWriter` on `<run dir>/tensorboard`."""

    name = "TensorBoard"

    def __init__(self, logdir: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # flush_secs: a `tensorboard` watching a running job sees new steps within half a minute.
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=purge_step, flush_secs=30)

    def step(self, global_step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step)

    def epoch(self, global_step: int, epoch: int, values: Mapping[str, float]) -> None:
        self.step(global_step, values)
        self.writer.flush()  # every finished epoch is on disk (what a fetch of a stopped run gets)

    def finish(self, status: str, run_dir: Path) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    """One MLflow run per chexvision run id (tag `chexvision.run_id`), through `mlflow.tracking.MlflowClient`."""

    name = "MLflow"

    def __init__(self, mlflow: ModuleType, uri: str, experiment: str, run: Mapping[str, Any],
                 params: Mapping[str, str]) -> None:  # fmt: skip
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 refuses its file store unless told; a file: URI here is that explicit choice.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.mlflow = mlflow
        self.client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        run_id = str(run.get("run_id", ""))
        previous = self._find(experiment_id, run_id)
        if previous is None:
            tags = {
                "chexvision.run_id": run_id, "chexvision.model": str(run.get("model", "")),
                "chexvision.split_scheme": str((run.get("dataset") or {}).get("split_scheme", "")),
                "chexvision.preset": str(run.get("preset") or ""),
            }  # fmt: skip
            if run.get("parent_run_id"):
                tags["chexvision.parent_run_id"] = str(run["parent_run_id"])
            created = self.client.create_run(experiment_id, tags=tags, run_name=run_id or None)
            self.id, have, self.logged = created.info.run_id, {}, set()
        else:  # a resumed run: the same MLflow run, going on
            self.id, have = previous.info.run_id, dict(previous.data.params)
            self.client.update_run(self.id, status="RUNNING")
            self.logged = {m.step for m in self.client.get_metric_history(self.id, "epoch/epoch")}
        Param = mlflow.entities.Param
        new = [Param(k, v) for k, v in params.items() if k not in have]  # params are immutable: first value wins
        for i in range(0, len(new), _BATCH):
            self.client.log_batch(self.id, params=new[i : i + _BATCH])
        if run.get("config_changes"):  # what a resume changed (run.json records it)
            self.client.set_tag(self.id, "chexvision.config_changes", json.dumps(run["config_changes"])[:5000])

    def _find(self, experiment_id: str, run_id: str) -> Any:
        if not run_id or "'" in run_id:
            return None
        runs = self.client.search_runs([experiment_id], filter_string=f"tags.`chexvision.run_id` = '{run_id}'",
                                       max_results=1)  # fmt: skip
        return runs[0] if runs else None

    def step(self, global_step: int, values: Mapping[str, float]) -> None:
        pass  # per epoch only: a metric file write per step would cost more than the step on a small model

    def epoch(self, global_step: int, epoch: int, values: Mapping[str, float]) -> None:
        if epoch in self.logged:
            return
        now = int(time.time() * 1000)
        metrics = [self.mlflow.entities.Metric(k, v, now, epoch) for k, v in values.items()]
        self.client.log_batch(self.id, metrics=metrics)
        self.logged.add(epoch)

    def finish(self, status: str, run_dir: Path) -> None:
        for name in ARTIFACTS:
            if (run_dir / name).is_file():
                self.client.log_artifact(self.id, str(run_dir / name))
        self.client.set_terminated(self.id, status=_MLFLOW_STATUS.get(status, "FAILED"))

    def close(self) -> None:
        pass


class Telemetry:
    """The backends one training process reports to (none on ranks other than 0); every call is failure-proof."""

    def __init__(self, backends: list[_Backend], run_dir: Path, steps_per_epoch: int, world_size: int = 1,
                 log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.backends = backends
        self.run_dir = run_dir
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.world_size = world_size
        self.log = log
        self.current_epoch = 1
        self.finished = False

    @classmethod
    def open(
        cls, cfg: TrainConfig, run_dir: Path, rank: int, *, steps_per_epoch: int,
        history: list[dict[str, Any]] | None = None, world_size: int = 1, log: Callable[[str], None] | None = None,
    ) -> Telemetry:  # fmt: skip
        """The telemetry of a run whose run.json and config.json are written; `history` = the epochs already done."""
        tel = cls([], Path(run_dir), steps_per_epoch, world_size, log)
        if rank != 0:
            return tel
        history = history or []
        if cfg.tracking.tensorboard:
            tel._add("TensorBoard", lambda: tel._open_tensorboard(history))
        if cfg.tracking.mlflow_uri is not None:
            uri, experiment = cfg.tracking.mlflow_uri, cfg.tracking.mlflow_experiment
            tel._add("MLflow", lambda: tel._open_mlflow(uri, experiment, history))
        return tel

    def _open_tensorboard(self, history: list[dict[str, Any]]) -> _Backend:
        logdir = self.run_dir / TENSORBOARD_DIR
        resumed = logdir.is_dir() and any(p.name.startswith("events.out.tfevents") for p in logdir.iterdir())
        done = len(history) * self.steps_per_epoch
        board = _TensorBoard(logdir, purge_step=done if resumed else None)
        for record in history[-1:] if resumed else history:  # the purge dropped the last one; or a new folder
            board.epoch(self._epoch_step(int(record["epoch"])), int(record["epoch"]), epoch_scalars(record))
        return board

    def _open_mlflow(self, uri: str, experiment: str, history: list[dict[str, Any]]) -> _Backend:
        run, config = _read_json(self.run_dir / RUN_JSON), _read_json(self.run_dir / CONFIG_JSON)
        board = _MLflow(_import_mlflow(), uri, experiment, run, _flat_params(config))
        for record in history:  # epochs a resumed run had not logged yet (e.g. killed right after a checkpoint)
            board.epoch(self._epoch_step(int(record["epoch"])), int(record["epoch"]), epoch_scalars(record))
        return board

    def _add(self, name: str, opener: Callable[[], _Backend]) -> None:
        try:
            self.backends.append(opener())
        except Exception as exc:  # no tracking problem may stop training
            self._warn("opening", name, exc)

    def _warn(self, what: str, backend: str, exc: BaseException) -> None:
        detail = " ".join(str(exc).split())[:300]
        line = f"telemetry: {backend} failed ({what}: {type(exc).__name__}: {detail}); training goes on without it"
        logger.warning(line)
        if self.log is not None:
            with contextlib.suppress(Exception):
                self.log(line)

    def _each(self, what: str, call: Callable[[_Backend], None]) -> None:
        for backend in list(self.backends):
            try:
                call(backend)
            except Exception as exc:  # warn once, then that backend is off
                self.backends.remove(backend)
                self._warn(what, backend.name, exc)
                with contextlib.suppress(Exception):
                    backend.close()

    def _epoch_step(self, epoch: int) -> int:
        return epoch * self.steps_per_epoch

    @property
    def active(self) -> list[str]:
        """The backends still reporting (TensorBoard, MLflow)."""
        return [b.name for b in self.backends]

    def start_epoch(self, epoch: int) -> None:
        self.current_epoch = epoch

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        """After optimizer step `step` (1-based) of the current epoch; `images_per_second` is this process's."""
        if not self.backends:
            return
        global_step = (self.current_epoch - 1) * self.steps_per_epoch + step - 1
        values = {"train/loss": loss, "train/lr": lr, "train/images_per_second": images_per_second * self.world_size}
        self._each("step", lambda b: b.step(global_step, values))

    def epoch(self, record: Mapping[str, Any]) -> None:
        """After validation, with the epoch's history.json record."""
        if not self.backends:
            return
        epoch = int(record["epoch"])
        values = epoch_scalars(record)
        self._each("epoch", lambda b: b.epoch(self._epoch_step(epoch), epoch, values))

    def finish(self, status: str) -> None:
        """The run ended with `status` (complete | incomplete | error): final artifacts, end runs, close."""
        if self.finished:
            return
        self.finished = True
        self._each("finish", lambda b: b.finish(status, self.run_dir))
        self.close()

    def close(self) -> None:
        for backend in self.backends:
            with contextlib.suppress(Exception):
                backend.close()
        self.backends = []

    @contextlib.contextmanager
    def ending_on_error(self) -> Iterator[Telemetry]:
        """Training inside: an exception ends the tracking runs (KeyboardInterrupt: incomplete, else error)."""
        try:
            yield self
        except BaseException as exc:
            self.finish("incomplete" if isinstance(exc, KeyboardInterrupt) else "error")
            raise

    def tee(self, inner: Reporter) -> Reporter:
        """A reporter that reports to this telemetry, then to `inner` (the progress bars)."""
        return _Tee(self, inner)


class _Tee:
    def __init__(self, telemetry: Telemetry, inner: Reporter) -> None:
        self.telemetry, self.inner = telemetry, inner

    def start_epoch(self, epoch: int, total_epochs: int, phase: int, steps: int) -> None:
        self.telemetry.start_epoch(epoch)
        self.inner.start_epoch(epoch, total_epochs, phase, steps)

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        self.telemetry.step(step=step, loss=loss, lr=lr, images_per_second=images_per_second)
        self.inner.step(step=step, loss=loss, lr=lr, images_per_second=images_per_second)

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.telemetry.epoch(record)
        self.inner.end_epoch(record)

    def close(self) -> None:
        self.inner.close()
