"""``--workers K``: K client processes, their results merged exactly.

One Python process saturates one core long before a fast server does, so a bench can fan out.
Each worker is ``python -m trimail.bench --worker ...`` (a subprocess rather than
multiprocessing: nothing is pickled, the argv is the whole interface, and a hung worker is
killed by pid) with its share of the sessions, of the messages and of the rate. A worker prints
its raw ``RunStats`` as JSON: counts and full histograms. Merging adds the histograms bucket by
bucket, which equals the histogram of all samples, so merged percentiles carry the same
``stats.RELATIVE_ERROR`` bound as a single process and nothing more.

The workers run at the same time, so the merged run's ``seconds`` is the longest worker's
(each measures from its own start; they start within process-spawn time of each other).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..config.model import ListenAddress
from .children import end_with_parent
from .local_server import BenchError
from .options import BenchOptions, split_evenly, worker_argv
from .stats import RunStats

#: Beyond --max-seconds: interpreter start, session setup and the JSON on the way out.
WORKER_GRACE = 30.0


def _last_line(text: bytes) -> str:
    lines = [line for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_workers(
    options: BenchOptions, target: ListenAddress, *, forward_interrupts: bool = False
) -> RunStats:
    """``forward_interrupts`` (the command line; signal handlers need the main thread): the
    workers run in their own session, out of reach of the terminal, and each Ctrl-C here is
    passed on to them, so every worker stops, reports what it measured and is merged (see
    ``_forwarding``)."""
    count = options.workers
    sessions = split_evenly(options.sessions, count)
    messages: list[int | None] = (
        list(split_evenly(options.messages, count))
        if options.messages is not None
        else [None] * count
    )
    rate = options.rate / count if options.rate is not None else None
    deadline = time.monotonic() + options.max_seconds + WORKER_GRACE
    processes: list[subprocess.Popen[bytes]] = []
    merged = RunStats()
    try:
        for i in range(count):
            argv = worker_argv(
                options, target, sessions=sessions[i], messages=messages[i], rate=rate
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "trimail.bench", *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                    start_new_session=forward_interrupts,
                    preexec_fn=end_with_parent(os.getpid()),  # noqa: PLW1509 (see children)
                )
            )
        with _forwarding(processes) if forward_interrupts else contextlib.nullcontext():
            _collect(processes, deadline, merged)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return merged


@contextmanager
def _forwarding(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Pass each SIGINT on to the workers still running, while waiting for them.

    The command line keeps SIGINT blocked outside a run, and the workers inherit that mask: a
    press that reaches a worker before its run listens for it waits, pending, instead of
    killing it. Here it is let in only once this handler is in place.
    """

    def forward(signum: int, frame: object) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)

    previous_handler = signal.signal(signal.SIGINT, forward)
    previous_mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        # None: the previous handler was not installed from Python; the default is the best
        # that can be put back.
        signal.signal(
            signal.SIGINT, previous_handler if previous_handler is not None else signal.SIG_DFL
        )


def _collect(processes: list[subprocess.Popen[bytes]], deadline: float, merged: RunStats) -> None:
    """Wait for every worker and merge its results; BenchError if one failed."""
    for number, process in enumerate(processes, 1):
        try:
            out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BenchError(f"worker {number} did not finish in time") from None
        if process.returncode != 0:
            raise BenchError(
                f"worker {number} exited with status {process.returncode}: {_last_line(err)}"
            )
        try:
            merged.merge(RunStats.from_json(json.loads(out)))
        except ValueError as exc:
            raise BenchError(f"worker {number} printed bad results: {exc}") from None
