"""Publish a run directory as a model repo: one commit with every file, then a tag named after the run id.

`publish_run` does the shared work (check the run, render the card and the plot, compare with what is already
published) and hands the writing to a target: `_HubTarget` (the Hugging Face Hub through `HubClient`) or
`_FolderTarget` (`--hub-dir`, the same repo layout in a folder; the offline default and what tests use).

Idempotent (STYLE 11): publishing the same run again finds its tag on identical files and changes nothing; a run
whose files changed since (e.g. test metrics added by `chexvision evaluate`) gets a new commit and its tag moves
to it; a re-run after a failure between the commit and the tag finds the files on `main` and only tags them.
Publishing another run to the same repo replaces `main` and leaves the earlier run reachable by its tag.

Folder layout (`--hub-dir DIR`, repo id `owner/name` or `name`):

    DIR/<repo_id>/                      the head (`main`): exactly the files a Hub repo would hold
    DIR/<repo_id>/.revisions/<tag>/     a full snapshot per tag (files hard-linked where possible)
    DIR/<repo_id>/.revisions/refs.json  {"branches": {"main": commit}, "tags": {tag: commit}}

A folder "commit" is a content hash: the first 40 hex digits of sha256 over the sorted (path, sha256) list.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from chexvision.errors import BadInputError
from chexvision.files import atomic_write_text, read_json_object, tmp_sibling
from chexvision.hf import HubClient, RemoteFile
from chexvision.hub.card import CARD_FILE, PLOT_FILE, plot_training_curves, read_run
from chexvision.hub.card import render_card as _render_card
from chexvision.rundir import (
    CONFIG_JSON,
    HISTORY_JSON,
    METRICS_JSON,
    RUN_JSON,
    WEIGHTS,
    RunInfo,
    check_files,
    safetensors_problem,
)

__all__ = [
    "PUBLISHED_FILES",
    "REFS_FILE",
    "REVISIONS_DIR",
    "PublishResult",
    "default_hub_dir",
    "default_repo_name",
    "folder_revision",
    "publish_run",
    "stage_run",
]

log = logging.getLogger(__name__)

REVISIONS_DIR = ".revisions"
REFS_FILE = "refs.json"
# Copied from the run dir as they are; run.json (provenance: data set, revision, git sha) when present.
COPIED_FILES = (CONFIG_JSON, HISTORY_JSON, METRICS_JSON, RUN_JSON, WEIGHTS)
PUBLISHED_FILES = (CARD_FILE, *COPIED_FILES, PLOT_FILE)  # never last.ckpt (optimizer state) or train.log
_KEEP_REMOTE = (".gitattributes",)  # files a Hub repo has that we never delete
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_REPO_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class PublishResult:
    """Where a run was published. `changed` is False when the same files were already there under the tag."""

    repo_id: str
    commit: str
    tag: str
    url: str
    changed: bool
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": list(self.files)}

    @property
    def model_spec(self) -> str:
        """What `chexvision predict --model` takes for this upload: `owner/name@tag`, or `DIR/<repo>@tag`."""
        if self.url.startswith("file://"):  # DIR/<repo>/.revisions/<tag> -> DIR/<repo>@<tag>
            from urllib.parse import unquote, urlparse

            return f"{Path(unquote(urlparse(self.url).path)).parent.parent}@{self.tag}"
        return f"{self.repo_id}@{self.tag}"


@dataclass(frozen=True)
class _LocalFile:
    path: Path
    sha256: str
    git_sha1: str

    def matches(self, remote: RemoteFile) -> bool:
        return remote.sha256 == self.sha256 or remote.blob_id == self.git_sha1


def _hash_file(path: Path) -> _LocalFile:
    """sha256 of the content and the git blob id (what the Hub reports for non-LFS files)."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    return _LocalFile(path, sha256.hexdigest(), sha1.hexdigest())


def _same(local: Mapping[str, _LocalFile], remote: Mapping[str, RemoteFile]) -> bool:
    remote_ours = {k: v for k, v in remote.items() if k not in _KEEP_REMOTE}
    return set(local) == set(remote_ours) and all(f.matches(remote_ours[k]) for k, f in local.items())


def default_hub_dir() -> Path:
    """`$CHEXVISION_HOME/hub` (default `~/.chexvision/hub`): where to publish when the Hub is not available."""
    return Path(os.environ.get("CHEXVISION_HOME") or Path.home() / ".chexvision") / "hub"


def default_repo_name(model_name: str) -> str:
    return f"chexvision-{model_name}"


def _check_tag(tag: str) -> str:
    if not _TAG_RE.match(tag) or tag == REFS_FILE:
        raise BadInputError(f"invalid tag {tag!r}", "use letters, digits, '.', '_' and '-' (e.g. the run id)")
    return tag


