"""The source bundle: a deterministic zip of a job's `Sources` (an allow-list of folders under one root).

Sorted names, fixed timestamps and permissions: the same tree gives the same bytes and the same sha256. Only the
folders the job names go in, never caches, tests, .git or binaries; only files whose suffix `Sources.suffixes`
allows (when it names any); a folder listed in `Sources.only` ships only the named files (package data the kernel
reads). Every file of those folders that is not a never-shipped binary is scanned for credentials by
`dispatch.secrets` — its name, every byte whatever its size, and its decompressed content when it is compressed —
and one that is, or holds, a credential stops the build with the file's name (never the secret). So does a
command line or environment value of the job that looks like one.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dispatch.errors import InvalidJobError, SecretFoundError
from dispatch.job import JobSpec, Sources
from dispatch.secrets import find_secret, find_secret_in_text, scan_file, secret_name

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


@dataclass(frozen=True)
class Bundle:
    data: bytes  # the zip
    sha256: str  # of `data`
    files: tuple[str, ...]  # archive names, sorted

    @property
    def size(self) -> int:
        return len(self.data)


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


def _candidates(sources: Sources) -> list[Path]:
    """Every file under the included folders, minus cache folders (and what is no plain file)."""
    files: list[Path] = []
    for folder in sources.include:
        for path in _folder_files(sources.root, folder):
            rel = path.relative_to(sources.root)
            if any(part in _EXCLUDED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
                continue
            if path.is_file() and not path.is_symlink():
                files.append(path)
    return files


def bundle_files(sources: Sources) -> list[str]:
    """Archive names (posix, relative to the root) that go into the bundle, sorted. Scans each file for secrets."""
    only = {k.rstrip("/"): tuple(v) for k, v in sources.only.items()}
    names: list[str] = []
    for path in _candidates(sources):
        posix = path.relative_to(sources.root).as_posix()
        if path.name.endswith(_EXCLUDED_SUFFIXES):  # never shipped; still refused when named like a credential
            what = secret_name(path)
            if what:
                raise SecretFoundError(posix, what)
            continue
        scan_file(path, posix)
        if not _shipped(posix, only) or not _allowed_suffix(posix, only, sources.suffixes):
            continue
        names.append(posix)
    return sorted(set(names))


def _allowed_suffix(posix: str, only: dict[str, tuple[str, ...]], suffixes: tuple[str, ...]) -> bool:
    """Package data named in `only` ships whatever its suffix; other files only with an allowed suffix."""
    if not suffixes or any(posix.startswith(folder + "/") for folder in only):
        return True
    return posix.endswith(suffixes)


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
