"""Run N sessions against one target under a closed or an open loop, bounded in count and time.

Closed loop (the default): each session starts its next transaction as soon as its last one
ended, so the offered load adapts to the server; latency counts from the transaction's start.

Open loop (``--rate R``): transaction i is due at ``t0 + i / R``, whatever happened before. A
session takes the next slot, sleeps if it is early, and the transaction's latency counts from
its *due* time even if the session got to it late. When the server stalls and every session is
busy, the slots that come due wait, and that wait is part of their latency: no coordinated
omission (a load generator that waits for the server before sending more, and measures from
when it sent, hides exactly the stalls users see). The run also shows it as throughput below R.

Every loop is bounded. Slots come from one ``Schedule`` shared by the sessions: a count run
hands out exactly ``--messages`` slots, a duration run stops handing them out after
``--duration``. A failed session setup uses a slot too (so a count run against a dead server
ends), and in a duration run it also backs off (so it cannot spin). Over all of it
``--max-seconds`` is a hard cap: the sessions are cancelled and the run is marked capped.
An open-loop duration run serves every arrival due within the duration, so behind an
overloaded server its backlog drains after the duration (those latencies are the point),
until the cap.

``run_bench`` is the synchronous entry point: it starts a local ``trimail serve`` when there is
no target and fans out to worker processes for ``--workers``.
"""

from __future__ import annotations

import math
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import trio

from ..config.model import ListenAddress
from ..server.streams import LeanSocketStream
from .client import Clock, Connector, Session, build_script
from .local_server import BenchError, local_server
from .options import BenchOptions
from .stats import RunStats
from .workers import run_workers

#: Backoff after a failed session setup in a duration run: first wait, doubling, longest.
BACKOFF_FIRST = 0.01
BACKOFF_MAX = 1.0
PROGRESS_INTERVAL = 0.5
_NS = 1_000_000_000


class Schedule:
    """Hands out message slots to the sessions of one run.

    ``take`` returns the slot's start time on the run's clock (now in a closed loop, the due
    time in an open loop) or None when the run is over. Sessions are Trio tasks in one thread
    and ``take`` never awaits, so the check and the increment cannot interleave: no lock.
    """

    def __init__(
        self,
        clock: Clock,
        start: int,
        *,
        messages: int | None,
        duration: float | None,
        rate: float | None,
    ) -> None:
        self._clock = clock
        self._start = start
        self._limit = messages
        self._end = start + round(duration * _NS) if duration is not None else None
        self._rate = rate
        self.taken = 0

    @property
    def open_loop(self) -> bool:
        return self._rate is not None

    def take(self) -> int | None:
        index = self.taken
        if self._limit is not None and index >= self._limit:
            return None
        if self._rate is None:
            now = self._clock()
            if self._end is not None and now >= self._end:
                return None
            self.taken = index + 1
            return now
        due = self._start + round(index * _NS / self._rate)
        if self._end is not None and due >= self._end:
            return None
        self.taken = index + 1
        return due


SocketAddress = tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]


def tcp_connector(family: int, sockaddr: SocketAddress) -> Connector:
    """Connect to one resolved address (resolved once per run, not per connection)."""

    async def connect() -> trio.abc.Stream:
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect(sockaddr)
        except BaseException:
            sock.close()
            raise
        # The server's lean stream: the same system calls and Trio semantics as SocketStream
        # at half its Python per call, which a generator sharing the server's CPUs gives back.
        return LeanSocketStream(trio.SocketStream(sock))

    return connect


async def resolve(target: ListenAddress) -> Connector:
    try:
        infos = await trio.socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BenchError(f"--target: cannot resolve {target.host}: {exc}") from exc
    family, _, _, _, sockaddr = infos[0]
    return tcp_connector(family, sockaddr)


