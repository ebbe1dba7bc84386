"""The one door to the Hugging Face Hub: a thin adapter over `huggingface_hub.HfApi`, and its error translation.

This is the ONE module that constructs `HfApi` (`_new_hf_api`); tests substitute a fake object with the same methods
there (or pass `HubClient(api=fake)`). Every call goes through `translate`, the single chokepoint that turns the
client's failures into our typed errors (huggingface_hub `utils/_http.py hf_raise_for_status` does the same for
HTTP), one rule for `data download` and `hub` alike:

- the repo, revision or file does not exist (HTTP 404): `RemoteNotFoundError`, exit 2 (bad input);
- access refused (401/403, gated), throttled (429), 5xx, network down or offline: `RemoteError`, exit 3;
- no token configured on this machine: `BadInputError`, exit 2.

Transient failures (429, 5xx, timeouts, connection resets) can be retried with exponential backoff (`retries=`).
Messages name the repo and the HTTP status, never the client's own text (it may quote request headers); the token is
never read into a message, a log line or an exception here: HfApi finds it itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from chexvision.errors import BadInputError, CheXVisionError, RemoteError, RemoteNotFoundError

__all__ = [
    "LOAD_LOCAL",
    "LOGIN",
    "LOGIN_HINT",
    "PUBLISH_LOCAL",
    "SERVICE",
    "HubCall",
    "HubClient",
    "RemoteFile",
    "http_status",
    "hub_ready",
    "is_transient",
    "translate",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = "Hugging Face Hub"
PUBLISH_LOCAL = "or publish to a folder with `--hub-dir DIR`"
LOAD_LOCAL = "or pass a local model folder to `--model`"
LOGIN = "run `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
LOGIN_HINT = f"{LOGIN}; {PUBLISH_LOCAL}"
_HTTP_LIBS = {"httpx", "httpx2", "httpcore", "requests", "urllib3", "h11", "h2"}  # transport errors from these
# Exception class names (anywhere in the MRO) that mean "try again": httpx, requests, urllib3 and builtins.
_TRANSIENT_NAMES = frozenset(
    {
        "TimeoutError", "TimeoutException", "Timeout", "ReadTimeout", "ConnectTimeout", "ConnectionError",
        "ConnectionResetError", "ConnectError", "ReadError", "NetworkError", "RemoteProtocolError", "ProtocolError",
        "ChunkedEncodingError", "IncompleteRead",
    }
)  # fmt: skip


@dataclass(frozen=True)
class RemoteFile:
    """A file in a Hub revision: its git blob id and, for LFS/Xet files, the content sha256."""

    path: str
    blob_id: str
    sha256: str | None = None


@dataclass(frozen=True)
class HubCall:
    """What a call was doing, for the one-line error: "`action` `target` ..." and the hints that come with it."""

    action: str  # "downloading", "committing to", ...
    target: str  # "alice/cxr", "dataset arudaev/chest-xray-14-320@44443e6ee968"
    local: str = PUBLISH_LOCAL  # the offline alternative, the end of every network hint
    not_found: str | None = None  # the fix for a 404 (default: check the name, log in)
    repo_id: str | None = None  # for `hf repo tag list` in the missing-revision hint (default: target)


# --------------------------------------------------------------------------------------------- classification


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a huggingface_hub/requests/httpx error, when it carries a response."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _is_offline(exc: BaseException) -> bool:
    return bool({"LocalEntryNotFoundError", "OfflineModeIsEnabled"} & _names(exc))


def _is_transport(exc: BaseException) -> bool:
    if isinstance(exc, OSError) or _TRANSIENT_NAMES & _names(exc):
        return True
    return any(cls.__module__.split(".")[0] in _HTTP_LIBS for cls in type(exc).__mro__)


def _is_hf(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] == "huggingface_hub" for cls in type(exc).__mro__)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: HTTP 5xx/429, timeouts, connection resets."""
    code = http_status(exc)
    if code is not None:
        return code == 429 or code >= 500
    if _is_offline(exc):
        return False
    return bool(_TRANSIENT_NAMES & _names(exc))


# --------------------------------------------------------------------------------------------- the chokepoint


