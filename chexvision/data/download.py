"""Fetch the published NIH ChestX-ray14 Parquet shards (HF dataset `arudaev/chest-xray-14-320`, pinned).

`huggingface_hub.snapshot_download` is resumable by design (it skips files already complete in `local_dir`),
so a re-run after a failure converges. Transient failures (HTTP 5xx/429, timeouts, connection resets) are
retried with exponential backoff; anything else fails at once. Offline -> `BackendError` (exit 3) naming the
offline alternatives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chexvision.errors import BackendError, BadInputError
from chexvision.files import write_json_atomic

__all__ = [
    "ALLOW_PATTERNS",
    "REPO_ID",
    "REVISION",
    "HubClient",
    "download_dataset",
    "http_status",
    "is_transient",
]

log = logging.getLogger(__name__)

# The one place the published data set is pinned; dispatch imports these.
REPO_ID = "arudaev/chest-xray-14-320"
REVISION = "44443e6ee968b3c6094b63f14a27698c40b50680"
ALLOW_PATTERNS = ["data/*.parquet", "README.md"]

_OFFLINE_HINT = (
    "connect to the internet (and unset HF_HUB_OFFLINE), then re-run `chexvision data download`; "
    "for offline work use `chexvision data synth --out DIR` or `chexvision data build --images DIR --out DIR`"
)
# Exception class names (anywhere in the MRO) that mean "try again": httpx, requests, urllib3 and builtins.
_TRANSIENT_NAMES = frozenset(
    {
        "TimeoutError",
        "TimeoutException",
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
        "ConnectionError",
        "ConnectionResetError",
        "ConnectError",
        "ReadError",
        "NetworkError",
        "RemoteProtocolError",
        "ProtocolError",
        "ChunkedEncodingError",
        "IncompleteRead",
    }
)


def _default_snapshot_download(**kwargs: Any) -> str:
    from huggingface_hub import snapshot_download

    return str(snapshot_download(**kwargs))


@dataclass
class HubClient:
    """The two things download needs from the outside world; tests swap in fakes."""

    snapshot_download: Callable[..., Any] = field(default=_default_snapshot_download)
    sleep: Callable[[float], None] = field(default=time.sleep)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a huggingface_hub/requests/httpx error, when it carries a response."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _is_offline(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "LocalEntryNotFoundError" in names or "OfflineModeIsEnabled" in names


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: HTTP 5xx/429, timeouts, connection resets."""
    code = http_status(exc)
    if code is not None:
        return code == 429 or code >= 500
    if _is_offline(exc):
        return False
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def _brief(exc: BaseException) -> str:
    """First line of an exception, shortened: hub errors carry multi-line explanations."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _translate(exc: BaseException, repo_id: str, revision: str) -> BackendError:
    """One chokepoint from the hub client's failures to our typed error."""
    what = f"dataset {repo_id}@{revision[:12]}"
    if _is_offline(exc):
        return BackendError(f"cannot download {what}: offline or no network ({type(exc).__name__})", _OFFLINE_HINT)
    code = http_status(exc)
    if code in (401, 403):
        return BackendError(
            f"access to {what} was refused (HTTP {code})", "log in with `hf auth login` or check --repo"
        )
    if code == 404:
        return BackendError(
            f"{what} was not found (HTTP 404)", "check --repo and --revision (the default pins the published set)"
        )
    if is_transient(exc):
        return BackendError(f"downloading {what} kept failing ({_brief(exc)})", _OFFLINE_HINT)
    return BackendError(f"downloading {what} failed ({_brief(exc)})", "re-run it, or report the error")


def _write_dataset_json(out_dir: Path, repo_id: str, revision: str) -> None:
    info = {"source": "hf", "repo_id": repo_id, "revision": revision, "default_split_scheme": "official"}
    write_json_atomic(out_dir / "dataset.json", info)


def download_dataset(
    out_dir: Path,
    repo_id: str = REPO_ID,
    revision: str = REVISION,
    *,
    retries: int = 4,
    backoff_s: float = 2.0,
    client: HubClient | None = None,
) -> Path:
    """Download the Parquet shards of `repo_id@revision` into `out_dir/data/`; write `out_dir/dataset.json`.

    Retries transient failures up to `retries` times (sleeping backoff_s, 2*backoff_s, ...). Returns out_dir.
    """
    client = client or HubClient()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"--out {out_dir} is a file", "pass a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries + 1):
        try:
            client.snapshot_download(
                repo_id=repo_id,
                repo_type="dataset",
                revision=revision,
                allow_patterns=ALLOW_PATTERNS,
                local_dir=str(out_dir),
            )
            break
        except Exception as exc:
            if not is_transient(exc) or attempt == retries:
                raise _translate(exc, repo_id, revision) from exc
            delay = backoff_s * 2**attempt
            log.warning("transient failure (%s); retry %d/%d in %.0f s", exc, attempt + 1, retries, delay)
            client.sleep(delay)
    if not any((out_dir / "data").glob("*.parquet")):
        raise BackendError(f"dataset {repo_id}@{revision} has no data/*.parquet files", "check --repo and --revision")
    _write_dataset_json(out_dir, repo_id, revision)
    return out_dir
