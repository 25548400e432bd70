"""Ctrl-C stops a bench run and still reports what it measured (also across --workers)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import trio

from tests.server.running import running_server
from trimail.bench.cli import bench_command, build_parser
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


class PressFromAnotherThread:
    """A Ctrl-C that another thread takes (the kernel gives a process's signal to any thread
    not blocking it): the thread raises SIGINT in itself, so the signal is taken there, before
    ``press`` returns."""

    def __init__(self) -> None:
        self._asked = threading.Event()
        self._done = threading.Event()
        self._raise = False
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        self._asked.wait(BOUND)
        if self._raise:
            signal.raise_signal(signal.SIGINT)
        self._done.set()

    def press(self) -> None:
        self._raise = True
        self._asked.set()
        assert self._done.wait(BOUND)

    def stop(self) -> None:
        self._asked.set()
        self.thread.join()


class PressedWhileWriting(io.StringIO):
    """A report stream whose first write comes with a Ctrl-C (the user gave up waiting)."""

    def __init__(self, presser: PressFromAnotherThread) -> None:
        super().__init__()
        self.presser = presser

    def write(self, text: str) -> int:
        if not self.tell():
            self.presser.press()
        return super().write(text)


def test_a_press_after_the_run_is_dropped_even_when_another_thread_takes_it() -> None:
    # bench_command in a process with another thread (an application's, or Trio's idle
    # worker), where SIGINT is not blocked.
    presser = PressFromAnotherThread()
    presser.thread.start()
    try:
        args = build_parser().parse_args(
            ["bench", "--delivery", "discard", "--sessions", "2", "--messages", "20", "--json"]
        )
        out, err = PressedWhileWriting(presser), io.StringIO()
        status = bench_command(args, stdout=out, stderr=err)
    finally:
        presser.stop()
    assert status == 0, err.getvalue()
    assert json.loads(out.getvalue())["messages"] == 20


PROC_CHILDREN = f"/proc/{os.getpid()}/task/{os.getpid()}/children"


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


@pytest.mark.skipif(not os.path.exists(PROC_CHILDREN), reason="needs /proc/PID/task/TID/children")
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
