"""Run ``trimail serve`` as a real subprocess on a free loopback port (CLI and interop tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

#: Upper bound for the server to start or stop; both normally take well under a second.
STARTUP_BOUND = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@attrs.define
class ServeProcess:
    process: subprocess.Popen[bytes]
    port: int
    maildir: Path
    stderr_path: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STARTUP_BOUND)


@contextmanager
def serve_process(tmp_path: Path, *extra_args: str) -> Iterator[ServeProcess]:
    port = free_port()
    maildir = tmp_path / "maildir"
    stderr_path = tmp_path / "serve.stderr"
    args = [
        sys.executable,
        "-m",
        "trimail",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--maildir",
        str(maildir),
        "--hostname",
        "mx.test",
        *extra_args,
    ]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            args,
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    running = ServeProcess(process, port, maildir, stderr_path)
    try:
        deadline = time.monotonic() + STARTUP_BOUND
        while "listening on" not in running.stderr:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"trimail serve did not start:\n{running.stderr}")
            time.sleep(0.05)
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STARTUP_BOUND)
