"""strace for the tests that check system calls no test double can see (libc's, the C modules')."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STRACE = shutil.which("strace")


def strace_works() -> bool:
    if STRACE is None:
        return False
    probe = subprocess.run(
        [STRACE, "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def run_python_traced(log: Path, script: str, *args: str, options: tuple[str, ...] = ()) -> str:
    """Run ``script`` (with ``args``) in a fresh interpreter under ``strace -f``, its log in
    ``log``; the script's standard output. The script must succeed."""
    assert STRACE is not None
    result = subprocess.run(
        [STRACE, "-f", "-qq", "-o", str(log), *options, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


#: For a module of such tests: skipped where strace is missing (.ci/run installs it).
needs_strace = pytest.mark.skipif(
    not strace_works(), reason="strace is missing or cannot trace here (.ci/run installs it)"
)
