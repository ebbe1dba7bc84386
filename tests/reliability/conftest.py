"""Fixtures of the reliability cases; the harness itself is `tests/support/reliability.py`.

Every case in `tests/reliability/` asserts the same four things through `expect_clean_error`: the documented exit
code, exactly one line on stderr that names the thing (and starts with `error:`), no traceback anywhere, and that
nothing already written changed (the digest of the folders the case names, before and after).
"""

from __future__ import annotations

import pytest
from support.reliability import ExpectCleanError, make_expect_clean_error


@pytest.fixture
def expect_clean_error() -> ExpectCleanError:
    """`expect_clean_error(args, keep=[paths], exit_code=2, names=[...], env=None)` -> the error line."""
    return make_expect_clean_error()
