"""Training telemetry on real pieces: tiny in-process `fit` runs on synthetic shards, read back through
TensorBoard's own `EventAccumulator` and MLflow's own `MlflowClient` on its local file store (no network)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.reliability import check_clean_error, invoke

from chexvision.config import TrainConfig, load_config
from chexvision.data.synthetic import write_synthetic
from chexvision.engine import telemetry
from chexvision.engine.state import NullReporter
from chexvision.engine.train import fit
from chexvision.errors import BadInputError
from chexvision.labels import LABELS
from chexvision.models import tiny_kwargs
from chexvision.rundir import recorded_files, verify_run_dir
from chexvision.rundir.names import TENSORBOARD_DIR

mlflow = pytest.importorskip("mlflow")  # the `mlflow` extra (in dev)
from mlflow.tracking import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TINY = ["model.name=seresnet", "data.workers=0", "data.batch_size=32", "cpu_threads=1"]
STEP_TAGS = {"train/loss", "train/lr", "train/images_per_second"}
EPOCH_TAGS = {"epoch/epoch", "epoch/phase", "epoch/train_loss", "epoch/val_loss", "epoch/lr", "epoch/seconds",
              "epoch/images_per_second", "val/macro_auc", "val/binary_auc", "val/binary_f1"}  # fmt: skip


@pytest.fixture(autouse=True)
def _file_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the adapter sets for a file: URI, undone after each test (MLflow reads it when a store is built)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic(out, 160, 64, 3)
    return out


def _cfg(*extra: str) -> TrainConfig:
    cfg = load_config("smoke", None, [*TINY, *extra])
    cfg.model.kwargs = tiny_kwargs("seresnet")
    return cfg


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _history(run_dir: Path) -> list[dict[str, Any]]:
    epochs: list[dict[str, Any]] = json.loads((run_dir / "history.json").read_text())["epochs"]
    return epochs


def _mlflow_runs(uri: str) -> list[Any]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("chexvision")
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id]))


def _steps_per_epoch(scalars: dict[str, list[tuple[int, float]]]) -> int:
    return scalars["epoch/epoch"][0][0]  # epoch 1's metrics sit at step 1 * steps_per_epoch


@pytest.fixture(scope="module")
def tracked(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 2-epoch run with TensorBoard and MLflow (file store) both on."""
    base = tmp_path_factory.mktemp("tracked")
    uri = (base / "mlruns").as_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        result = fit(_cfg("schedule.epochs=2", f"tracking.mlflow_uri={uri}"), synth, base / "run",
                     run_id="seresnet-telemetry-0001")  # fmt: skip
    assert result.status == "complete"
    return base / "run", uri


def test_event_files_hold_every_metric_per_step_and_epoch(tracked: tuple[Path, str]) -> None:
    run_dir, _ = tracked
    scalars, history = _scalars(run_dir), _history(run_dir)
    spe = _steps_per_epoch(scalars)
    defined = {f"val_auc/{label}" for label, auc in history[-1]["val_per_class_auc"].items() if auc is not None}
    assert defined and defined <= {f"val_auc/{label}" for label in LABELS}
    assert set(scalars) == STEP_TAGS | EPOCH_TAGS | defined  # a class without an AUC is left out, as in history
    for tag in STEP_TAGS:
        assert [s for s, _ in scalars[tag]] == list(range(2 * spe))  # every optimizer step, once
    for tag in EPOCH_TAGS | defined:
        assert [s for s, _ in scalars[tag]] == [spe, 2 * spe]
    assert [v for _, v in scalars["val/macro_auc"]] == pytest.approx([e["val_macro_auc"] for e in history])
    assert [v for _, v in scalars["epoch/train_loss"]] == pytest.approx([e["train_loss"] for e in history])
    label = next(iter(defined)).split("/", 1)[1]
    assert scalars[f"val_auc/{label}"][-1][1] == pytest.approx(history[-1]["val_per_class_auc"][label])


def test_run_dir_verifies_and_event_files_are_not_hashed(tracked: tuple[Path, str]) -> None:
    run_dir, _ = tracked
    assert [p.name.startswith("events.out.tfevents") for p in (run_dir / TENSORBOARD_DIR).iterdir()] == [True]
    assert verify_run_dir(run_dir) == []
    run = json.loads((run_dir / "run.json").read_text())
    assert not [name for name in recorded_files(run) if name.startswith(TENSORBOARD_DIR)]  # they keep growing


