"""Ctrl-C stops a bench run and still reports what it measured (also across --workers)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import trio

from tests.server.running import running_server
from trimail.bench.options import BenchOptions
from trimail.bench.report import render_table, summary
from trimail.bench.runner import run_load
from trimail.delivery.memory import MemoryHandler

BOUND = 60.0
MESSAGES = 100_000  # far more than the run gets to before it is interrupted


async def test_ctrl_c_ends_the_run_and_the_report_says_so() -> None:
    handler = MemoryHandler()
    readings = 0

    def clock() -> int:
        nonlocal readings
        readings += 1
        if readings == 60:  # some transactions in: the user presses Ctrl-C
            signal.raise_signal(signal.SIGINT)
        return time.perf_counter_ns()

    async with running_server(handler) as (_, address):
        options = BenchOptions(target=address, sessions=3, messages=MESSAGES)
        with trio.fail_after(BOUND):
            stats = await run_load(options, address, clock=clock, stop_on_interrupt=True)
    assert stats.interrupted
    assert not stats.capped
    assert 0 < stats.messages < MESSAGES
    # A transaction cut short may have been stored before its 250 was read.
    assert stats.messages <= len(handler.messages) <= stats.messages + options.sessions
    assert summary(stats, options, str(address))["interrupted"] is True
    assert "(interrupted)" in render_table(stats, options, str(address))


def workers_of(pid: int) -> list[int]:
    """The children of ``pid`` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except FileNotFoundError:
        return []


async def interrupted_bench_run(address: str, handler: MemoryHandler, when: str) -> bytes:
    """Run ``trimail bench --workers 2`` as a process, press Ctrl-C (a SIGINT to the parent
    only, as the workers are not in its group) at ``when``, and return its JSON report."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "trimail", "bench", "--target", address,
         "--workers", "2", "--sessions", "4", "--duration", "600", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with trio.fail_after(BOUND):
            if when == "while the workers start":
                # Before their runs listen for SIGINT: it must wait for them, not kill them.
                while len(workers_of(bench.pid)) < 2:
                    await trio.sleep(0.01)
            else:  # all four sessions, of both workers, have delivered
                while len({stored.peer.port for stored in handler.messages}) < 4:
                    await trio.sleep(0.05)
            bench.send_signal(signal.SIGINT)
            if when == "twice":
                await trio.sleep(0.02)
                bench.send_signal(signal.SIGINT)
            out, err = await trio.to_thread.run_sync(bench.communicate)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert bench.returncode == 130, err.decode()
    return out


@pytest.mark.parametrize("when", ["while sending", "twice", "while the workers start"])
async def test_ctrl_c_reaches_the_workers_through_the_parent_and_their_results_merge(
    when: str,
) -> None:
    handler = MemoryHandler()
    async with running_server(handler) as (_, address):
        out = await interrupted_bench_run(str(address), handler, when)
    data = json.loads(out)
    assert data["interrupted"] is True
    assert data["workers"] == 2
    assert data["messages"] <= len(handler.messages)
    if when != "while the workers start":
        assert data["phases"]["connect"]["count"] == 4  # every worker's sessions were merged
        assert data["messages"] >= 4