def _not_found(exc: BaseException, call: HubCall) -> RemoteNotFoundError | None:
    names = _names(exc)
    where = f"{call.action} {call.target}"
    fix = call.not_found or f"check the name; {LOGIN}; {call.local}"
    if "RevisionNotFoundError" in names:
        repo = call.repo_id or call.target
        hint = call.not_found or f"list its tags with `hf repo tag list {repo}`"
        return RemoteNotFoundError(SERVICE, f"{where}: revision not found (HTTP 404)", hint)
    if "EntryNotFoundError" in names:
        return RemoteNotFoundError(SERVICE, f"{where}: a file is missing (HTTP 404)", call.not_found or fix)
    if "RepositoryNotFoundError" in names or http_status(exc) == 404:
        what = f"{call.target} was not found (HTTP 404; a private repo is invisible without its token)"
        return RemoteNotFoundError(SERVICE, what, fix)
    return None


def translate(exc: BaseException, call: HubCall, *, attempts: int = 1) -> BaseException:
    """The typed error for a failed Hub call (see the module docstring); `exc` itself when it is not the Hub's.

    `attempts` > 1 says the failure was retried that many times. Raise the result `from exc`.
    """
    if isinstance(exc, CheXVisionError):
        return exc
    where = f"{call.action} {call.target}"
    names, code = _names(exc), http_status(exc)
    if "GatedRepoError" in names:  # a subclass of RepositoryNotFoundError: check it first
        return RemoteError(SERVICE, code, f"{call.target} is gated", "accept its terms on huggingface.co")
    if _is_offline(exc):  # LocalEntryNotFoundError subclasses EntryNotFoundError: check it before the 404s
        return RemoteError(
            SERVICE,
            None,
            f"{where}: offline or no network, and the files are not in the local cache ({type(exc).__name__})",
            f"check the network and HF_HUB_OFFLINE, then retry; {call.local}",
        )
    missing = _not_found(exc, call)
    if missing is not None:
        return missing
    if "LocalTokenNotFoundError" in names:
        return BadInputError("no Hugging Face token found", f"{LOGIN}; {call.local}")
    if code in (401, 403):
        return RemoteError(SERVICE, code, f"{where}: the Hub refused access (HTTP {code})", f"{LOGIN}; {call.local}")
    failed = "kept failing" if attempts > 1 else "failed"
    if code is not None:
        return RemoteError(SERVICE, code, f"{where} {failed} (HTTP {code})", f"retry later; {call.local}")
    if _is_transport(exc):
        return RemoteError(
            SERVICE,
            None,
            f"{where} {failed}: {type(exc).__name__} (network)",
            f"check the network and retry; {call.local}",
        )
    if _is_hf(exc):
        return RemoteError(SERVICE, None, f"{where} {failed}: {type(exc).__name__}", f"retry later; {call.local}")
    return exc  # not a Hub failure: a bug shows as one


@contextmanager
def _translating(call: HubCall) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        err = translate(exc, call)
        if err is exc:
            raise
        raise err from exc


# --------------------------------------------------------------------------------------------- the client


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return bool(constants.HF_HUB_OFFLINE) or env


def hub_ready() -> bool:
    """Whether publishing to the Hub can work: not offline and a token is configured (no network call)."""
    import huggingface_hub

    return not _offline() and bool(huggingface_hub.get_token())


def _new_hf_api(*, require_token: bool) -> Any:
    """Construct `HfApi` after the checks that give a useful one-line error instead of a stack trace."""
    import huggingface_hub

    if require_token and _offline():
        raise BadInputError("the Hub is unreachable: HF_HUB_OFFLINE is set", f"unset it, {PUBLISH_LOCAL}")
    if require_token and not huggingface_hub.get_token():
        raise BadInputError("no Hugging Face token found", LOGIN_HINT)
    return huggingface_hub.HfApi(library_name="chexvision")


