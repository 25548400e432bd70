"""Graceful shutdown over real sockets: idle sessions end, DATA may finish, then 421."""

from __future__ import annotations

import pytest
import trio

from tests.server.running import running_server
from tests.smtp_wire import WireClient
from trimail.config.model import Timeouts
from trimail.delivery.memory import MemoryHandler
from trimail.delivery.message import Message
from trimail.handler import Receipt
from trimail.protocol.envelope import Envelope
from trimail.protocol.replies import Reply

#: Upper bound on any wait in these tests; they normally finish in milliseconds.
BOUND = 10


async def _open_transaction(port: int) -> WireClient:
    client = WireClient(await trio.open_tcp_stream("127.0.0.1", port))
    assert (await client.reply()).code == 220
    assert (await client.command("EHLO c.test")).code == 250
    assert (await client.command("MAIL FROM:<a@b.example>")).code == 250
    assert (await client.command("RCPT TO:<c@d.example>")).code == 250
    return client


async def test_stop_closes_idle_sessions_and_listeners() -> None:
    backend = MemoryHandler()
    with trio.fail_after(BOUND):
        async with running_server(backend) as (server, address):
            idle = await _open_transaction(address.port)
            server.stop()
            reply = await idle.reply()
            assert (reply.code, reply.lines[0][:5]) == (421, "4.3.2")
            assert await idle.closed()
            await idle.stream.aclose()
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", address.port)


async def test_message_in_data_finishes_during_grace() -> None:
    backend = MemoryHandler()
    with trio.fail_after(BOUND):
        async with running_server(backend, timeouts=Timeouts(shutdown_grace=BOUND)) as (
            server,
            address,
        ):
            busy = await _open_transaction(address.port)
            assert (await busy.command("DATA")).code == 354
            await busy.send(b"Subject: in flight\r\n\r\n")
            server.stop()
            await busy.send(b"finished after stop\r\n.\r\n")
            assert (await busy.reply()).code == 250
            reply = await busy.reply()
            assert (reply.code, reply.lines[0][:5]) == (421, "4.3.2")
            await busy.stream.aclose()
    [stored] = backend.messages
    assert stored.content.endswith(b"finished after stop\r\n")


async def test_message_still_in_data_after_grace_gets_421_and_is_not_stored() -> None:
    backend = MemoryHandler()
    with trio.fail_after(BOUND):
        async with running_server(backend, timeouts=Timeouts(shutdown_grace=0.2)) as (
            server,
            address,
        ):
            stuck = await _open_transaction(address.port)
            assert (await stuck.command("DATA")).code == 354
            await stuck.send(b"Subject: never finished\r\n\r\n")
            server.stop()
            reply = await stuck.reply()
            assert (reply.code, reply.lines[0][:5]) == (421, "4.3.2")
            await stuck.stream.aclose()
    assert backend.messages == []


class HungDelivery(MemoryHandler):
    """An interruptible delivery that would take far longer than the handler's limit."""

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        await trio.sleep(10 * BOUND)
        return await super().deliver(envelope, message)


async def test_a_server_cancelled_from_outside_still_bounds_a_delivery_by_its_limit() -> None:
    """Found in review: a delivery is shielded and its limit is kept by the server's deadline
    watch, which used to die with the cancelled server, leaving the delivery unbounded (here
    100 s; a hung one forever)."""
    with trio.fail_after(BOUND):
        with trio.CancelScope() as outside:
            async with running_server(HungDelivery(), timeouts=Timeouts(handler=0.5)) as (
                _,
                address,
            ):
                client = await _open_transaction(address.port)
                assert (await client.command("DATA")).code == 354
                await client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
                await trio.sleep(0.1)  # the delivery is under way (it cannot finish)
                outside.cancel()  # the embedding program cancels the server
        async with client:
            reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (451, "4.3.0")
