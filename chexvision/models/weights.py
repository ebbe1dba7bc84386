"""Pretrained weights: torchvision's ImageNet DenseNet-121 from the torch hub cache, the network, or a file.

The network where tests and most sessions run is closed, so "can we download?" is answered quickly: the cache
is checked first, CHEXVISION_OFFLINE=1 / HF_HUB_OFFLINE=1 skip the network, and otherwise a connection probe
with a short timeout runs before torch.hub starts a download that could otherwise hang.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from chexvision.errors import BadInputError

__all__ = [
    "OFFLINE_ENV_VARS",
    "adapt_input_conv",
    "densenet121_imagenet_state_dict",
    "load_features_state_dict",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

OFFLINE_ENV_VARS = ("CHEXVISION_OFFLINE", "HF_HUB_OFFLINE")
_PROBE_TIMEOUT_S = 3.0  # DNS + TCP connect; a closed network fails in milliseconds, a slow DNS may not
_DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation during the ~31 MB download, so a stalled transfer cannot hang
_OFFLINE_HINT = "pass --no-pretrained to train from scratch, or --weights PATH to a torchvision densenet121 .pth"

# torchvision's released DenseNet checkpoints predate its module names: `denselayer1.norm.1.weight` is now
# `denselayer1.norm1.weight` (the same fix as torchvision.models.densenet._load_state_dict).
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _offline_requested() -> bool:
    return any(os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"} for var in OFFLINE_ENV_VARS)


def _can_connect(url: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to the URL's host opens within `timeout` (name resolution included)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or 443
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # getaddrinfo ignores socket timeouts, so the probe runs in a daemon thread we can stop waiting for.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(result and result[0])


def _fix_old_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    fixed: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        match = _OLD_DENSENET_KEY.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def densenet121_imagenet_state_dict() -> dict[str, Tensor]:
    """torchvision `DenseNet121_Weights.IMAGENET1K_V1`, cached in TORCH_HOME; BadInputError if unreachable."""
    from torchvision.models import DenseNet121_Weights

    url = DenseNet121_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if not cached.is_file():
        if _offline_requested() or not _can_connect(url):
            why = "offline mode is set" if _offline_requested() else "the network is unreachable"
            raise BadInputError(f"ImageNet weights for densenet are not cached ({cached}) and {why}", _OFFLINE_HINT)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
        try:
            logger.info("downloading %s to %s", url, cached)
            cached.parent.mkdir(parents=True, exist_ok=True)
            # The file name carries a sha256 prefix (densenet121-a639ec97.pth); torch.hub checks it and writes
            # through a temporary file, so an interrupted download never leaves a truncated cache entry.
            hash_prefix = re.search(r"-([a-f0-9]+)\.", cached.name)
            torch.hub.download_url_to_file(
                url, str(cached), hash_prefix=hash_prefix.group(1) if hash_prefix else None, progress=False
            )
        except (OSError, RuntimeError) as exc:
            raise BadInputError(f"could not download ImageNet weights for densenet: {exc}", _OFFLINE_HINT) from exc
        finally:
            socket.setdefaulttimeout(previous)
    return read_state_dict(cached)


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a `.safetensors` file or a torch `.pth`/`.pt` file (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"weights file {path} does not exist", "pass --weights PATH to an existing file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: every loader raises its own type
        raise BadInputError(
            f"weights file {path} could not be read: {exc}",
            "expected a torch state dict (.pth) or .safetensors",
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BadInputError(f"weights file {path} is not a state dict", "save it with torch.save(model.state_dict())")
    return _fix_old_keys(state)


def adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Adapt a first-conv weight [O, 3, k, k] to `in_chans` inputs (timm `adapt_input_conv`).

    One channel sums the RGB filters, so a gray image x gives the response the RGB net gives to (x, x, x).
    """
    if weight.shape[1] == in_chans:
        return weight
    if in_chans == 1:
        return weight.float().sum(dim=1, keepdim=True).to(weight.dtype)
    repeats = -(-in_chans // weight.shape[1])
    tiled = weight.float().repeat(1, repeats, 1, 1)[:, :in_chans]
    return (tiled * (weight.shape[1] / in_chans)).to(weight.dtype)


def load_features_state_dict(
    features: nn.Module, state_dict: Mapping[str, Tensor], *, first_conv: str, source: str
) -> None:
    """Load a torchvision classifier's `features.*` weights into `features`, adapting the first conv.

    Keys may carry the `features.` prefix (a full torchvision state dict; its classifier is dropped) or not.
    """
    prefix = "features."
    if any(key.startswith(prefix) for key in state_dict):
        state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    else:
        state = dict(state_dict)
    target = features.state_dict()
    if first_conv in state and first_conv in target:
        state[first_conv] = adapt_input_conv(state[first_conv], target[first_conv].shape[1])
    mismatched = [k for k in state.keys() & target.keys() if state[k].shape != target[k].shape]
    # BatchNorm fills in `num_batches_tracked`, which checkpoints older than torch 0.4.1 (torchvision's) lack.
    missing = sorted(k for k in target.keys() - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - target.keys())
    if mismatched or missing or unexpected:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (
                ("shape mismatch", sorted(mismatched)),
                ("missing", missing),
                ("unexpected", unexpected),
            )
            if keys
        )
        raise BadInputError(
            f"weights from {source} do not fit this backbone ({detail})",
            "use weights of the same architecture (torchvision densenet121 for the full-size densenet)",
        )
    features.load_state_dict(state)
