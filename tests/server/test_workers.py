"""``--workers K``: SO_REUSEPORT listeners shared by several servers, the address reservation
that resolves port 0 once for all of them, each worker's share of the limits, and the real
supervisor: every worker takes mail, a dead worker is restarted, SIGTERM drains them all."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
import trio

from trimail.config.model import AdmissionConfig, ListenAddress, ServerConfig
from trimail.delivery.memory import MemoryHandler
from trimail.server.serve import Server
from trimail.server.workers import reserve_addresses, worker_config

from ..serve_process import STARTUP_BOUND
from ..smtp_wire import WireClient

LOOPBACK_ANY_PORT = ListenAddress("127.0.0.1", 0)
#: Connections spread over two workers: the kernel hashes each one's 4-tuple, so all of them
#: landing on one worker has probability 2 ** -(CONNECTIONS - 1).
CONNECTIONS = 40


def test_reserving_port_0_resolves_one_port_and_holds_it() -> None:
    resolved, held = reserve_addresses((LOOPBACK_ANY_PORT,))
    try:
        [address] = resolved
        assert address.host == "127.0.0.1"
        assert address.port != 0
        assert [sock.getsockname() for sock in held] == [("127.0.0.1", address.port)]
        # The reservation never listens: a connection to it is refused, not queued.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", address.port), timeout=5).close()
        # Nobody else can take the port meanwhile: not a plain socket, and not one with
        # SO_REUSEADDR (two of those may share a port while neither listens).
        for reuse_address in (False, True):
            with socket.socket() as intruder, pytest.raises(OSError):
                if reuse_address:
                    intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                intruder.bind(("127.0.0.1", address.port))
    finally:
        for sock in held:
            sock.close()


def test_a_host_name_is_resolved_once_by_the_supervisor() -> None:
    # Workers bind the numbers the supervisor reserved, not the name again (whose records
    # could have changed meanwhile); one address per socket the name resolved to.
    resolved, held = reserve_addresses((ListenAddress("localhost", 0),))
    try:
        assert resolved
        assert [(address.host, address.port) for address in resolved] == [
            tuple(sock.getsockname()[:2]) for sock in held
        ]
        for address in resolved:
            ipaddress.ip_address(address.host)  # numeric
    finally:
        for sock in held:
            sock.close()


def test_each_worker_gets_its_share_of_max_connections_and_the_resolved_addresses() -> None:
    config = ServerConfig(workers=3, admission=AdmissionConfig(max_connections=1000))
    resolved = (ListenAddress("127.0.0.1", 4321),)
    one = worker_config(config, resolved, ())
    assert one.admission.max_connections == 334  # ceil(1000 / 3): never below the total
    assert one.workers == 1
    assert one.listen == resolved
    assert one.admission.max_connections_per_ip == config.admission.max_connections_per_ip


async def test_servers_with_reuse_port_share_an_address_and_both_take_sessions() -> None:
    resolved, held = reserve_addresses((LOOPBACK_ANY_PORT,))
    config = ServerConfig(listen=resolved)
    handlers = [MemoryHandler(), MemoryHandler()]
    try:
        async with trio.open_nursery() as nursery:
            servers = [
                Server(config, handler, hostname="mx.test", reuse_port=True) for handler in handlers
            ]
            for server in servers:
                assert await nursery.start(server.serve) == list(resolved)
            for number in range(CONNECTIONS):
                stream = await trio.open_tcp_stream("127.0.0.1", resolved[0].port)
                async with WireClient(stream) as client:
                    assert (await client.reply()).code == 220
                    for line in ("EHLO client.test", "MAIL FROM:<a@example.org>",
                                 "RCPT TO:<b@example.com>"):  # fmt: skip
                        assert (await client.command(line)).code == 250
                    assert (await client.command("DATA")).code == 354
                    await client.send(b"Subject: %d\r\n\r\nbody\r\n.\r\n" % number)
                    assert (await client.reply()).code == 250
                    assert (await client.command("QUIT")).code == 221
            for server in servers:
                server.stop()
    finally:
        for sock in held:
            sock.close()
    counts = [len(handler.messages) for handler in handlers]
    assert sum(counts) == CONNECTIONS
    assert min(counts) > 0, counts


# -- the real supervisor ------------------------------------------------------------------------


@attrs.define
class Workers:
    process: subprocess.Popen[bytes]
    stderr_path: Path
    maildir: Path

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for_log(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """Poll the log (a subprocess's stderr file: nothing to await) until ``pattern``
        matches ``count`` times; bounded by STARTUP_BOUND."""
        deadline = time.monotonic() + STARTUP_BOUND
        while True:
            matches = list(re.finditer(pattern, self.stderr))
            if len(matches) >= count:
                return matches
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {pattern!r} in:\n{self.stderr}")
            time.sleep(0.05)

    def worker_pids(self) -> dict[int, int]:
        """Worker slot -> pid of its latest start."""
        pids: dict[int, int] = {}
        for match in re.finditer(r"trimail\[(\d+)\]: worker \d+ started: pid (\d+)", self.stderr):
            pids[int(match[1])] = int(match[2])
        return pids


@contextmanager
def supervisor(tmp_path: Path, *extra: str) -> Iterator[Workers]:
    stderr_path = tmp_path / "serve.stderr"
    maildir = tmp_path / "maildir"
    args = [sys.executable, "-m", "trimail", "serve", "--listen", "127.0.0.1:0"]
    args += ["--hostname", "mx.test", "--maildir", str(maildir), *extra]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            args, stderr=stderr, stdout=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        yield Workers(process, stderr_path, maildir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STARTUP_BOUND)
        for pid in Workers(process, stderr_path, maildir).worker_pids().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # never leave a worker behind a failed test


def send_messages(port: int, count: int) -> None:
    for number in range(count):
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as client:
            client.sendmail(
                "a@example.org", ["b@example.com"], b"Subject: %d\r\n\r\nx\r\n" % number
            )


def writer_pid(maildir_name: str) -> int:
    """The pid in a Maildir name (time.MusecPpidQn_queueid.host)."""
    match = re.search(r"P(\d+)Q", maildir_name)
    assert match is not None, maildir_name
    return int(match[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_port_restart_after_a_crash_and_stop_on_sigterm(
    tmp_path: Path,
) -> None:
    with supervisor(tmp_path, "--workers", "2") as workers:
        listening = workers.wait_for_log(r"trimail\[(\d)\]: listening on 127\.0\.0\.1:(\d+)", 2)
        assert {match[1] for match in listening} == {"1", "2"}
        [port] = {int(match[2]) for match in listening}  # port 0 resolved once, for both
        first_pids = workers.worker_pids()
        assert sorted(first_pids) == [1, 2]

        send_messages(port, CONNECTIONS)
        stored = list((workers.maildir / "new").iterdir())
        assert len(stored) == CONNECTIONS
        # Maildir names carry the writer's pid: both workers took mail.
        writers = {writer_pid(path.name) for path in stored}
        assert writers == set(first_pids.values())

        os.kill(first_pids[1], signal.SIGKILL)
        workers.wait_for_log(r"worker 1 exited with code -9; restarting it")
        workers.wait_for_log(r"trimail\[1\]: listening on", 2)
        restarted = workers.worker_pids()
        assert restarted[1] != first_pids[1]
        assert restarted[2] == first_pids[2]
        send_messages(port, 4)  # the port still takes mail

        workers.process.send_signal(signal.SIGTERM)
        assert workers.process.wait(timeout=STARTUP_BOUND) == 0
        log = workers.stderr
        assert "trimail: received SIGTERM" in log  # the supervisor, which forwards it
        assert len(re.findall(r"trimail\[\d\]: received SIGTERM", log)) == 2
        assert log.count(": stopped") == 2
        for pid in restarted.values():
            wait_until_gone(pid)


def test_a_worker_that_cannot_start_stops_the_supervisor_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    with supervisor(
        tmp_path, "--workers", "2", "--maildir", str(tmp_path / "not-a-directory" / "md")
    ) as workers:
        assert workers.process.wait(timeout=STARTUP_BOUND) == 1
        log = workers.stderr
    assert "before it was listening; stopping every worker" in log
    assert "Not a directory" in log


def test_signals_before_the_workers_listen_wait_for_them(tmp_path: Path) -> None:
    """A SIGHUP (a certificate reload hook) or SIGTERM that arrives while the workers are
    still starting must not kill them: they start with the signals blocked."""
    with supervisor(tmp_path, "--workers", "2", "--delivery", "discard") as workers:
        workers.wait_for_log(r"supervising 2 workers")  # its own handlers are in place
        workers.process.send_signal(signal.SIGHUP)  # no worker is listening yet
        listening = workers.wait_for_log(r"trimail\[(\d)\]: listening on 127\.0\.0\.1:(\d+)", 2)
        send_messages(int(listening[0][2]), 2)
        assert "before it was listening" not in workers.stderr
    with supervisor(tmp_path, "--workers", "2", "--delivery", "discard") as workers:
        workers.wait_for_log(r"supervising 2 workers")
        workers.process.send_signal(signal.SIGTERM)  # while the workers import
        assert workers.process.wait(timeout=STARTUP_BOUND) == 0, workers.stderr
        pids = workers.worker_pids()
    for pid in pids.values():
        wait_until_gone(pid)


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    with supervisor(tmp_path, "--workers", "2", "--delivery", "discard") as workers:
        workers.wait_for_log(r"trimail\[\d\]: listening on", 2)
        pids = workers.worker_pids()
        workers.process.kill()
        workers.process.wait(timeout=STARTUP_BOUND)
        for pid in pids.values():
            wait_until_gone(pid)
        assert workers.stderr.count("the supervisor is gone; stopping") == 2


def wait_until_gone(pid: int) -> None:
    """Poll (a foreign process: nothing to await) until ``pid`` has exited."""
    deadline = time.monotonic() + STARTUP_BOUND
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), f"pid {pid} still running"
