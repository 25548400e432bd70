"""Abuse over real loopback sockets: admission, rate limits, relay denial, junk input."""

from __future__ import annotations

import contextlib

import attrs
import pytest
import trio

from tests.server.running import running_server
from tests.smtp_wire import WireClient, clients
from trimail.config.model import AdmissionConfig, ListenAddress, Rate, ServerConfig, Timeouts
from trimail.delivery.memory import MemoryHandler
from trimail.handler import SessionInfo
from trimail.protocol.addresses import Mailbox
from trimail.protocol.limits import ProtocolLimits
from trimail.protocol.replies import Reply

BOUND = 30.0
NO_EXEMPTIONS = AdmissionConfig(exempt=())


async def connect(port: int, source: str = "127.0.0.1") -> WireClient:
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    return WireClient(stream)


async def test_connections_beyond_the_per_ip_limit_get_421_and_are_closed() -> None:
    config = ServerConfig(admission=attrs.evolve(NO_EXEMPTIONS, max_connections_per_ip=2))
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            for _ in range(2):
                held.append(await connect(address.port))
                assert (await held[-1].reply()).code == 220
            refused = await connect(address.port)
            held.append(refused)
            reply = await refused.reply()
            assert (reply.code, reply.lines) == (
                421,
                ("4.7.0 Error: too many connections from your address",),
            )
            assert await refused.closed()
            # Another address is counted on its own.
            other = await connect(address.port, source="127.0.0.2")
            held.append(other)
            assert (await other.reply()).code == 220
            # A slot frees when a session ends.
            assert (await held[0].command("QUIT")).code == 221
            while True:
                again = await connect(address.port)
                held.append(again)
                if (await again.reply()).code == 220:
                    break
                await trio.sleep(0.01)


async def test_connections_beyond_the_global_limit_get_421() -> None:
    config = ServerConfig(admission=attrs.evolve(NO_EXEMPTIONS, max_connections=3))
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            for index in range(3):
                held.append(await connect(address.port, source=f"127.0.0.{index + 1}"))
                assert (await held[-1].reply()).code == 220
            held.append(await connect(address.port, source="127.0.0.9"))
            reply = await held[-1].reply()
            assert (reply.code, reply.lines[0][:5]) == (421, "4.7.0")
            assert await held[-1].closed()


async def test_500_idle_connections_do_not_stop_another_client_being_served() -> None:
    config = ServerConfig(admission=NO_EXEMPTIONS)  # the default 20 per address
    backend = MemoryHandler()
    async with running_server(backend, config=config) as (server, address), clients() as held:
        with trio.fail_after(BOUND):
            codes = []
            for _ in range(500):
                held.append(await connect(address.port))
                codes.append((await held[-1].reply()).code)
            assert codes.count(220) == 20
            assert codes.count(421) == 480
            # The 480 refused were never sessions: only the 20 hold a slot.
            assert server.admission.sessions == 20
            honest = await connect(address.port, source="127.0.0.2")
            held.append(honest)
            assert (await honest.reply()).code == 220
            for line in (
                "EHLO honest.test",
                "MAIL FROM:<a@example.org>",
                "RCPT TO:<b@example.org>",
            ):
                assert (await honest.command(line)).code == 250
            assert (await honest.command("DATA")).code == 354
            await honest.send(b"Subject: served\r\n\r\nhi\r\n.\r\n")
            assert (await honest.reply()).code == 250
    assert len(backend.messages) == 1


async def test_connection_rate_limit_per_client() -> None:
    admission = attrs.evolve(NO_EXEMPTIONS, max_connection_rate_per_ip=Rate(3, 3600.0))
    config = ServerConfig(admission=admission)
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            for _ in range(3):
                client = await connect(address.port)
                held.append(client)
                assert (await client.reply()).code == 220
                assert (await client.command("QUIT")).code == 221
            held.append(await connect(address.port))
            reply = await held[-1].reply()
            assert (reply.code, reply.lines[0][:5]) == (421, "4.7.0")
            assert "slow down" in reply.text


