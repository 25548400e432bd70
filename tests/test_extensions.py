"""TRIMAIL_NO_EXTENSIONS turns every optional C module off (the Python versions answer)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

REPORT = (
    "import trimail._extensions as x, trimail.protocol.body as b, trimail.delivery.maildir as m;"
    "print(x.ENABLED, b.ACCELERATED, m.C_BATCHES)"
)


def imported_with(value: str | None) -> list[str]:
    """What a fresh interpreter reports with the variable set to ``value`` (None: unset)."""
    env = {key: item for key, item in os.environ.items() if key != "TRIMAIL_NO_EXTENSIONS"}
    if value is not None:
        env["TRIMAIL_NO_EXTENSIONS"] = value
    result = subprocess.run(
        [sys.executable, "-c", REPORT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("value", ["1", "yes"])
def test_set_it_switches_every_c_module_off(value: str) -> None:
    assert imported_with(value) == ["False", "False", "False"]


@pytest.mark.parametrize("value", [None, "", "0"])
def test_unset_empty_or_0_leaves_them_on(value: str | None) -> None:
    # Each in use wherever it was built (tests/extensions.py requires that where it can be).
    built = [
        importlib.util.find_spec(name) is not None
        for name in ("trimail.protocol._speedups", "trimail.delivery._maildir_batch")
    ]
    assert imported_with(value) == ["True", *map(str, built)]