class HubClient:
    """What publish, load and `data download` need from the Hub, and nothing more.

    `api` is an `HfApi` or a fake with its methods; `sleep` waits between retries (tests record it).
    """

    def __init__(
        self, api: Any | None = None, *, require_token: bool = True, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._api = api if api is not None else _new_hf_api(require_token=require_token)
        self._sleep = sleep

    def whoami(self) -> str:
        with _translating(HubCall("asking who you are on", "the Hub")):
            info = self._api.whoami()
        return str(info["name"])

    def ensure_repo(self, repo_id: str, *, private: bool) -> str:
        """Create the model repo if missing (idempotent, `exist_ok=True`); return its URL."""
        with _translating(HubCall("creating", repo_id)):
            url = self._api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return str(url)

    def _refs(self, repo_id: str, action: str) -> Any:
        with _translating(HubCall(action, repo_id)):
            return self._api.list_repo_refs(repo_id, repo_type="model")

    def tag_target(self, repo_id: str, tag: str) -> str | None:
        """The commit a tag points at, or None when there is no such tag."""
        refs = self._refs(repo_id, "listing tags of")
        return next((str(t.target_commit) for t in refs.tags if t.name == tag), None)

    def head_commit(self, repo_id: str, branch: str = "main") -> str | None:
        refs = self._refs(repo_id, "listing branches of")
        return next((str(b.target_commit) for b in refs.branches if b.name == branch), None)

    def files(self, repo_id: str, revision: str) -> dict[str, RemoteFile]:
        """Every file of a revision with its blob id / sha256; {} for an empty repo."""
        from huggingface_hub import errors as hf_errors

        with _translating(HubCall("listing files of", repo_id)):
            try:
                entries = list(self._api.list_repo_tree(repo_id, revision=revision, recursive=True))
            except (hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError):
                return {}  # a freshly created repo has no commit on main yet
        out: dict[str, RemoteFile] = {}
        for entry in entries:
            blob_id = getattr(entry, "blob_id", None)
            if blob_id is None:  # a folder
                continue
            lfs = getattr(entry, "lfs", None)
            out[entry.path] = RemoteFile(entry.path, str(blob_id), getattr(lfs, "sha256", None))
        return out

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, Path],
        *,
        deletes: Sequence[str] = (),
        message: str,
        description: str | None = None,
    ) -> str:
        """One commit adding `files` (path in repo -> local file) and deleting `deletes`; returns the commit id."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        ops: list[Any] = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()
        ]
        ops += [CommitOperationDelete(path_in_repo=name) for name in deletes]
        with _translating(HubCall("committing to", repo_id)):
            info = self._api.create_commit(
                repo_id, ops, commit_message=message, commit_description=description, repo_type="model"
            )
        return str(info.oid)

    def set_tag(self, repo_id: str, tag: str, commit: str, *, message: str) -> None:
        """Point `tag` at `commit`, moving it if it points elsewhere."""
        current = self.tag_target(repo_id, tag)
        if current == commit:
            return
        with _translating(HubCall("tagging", repo_id)):
            if current is not None:
                self._api.delete_tag(repo_id, tag=tag, repo_type="model")
            self._api.create_tag(repo_id, tag=tag, tag_message=message, revision=commit, repo_type="model")

    def download(self, repo_id: str, *, revision: str | None, filenames: Sequence[str]) -> Path:
        """Download `filenames` of a model revision into the HF cache; return the snapshot folder."""
        call = HubCall("downloading from", repo_id, local=LOAD_LOCAL, repo_id=repo_id)
        folder = self._retrying(
            call,
            0,
            0.0,
            lambda: self._api.snapshot_download(
                repo_id=repo_id, repo_type="model", revision=revision, allow_patterns=list(filenames)
            ),
        )
        return Path(folder)

    def download_dataset(
        self,
        repo_id: str,
        revision: str,
        local_dir: Path,
        *,
        allow_patterns: Sequence[str],
        call: HubCall,
        retries: int = 0,
        backoff_s: float = 2.0,
    ) -> Path:
        """Download a data set revision into `local_dir` (resumable: complete files are skipped), with retries."""
        self._retrying(
            call,
            retries,
            backoff_s,
            lambda: self._api.snapshot_download(
                repo_id=repo_id,
                repo_type="dataset",
                revision=revision,
                allow_patterns=list(allow_patterns),
                local_dir=str(local_dir),
            ),
        )
        return Path(local_dir)

    def _retrying(self, call: HubCall, retries: int, backoff_s: float, fn: Callable[[], T]) -> T:
        """`fn()`, retried `retries` times on transient failures (sleeping backoff_s, 2*backoff_s, ...)."""
        for attempt in range(retries + 1):
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc) or attempt == retries:
                    err = translate(exc, call, attempts=attempt + 1)
                    if err is exc:
                        raise
                    raise err from exc
                delay = backoff_s * 2**attempt
                log.warning(
                    "transient failure (%s); retry %d/%d in %.0f s", type(exc).__name__, attempt + 1, retries, delay
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises
