"""The source bundle: a deterministic zip of what the kernel needs to run `python -m chexvision train`.

Sorted names, fixed timestamps and permissions: the same tree gives the same bytes and the same sha256. Only the
`chexvision/` package goes in (never tests, data, caches, .git, .env), and of its package data only the split
lists the kernel reads: the published shards carry labels and file names, so the 1 MB NIH metadata CSV, the
train_val list and the BBox list stay home (and the CheXNet lists unless that split scheme is asked for).
A file that is, or contains, a credential stops the build with the file's name.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dispatch.errors import SecretFoundError

__all__ = ["Bundle", "build_bundle", "bundle_files", "find_secret", "find_secret_in_text", "repo_root"]

PACKAGE = "chexvision"
RESOURCES = "chexvision/data/resources/"
# Package data the kernel reads; everything else under resources/ stays home.
# (`data synth` reads the few-KB NIH statistics, never the 1 MB metadata CSV.)
ALWAYS_RESOURCES = ("official_test.txt.gz", "nih_synth_stats.json.gz")
CHEXNET_RESOURCES = ("chexnet_train.txt.gz", "chexnet_val.txt.gz", "chexnet_test.txt.gz")

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


def repo_root() -> Path:
    """The source tree holding the `chexvision` package that is imported now."""
    import chexvision

    return Path(chexvision.__file__).resolve().parent.parent


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


def _wanted_resource(name: str, split_scheme: str | None) -> bool:
    return name in ALWAYS_RESOURCES or (split_scheme == "chexnet" and name in CHEXNET_RESOURCES)


def bundle_files(root: Path, split_scheme: str | None = None) -> list[str]:
    """Archive names (posix, relative to `root`) that go into the bundle, sorted. Checks each for secrets."""
    package = root / PACKAGE
    if not (package / "__init__.py").is_file():
        raise FileNotFoundError(f"no {PACKAGE}/ package under {root}")
    names: list[str] = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _EXCLUDED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if not path.is_file() or path.is_symlink():
            continue
        what = find_secret(path)
        if what:
            raise SecretFoundError(rel.as_posix(), what)
        if path.name.endswith(_EXCLUDED_SUFFIXES):
            continue
        posix = rel.as_posix()
        if posix.startswith(RESOURCES) and not _wanted_resource(path.name, split_scheme):
            continue
        names.append(posix)
    return sorted(names)


def build_bundle(root: Path | None = None, split_scheme: str | None = None) -> Bundle:
    """Zip the kernel's sources deterministically. Raises SecretFoundError naming the file."""
    root = root or repo_root()
    names = bundle_files(root, split_scheme)
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
