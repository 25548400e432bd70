"""The servers under test, and how one is started fresh, found, probed and always stopped.

Every server runs as its own process, never inside the runner: the load generator and the
server must not share an interpreter, or the benchmark measures their contention. Each one
listens on 127.0.0.1 only. Servers that can bind port 0 do (the kernel picks a free port and
the server prints it, so there is no probe-then-bind race); ``smtp-sink`` cannot print its
port, so it gets a port the runner just found free, and a failed bind is retried.

Output goes to a log file in the measurement's temporary directory, never to a pipe: a pipe
nobody drains fills up and stalls a server that logs a line per message.

Every wait is bounded: start-up (``STARTUP_BOUND``), the readiness probe, and the stop, which
is SIGTERM, ``STOP_BOUND`` seconds, then SIGKILL, in a ``finally`` block.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
STARTUP_BOUND = 20.0
PROBE_BOUND = 5.0
STOP_BOUND = 5.0
BIND_ATTEMPTS = 3
_POLL = 0.02
#: What trimail serve and floor.py print once they accept connections on the port they bound
#: (the digits must be followed by something: a line still being written is not read short).
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)(?=\D)")
SMTP_SINK = "/usr/sbin/smtp-sink"

#: ``argv(workdir, port)``: the command line; ``port`` is 0 when the server announces its port.
Argv = Callable[[Path, int], list[str]]


class ServerError(Exception):
    """The server did not start or did not answer; one line, with the end of its log."""


@dataclass(frozen=True)
class ServerSpec:
    """One row of the results: how to start it and what it is compared with."""

    key: str
    label: str
    argv: Argv
    #: True: it prints ``listening on 127.0.0.1:PORT`` after binding port 0.
    announces_port: bool
    #: The aiosmtpd row it is compared with (``None``: only the floor ratio).
    aiosmtpd_peer: str | None


@dataclass(frozen=True)
class RunningServer:
    pid: int
    port: int
    workdir: Path


def trimail_spec(*, durable: bool) -> ServerSpec:
    """``trimail serve`` from the runner's own interpreter (the dev venv, editable install)."""

    def argv(workdir: Path, port: int) -> list[str]:
        command = [sys.executable, "-m", "trimail", "serve", "--listen", f"{HOST}:{port}"]
        command += ["--hostname", "bench.test", "--maildir", str(workdir / "maildir")]
        return command if durable else [*command, "--delivery", "discard"]

    if durable:
        return ServerSpec("trimail-maildir", "trimail (Maildir)", argv, True, "aiosmtpd-mailbox")
    return ServerSpec("trimail-discard", "trimail (discard)", argv, True, "aiosmtpd-discard")


def floor_spec(*, validate: bool = False, lean_socket: bool = False) -> ServerSpec:
    """The Trio floor; ``validate``: with trimail's parser and decoder (what validation costs);
    ``lean_socket``: on trimail's socket layer instead of ``trio.SocketStream``."""

    def argv(workdir: Path, port: int) -> list[str]:
        command = [sys.executable, str(HERE / "floor.py"), "--port", str(port)]
        if validate:
            command.append("--validate")
        return [*command, "--lean-socket"] if lean_socket else command

    key = "floor" + ("-validating" if validate else "") + ("-lean" if lean_socket else "")
    label = "Trio floor" + (" + validation" if validate else "")
    if lean_socket:
        label += ", trimail's socket layer"
    return ServerSpec(key, label, argv, True, "aiosmtpd-discard")


def aiosmtpd_spec(python: Path, *, mailbox: bool) -> ServerSpec:
    """aiosmtpd from the peers venv's interpreter (see ``peers.py``)."""

    def argv(workdir: Path, port: int) -> list[str]:
        command = [str(python), str(HERE / "aiosmtpd_server.py"), "--port", str(port)]
        if mailbox:
            return [*command, "--handler", "mailbox", "--maildir", str(workdir / "maildir")]
        return [*command, "--handler", "discard"]

    if mailbox:
        return ServerSpec("aiosmtpd-mailbox", "aiosmtpd (Mailbox)", argv, True, None)
    return ServerSpec("aiosmtpd-discard", "aiosmtpd (Sink)", argv, True, None)


def smtp_sink_spec(path: str) -> ServerSpec:
    """Postfix's C test sink: the non-Python reference (accepts and discards everything)."""

    def argv(workdir: Path, port: int) -> list[str]:
        # As root smtp-sink insists on dropping privileges to a named user.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return [path, *user, f"{HOST}:{port}", "1000"]

    return ServerSpec("smtp-sink", "Postfix smtp-sink", argv, False, "aiosmtpd-discard")


def find_smtp_sink() -> str | None:
    found = shutil.which("smtp-sink")
    if found is not None:
        return found
    return SMTP_SINK if os.access(SMTP_SINK, os.X_OK) else None


def free_port() -> int:
    """A port that was free a moment ago (only for servers that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
        assert isinstance(port, int)
        return port


def _log_tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _probe(port: int) -> bool:
    """True when the port answers with an SMTP greeting (then the probe says QUIT)."""
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_BOUND) as sock:
            greeting = sock.recv(512)
            sock.sendall(b"QUIT\r\n")
            return greeting.startswith(b"220")
    except OSError:
        return False


def _wait_for_port(spec: ServerSpec, process: subprocess.Popen[bytes], log: Path, port: int) -> int:
    """The port once the server greets on it; ServerError if it exits or takes too long."""
    deadline = time.monotonic() + STARTUP_BOUND
    while time.monotonic() < deadline:
        if spec.announces_port and port == 0:
            match = LISTENING.search(log.read_bytes())
            port = int(match[1]) if match is not None else 0
        if port and _probe(port):
            return port
        if process.poll() is not None:
            raise ServerError(
                f"{spec.key} exited with status {process.returncode}: {_log_tail(log)}"
            )
        time.sleep(_POLL)
    raise ServerError(f"{spec.key} did not answer within {STARTUP_BOUND:.0f} s: {_log_tail(log)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL; never leaves the process behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=STOP_BOUND)


def _start(spec: ServerSpec, workdir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    for attempt in range(1, BIND_ATTEMPTS + 1):
        port = 0 if spec.announces_port else free_port()
        with log.open("wb") as output:
            process = subprocess.Popen(
                spec.argv(workdir, port),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            return process, _wait_for_port(spec, process, log, port)
        except ServerError:
            stop(process)
            # Only a guessed port can lose a race to another process; retry just that.
            if spec.announces_port or attempt == BIND_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@contextmanager
def running(spec: ServerSpec, workdir: Path) -> Iterator[RunningServer]:
    """A fresh server for one measurement; stopped however the measurement ends."""
    log = workdir / "server.log"
    process, port = _start(spec, workdir, log)
    try:
        yield RunningServer(pid=process.pid, port=port, workdir=workdir)
    finally:
        stop(process)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from ``/proc/PID/status`` (``VmRSS``, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ServerError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from ``/proc/PID/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After the ")" that ends the command name: state is field 3, utime 14, stime 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