async def run_load(
    options: BenchOptions,
    target: ListenAddress | None = None,
    *,
    connector: Connector | None = None,
    clock: Clock = time.perf_counter_ns,
    progress: TextIO | None = None,
    stop_on_interrupt: bool = False,
) -> RunStats:
    """One process's run: ``options.sessions`` sessions to ``target`` (or via ``connector``).

    ``clock`` reads integer nanoseconds; tests pass one based on ``trio.current_time()`` so a
    MockClock drives both the server's sleeps and the measurements. ``stop_on_interrupt``
    (the command line's choice; main thread only): Ctrl-C ends the run like ``--max-seconds``
    does and marks it interrupted, instead of raising KeyboardInterrupt.
    """
    if connector is None:
        if target is None:
            raise ValueError("run_load needs a target or a connector")
        connector = await resolve(target)
    script = build_script(options, server_hostname=target.host if target else None)
    stats = RunStats()
    start = clock()
    schedule = Schedule(
        clock, start, messages=options.messages, duration=options.duration, rate=options.rate
    )
    backoff = options.duration is not None
    interrupt = trio.CancelScope()  # Ctrl-C, when stop_on_interrupt
    async with trio.open_nursery() as guard:
        if stop_on_interrupt:
            # Outside the run's scopes, so it takes every press until the run is over.
            await guard.start(_stop_on_interrupt, interrupt)
        with interrupt, trio.move_on_after(options.max_seconds) as cap:
            async with trio.open_nursery() as outer:
                if progress is not None:
                    outer.start_soon(_show_progress, stats, progress, clock, start)
                async with trio.open_nursery() as sessions:
                    for _ in range(options.sessions):
                        session = Session(script, connector, stats, clock)
                        sessions.start_soon(_run_session, session, schedule, stats, clock, backoff)
                outer.cancel_scope.cancel()
        guard.cancel_scope.cancel()
    # Only a run that was cut short counts (a press after the last transaction does not).
    stats.interrupted = interrupt.cancelled_caught
    stats.capped = cap.cancelled_caught
    cut_short = stats.capped or stats.interrupted
    end = clock() if cut_short or not stats.finished_at else stats.finished_at
    stats.seconds = max(0, end - start) / _NS
    if progress is not None:
        progress.write("\r\x1b[K")
        progress.flush()
    return stats


async def _run_session(
    session: Session, schedule: Schedule, stats: RunStats, clock: Clock, backoff: bool
) -> None:
    failures = 0
    try:
        start = schedule.take()
        while start is not None:
            if not session.connected:
                if not await session.open():
                    # The failed attempt used the slot: a dead server cannot keep a run going.
                    stats.attempted += 1
                    failures += 1
                    if backoff:
                        await trio.sleep(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(failures, 10)))
                    start = schedule.take()
                    continue
                failures = 0
                if not schedule.open_loop:
                    start = clock()  # closed loop: the transaction starts now, after the setup
            with trio.CancelScope() as limit:
                start = await _transactions(session, schedule, clock, start, limit)
            if limit.cancelled_caught:
                if session.connected:  # else it broke first, and that is recorded already
                    await session.timed_out()
                start = schedule.take()
        await session.close()
    finally:
        await session.abort()


async def _transactions(
    session: Session, schedule: Schedule, clock: Clock, start: int, limit: trio.CancelScope
) -> int | None:
    """Transactions on one connection from the slot ``start``, each within ``limit`` (see
    ``Session.transaction``). Returns the next slot to go on with in a new scope, or None once
    the schedule is over: a new scope when the session broke (it reconnects), and when
    ``limit`` was cancelled although the transaction finished (its deadline passed while the
    last reply was being taken: a cancelled scope stays cancelled, whatever its deadline)."""
    while True:
        early = start - clock()
        if early > 0:
            limit.deadline = math.inf  # waiting for a slot is not part of any transaction
            await trio.sleep(early / _NS)
        await session.transaction(start, limit)
        next_start = schedule.take()
        if next_start is None or not session.connected or limit.cancel_called:
            return next_start
        start = next_start


async def _stop_on_interrupt(
    run: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Cancel ``run`` on SIGINT, and take every later one until cancelled itself.

    The command line keeps SIGINT blocked while no run is listening (see ``cli``), so a press
    before this starts is delivered here once it does, and one after it ends is never
    delivered at all; the mask is put back before the receiver closes, since closing hands
    any signal it still holds back to the process.
    """
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        previous = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        try:
            task_status.started()
            async for _ in interrupts:
                run.cancel()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


async def _show_progress(stats: RunStats, out: TextIO, clock: Clock, start: int) -> None:
    """A live line on a terminal: how far along, how fast, how many errors."""
    while True:
        await trio.sleep(PROGRESS_INTERVAL)
        elapsed = max(1, clock() - start) / _NS
        out.write(
            f"\r\x1b[K{stats.messages} delivered, {stats.messages / elapsed:.0f} msg/s, "
            f"{stats.errors} errors, {elapsed:.1f} s"
        )
        out.flush()


@contextmanager
def _target(options: BenchOptions) -> Iterator[ListenAddress]:
    if options.target is not None:
        yield options.target
        return
    with local_server(options.delivery, options.serve_args) as address:
        yield address


def run_bench(
    options: BenchOptions, *, progress: TextIO | None = None, stop_on_interrupt: bool = False
) -> tuple[RunStats, str]:
    """The whole command: local server if needed, one process or K workers; stats and target.

    ``stop_on_interrupt``: Ctrl-C stops the run (and the workers') and it is reported; for
    the command line, which keeps SIGINT blocked around it (``cli.sigint_deferred``).
    Raises BenchError when the run could not start (server did not start, worker failed).
    """
    with _target(options) as target:
        if options.workers > 1:
            return run_workers(options, target, forward_interrupts=stop_on_interrupt), str(target)

        async def one_process() -> RunStats:
            return await run_load(
                options, target, progress=progress, stop_on_interrupt=stop_on_interrupt
            )

        return trio.run(one_process), str(target)