def test_mlflow_file_store_round_trip(tracked: tuple[Path, str]) -> None:
    run_dir, uri = tracked
    (found,) = _mlflow_runs(uri)
    client, history = MlflowClient(uri), _history(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert found.info.status == "FINISHED" and found.info.run_name == "seresnet-telemetry-0001"
    assert found.data.tags["chexvision.run_id"] == "seresnet-telemetry-0001"
    assert found.data.tags["chexvision.model"] == "seresnet"
    assert found.data.tags["chexvision.split_scheme"] == "patient"
    params = found.data.params
    assert params["model.name"] == "seresnet" and float(params["optim.lr"]) == config["optim"]["lr"]
    assert json.loads(params["model.kwargs.widths"]) == config["model"]["kwargs"]["widths"]
    assert params["tracking.mlflow_uri"] == uri
    macro = client.get_metric_history(found.info.run_id, "val/macro_auc")
    assert [(m.step, m.value) for m in macro] == [(e["epoch"], pytest.approx(e["val_macro_auc"])) for e in history]
    assert [m.step for m in client.get_metric_history(found.info.run_id, "epoch/seconds")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert artifacts == {"run.json", "config.json", "history.json", "metrics.json"}
    local = Path(client.download_artifacts(found.info.run_id, "run.json", str(run_dir.parent / "dl")))
    assert json.loads(local.read_text())["status"] == "complete"  # logged after the final status


class _Interrupt(NullReporter):
    """Ctrl-C at step `step` of epoch `epoch` (after that step was reported)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at, self.epoch = (epoch, step), 0

    def start_epoch(self, epoch: int, total_epochs: int, phase: int, steps: int) -> None:
        self.epoch = epoch

    def step(self, *, step: int, loss: float, lr: float, images_per_second: float) -> None:
        if (self.epoch, step) == self.at:
            raise KeyboardInterrupt


def test_resume_appends_to_the_same_logs_without_duplicate_steps(synth: Path, tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    cfg = _cfg("schedule.epochs=3", f"tracking.mlflow_uri={uri}")
    with pytest.raises(KeyboardInterrupt):  # epoch 1 checkpointed; 2 steps of epoch 2 reported, then killed
        fit(cfg, synth, tmp_path / "run", reporter=_Interrupt(epoch=2, step=2))
    (interrupted,) = _mlflow_runs(uri)
    assert interrupted.info.status == "KILLED"
    spe = _steps_per_epoch(_scalars(tmp_path / "run"))
    assert [s for s, _ in _scalars(tmp_path / "run")["train/loss"]] == list(range(spe + 2))

    result = fit(cfg, synth, tmp_path / "run", resume=True)
    assert result.status == "complete" and len(result.history) == 3
    scalars = _scalars(tmp_path / "run")
    assert len(list((tmp_path / "run" / TENSORBOARD_DIR).iterdir())) == 2  # the same folder, one file per process
    assert [s for s, _ in scalars["train/loss"]] == list(range(3 * spe))  # the killed epoch's steps purged
    assert [s for s, _ in scalars["epoch/epoch"]] == [spe, 2 * spe, 3 * spe]
    assert [v for _, v in scalars["val/macro_auc"]] == pytest.approx([e["val_macro_auc"] for e in result.history])

    (resumed,) = _mlflow_runs(uri)  # the same MLflow run, carried on
    assert resumed.info.run_id == interrupted.info.run_id and resumed.info.status == "FINISHED"
    epochs = MlflowClient(uri).get_metric_history(resumed.info.run_id, "epoch/epoch")
    assert sorted(m.step for m in epochs) == [1, 2, 3]


def test_missing_mlflow_extra_is_one_line_exit_2_before_anything_is_written(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_mlflow() -> Any:
        raise ModuleNotFoundError("No module named 'mlflow'")

    monkeypatch.setattr(telemetry, "_import_mlflow", no_mlflow)
    out = tmp_path / "run"
    outcome = invoke(["train", "--model", "seresnet", "--data", str(synth), "--out", str(out), "--preset", "smoke",
                      "--set", f"tracking.mlflow_uri={(tmp_path / 'mlruns').as_uri()}"])  # fmt: skip
    line = check_clean_error(outcome, exit_code=2, names=["tracking.mlflow_uri", "pip install 'chexvision[mlflow]'"])
    assert "mlflow" in line.lower()
    assert not out.exists() and not (tmp_path / "mlruns").exists()


def test_a_backend_failing_mid_run_warns_once_and_the_run_completes(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    real_scalar, real_batch = SummaryWriter.add_scalar, MlflowClient.log_batch
    calls = {"scalar": 0, "metrics": 0}

    def scalar_then_fail(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["scalar"] += 1
        if calls["scalar"] > 5:
            raise OSError(28, "No space left on device")
        return real_scalar(self, *args, **kwargs)

    def metrics_then_fail(self: Any, run_id: str, metrics: Any = (), **kwargs: Any) -> Any:
        if metrics:
            calls["metrics"] += 1
            if calls["metrics"] > 1:  # epoch 1 arrives, then the server goes away
                raise mlflow.exceptions.MlflowException("API request to endpoint failed: connection refused")
        return real_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_scalar", scalar_then_fail)
    monkeypatch.setattr(MlflowClient, "log_batch", metrics_then_fail)
    uri = (tmp_path / "mlruns").as_uri()
    result = fit(_cfg("schedule.epochs=3", f"tracking.mlflow_uri={uri}"), synth, tmp_path / "run")
    assert result.status == "complete" and len(result.history) == 3
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("telemetry: TensorBoard failed (step: OSError") == 1
    assert log.count("telemetry: MLflow failed (epoch: MlflowException") == 1
    assert calls["metrics"] == 2  # off after the failure: epoch 3 was not tried
    assert "run complete" in log


@pytest.mark.parametrize("uri", ["https://user:token@mlflow.example.org", "http://token@localhost:5000"])
def test_credentials_in_the_tracking_uri_are_refused_without_echoing_them(uri: str) -> None:
    with pytest.raises(BadInputError) as caught:
        load_config("smoke", None, [f"tracking.mlflow_uri={uri}"])
    assert "tracking.mlflow_uri" in caught.value.message and "token" not in caught.value.message.replace(
        "MLFLOW_TRACKING_TOKEN", ""
    )


def test_tracking_off_writes_no_event_files(synth: Path, tmp_path: Path) -> None:
    result = fit(_cfg("schedule.epochs=1", "tracking.tensorboard=false"), synth, tmp_path / "run")
    assert result.status == "complete" and not (tmp_path / "run" / TENSORBOARD_DIR).exists()