def _check_repo(repo_id: str) -> str:
    if not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise BadInputError(f"invalid repo id {repo_id!r}", "use `owner/name` (or `name` with --hub-dir)")
    return repo_id


def stage_run(art: RunInfo, staging: Path, *, repo_id: str, tag: str) -> dict[str, Path]:
    """Render the card and the plot into `staging`; return every file to publish (path in repo -> local file)."""
    plot = plot_training_curves(art.history, staging / PLOT_FILE)
    card = _render_card(art, repo_id=repo_id, revision=tag, plot=PLOT_FILE if plot else None)
    (staging / CARD_FILE).write_text(card, encoding="utf-8")
    copied = {name: art.run_dir / name for name in COPIED_FILES if (art.run_dir / name).is_file()}
    files = {CARD_FILE: staging / CARD_FILE, **copied}
    if plot is not None:
        files[PLOT_FILE] = plot
    return files


class _Target(Protocol):
    """Where a repo lives. The shared algorithm in `_publish` calls these hooks."""

    repo_id: str

    def prepare(self) -> None: ...
    def tag_target(self, tag: str) -> str | None: ...
    def head(self) -> str | None: ...
    def files(self, revision: str) -> dict[str, RemoteFile]: ...
    def commit(self, files: Mapping[str, Path], deletes: list[str], message: str, description: str) -> str: ...
    def set_tag(self, tag: str, commit: str, message: str) -> None: ...
    def url(self, tag: str) -> str: ...


class _HubTarget:
    def __init__(self, client: HubClient, repo_id: str, private: bool) -> None:
        self.client, self.repo_id, self.private = client, repo_id, private

    def prepare(self) -> None:
        self.client.ensure_repo(self.repo_id, private=self.private)

    def tag_target(self, tag: str) -> str | None:
        return self.client.tag_target(self.repo_id, tag)

    def head(self) -> str | None:
        return self.client.head_commit(self.repo_id)

    def files(self, revision: str) -> dict[str, RemoteFile]:
        return self.client.files(self.repo_id, revision)

    def commit(self, files: Mapping[str, Path], deletes: list[str], message: str, description: str) -> str:
        return self.client.commit(self.repo_id, files, deletes=deletes, message=message, description=description)

    def set_tag(self, tag: str, commit: str, message: str) -> None:
        self.client.set_tag(self.repo_id, tag, commit, message=message)

    def url(self, tag: str) -> str:
        return f"https://huggingface.co/{self.repo_id}/tree/{tag}"


class _FolderTarget:
    """A repo in a folder: the head, one snapshot per tag, and refs.json standing in for git refs."""

    def __init__(self, hub_dir: Path, repo_id: str) -> None:
        self.repo_id = repo_id
        self.root = Path(hub_dir).expanduser().resolve() / repo_id
        self.revisions = self.root / REVISIONS_DIR

    def _refs(self) -> dict[str, dict[str, str]]:
        return _read_refs(self.root)

    def _write_refs(self, refs: Mapping[str, Any]) -> None:
        atomic_write_text(self.revisions / REFS_FILE, json.dumps(refs, indent=2, sort_keys=True) + "\n")

    def prepare(self) -> None:
        self.revisions.mkdir(parents=True, exist_ok=True)

    def tag_target(self, tag: str) -> str | None:
        commit = self._refs()["tags"].get(tag)
        return commit if commit and (self.revisions / tag).is_dir() else None

    def head(self) -> str | None:
        """The content hash of the head folder as it is (even if a crash left refs.json behind)."""
        files = self._scan(self.root)
        return _content_commit(files) if files else None

    @staticmethod
    def _scan(folder: Path) -> dict[str, RemoteFile]:
        out = {}
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            h = _hash_file(path)
            out[path.name] = RemoteFile(path.name, h.git_sha1, h.sha256)
        return out

    def files(self, revision: str) -> dict[str, RemoteFile]:
        if revision in ("main", self.head()):
            return self._scan(self.root) if self.root.is_dir() else {}
        try:
            folder = folder_revision(self.root, revision)
        except BadInputError:
            return {}
        return self._scan(folder) if folder.is_dir() else {}

    def commit(self, files: Mapping[str, Path], deletes: list[str], message: str, description: str) -> str:
        for name, src in files.items():
            _atomic_copy(src, self.root / name)
        for name in deletes:
            (self.root / name).unlink(missing_ok=True)
        commit = _content_commit(self.files("main"))
        refs = self._refs()
        refs["branches"]["main"] = commit
        self._write_refs(refs)
        return commit

    def set_tag(self, tag: str, commit: str, message: str) -> None:
        if commit != self.head():
            raise BadInputError(f"cannot tag {commit} in {self.root}: not the head", "publish the run again")
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{tag}-", dir=self.revisions))
        for name in self.files("main"):
            _link_or_copy(self.root / name, tmp / name)
        final = self.revisions / tag
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        refs = self._refs()
        refs["tags"][tag] = commit
        self._write_refs(refs)

    def url(self, tag: str) -> str:
        return (self.revisions / tag).as_uri()


