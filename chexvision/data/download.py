"""Fetch the published NIH ChestX-ray14 Parquet shards (HF dataset `arudaev/chest-xray-14-320`, pinned).

The download goes through the one Hugging Face adapter (`chexvision.hf.HubClient`), which maps failures to typed
errors by one rule (a missing repo or revision: exit 2; offline, refused, throttled or 5xx: exit 3).
`huggingface_hub.snapshot_download` is resumable by design (it skips files already complete in `local_dir`), so a
re-run after a failure converges. Transient failures (HTTP 5xx/429, timeouts, connection resets) are retried with
exponential backoff; anything else fails at once. Offline -> `RemoteError` (exit 3) naming the offline alternatives.
"""

from __future__ import annotations

from pathlib import Path

from chexvision.data.outdir import prepare_out, record_out
from chexvision.errors import BackendError
from chexvision.files import write_json_atomic
from chexvision.hf import HubCall, HubClient

__all__ = ["ALLOW_PATTERNS", "REPO_ID", "REVISION", "HubClient", "download_dataset", "downloaded_shards"]

# The one place the published data set is pinned.
REPO_ID = "arudaev/chest-xray-14-320"
REVISION = "44443e6ee968b3c6094b63f14a27698c40b50680"
ALLOW_PATTERNS = ["data/*.parquet", "README.md"]

# Ends every network hint (the adapter says "check the network ..., then retry" before it).
_OFFLINE_HINT = (
    "for offline work use `chexvision data synth --out DIR` or `chexvision data build --images DIR --out DIR`"
)
_NOT_FOUND_HINT = "check --repo and --revision (the default pins the published set)"


def downloaded_shards(out_dir: Path) -> list[Path]:
    """The Parquet shards a download left in `out_dir/data/`, sorted."""
    return sorted((Path(out_dir) / "data").glob("*.parquet"))


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
    overwrite: bool = False,
) -> Path:
    """Download the Parquet shards of `repo_id@revision` into `out_dir/data/`; write `out_dir/dataset.json`.

    Retries transient failures up to `retries` times (sleeping backoff_s, 2*backoff_s, ...). Returns out_dir.
    `out_dir` follows `chexvision.data.outdir`: the same repo and revision continue the download; another data set
    or revision there is refused unless `overwrite` (checked before any network call).
    """
    out_dir = Path(out_dir)
    params = {"repo_id": repo_id, "revision": revision}
    prepare_out(out_dir, "download", params, overwrite=overwrite, record=False)
    client = client or HubClient(require_token=False)  # the published set is public; HfApi finds a token if set
    out_dir.mkdir(parents=True, exist_ok=True)
    call = HubCall(
        "downloading",
        f"dataset {repo_id}@{revision[:12]}",
        local=_OFFLINE_HINT,
        not_found=_NOT_FOUND_HINT,
        repo_id=repo_id,
    )
    try:
        client.download_dataset(
            repo_id, revision, out_dir, allow_patterns=ALLOW_PATTERNS, call=call, retries=retries, backoff_s=backoff_s
        )
    finally:
        if (out_dir / "data").is_dir():  # something arrived: a re-run continues it, another revision is refused
            record_out(out_dir, "download", params)
    if not downloaded_shards(out_dir):
        raise BackendError(f"dataset {repo_id}@{revision} has no data/*.parquet files", "check --repo and --revision")
    _write_dataset_json(out_dir, repo_id, revision)
    return out_dir
