"""The one door to the Hugging Face Hub: a thin adapter over `huggingface_hub.HfApi`.

This is the ONE place that constructs `HfApi` (`_new_hf_api`); tests substitute a fake object with the same methods
there (or pass `HubClient(api=fake)`). Every call goes through `_translate`, the single chokepoint that turns the
client's failures into our typed errors (huggingface_hub `utils/_http.py hf_raise_for_status` does the same for
HTTP). The token is never read into a message, a log line or an exception here: HfApi finds it itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chexvision.data.download import http_status
from chexvision.errors import BackendError, BadInputError

__all__ = ["LOGIN_HINT", "HubClient", "RemoteFile", "hub_ready"]

log = logging.getLogger(__name__)

PUBLISH_LOCAL = "or publish to a folder with `--hub-dir DIR`"
LOAD_LOCAL = "or pass a local model folder to `--model`"
LOGIN = "run `hf auth login` (or `huggingface-cli login`) or set HF_TOKEN"
LOGIN_HINT = f"{LOGIN}; {PUBLISH_LOCAL}"
_HTTP_LIBS = {"httpx", "httpx2", "httpcore", "requests", "urllib3", "h11", "h2"}  # transport errors from these


@dataclass(frozen=True)
class RemoteFile:
    """A file in a Hub revision: its git blob id and, for LFS/Xet files, the content sha256."""

    path: str
    blob_id: str
    sha256: str | None = None


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


def _is_transport_error(exc: BaseException) -> bool:
    return any(cls.__module__.split(".")[0] in _HTTP_LIBS for cls in type(exc).__mro__)


@contextlib.contextmanager
def _translate(action: str, repo_id: str, *, local: str = PUBLISH_LOCAL) -> Iterator[None]:
    """Map huggingface_hub/network failures to BadInputError (exit 2) or BackendError (exit 3).

    `local` names the offline alternative in every hint. Messages name the repo and the HTTP status, never the
    client's own text (it may quote request headers).
    """
    from huggingface_hub import errors as hf_errors

    try:
        yield
    except (BadInputError, BackendError):
        raise
    except hf_errors.GatedRepoError as exc:
        raise BadInputError(f"Hub repo {repo_id} is gated", "accept its terms on huggingface.co") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise BadInputError(
            f"Hub repo {repo_id} not found (or private and not visible with your token)",
            f"check the name; {LOGIN}; {local}",
        ) from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise BadInputError(
            f"revision not found in Hub repo {repo_id}", f"list its tags with `hf repo tag list {repo_id}`"
        ) from exc
    except hf_errors.OfflineModeIsEnabled as exc:
        raise BackendError(f"{action} {repo_id}: HF_HUB_OFFLINE is set", f"unset it to reach the Hub, {local}") from exc
    except hf_errors.LocalEntryNotFoundError as exc:
        raise BackendError(
            f"{action} {repo_id}: the Hub is unreachable and the files are not in the local cache",
            f"check the network (and HF_HUB_OFFLINE), {local}",
        ) from exc
    except hf_errors.EntryNotFoundError as exc:
        raise BadInputError(f"{action} {repo_id}: a file is missing", "publish the run to it again") from exc
    except hf_errors.LocalTokenNotFoundError as exc:
        raise BadInputError("no Hugging Face token found", f"{LOGIN}; {local}") from exc
    except hf_errors.HfHubHTTPError as exc:
        code = http_status(exc)
        if code in (401, 403):
            raise BadInputError(
                f"{action} {repo_id}: the Hub refused the token (HTTP {code})", f"{LOGIN}; {local}"
            ) from exc
        raise BackendError(f"{action} {repo_id} failed (HTTP {code})", f"retry later, {local}") from exc
    except Exception as exc:
        if not (isinstance(exc, OSError) or _is_transport_error(exc)):
            raise
        raise BackendError(
            f"{action} {repo_id} failed: {type(exc).__name__} (network)", f"check the network and retry, {local}"
        ) from exc


class HubClient:
    """What publish/load need from the Hub, and nothing more. `api` is an `HfApi` or a fake with its methods."""

    def __init__(self, api: Any | None = None, *, require_token: bool = True) -> None:
        self._api = api if api is not None else _new_hf_api(require_token=require_token)

    def whoami(self) -> str:
        with _translate("asking who you are on", "the Hub"):
            info = self._api.whoami()
        return str(info["name"])

    def ensure_repo(self, repo_id: str, *, private: bool) -> str:
        """Create the model repo if missing (idempotent, `exist_ok=True`); return its URL."""
        with _translate("creating", repo_id):
            url = self._api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        return str(url)

    def tag_target(self, repo_id: str, tag: str) -> str | None:
        """The commit a tag points at, or None when there is no such tag."""
        with _translate("listing tags of", repo_id):
            refs = self._api.list_repo_refs(repo_id, repo_type="model")
        return next((str(t.target_commit) for t in refs.tags if t.name == tag), None)

    def head_commit(self, repo_id: str, branch: str = "main") -> str | None:
        with _translate("listing branches of", repo_id):
            refs = self._api.list_repo_refs(repo_id, repo_type="model")
        return next((str(b.target_commit) for b in refs.branches if b.name == branch), None)

    def files(self, repo_id: str, revision: str) -> dict[str, RemoteFile]:
        """Every file of a revision with its blob id / sha256; {} for an empty repo."""
        from huggingface_hub import errors as hf_errors

        with _translate("listing files of", repo_id):
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
        with _translate("committing to", repo_id):
            info = self._api.create_commit(
                repo_id, ops, commit_message=message, commit_description=description, repo_type="model"
            )
        return str(info.oid)

    def set_tag(self, repo_id: str, tag: str, commit: str, *, message: str) -> None:
        """Point `tag` at `commit`, moving it if it points elsewhere."""
        current = self.tag_target(repo_id, tag)
        if current == commit:
            return
        with _translate("tagging", repo_id):
            if current is not None:
                self._api.delete_tag(repo_id, tag=tag, repo_type="model")
            self._api.create_tag(repo_id, tag=tag, tag_message=message, revision=commit, repo_type="model")

    def download(self, repo_id: str, *, revision: str | None, filenames: Sequence[str]) -> Path:
        """Download `filenames` of a revision into the HF cache; return the snapshot folder."""
        with _translate("downloading from", repo_id, local=LOAD_LOCAL):
            folder = self._api.snapshot_download(
                repo_id, repo_type="model", revision=revision, allow_patterns=list(filenames)
            )
        return Path(folder)