class AskingHandler(MemoryHandler):
    """Has the MAIL and RCPT hooks, so those decisions are awaited rather than screened."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def on_mail(self, session: SessionInfo, sender: Mailbox | None) -> Reply | None:
        self.asked.append(f"MAIL {sender}")
        return None

    async def on_rcpt(self, session: SessionInfo, recipient: Mailbox) -> Reply | None:
        self.asked.append(f"RCPT {recipient}")
        return None


@pytest.mark.parametrize("handler_type", [MemoryHandler, AskingHandler])
async def test_message_rate_limit_per_client_is_450_4_7_1(
    handler_type: type[MemoryHandler],
) -> None:
    # With hooks the MAIL is screened for the rate first, then asked: charged once, not twice.
    admission = attrs.evolve(NO_EXEMPTIONS, max_message_rate_per_ip=Rate(2, 3600.0))
    config = ServerConfig(admission=admission)
    handler = handler_type()
    async with running_server(handler, config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await connect(address.port)
            held.append(client)
            assert (await client.reply()).code == 220
            assert (await client.command("EHLO sender.test")).code == 250
            for _ in range(2):
                assert (await client.command("MAIL FROM:<a@example.org>")).code == 250
                assert (await client.command("RSET")).code == 250
            reply = await client.command("MAIL FROM:<a@example.org>")
            assert (reply.code, reply.lines[0][:5]) == (450, "4.7.1")
    if isinstance(handler, AskingHandler):
        assert handler.asked == ["MAIL a@example.org"] * 2  # the refused third is never asked


async def test_relay_to_foreign_domains_is_denied() -> None:
    backend = MemoryHandler()
    config = ServerConfig(accept_domains=("example.org",))
    async with running_server(backend, config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await connect(address.port)
            held.append(client)
            assert (await client.reply()).code == 220
            assert (await client.command("EHLO sender.test")).code == 250
            assert (await client.command("MAIL FROM:<a@elsewhere.example>")).code == 250
            denied = await client.command("RCPT TO:<victim@gmail.example>")
            assert (denied.code, denied.lines) == (550, ("5.7.1 Error: relay access denied",))
            assert (await client.command("RCPT TO:<bob@Example.ORG>")).code == 250
            assert (await client.command("DATA")).code == 354
            await client.send(b"Subject: local\r\n\r\nhi\r\n.\r\n")
            assert (await client.reply()).code == 250
    [stored] = backend.messages
    assert [str(recipient) for recipient in stored.envelope.recipients] == ["bob@Example.ORG"]


async def test_nul_bytes_and_binary_junk_get_errors_and_the_server_keeps_serving() -> None:
    async with running_server(MemoryHandler()) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            junk = await connect(address.port)
            held.append(junk)
            assert (await junk.reply()).code == 220
            reply = await junk.command("EH\x00LO x")
            assert (reply.code, reply.lines[0][:5]) == (501, "5.5.4")
            # Holds a bare LF (one line ending wrongly) and then invalid UTF-8: two errors.
            await junk.send(bytes(range(256)) + b"\r\n")
            assert [(await junk.reply()).code for _ in range(2)] == [500, 500]
            await junk.send(b"\xff\xfe\x00\x00garbage\r\n")
            assert (await junk.reply()).code == 500
            assert (await junk.command("NOOP")).code == 250

            fine = await connect(address.port)
            held.append(fine)
            assert (await fine.reply()).code == 220
            assert (await fine.command("EHLO fine.test")).code == 250


async def test_a_megabyte_line_without_crlf_is_cut_off() -> None:
    config = ServerConfig(listen=(ListenAddress("127.0.0.1", 0),))
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await connect(address.port)
            held.append(client)
            assert (await client.reply()).code == 220
            with contextlib.suppress(trio.BrokenResourceError):
                # The server stops reading after 64 KiB, so the rest may be refused.
                await client.send(b"X" * (1024 * 1024))
            reply = await client.reply()
            assert (reply.code, reply.lines) == (
                421,
                ("4.7.0 Error: line too long, closing connection",),
            )
            assert await client.closed()


async def test_thirty_unknown_verbs_end_the_session_at_the_error_limit() -> None:
    limits = ProtocolLimits(max_errors=20, soft_errors=10)
    config = ServerConfig(limits=limits)
    config = attrs.evolve(config, timeouts=attrs.evolve(config.timeouts, error_delay=0.01))
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await connect(address.port)
            held.append(client)
            assert (await client.reply()).code == 220
            with contextlib.suppress(trio.BrokenResourceError):
                await client.send(b"".join(b"VERB%d\r\n" % index for index in range(30)))
            codes = [(await client.reply()).code for _ in range(21)]
            assert codes == [500] * 20 + [421]
            assert await client.closed()


async def test_a_pipelined_flood_is_answered_in_order_with_bounded_output() -> None:
    """2000 pipelined HELPs: replies go out in budget-sized batches as the client reads, and the
    junk limit turns the flood into errors that end the session (100 free + 20 counted)."""
    config = ServerConfig(timeouts=Timeouts(error_delay=0))
    async with running_server(MemoryHandler(), config=config) as (_, address), clients() as held:
        with trio.fail_after(BOUND):
            client = await connect(address.port)
            held.append(client)
            assert (await client.reply()).code == 220
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_ignoring_reset, client, b"HELP\r\n" * 2000)
                codes = [(await client.reply()).code for _ in range(121)]
            assert codes == [214] * 120 + [421]
            assert await client.closed()


async def _send_ignoring_reset(client: WireClient, data: bytes) -> None:
    # The server stops reading once it ends the session, so the tail of the flood may bounce.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await client.send(data)
