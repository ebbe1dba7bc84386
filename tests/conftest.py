"""Shared test set-up: no network, no real credentials, no writes outside temp folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def sample_images_dir() -> Path:
    """The 400 real NIH sample images (shared/data); tests needing them skip when the folder is absent."""
    path = SHARED_DATA / "sample-images"
    if not path.is_dir():
        pytest.skip(f"real NIH sample images not found at {path}")
    return path
