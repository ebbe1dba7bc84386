"""The credential scanner the bundle runs on every file it considers: names, every byte, and what is compressed.

A file is scanned whole whatever its size (in chunks that overlap, so a token across a chunk boundary is still
found), and a gzip, bzip2, xz or zip file is scanned again decompressed (zip members one by one, recursively):
a token inside `stats.json.gz` is as much a leak as one in plain text. Compression is told by the magic bytes, not
the file name. A compressed file that cannot be decompressed cannot be vouched for and is refused too.

Results say what kind of secret was found, never the secret: callers put them in one-line errors.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dispatch.errors import SecretFoundError, UnscannableFileError

__all__ = ["find_secret", "find_secret_in_text", "scan_file", "secret_name"]

_CHUNK = 1 << 20  # bytes read at a time
_OVERLAP = 4096  # kept from the previous chunk: longer than any token the patterns match
_MAX_DEPTH = 3  # zip inside zip inside zip: deeper is refused rather than trusted

# File names that are credentials whatever they hold.
_SECRET_NAMES = {
    ".env": "a dotenv file",
    "kaggle.json": "Kaggle API credentials",
    "access_token": "a Kaggle access token",
    "access_token.txt": "a Kaggle access token",
    "id_rsa": "an SSH private key",
    "id_ecdsa": "an SSH private key",
    "id_ed25519": "an SSH private key",
    ".netrc": "a netrc credentials file",
    ".git-credentials": "git credentials",
    ".pypirc": "package index credentials",
    "credentials": "cloud credentials (~/.aws/credentials)",  # SkyPilot's clouds keep theirs in the user's home
    "application_default_credentials.json": "Google Cloud credentials",
}
_SECRET_SUFFIXES = {".pem": "a private key", ".key": "a private key", ".p12": "a certificate bundle"}
# Contents that are credentials (bytes patterns: binary files are scanned as they are). The Kaggle key is 32 hex
# digits: found as the "key" of a kaggle.json-like object, or assigned to any name that mentions Kaggle
# (`KAGGLE_KEY=...`, `kaggle_key = "..."`, `"kaggle_api_key": "..."`).
_SECRET_PATTERNS = [
    (re.compile(rb"\bhf_[A-Za-z0-9]{30,}\b"), "a Hugging Face token"),
    (re.compile(rb"\bKGAT_[A-Za-z0-9]{20,}\b"), "a Kaggle API token"),
    (re.compile(rb"-----BEGIN ([A-Z]+ )?" + b"PRIVATE KEY-----"), "a private key"),
    (re.compile(rb'"key"\s*:\s*"[0-9a-fA-F]{32}"'), "a Kaggle API key"),
    (re.compile(rb"(?i)kaggle[\w-]*['\"]?\s*[=:]\s*[bru]{0,2}['\"]?[0-9a-f]{32}\b"), "a Kaggle API key"),
    (re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(rb"(?i)aws_secret_access_key['\"]?\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}"), "an AWS secret access key"),
    (re.compile(rb'"type"\s*:\s*"service_account"'), "a Google Cloud service-account key"),
]
_MAGIC: list[tuple[bytes, str]] = [
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
]
_DECOMPRESS: dict[str, Callable[[IO[bytes]], io.BufferedIOBase]] = {  # the caller closes what these return
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw),
    "bzip2": lambda raw: bz2.BZ2File(raw),
    "xz": lambda raw: lzma.LZMAFile(raw),  # noqa: SIM115
}
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, ValueError)


def secret_name(path: Path) -> str | None:
    """What kind of credential the file's name says it is, or None."""
    name = path.name
    if name in _SECRET_NAMES:
        return _SECRET_NAMES[name]
    if name.startswith(".env."):
        return "a dotenv file"
    return _SECRET_SUFFIXES.get(path.suffix)


def _match(data: bytes) -> str | None:
    for pattern, what in _SECRET_PATTERNS:
        if pattern.search(data):
            return what
    return None


def find_secret_in_text(text: str) -> str | None:
    """What kind of credential `text` holds, or None."""
    return _match(text.encode("utf-8", errors="surrogateescape"))


def _scan_stream(stream: IO[bytes] | io.BufferedIOBase) -> str | None:
    tail = b""
    while chunk := stream.read(_CHUNK):
        window = tail + chunk
        what = _match(window)
        if what:
            return what
        tail = window[-_OVERLAP:]
    return None


def _compression(head: bytes) -> str | None:
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def _scan_opened(open_: Callable[[], IO[bytes]], label: str, depth: int) -> str | None:
    """Scan what `open_()` reads, then (when it is compressed) what it decompresses to."""
    with open_() as raw:
        what = _scan_stream(raw)
    if what:
        return what
    with open_() as raw:
        kind = _compression(raw.read(8))
    if kind is None:
        return None
    if depth >= _MAX_DEPTH:
        raise UnscannableFileError(label, f"{kind} data nested more than {_MAX_DEPTH} deep")
    try:
        if kind == "zip":
            return _scan_zip(open_, label, depth)
        with open_() as raw, _DECOMPRESS[kind](raw) as inner:
            return _scan_stream(inner)
    except _DECOMPRESS_ERRORS as exc:
        raise UnscannableFileError(label, f"its {kind} data cannot be decompressed ({type(exc).__name__})") from None


def _scan_zip(open_: Callable[[], IO[bytes]], label: str, depth: int) -> str | None:
    with open_() as raw, zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            what = _scan_opened(functools.partial(archive.open, info), label, depth + 1)
            if what:
                return what
    return None


def find_secret(path: Path) -> str | None:
    """What kind of secret `path` is or holds (every byte, decompressed where compressed), or None.

    Raises UnscannableFileError when a compressed file cannot be read back.
    """
    return secret_name(path) or _scan_opened(lambda: path.open("rb"), str(path), 0)


def scan_file(path: Path, label: str) -> None:
    """Refuse `path` (shown as `label`, e.g. its archive name) if it is or holds a credential."""
    what = secret_name(path) or _scan_opened(lambda: path.open("rb"), label, 0)
    if what:
        raise SecretFoundError(label, what)
