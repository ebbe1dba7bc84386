"""The source bundle: a deterministic zip of a job's `Sources` (an allow-list of folders under one root).

Sorted names, fixed timestamps and permissions: the same tree gives the same bytes and the same sha256. Only the
folders the job names go in, never caches, tests, .git or binaries; a folder listed in `Sources.only` ships only
the named files (package data the kernel reads). A file that is, or contains, a credential stops the build with
the file's name, and so does a command line or environment value of the job that looks like one.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dispatch.errors import InvalidJobError, SecretFoundError
from dispatch.job import JobSpec, Sources

__all__ = [
    "Bundle",
    "build_bundle",
    "bundle_files",
    "check_job_secrets",
    "find_secret",
    "find_secret_in_text",
    "source_git_sha",
]

_EXCLUDED_DIRS = {"__pycache__", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "tests", "data_cache"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".so", ".ckpt", ".safetensors", ".pt", ".parquet", ".egg-info")
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date zip can store

# File names that are credentials whatever they hold.
_SECRET_NAMES = {
    ".env": "a dotenv file",
    "kaggle.json": "Kaggle API credentials",
    "access_token": "a Kaggle access token",
    "id_rsa": "an SSH private key",
    "id_ed25519": "an SSH private key",
    ".netrc": "a netrc credentials file",
    ".git-credentials": "git credentials",
}
_SECRET_SUFFIXES = {".pem": "a private key", ".key": "a private key", ".p12": "a certificate bundle"}
# Contents that are credentials. Patterns are split so this file does not match itself if ever scanned.
_SECRET_PATTERNS = [
    (re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), "a Hugging Face token"),
    (re.compile(r"\bKGAT_[A-Za-z0-9]{20,}\b"), "a Kaggle API token"),
    (re.compile(r"-----BEGIN ([A-Z]+ )?" + "PRIVATE KEY-----"), "a private key"),
    (re.compile(r'"key"\s*:\s*"[0-9a-f]{32}"'), "a Kaggle API key"),
    (re.compile(r"KAGGLE_KEY\s*[=:]\s*['\"]?[0-9a-f]{32}"), "a Kaggle API key"),
    (re.compile(r"(HF_TOKEN|HUGGING_FACE_HUB_TOKEN)\s*[=:]\s*['\"]?hf_[A-Za-z0-9]{8,}"), "a Hugging Face token"),
]


@dataclass(frozen=True)
class Bundle:
    data: bytes  # the zip
    sha256: str  # of `data`
    files: tuple[str, ...]  # archive names, sorted

    @property
    def size(self) -> int:
        return len(self.data)


def find_secret(path: Path) -> str | None:
    """What kind of secret `path` is or holds, or None."""
    name = path.name
    if name in _SECRET_NAMES or name.startswith(".env."):
        return _SECRET_NAMES.get(name, "a dotenv file")
    if path.suffix in _SECRET_SUFFIXES:
        return _SECRET_SUFFIXES[path.suffix]
    if path.stat().st_size > 2_000_000:
        return None
    return find_secret_in_text(path.read_bytes().decode("utf-8", errors="ignore"))


def find_secret_in_text(text: str) -> str | None:
    """What kind of credential `text` holds, or None."""
    for pattern, what in _SECRET_PATTERNS:
        if pattern.search(text):
            return what
    return None


def check_job_secrets(job: JobSpec) -> None:
    """Refuse a job whose command lines or environment carry a credential: they travel inside the kernel."""
    values = [arg for step in job.steps for arg in step.argv] + [f"{k}={v}" for k, v in job.env.items()]
    for value in values:
        what = find_secret_in_text(value)
        if what:
            raise SecretFoundError("the job's command line", what)


def _shipped(posix: str, only: dict[str, tuple[str, ...]]) -> bool:
    for folder, names in only.items():
        if posix.startswith(folder.rstrip("/") + "/"):
            return posix.rsplit("/", 1)[-1] in names
    return True


def _folder_files(root: Path, folder: str) -> list[Path]:
    base = root / folder
    if not base.is_dir():
        raise InvalidJobError(f"no {folder}/ folder under {root} to bundle", "check the job's Sources")
    return sorted(base.rglob("*"))


def bundle_files(sources: Sources) -> list[str]:
    """Archive names (posix, relative to the root) that go into the bundle, sorted. Checks each for secrets."""
    root = sources.root
    only = {k.rstrip("/"): tuple(v) for k, v in sources.only.items()}
    names: list[str] = []
    for folder in sources.include:
        for path in _folder_files(root, folder):
            rel = path.relative_to(root)
            if any(part in _EXCLUDED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
                continue
            if not path.is_file() or path.is_symlink():
                continue
            what = find_secret(path)
            if what:
                raise SecretFoundError(rel.as_posix(), what)
            if path.name.endswith(_EXCLUDED_SUFFIXES) or not _shipped(rel.as_posix(), only):
                continue
            names.append(rel.as_posix())
    return sorted(set(names))


def build_bundle(sources: Sources) -> Bundle:
    """Zip the job's sources deterministically. Raises SecretFoundError naming the file."""
    root = sources.root
    names = bundle_files(sources)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever system builds it
            # Already-compressed files are stored; text is deflated at a fixed level.
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".gz") else zipfile.ZIP_DEFLATED
            archive.writestr(info, (root / name).read_bytes(), compresslevel=9)
    data = buffer.getvalue()
    return Bundle(data=data, sha256=hashlib.sha256(data).hexdigest(), files=tuple(names))


def source_git_sha(sources: Sources) -> str | None:
    """The commit the sources come from (`-dirty` when an included folder has changes), or None outside git."""
    git = ["git", "-C", str(sources.root)]
    try:
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", *sources.include],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha
