"""The one object that talks HTTP to Kaggle. Tests substitute a fake with the same methods; all code above is real.

The official `kaggle` package prints a banner and reads credentials when imported, so it is imported here only,
inside `_api()`, with its output captured. Each method takes and returns the kagglesdk request/response objects
(`kagglesdk.kernels.types.kernels_api_service`), exactly what `KaggleApi.kernels_*` send, so the request fields
built by `dispatch.backends.kaggle` are the ones that go over the wire.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dispatch.errors import BackendUnavailableError, InvalidCredentialsError

__all__ = [
    "KaggleClient",
    "check_credentials_file",
    "configured_username",
    "credentials_configured",
    "kaggle_config_dir",
    "no_credentials_error",
]

log = logging.getLogger(__name__)
_TOKEN_PAGE = "download a new API token from https://www.kaggle.com/settings"


def kaggle_config_dir() -> Path:
    """Where the client reads kaggle.json: $KAGGLE_CONFIG_DIR, else ~/.kaggle if it exists, else (Linux) XDG."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = Path.home() / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return legacy


def credentials_configured() -> bool:
    """Whether Kaggle credentials are set up, by the same sources the client reads; never imports it.

    Mirrors kaggle 2.2.5: KAGGLE_API_TOKEN, then ~/.kaggle/access_token[.txt] (always under the home folder),
    then KAGGLE_USERNAME + KAGGLE_KEY or kaggle.json in `kaggle_config_dir()`.
    """
    if os.environ.get("KAGGLE_API_TOKEN"):
        return True
    tokens = Path.home() / ".kaggle"
    if (tokens / "access_token").is_file() or (tokens / "access_token.txt").is_file():
        return True
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    return (kaggle_config_dir() / "kaggle.json").is_file()


def no_credentials_error() -> BackendUnavailableError:
    return BackendUnavailableError(
        "no Kaggle credentials configured",
        f"put kaggle.json in {kaggle_config_dir()} (or set KAGGLE_USERNAME and KAGGLE_KEY), or use --backend local",
    )


def configured_username() -> str | None:
    """The user name from the environment or kaggle.json (access tokens need the client to resolve it)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    try:
        data = json.loads((kaggle_config_dir() / "kaggle.json").read_text())
    except (OSError, ValueError):
        return None
    name = data.get("username") if isinstance(data, dict) else None
    return str(name) if name else None


def _uses_kaggle_json() -> bool:
    """Whether the client would read kaggle.json (no token and no KAGGLE_USERNAME + KAGGLE_KEY come first)."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return False
    tokens = Path.home() / ".kaggle"
    if (tokens / "access_token").is_file() or (tokens / "access_token.txt").is_file():
        return False
    return not (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"))


def check_credentials_file() -> None:
    """Refuse a kaggle.json the client would read that cannot work (bad JSON, no "username" or "key"); warn, as
    the kaggle client does, when other users can read it. Never networks, never shows the file's content.

    Without this the client fails at authentication and all a user sees is "Kaggle rejected the credentials".
    """
    path = kaggle_config_dir() / "kaggle.json"
    if not _uses_kaggle_json() or not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InvalidCredentialsError(path, "it is not UTF-8 text", _TOKEN_PAGE) from None
    except ValueError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "?"
        raise InvalidCredentialsError(path, f"it is not valid JSON ({where})", _TOKEN_PAGE) from None
    except OSError as exc:
        raise InvalidCredentialsError(path, f"it cannot be read ({exc.strerror})", "check its permissions") from None
    if not isinstance(data, dict):
        raise InvalidCredentialsError(path, "it is not a JSON object", _TOKEN_PAGE)
    missing = [k for k in ("username", "key") if not isinstance(data.get(k), str) or not data[k].strip()]
    if missing:
        names = " and ".join(f'"{k}"' for k in missing)
        raise InvalidCredentialsError(path, f"it has no {names}", _TOKEN_PAGE)
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("warning: your Kaggle API key %s is readable by other users; run `chmod 600 %s`", path, path)


class KaggleClient:
    """Thin adapter over `kaggle.api.kaggle_api_extended.KaggleApi` and its kagglesdk kernels client."""

    def __init__(self) -> None:
        self._kaggle: Any = None

    def _api(self) -> Any:
        if self._kaggle is None:
            if not credentials_configured():
                raise no_credentials_error()
            check_credentials_file()
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    import kaggle  # builds `kaggle.api` and authenticates it, swallowing any failure

                    api = kaggle.api
                    if not getattr(api, "_authenticated", False):
                        api.authenticate()  # again, so the failure surfaces (exit(1), or a network error)
            except SystemExit:  # authenticate() calls exit(1) when no method works
                raise BackendUnavailableError(
                    "Kaggle rejected the configured credentials", "check kaggle.json / KAGGLE_KEY"
                ) from None
            self._kaggle = api
        return self._kaggle

    @contextlib.contextmanager
    def _kernels(self) -> Iterator[Any]:
        api = self._api()
        # The client prints notices (e.g. "outdated kaggle version") to stdout, where `--json` output goes.
        with contextlib.redirect_stdout(sys.stderr), api.build_kaggle_client() as kaggle:
            yield kaggle.kernels.kernels_api_client

    def username(self) -> str:
        name = configured_username()
        if name:
            return name
        return str(self._api().config_values.get("username") or "")

    def save_kernel(self, request: Any) -> Any:
        with self._kernels() as kernels:
            return kernels.save_kernel(request)

    def get_kernel_session_status(self, request: Any) -> Any:
        with self._kernels() as kernels:
            return kernels.get_kernel_session_status(request)

    def list_kernel_session_output(self, request: Any) -> Any:
        with self._kernels() as kernels:
            return kernels.list_kernel_session_output(request)

    def delete_kernel(self, request: Any) -> Any:
        with self._kernels() as kernels:
            return kernels.delete_kernel(request)

    def get_accelerator_quota_statistics(self, request: Any) -> Any:
        with self._kernels() as kernels:
            return kernels.get_accelerator_quota_statistics(request)

    def download(self, url: str, dest: Path, offset: int = 0) -> None:
        """Append the bytes of `url` from `offset` to `dest` (a `.part` file); restart if ranges are refused."""
        import requests

        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, stream=True, timeout=300, headers=headers) as response:
            response.raise_for_status()
            mode = "ab" if offset and response.status_code == 206 else "wb"
            with open(dest, mode) as out:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
