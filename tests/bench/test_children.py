"""A bench that is killed takes its local server and its workers with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.bench.test_interrupt import PROC_CHILDREN, workers_of
from trimail.bench.children import end_with_parent

BOUND = 60.0

pytestmark = pytest.mark.skipif(
    end_with_parent(os.getpid()) is None or not os.path.exists(PROC_CHILDREN),
    reason="PR_SET_PDEATHSIG and /proc/PID/task/TID/children are Linux-only",
)


def alive(pid: int) -> bool:
    """``pid`` runs (not a zombie) and is one of ours: a trimail process, not a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return stat.read().split(") ")[1][0] != "Z" and b"trimail" in cmdline.read()
    except (FileNotFoundError, ProcessLookupError):
        return False


async def test_killing_the_bench_ends_its_local_server_and_workers(tmp_path: Path) -> None:
    bench = subprocess.Popen(
        [sys.executable, "-m", "trimail", "bench", "--delivery", "discard",
         "--workers", "2", "--duration", "600", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # what a killed bench cannot remove
    )  # fmt: skip
    children: list[int] = []
    try:
        with trio.fail_after(BOUND):
            while len(children := workers_of(bench.pid)) < 3:  # the server, then two workers
                await trio.sleep(0.05)
            bench.send_signal(signal.SIGKILL)  # no chance to clean up
            await trio.to_thread.run_sync(bench.wait)
            while any(alive(child) for child in children):
                await trio.sleep(0.05)
    finally:
        for child in children:  # only after a failure: orphans must not outlive the test
            if alive(child):
                os.kill(child, signal.SIGKILL)
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert not any(alive(child) for child in children)
