"""A throwaway ``trimail serve`` for ``trimail bench`` without ``--target``.

It runs as a subprocess (``sys.executable -m trimail serve``), not in the bench process: the
server and the load generator must not share one interpreter's CPU, or the benchmark measures
their contention. It listens on 127.0.0.1 port 0 (the kernel picks a free port, named in the
``listening on HOST:PORT`` log line, so there is no probe-then-bind race), delivers into a
temporary Maildir, and logs to a file in the same temporary directory (a pipe nobody drained
would fill and stall the server once it logs a line per message).

Every wait is bounded: start-up (``STARTUP_BOUND``), then SIGTERM and ``STOP_BOUND`` for the
graceful shutdown, then SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..config.model import ListenAddress
from .children import end_with_parent
from .options import Delivery

STARTUP_BOUND = 15.0
#: trimail's default shutdown grace (10 s) plus a margin.
STOP_BOUND = 15.0
_POLL = 0.02
_LISTENING = re.compile(r"listening on (\S+)\s*$", re.MULTILINE)


class BenchError(Exception):
    """The run could not start or finish (server did not start, a worker failed); one line."""


def serve_argv(maildir: Path, delivery: Delivery, serve_args: Sequence[str]) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "trimail",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--maildir",
        str(maildir),
        "--hostname",
        "bench.test",
    ]
    if delivery is Delivery.DISCARD:
        argv += ["--delivery", "discard"]
    return argv + list(serve_args)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _wait_until_listening(process: subprocess.Popen[bytes], log_path: Path) -> ListenAddress:
    deadline = time.monotonic() + STARTUP_BOUND
    while True:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        match = _LISTENING.search(text)
        if match is not None:
            return ListenAddress.parse(match[1])
        if process.poll() is not None:
            raise BenchError(
                f"trimail serve exited with status {process.returncode}: {_last_line(text)}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"trimail serve did not start within {STARTUP_BOUND:.0f} s")
        time.sleep(_POLL)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, a bounded wait for the graceful shutdown, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=STOP_BOUND)


@contextmanager
def local_server(delivery: Delivery, serve_args: Sequence[str] = ()) -> Iterator[ListenAddress]:
    """Yields the address of a running ``trimail serve``; stops it and removes its files."""
    with tempfile.TemporaryDirectory(prefix="trimail-bench-") as directory:
        log_path = Path(directory) / "serve.log"
        argv = serve_argv(Path(directory) / "maildir", delivery, serve_args)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                # Out of the terminal's process group: Ctrl-C stops the bench, which reports
                # and then stops this server itself (it would otherwise start refusing the
                # bench's last transactions while they are being counted). It still ends if
                # the bench is killed.
                start_new_session=True,
                preexec_fn=end_with_parent(os.getpid()),  # noqa: PLW1509 (see children)
            )
        try:
            yield _wait_until_listening(process, log_path)
        finally:
            stop(process)
