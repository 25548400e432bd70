"""Session tests over in-memory streams: deadlines under an autojumping MockClock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.smtp_wire import WireClient, make_context, session_over_memory, start_transaction
from trimail.config.model import Timeouts
from trimail.delivery.memory import MemoryHandler
from trimail.peer import Peer
from trimail.protocol.limits import ProtocolLimits
from trimail.server.session import Session

# Every test here runs under both deadline mechanisms (tests/server/conftest.py).
pytestmark = pytest.mark.usefixtures("deadline_mechanism")

MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"


async def test_a_whole_message_is_stored_with_trace_headers() -> None:
    backend = MemoryHandler()
    session, client = session_over_memory(make_context(backend))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        await client.send(MESSAGE + b".\r\n")
        reply = await client.reply()
        assert reply.code == 250
        assert reply.lines[0].startswith("2.0.0 OK: queued as ")
        assert (await client.command("QUIT")).code == 221
        assert await client.closed()
    [stored] = backend.messages
    assert stored.content == MESSAGE
    assert reply.lines[0].endswith(stored.queue_id)
    assert stored.trace_headers.startswith(b"Return-Path: <a@example.org>\r\nReceived: from ")
    assert b"[192.0.2.7]" in stored.trace_headers
    assert session.end_reason == "quit"


async def test_idle_client_gets_421_after_command_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    session, client = session_over_memory(make_context(MemoryHandler()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        started = trio.current_time()
        reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (421, "4.4.2")
        assert trio.current_time() - started == 300
        assert await client.closed()
    assert session.end_reason == "timeout"


async def test_trickling_bytes_do_not_extend_the_command_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    session, client = session_over_memory(make_context(MemoryHandler()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        started = trio.current_time()

        async def slowloris() -> None:
            for _ in range(1000):  # bounded: far more bytes than the deadline lets through
                await client.send(b"N")
                await trio.sleep(7)

        nursery.start_soon(slowloris)
        reply = await client.reply()
        assert reply.code == 421
        assert trio.current_time() - started <= 300
        nursery.cancel_scope.cancel()


async def test_deadline_restarts_after_each_reply(autojump_clock: trio.testing.MockClock) -> None:
    session, client = session_over_memory(make_context(MemoryHandler()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        for _ in range(3):
            await trio.sleep(299)
            assert (await client.command("NOOP")).code == 250
        assert (await client.command("QUIT")).code == 221


async def test_stalled_data_gets_421_after_data_timeout_and_stores_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = MemoryHandler()
    session, client = session_over_memory(make_context(backend))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        await client.send(b"Subject: partial\r\n")
        started = trio.current_time()
        reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (421, "4.4.2")
        assert trio.current_time() - started == 180
    assert backend.messages == []


async def test_data_below_minimum_rate_is_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    backend = MemoryHandler()
    session, client = session_over_memory(make_context(backend))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        started = trio.current_time()

        async def trickle() -> None:
            # 100 bytes every 170 s: each read is within --data-timeout, the rate is not.
            for _ in range(100):
                await trio.sleep(170)
                await client.send(b"x" * 98 + b"\r\n")

        nursery.start_soon(trickle)
        reply = await client.reply()
        assert reply.code == 421
        # 200 bytes by 340 s is 0.6 B/s, far under 500 B/s: cut at the first check after 180 s.
        assert trio.current_time() - started <= 340
        nursery.cancel_scope.cancel()
    assert backend.messages == []


async def test_fast_enough_data_may_take_longer_than_data_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = MemoryHandler()
    timeouts = Timeouts(data=10, data_min_rate=100, data_total=600)
    session, client = session_over_memory(make_context(backend, timeouts=timeouts))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        for _ in range(30):  # 30 s at 200 B/s: above the minimum rate, past data=10
            await trio.sleep(1)
            await client.send(b"y" * 198 + b"\r\n")
        await client.send(b".\r\n")
        assert (await client.reply()).code == 250
        assert (await client.command("QUIT")).code == 221
    assert len(backend.messages) == 1


async def test_whole_data_phase_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    backend = MemoryHandler()
    session, client = session_over_memory(make_context(backend))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        started = trio.current_time()

        async def steady() -> None:
            for _ in range(1000):  # 1000 B/s, well above the minimum rate, for too long
                await trio.sleep(1)
                await client.send(b"z" * 998 + b"\r\n")

        nursery.start_soon(steady)
        reply = await client.reply()
        assert reply.code == 421
        assert trio.current_time() - started == 600
        nursery.cancel_scope.cancel()
    assert backend.messages == []


async def test_pipelined_commands_are_answered_in_one_write() -> None:
    writes: list[bytes] = []
    backend = MemoryHandler()
    client_stream, server_stream = trio.testing.memory_stream_pair()
    send_stream = server_stream.send_stream
    assert isinstance(send_stream, trio.testing.MemorySendStream)
    original_send_all = send_stream.send_all

    async def recording_send_all(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        await original_send_all(data)

    send_stream.send_all = recording_send_all  # type: ignore[method-assign]  # spy on writes
    session = Session(server_stream, Peer("192.0.2.7", 1), make_context(backend))
    client = WireClient(client_stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        writes.clear()
        await client.send(
            b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
            b"RCPT TO:<e@f.example>\r\nDATA\r\n"
        )
        codes = [(await client.reply()).code for _ in range(5)]
        assert codes == [250, 250, 250, 250, 354]
        assert len(writes) == 1
        await client.send(b"body\r\n.\r\nQUIT\r\n")
        assert (await client.reply()).code == 250
        assert (await client.reply()).code == 221
    assert backend.messages[0].envelope.recipients[1].local_part == "e"


async def test_oversized_line_flood_keeps_the_session_bounded() -> None:
    session, client = session_over_memory(
        make_context(MemoryHandler(), limits=ProtocolLimits(absurd_line=64 * 1024))
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        for _ in range(16):  # 1 MiB without a newline, 64 KiB at a time
            try:
                await client.send(b"A" * 65536)
            except trio.BrokenResourceError:
                break
        reply = await client.reply()
        assert reply.code == 421
    assert session.end_reason == "line too long"


async def test_client_disconnect_mid_data_stores_nothing() -> None:
    backend = MemoryHandler()
    session, client = session_over_memory(make_context(backend))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        await client.send(b"Subject: cut\r\n\r\nhalf a messa")
        await client.stream.aclose()
    assert backend.messages == []
    assert session.end_reason == "client closed"
