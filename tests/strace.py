"""strace for the tests that check system calls no test double can see (libc's, the C modules')."""

from __future__ import annotations

import shutil
import subprocess

import pytest

STRACE = shutil.which("strace")


def strace_works() -> bool:
    if STRACE is None:
        return False
    probe = subprocess.run(
        [STRACE, "-f", "-qq", "-o", "/dev/null", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


#: For a module of such tests: skipped where strace is missing (.ci/run installs it).
needs_strace = pytest.mark.skipif(
    not strace_works(), reason="strace is missing or cannot trace here (.ci/run installs it)"
)
