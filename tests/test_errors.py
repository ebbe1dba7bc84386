"""Errors with fields (`chexvision.errors`) and the CLI's hint table (`chexvision/cli/_errors.py`)."""

from __future__ import annotations

import pytest

from chexvision.cli._errors import render_error
from chexvision.errors import (
    BackendError,
    BadInputError,
    ConfigKeyError,
    RemoteError,
    RemoteNotFoundError,
    RunFailedError,
    UnknownName,
)


def test_unknown_name_suggests_the_closest_and_lists_the_valid_ones() -> None:
    err = UnknownName("preset", "smok", ("smoke", "kaggle-t4", "full"))
    assert isinstance(err, BadInputError) and err.exit_code == 2
    assert (err.kind, err.name, err.valid, err.suggestion) == (
        "preset",
        "smok",
        ("smoke", "kaggle-t4", "full"),
        "smoke",
    )
    assert err.one_line() == "unknown preset 'smok' — did you mean 'smoke'? choose one of: smoke, kaggle-t4, full"
    far = UnknownName("split scheme", "random", ("official", "chexnet", "patient"))
    assert far.one_line() == "unknown split scheme 'random' — choose one of: official, chexnet, patient"


def test_config_key_error_carries_its_key_and_suggestions() -> None:
    err = ConfigKeyError("optim.lrr", ["optim.lr"])
    assert err.key == "optim.lrr" and err.suggestion == "optim.lr" and err.exit_code == 2
    assert err.one_line() == "unknown config key 'optim.lrr' — did you mean optim.lr?"
    assert ConfigKeyError("zzz").hint == "see the presets in chexvision/presets/"


def test_remote_errors_keep_the_exit_code_rule() -> None:
    failed = RemoteError("Hugging Face Hub", 503, "committing to a/b failed (HTTP 503)", "retry later")
    missing = RemoteNotFoundError("Hugging Face Hub", "a/b was not found (HTTP 404)", "check the name")
    assert isinstance(failed, BackendError) and failed.exit_code == 3 and failed.status == 503
    assert isinstance(missing, BadInputError) and missing.exit_code == 2 and missing.status == 404


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadInputError("bad", "fix it"), 2),
        (RunFailedError("the run failed"), 1),
        (BackendError("down", "retry"), 3),
        (UnknownName("model", "vgg", ["densenet", "seresnet"]), 2),
        (RemoteError("Kaggle", 429, "throttled"), 3),
    ],
)
def test_hint_table_renders_one_line_and_the_exit_code(error: Exception, code: int) -> None:
    line, exit_code = render_error(error) or ("", -1)
    assert exit_code == code and line.startswith("error: ") and "\n" not in line


def test_hint_table_maps_dispatch_errors_by_name_and_ignores_others() -> None:
    class DispatchError(Exception):  # the shape of dispatch.errors.DispatchError, without importing it
        exit_code = 3

        def __init__(self, message: str, hint: str | None = None) -> None:
            super().__init__(message)
            self.message, self.hint = message, hint

        def one_line(self) -> str:
            return f"{self.message} — {self.hint}"

    DispatchError.__module__ = "dispatch.errors"

    class KernelGone(DispatchError):
        __module__ = "dispatch.backends.kaggle"

    assert render_error(KernelGone("kernel gone", "dispatch again")) == ("error: kernel gone — dispatch again", 3)
    assert render_error(ValueError("a bug")) is None  # not ours: the traceback shows


def test_hint_table_maps_the_real_dispatch_errors() -> None:
    from dispatch import errors as dispatch_errors

    err = dispatch_errors.DispatchError("no such run 'x'", "list runs with `chexvision status`")
    assert render_error(err) == ("error: no such run 'x' — list runs with `chexvision status`", err.exit_code)


def test_usage_errors_are_one_line_naming_option_value_and_choices() -> None:
    """Issue 10 #13: click's usage errors (Typer's multi-line panel before) are one `error:` line, exit 2."""
    from typer.testing import CliRunner

    from chexvision.cli.main import app

    result = CliRunner().invoke(app, ["train", "--model", "vgg", "--data", "d", "--out", "o"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: invalid value for '--model': 'vgg' is not one of 'densenet', 'seresnet' — see `chexvision train --help`"
    ]
    missing = CliRunner().invoke(app, ["train", "--data", "d", "--out", "o"])
    assert missing.stderr.splitlines() == [
        "error: missing option '--model'. Choose from: densenet, seresnet — see `chexvision train --help`"
    ]
    root = CliRunner().invoke(app, ["--bogus"])
    assert root.exit_code == 2 and root.stderr.splitlines() == [
        "error: no such option: --bogus — see `chexvision --help`"
    ]


def test_a_bare_group_still_prints_its_help() -> None:
    from typer.testing import CliRunner

    from chexvision.cli._errors import usage_line
    from chexvision.cli.main import app

    result = CliRunner().invoke(app, ["data"])
    assert "Usage:" in result.stdout and "synth" in result.stdout and "error:" not in result.stderr
    assert usage_line(ValueError("not a usage error")) is None
