"""bench against scripted servers: errors counted by code and kind, latencies exact.

Latency tests run the server over memory streams under an autojumping MockClock, with the
bench's clock read from ``trio.current_time()``: a "50 ms" delay costs no wall time and every
latency is exactly what the server was told to take. Error tests use TCP on 127.0.0.1.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from tests.bench.fake_smtp import Behaviour, FakeSmtpServer, memory_connector
from trimail.bench.client import Session
from trimail.bench.options import BenchOptions
from trimail.bench.runner import run_load
from trimail.bench.stats import RELATIVE_ERROR, RunStats
from trimail.config.model import ListenAddress

MS = 1_000_000


def mock_time_ns() -> int:
    return round(trio.current_time() * 1e9)


@asynccontextmanager
async def tcp_server(server: FakeSmtpServer) -> AsyncIterator[ListenAddress]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, server.handle, 0)
        _, port = listeners[0].socket.getsockname()[:2]
        yield ListenAddress("127.0.0.1", port)
        nursery.cancel_scope.cancel()


async def run_in_memory(server: FakeSmtpServer, options: BenchOptions) -> RunStats:
    async with trio.open_nursery() as nursery:
        stats = await run_load(
            options, connector=memory_connector(server, nursery), clock=mock_time_ns
        )
        nursery.cancel_scope.cancel()
    return stats


@pytest.mark.parametrize("pipelining", [True, False])
async def test_every_third_mail_refused_counts_451_once_per_transaction(pipelining: bool) -> None:
    server = FakeSmtpServer(Behaviour(fail_every_nth_mail=3))
    async with tcp_server(server) as address:
        options = BenchOptions(target=address, sessions=3, messages=30, pipelining=pipelining)
        stats = await run_load(options, address)
    # The 503s a pipelined RCPT and DATA get after the refused MAIL are not counted again.
    assert stats.errors_by_code == {"451": 10}
    assert stats.connection_errors == {}
    assert (stats.attempted, stats.messages, server.messages) == (30, 20, 20)
    assert stats.phases["mail"].count == 30
    assert stats.phases["transaction"].count == 20


async def test_421_closes_the_session_and_the_next_slot_reconnects() -> None:
    server = FakeSmtpServer(Behaviour(close_on_nth_mail=4))
    async with tcp_server(server) as address:
        stats = await run_load(BenchOptions(target=address, sessions=2, messages=20), address)
    assert stats.errors_by_code == {"421": 5}
    assert (stats.attempted, stats.messages) == (20, 15)
    # MAIL 4, 8, 12 and 16 are followed by a reconnect; MAIL 20 was the last slot.
    assert server.sessions == stats.phases["connect"].count == 2 + 4


async def test_dropped_connections_are_counted_as_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeSmtpServer(Behaviour(drop_on_nth_mail=5))
    stats = await run_in_memory(server, BenchOptions(sessions=2, messages=20))
    assert stats.connection_errors == {"closed": 4}
    assert stats.errors_by_code == {}
    assert (stats.attempted, stats.messages, server.messages) == (20, 16, 16)


async def test_a_refused_connection_uses_its_slot_so_the_run_ends() -> None:
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        target = ListenAddress("127.0.0.1", port)
        stats = await run_load(BenchOptions(target=target, sessions=3, messages=7), target)
    assert stats.connection_errors == {"refused": 7}
    assert (stats.attempted, stats.messages) == (7, 0)


async def test_percentiles_of_a_known_latency_distribution(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delays = [ms / 1000 for ms in range(1, 101)]  # 1 ms .. 100 ms, one message each
    random.Random(3).shuffle(delays)
    server = FakeSmtpServer(Behaviour(data_delays=delays))
    stats = await run_in_memory(server, BenchOptions(sessions=4, messages=100))
    assert (stats.messages, stats.errors) == (100, 0)
    transaction = stats.phases["transaction"]
    for percent, expected_ms in ((50, 50), (90, 90), (99, 99)):
        assert transaction.percentile(percent) == pytest.approx(
            expected_ms * MS, rel=RELATIVE_ERROR
        )
    assert transaction.maximum == pytest.approx(100 * MS, abs=1)
    assert transaction.minimum == pytest.approx(1 * MS, abs=1)
    assert stats.phases["data"].maximum == pytest.approx(100 * MS, abs=1)
    # The server answers MAIL and RCPT at once: those phases take no (virtual) time.
    assert stats.phases["mail"].maximum <= 1
    # Four sessions share 5050 ms of delays: the run takes at least a quarter of that.
    assert stats.seconds >= 5.05 / 4


async def test_open_loop_counts_the_queueing_delay_behind_a_stall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One session, a message due every 10 ms; the first takes 1 s, the rest take no time.
    # Messages 1..9 were due at 10..90 ms but could only start at 1 s: without coordinated
    # omission their latencies are 990 ms .. 910 ms, not ~0.
    server = FakeSmtpServer(Behaviour(data_delays=[1.0] + [0.0] * 9))
    stats = await run_in_memory(server, BenchOptions(sessions=1, messages=10, rate=100.0))
    transaction = stats.phases["transaction"]
    assert transaction.count == 10
    assert transaction.minimum == pytest.approx(910 * MS, abs=1)
    assert transaction.maximum == pytest.approx(1000 * MS, abs=1)
    assert transaction.percentile(50) == pytest.approx(950 * MS, rel=RELATIVE_ERROR)
    # The same server measured closed-loop hides the stall from all but one message.
    server = FakeSmtpServer(Behaviour(data_delays=[1.0] + [0.0] * 9))
    closed = await run_in_memory(server, BenchOptions(sessions=1, messages=10))
    assert closed.phases["transaction"].percentile(50) <= 1


async def test_open_loop_sends_on_schedule_when_the_server_keeps_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeSmtpServer(Behaviour(data_delays=[0.002]))
    stats = await run_in_memory(server, BenchOptions(sessions=2, messages=50, rate=100.0))
    assert stats.messages == 50
    # Message 49 is due at 490 ms and takes 2 ms.
    assert stats.seconds == pytest.approx(0.492, abs=1e-6)
    assert stats.phases["transaction"].maximum == pytest.approx(2 * MS, abs=1)


async def test_an_open_loop_duration_run_offers_rate_times_duration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeSmtpServer(Behaviour())
    options = BenchOptions(sessions=3, messages=None, duration=2.0, rate=50.0)
    stats = await run_in_memory(server, options)
    assert stats.attempted == stats.messages == 100


async def test_a_stalled_transaction_times_out(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeSmtpServer(Behaviour(data_delays=[60.0]))
    stats = await run_in_memory(server, BenchOptions(sessions=2, messages=4, timeout=5.0))
    assert stats.connection_errors == {"timeout": 4}
    assert stats.messages == 0


async def test_waiting_for_an_open_loop_slot_is_not_part_of_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A slot every 10 s, a 5 s timeout: the session's deadline must not run while it waits.
    server = FakeSmtpServer(Behaviour(data_delays=[1.0]))
    options = BenchOptions(sessions=1, messages=3, rate=0.1, timeout=5.0)
    stats = await run_in_memory(server, options)
    assert stats.connection_errors == {}
    assert stats.messages == 3
    assert stats.seconds == pytest.approx(21.0, abs=1e-6)


async def test_each_transaction_gets_the_whole_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Three 4 s transactions back to back on one connection, a 5 s timeout: none times out.
    server = FakeSmtpServer(Behaviour(data_delays=[4.0]))
    stats = await run_in_memory(server, BenchOptions(sessions=1, messages=3, timeout=5.0))
    assert stats.connection_errors == {}
    assert stats.messages == 3


async def test_a_transaction_that_finishes_as_its_deadline_passes_costs_the_next_nothing(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deadline can pass while the last reply is being taken (in a step that cannot be
    # cancelled): the transaction succeeds, and its scope stays cancelled. The next
    # transaction must get a fresh scope on the same connection, not an instant timeout.
    finish = Session.transaction

    async def outlived(self: Session, started: int, limit: trio.CancelScope) -> None:
        await finish(self, started, limit)
        limit.cancel()

    monkeypatch.setattr(Session, "transaction", outlived)
    server = FakeSmtpServer(Behaviour())
    stats = await run_in_memory(server, BenchOptions(sessions=1, messages=5))
    assert stats.messages == 5
    assert stats.connection_errors == {}
    assert stats.phases["connect"].count == 1


async def test_the_hard_cap_ends_a_run_that_would_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeSmtpServer(Behaviour(data_delays=[1.0]))
    options = BenchOptions(sessions=2, messages=1000, max_seconds=10.0)
    stats = await run_in_memory(server, options)
    assert stats.capped
    assert stats.seconds == pytest.approx(10.0)
    assert 18 <= stats.messages <= 20
    assert trio.current_time() == pytest.approx(10.0, abs=0.1)
