"""``trimail serve --workers K``: K server processes sharing the listeners, one supervisor.

One Python process runs all its protocol work on one core (the GIL), so a machine with more
cores takes more mail with more processes. Each worker is a whole ``trimail serve`` (its own
Trio loop, admission table, handler and graceful shutdown) listening with SO_REUSEPORT on the
same addresses; the kernel spreads new connections over the workers' accept queues.

The supervisor:

- reserves every listen address first (binds with SO_REUSEPORT but never listens, so no
  connection is ever queued on it): port 0 resolves to one port that all workers then listen
  on, and the port stays ours while a worker restarts;
- starts the workers with ``multiprocessing``'s spawn method (a fresh interpreter each: no
  forked Trio or thread state), with the resolved addresses and an equal share of
  ``admission.max_connections``; per-client limits and rates are each worker's own (see the
  README: a client's connections are hashed over the workers);
- forwards SIGTERM/SIGINT (each worker drains gracefully) and SIGHUP (TLS reload); workers
  start with those signals blocked and unblock them once their Trio loop handles them, so a
  signal that arrives while a worker is still importing waits for it instead of killing it;
- restarts a worker that dies, at most once per ``RESTART_DELAY`` per worker slot; a worker
  that fails before it is listening stops them all, since the same error would strike again;
- kills what is left ``STOP_BOUND`` seconds past the workers' own shutdown grace.

Its signal handler only records the signal and wakes the loop (through ``set_wakeup_fd``);
all the acting happens in the loop, so no handler ever races a worker being started or reaped.
Workers stop on their own when the supervisor dies (they watch its process sentinel), so a
killed supervisor never leaves workers holding the port.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as EventType
from types import FrameType

import attrs

from ..config.model import ListenAddress, ServerConfig
from .listeners import bind_reuse_port, bound_address

log = logging.getLogger("trimail")

#: Seconds between two starts of the same worker slot (a crash loop must not spin).
RESTART_DELAY = 1.0
#: Seconds a worker has to be listening after it starts.
STARTUP_BOUND = 60.0
#: Seconds past the workers' shutdown grace before the supervisor kills what is left.
STOP_BOUND = 10.0
#: How often the supervisor looks at the clock while it waits for a worker or a signal.
_POLL = 0.5
#: The signals the supervisor handles and forwards; workers start with them blocked.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

#: ``worker(config, index, ready)``: run one server; call ``ready.set()`` once listening.
WorkerMain = Callable[[ServerConfig, int, EventType], None]


def reserve_addresses(
    addresses: tuple[ListenAddress, ...],
) -> tuple[tuple[ListenAddress, ...], list[socket.socket]]:
    """Bind (never listen) one SO_REUSEPORT socket per resolved address; the numeric address
    of each (a host name resolved here, once, so every worker binds exactly what is reserved
    even if the name's records change meanwhile; port 0 replaced by the port the kernel chose),
    and the sockets that hold them.

    No SO_REUSEADDR here: on Linux two SO_REUSEADDR sockets may share a port while neither
    listens, so with it another program could take the reserved port. Only sockets with
    SO_REUSEPORT of the same user (our workers) can join this one.
    """
    resolved: list[ListenAddress] = []
    held: list[socket.socket] = []
    try:
        for address in addresses:
            socks = bind_reuse_port(address, reuse_address=False)
            held += socks
            resolved += [bound_address(sock) for sock in socks]
    except BaseException:
        for sock in held:
            sock.close()
        raise
    return tuple(resolved), held


def worker_config(config: ServerConfig, listen: tuple[ListenAddress, ...],
                  listen_tls: tuple[ListenAddress, ...]) -> ServerConfig:  # fmt: skip
    """One worker's configuration: resolved addresses and its share of the connections
    (rounded up, so the workers together admit at most ``workers - 1`` more than the total)."""
    share = math.ceil(config.admission.max_connections / config.workers)
    return attrs.evolve(
        config,
        listen=listen,
        listen_tls=listen_tls,
        workers=1,
        admission=attrs.evolve(config.admission, max_connections=share),
    )


@attrs.define
class _Slot:
    index: int
    process: SpawnProcess | None = None
    ready: EventType | None = None
    started_at: float = 0.0
    #: When to (re)start this slot; None while a process runs in it or after stopping.
    start_at: float | None = 0.0
    killed: bool = False


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, config: ServerConfig, worker_main: WorkerMain) -> None:
        self._config = config
        self._worker_main = worker_main
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index) for index in range(1, config.workers + 1)]
        self._signals: list[int] = []
        self._stop_deadline: float | None = None
        self._failed = False

    @property
    def stopping(self) -> bool:
        return self._stop_deadline is not None

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT and every worker has drained: 0, or 1 on a failure."""
        listen, held = reserve_addresses(self._config.listen)
        try:
            listen_tls, held_tls = reserve_addresses(self._config.listen_tls)
        except BaseException:
            for sock in held:
                sock.close()
            raise
        held += held_tls
        self._worker_config = worker_config(self._config, listen, listen_tls)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        os.set_blocking(wake_read, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in FORWARDED}
        try:
            log.info("supervising %d workers", len(self._slots))
            self._watch(wake_read)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup)
            for slot in self._slots:
                self._reap(slot)
            for sock in held:
                sock.close()
            os.close(wake_read)
            os.close(wake_write)
        return 1 if self._failed else 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)  # the loop acts on it; the wake-up fd wakes the loop

    def _watch(self, wake: int) -> None:
        while True:
            self._act_on_signals()
            now = time.monotonic()
            for slot in self._slots:
                self._check(slot, now)
            live = [s.process for s in self._slots if s.process is not None]
            if self.stopping and not live:
                return
            multiprocessing.connection.wait(
                [wake, *(process.sentinel for process in live)], timeout=_POLL
            )
            with contextlib.suppress(BlockingIOError):
                os.read(wake, 512)

    def _act_on_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                self._signal_workers(signal.SIGHUP)
            else:
                log.info("received %s", signal.Signals(signum).name)
                self._stop()

    def _stop(self) -> None:
        if not self.stopping:
            grace = self._config.timeouts.shutdown_grace
            self._stop_deadline = time.monotonic() + grace + STOP_BOUND
        self._signal_workers(signal.SIGTERM)

    def _signal_workers(self, signum: int) -> None:
        for slot in self._slots:
            process = slot.process
            if process is not None and process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited just now
                    os.kill(process.pid, signum)

    def _start(self, slot: _Slot) -> None:
        slot.ready = self._context.Event()
        process = self._context.Process(
            target=self._worker_main,
            args=(self._worker_config, slot.index, slot.ready),
            name=f"trimail-worker-{slot.index}",
        )
        # Started with the forwarded signals blocked (the mask survives fork and exec); the
        # worker unblocks them once its loop handles them, and pending ones arrive then.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        slot.process = process
        slot.started_at = time.monotonic()
        slot.start_at = None

    def _check(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if process is None:
            if slot.start_at is not None and now >= slot.start_at and not self.stopping:
                self._start(slot)
            return
        if process.exitcode is None:
            listening = slot.ready is not None and slot.ready.is_set()
            if self._stop_deadline is not None and now > self._stop_deadline:
                if not slot.killed:
                    log.error("worker %d still running after SIGTERM; killing it", slot.index)
                    slot.killed = True
                process.kill()
            elif not listening and not self.stopping and now - slot.started_at > STARTUP_BOUND:
                self._fail(f"worker {slot.index} was not listening after {STARTUP_BOUND:g}s")
            return
        ready = slot.ready is not None and slot.ready.is_set()
        code = process.exitcode
        slot.process = None
        process.close()
        if self.stopping:
            if code not in (0, -signal.SIGTERM):
                log.error("worker %d exited with code %s while stopping", slot.index, code)
                self._failed = True
            return
        if not ready:
            self._fail(f"worker {slot.index} exited with code {code} before it was listening")
            return
        log.error("worker %d exited with code %s; restarting it", slot.index, code)
        slot.start_at = max(now, slot.started_at + RESTART_DELAY)

    def _fail(self, reason: str) -> None:
        log.error("%s; stopping every worker", reason)
        self._failed = True
        self._stop()

    def _reap(self, slot: _Slot) -> None:
        """Only after an unexpected error in the supervisor itself: never leave orphans."""
        process, slot.process = slot.process, None
        if process is None:
            return
        if process.exitcode is None:
            process.terminate()
            process.join(STOP_BOUND)
            if process.exitcode is None:
                process.kill()
                process.join()
        process.close()
