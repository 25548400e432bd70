"""Ctrl-C stops a bench run and still reports what it measured (also across --workers)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

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
            stats = await run_load(options, address, clock=clock)
    assert stats.interrupted
    assert not stats.capped
    assert 0 < stats.messages < MESSAGES
    # A transaction cut short may have been stored before its 250 was read.
    assert stats.messages <= len(handler.messages) <= stats.messages + options.sessions
    assert summary(stats, options, str(address))["interrupted"] is True
    assert "(interrupted)" in render_table(stats, options, str(address))


async def test_ctrl_c_reaches_the_workers_through_the_parent_and_their_results_merge() -> None:
    handler = MemoryHandler()
    async with running_server(handler) as (_, address):
        bench = subprocess.Popen(
            [sys.executable, "-m", "trimail", "bench", "--target", str(address),
             "--workers", "2", "--sessions", "4", "--duration", "600", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            with trio.fail_after(BOUND):
                while len(handler.messages) < 20:  # both workers are sending
                    await trio.sleep(0.05)
                bench.send_signal(
                    signal.SIGINT
                )  # only the parent: the workers are not in its group
                out, err = await trio.to_thread.run_sync(bench.communicate)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
    assert bench.returncode == 130, err.decode()
    data = json.loads(out)
    assert data["interrupted"] is True
    assert data["workers"] == 2
    assert data["phases"]["connect"]["count"] == 4  # every worker's sessions were merged
    assert 20 <= data["messages"] <= len(handler.messages)
