"""Tarpit, greeting delay and PROXY header deadlines under an autojumping MockClock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.smtp_wire import make_context, session_over_memory
from trimail.config.model import Timeouts
from trimail.delivery.memory import MemoryHandler
from trimail.peer import Peer
from trimail.protocol.limits import ProtocolLimits

# Every test here runs under both deadline mechanisms (tests/server/conftest.py).
pytestmark = pytest.mark.usefixtures("deadline_mechanism")


async def test_error_replies_past_the_soft_limit_are_delayed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    context = make_context(MemoryHandler(), limits=ProtocolLimits(soft_errors=2, max_errors=5))
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        answered_at = []
        for _ in range(5):
            start = trio.current_time()
            assert (await client.command("BOGUS")).code == 500
            answered_at.append(trio.current_time() - start)
        # Errors 1 and 2 are free, 3 to 5 each wait error_delay (1 s).
        assert answered_at == [0, 0, 1, 1, 1]
        assert (await client.reply()).code == 421
        assert await client.closed()
    assert session.end_reason == "too many errors"


async def test_pipelined_errors_past_the_soft_limit_cost_a_delay_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    context = make_context(MemoryHandler(), limits=ProtocolLimits(soft_errors=10, max_errors=20))
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        start = trio.current_time()
        await client.send(b"".join(b"VERB%d\r\n" % index for index in range(30)))
        codes = [(await client.reply()).code for _ in range(21)]
        assert codes == [500] * 20 + [421]
        assert trio.current_time() - start == 10
        assert await client.closed()


async def test_a_quiet_client_is_greeted_after_the_greeting_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    context = make_context(MemoryHandler(), timeouts=Timeouts(greeting_delay=6))
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        assert trio.current_time() == 6
        assert (await client.command("QUIT")).code == 221


async def test_an_early_talker_gets_554_and_is_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = MemoryHandler()
    context = make_context(backend, timeouts=Timeouts(greeting_delay=6))
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await trio.sleep(1)
        await client.send(b"EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n")
        reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (554, "5.5.0")
        assert trio.current_time() == 1
        assert await client.closed()
    assert session.end_reason == "client spoke before the greeting"


async def test_a_missing_proxy_header_closes_silently_after_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    session, client = session_over_memory(make_context(MemoryHandler()), proxied=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await client.send(b"PROXY TCP4 203.0")  # and then nothing
        assert await client.closed()
        assert trio.current_time() == 5
    assert session.end_reason == "no PROXY header within 5s"


async def test_a_proxy_header_names_the_client(autojump_clock: trio.testing.MockClock) -> None:
    backend = MemoryHandler()
    session, client = session_over_memory(make_context(backend), proxied=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await client.send(b"PROXY TCP4 203.0.113.9 192.0.2.1 56324 25\r\n")
        assert (await client.reply()).code == 220
        for line in ("EHLO real.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.org>"):
            assert (await client.command(line)).code == 250
        assert (await client.command("DATA")).code == 354
        await client.send(b"Subject: proxied\r\n\r\nhi\r\n.\r\n")
        assert (await client.reply()).code == 250
        assert (await client.command("QUIT")).code == 221
    assert session.peer == Peer("203.0.113.9", 56324)
    [stored] = backend.messages
    assert b"Received: from real.test ([203.0.113.9])" in stored.trace_headers


async def test_a_garbage_proxy_header_closes_silently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    session, client = session_over_memory(make_context(MemoryHandler()), proxied=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await client.send(b"EHLO i-am-not-a-load-balancer\r\n")
        assert await client.closed()
        assert trio.current_time() == 0
    assert session.end_reason.startswith("bad PROXY header: ")


async def test_a_tarpit_delay_after_a_slow_client_is_served_in_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Past the soft error limit each error waits error_delay; a client that took 8 of its
    10 s to send the bad command still gets its 500 after the 5 s delay, not a 421."""
    context = make_context(
        MemoryHandler(),
        limits=ProtocolLimits(soft_errors=0, max_errors=5),
        timeouts=Timeouts(command=10, error_delay=5),
    )
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        await trio.sleep(8)
        start = trio.current_time()
        assert (await client.command("BOGUS")).code == 500
        assert trio.current_time() - start == 5
        assert (await client.command("QUIT")).code == 221
