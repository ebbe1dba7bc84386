"""The file names of a run directory (DESIGN §4) and the values its run.json takes; nothing else names them."""

from __future__ import annotations

__all__ = [
    "CONFIG_JSON",
    "EXPECTED_FILES",
    "HASHED_FILES",
    "HISTORY_JSON",
    "JSON_FILES",
    "LAST_CKPT",
    "METRICS_JSON",
    "REQUIRED_FILES",
    "RESUME_CHANGEABLE",
    "RUN_JSON",
    "RUN_STATUSES",
    "TENSORBOARD_DIR",
    "TRAIN_LOG",
    "WEIGHTS",
]

RUN_JSON = "run.json"
CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"
METRICS_JSON = "metrics.json"
WEIGHTS = "model.safetensors"
LAST_CKPT = "last.ckpt"
TRAIN_LOG = "train.log"
# TensorBoard event files (`tensorboard --logdir <run dir>`), written by rank 0 as training goes
# (chexvision.engine.telemetry). Like train.log they only grow and nothing reads them to produce a result, so they
# are neither hashed in run.json "files" nor required; fetch copies the folder with the rest of the outputs, and a
# continued run appends to it.
TENSORBOARD_DIR = "tensorboard"

JSON_FILES = (RUN_JSON, CONFIG_JSON, HISTORY_JSON, METRICS_JSON)
REQUIRED_FILES = (*JSON_FILES, WEIGHTS)  # what makes a run directory usable (fetch, publish, load)
EXPECTED_FILES = (LAST_CKPT, TRAIN_LOG)  # written by every run, but a run directory works without them
# run.json "files" holds the sha256 of these, re-recorded by every write through RunDir (evaluation's test section
# of metrics.json included). Not run.json (it holds the hashes) nor train.log: it only grows, gets lines after
# every other write (even after the final status), and nothing reads it to produce a result.
HASHED_FILES = (CONFIG_JSON, HISTORY_JSON, METRICS_JSON, WEIGHTS, LAST_CKPT)


RUN_STATUSES = ("running", "complete", "incomplete", "error")
# Config keys a resumed run may change: they decide when to stop, where it runs and how fast (loader workers and
# CPU threads: augmentation draws from (seed, epoch, index), not from the worker), never what the epochs so far
# computed. The time budget is a flag, not config. Every change is recorded in run.json "config_changes".
# Where metrics are reported (tracking.*) changes nothing a run computes either.
RESUME_CHANGEABLE = (
    "schedule.epochs", "schedule.patience", "device", "data.workers", "cpu_threads", "data.strict",
    "tracking.tensorboard", "tracking.mlflow_uri", "tracking.mlflow_experiment",
)  # fmt: skip
