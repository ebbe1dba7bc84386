"""Shared test set-up: no network, no real credentials, no writes outside temp folders; shared fixtures.

`make_run_dir` writes a run directory through the REAL writers (`chexvision.rundir.RunDir.commit` with the
engine's checkpoint and safetensors writers), so tests read exactly what training and evaluation write, run.json
"files" (the sha256 of every file) included.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before anything imports huggingface_hub or matplotlib.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["CHEXVISION_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
os.environ.pop("KAGGLE_API_TOKEN", None)  # kaggle's import would call the network with it
os.environ.pop("KAGGLE_USERNAME", None)
os.environ.pop("KAGGLE_KEY", None)
os.environ.pop("HF_TOKEN", None)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih"
pytest_plugins = ["fakes.kaggle"]  # the fake Kaggle client's fixtures (fake_kaggle, kaggle_dispatch)


def _build_each_cli_once() -> None:
    """Typer's CliRunner converts the app to its click command tree on every `invoke` (~0.08 s for `chexvision`,
    hundreds of times a run); convert each app once. Every command is registered at import (cli/main.py `_wire`), and
    a click command tree is reusable (what `chexvision` builds at start-up, minus the rebuild)."""
    import functools

    import typer.testing

    if hasattr(typer.testing, "_get_command"):  # a private helper of Typer's: without it, tests just run slower
        typer.testing._get_command = functools.cache(typer.testing._get_command)


_build_each_cli_once()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives headless Chromium (skipped without it outside CI)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test gets its own HOME, CHEXVISION_HOME, KAGGLE_CONFIG_DIR and HF_HOME (empty: no credentials)."""
    base = tmp_path_factory.mktemp("home")
    # HOME too: Kaggle's client also looks in ~/.config/kaggle and ~/.kaggle/access_token.
    dirs = (("HOME", "user"), ("CHEXVISION_HOME", "chexvision"), ("KAGGLE_CONFIG_DIR", "kaggle"), ("HF_HOME", "hf"))
    for var, sub in dirs:
        (base / sub).mkdir()
        monkeypatch.setenv(var, str(base / sub))
    yield base


FIXTURE_IMAGES = Path(__file__).resolve().parent / "fixtures" / "nih-sample"  # 5 real NIH images, 128 px (README)


@pytest.fixture(scope="session")
def sample_images_dir() -> Path:
    """Real NIH sample images: the 400 of shared/data when beside the clone, else the 5 shipped in tests/fixtures."""
    path = SHARED_DATA / "sample-images"
    return path if path.is_dir() else FIXTURE_IMAGES


RUN_ID = "densenet-20261126-0912-3fa1"
DATASET_META = {"source": "hf", "repo_id": "arudaev/chest-xray-14-320",
                "revision": "44443e6ee968b3c6094b63f14a27698c40b50680"}  # fmt: skip


def _split_metrics(base: float) -> dict[str, Any]:
    from chexvision.labels import LABELS

    per_class: dict[str, float | None] = {label: round(base + i / 100, 4) for i, label in enumerate(LABELS)}
    per_class["Hernia"] = None  # no positive case in a small split
    return {"macro_auc": base, "binary_auc": base + 0.05, "binary_f1": base - 0.1, "per_class_auc": per_class}


def _epoch_record(epoch: int) -> dict[str, Any]:
    """A history.json record as `fit` makes one; the last of three epochs is the best (val macro AUC 0.75)."""
    val = _split_metrics(0.6 + epoch / 20)
    return {
        "epoch": epoch, "phase": 2, "lr": 1e-3, "train_loss": 1.0 / epoch, "val_loss": 1.1 / epoch,
        "val_macro_auc": val["macro_auc"], "val_binary_auc": val["binary_auc"], "val_binary_f1": 0.5 + epoch / 30,
        "val_per_class_auc": val["per_class_auc"], "seconds": 1.5, "images_per_second": 100.0,
    }  # fmt: skip


def _tiny_model(model: str, seed: int) -> Any:
    import torch

    from chexvision.models import create_model, tiny_kwargs

    torch.manual_seed(seed)
    net = create_model(model, **tiny_kwargs(model))
    with torch.no_grad():  # a non-trivial binary head so outputs depend on the input
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def write_run_dir(
    path: Path, *, run_id: str = RUN_ID, model: str = "densenet", seed: int = 0, pretrained: bool = False,
    test_metrics: bool = False, split_scheme: str = "official",
) -> Path:  # fmt: skip
    """A finished three-epoch run of a tiny randomly initialised model, written as training and evaluation write it."""
    from chexvision.config import load_config
    from chexvision.engine.checkpoint import checkpoint_writer, safetensors_writer
    from chexvision.engine.state import environment_info
    from chexvision.models import model_config
    from chexvision.rundir import HISTORY_JSON, LAST_CKPT, METRICS_JSON, WEIGHTS, RunDir, dataset_info, epoch_log_line

    net = _tiny_model(model, seed)
    overrides = [f'model.name="{model}"', "data.size=64", f"seed={seed}", f'data.split_scheme="{split_scheme}"',
                 f"model.pretrained={str(pretrained).lower()}"]  # fmt: skip
    cfg = load_config("smoke", None, overrides)
    config = cfg.to_dict()
    config["model"]["kwargs"] = model_config(net)["kwargs"]
    run = RunDir(Path(path))
    dataset = dataset_info(DATASET_META, split_scheme, {"train": 70, "val": 10, "test": 20}, loader_clahe=False)
    saved = os.environ.get("DISPATCH_GIT_SHA")
    os.environ["DISPATCH_GIT_SHA"] = "abc1234"  # what the kernel exports
    try:
        run.start(run_id=run_id, model=model, preset=cfg.preset, config=config, dataset=dataset, env=environment_info())
    finally:
        if saved is None:
            del os.environ["DISPATCH_GIT_SHA"]
        else:
            os.environ["DISPATCH_GIT_SHA"] = saved
    history = [_epoch_record(e) for e in (1, 2, 3)]
    for i, record in enumerate(history, start=1):  # every epoch improves: one commit as `fit` makes it, then the log
        run.commit({
            WEIGHTS: safetensors_writer(net.state_dict(), metadata={"epoch": str(i)}),
            METRICS_JSON: run.best_metrics_doc(split_scheme, record),
            LAST_CKPT: checkpoint_writer({"model": net.state_dict(), "epoch": i}),
            HISTORY_JSON: run.history_doc(history[:i], i, record["val_macro_auc"]),
        })  # fmt: skip
        run.append_log(epoch_log_line(record, 3, True))
    if test_metrics:
        run.write_metrics_section("test", _split_metrics(0.72))  # what `chexvision evaluate` adds
    run.set_status("complete")
    return run.path


@pytest.fixture(scope="session")
def make_run_dir() -> Callable[..., Path]:
    """`make_run_dir(path, run_id=..., model=..., seed=..., pretrained=..., test_metrics=..., split_scheme=...)`."""
    return write_run_dir