def _content_commit(files: Mapping[str, RemoteFile]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name].sha256}\n".encode())
    return digest.hexdigest()[:40]


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = tmp_sibling(dst)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)  # a new inode: hard-linked snapshots keep their old content


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _read_refs(repo_dir: Path) -> dict[str, dict[str, str]]:
    """refs.json of a `--hub-dir` repo folder: {"branches": {name: commit}, "tags": {tag: commit}}."""
    path = repo_dir / REVISIONS_DIR / REFS_FILE
    hint = f"delete {path} and publish the runs again (their files are still there)"
    refs = read_json_object(path, hint) if path.is_file() else {}
    return {"branches": dict(refs.get("branches") or {}), "tags": dict(refs.get("tags") or {})}


def folder_revision(repo_dir: Path, revision: str) -> Path:
    """The snapshot folder of `revision` (a tag, or a commit a tag points at) in a `--hub-dir` repo folder."""
    revisions = Path(repo_dir) / REVISIONS_DIR
    refs = _read_refs(Path(repo_dir))
    tags = refs["tags"]
    if revision == "main" or revision == refs["branches"].get("main"):
        return Path(repo_dir)
    if revision not in tags:
        revision = next((tag for tag, commit in sorted(tags.items()) if commit == revision), revision)
    if revision in tags and (revisions / revision).is_dir():
        return revisions / revision
    known = ", ".join(sorted(tags)) or "none"
    raise BadInputError(f"revision {revision!r} not found in {repo_dir}", f"known tags: {known}")


def _publish(target: _Target, files: Mapping[str, Path], tag: str, run_id: str) -> PublishResult:
    """The shared algorithm: converge the target to `files` on main with `tag` pointing at them."""
    local = {name: _hash_file(path) for name, path in files.items()}
    names = tuple(sorted(files))
    target.prepare()
    tagged = target.tag_target(tag)
    if tagged is not None and _same(local, target.files(tagged)):
        log.info("run %s is already published at %s@%s", run_id, target.repo_id, tag)
        return PublishResult(target.repo_id, tagged, tag, target.url(tag), changed=False, files=names)
    head = target.head()
    head_files = target.files(head) if head else {}
    if head is not None and _same(local, head_files):
        commit = head  # committed by an earlier attempt that failed before tagging
    else:
        deletes = sorted(set(head_files) - set(local) - set(_KEEP_REMOTE))
        commit = target.commit(files, deletes, f"Publish run {run_id}", f"CheXVision run `{run_id}`, tagged `{tag}`.")
    target.set_tag(tag, commit, f"CheXVision run {run_id}")
    return PublishResult(target.repo_id, commit, tag, target.url(tag), changed=True, files=names)


def publish_run(
    run_dir: Path,
    *,
    repo_id: str | None = None,
    hub_dir: Path | None = None,
    private: bool = True,
    client: HubClient | None = None,
    tag: str | None = None,
) -> PublishResult:
    """Publish `run_dir` to the Hub (`repo_id`, default `<hf user>/chexvision-<model>`) or to `hub_dir`.

    `tag` defaults to the run id. `client` is a `HubClient` (tests pass one around a fake `HfApi`); it is
    created (token checked) only when publishing to the Hub. Returns where the run now is.
    """
    art = read_run(Path(run_dir))
    check_files(art.run_dir, art.run, COPIED_FILES)  # never publish a file that changed since training wrote it
    if problem := safetensors_problem(art.weights):
        raise BadInputError(f"{art.run_dir}: {problem}", "fetch the run again, or publish another run")
    tag = _check_tag(tag or art.run_id)
    target: _Target
    if hub_dir is not None:
        target = _FolderTarget(Path(hub_dir), _check_repo(repo_id or default_repo_name(art.model_name)))
    else:
        client = client or HubClient()
        name = repo_id or default_repo_name(art.model_name)
        if "/" not in name:
            name = f"{client.whoami()}/{name}"
        target = _HubTarget(client, _check_repo(name), private)
    with tempfile.TemporaryDirectory(prefix="chexvision-publish-") as staging:
        files = stage_run(art, Path(staging), repo_id=target.repo_id, tag=tag)
        return _publish(target, files, tag, art.run_id)
