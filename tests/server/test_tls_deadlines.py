"""TLS sessions over in-memory streams: handshake deadlines under an autojumping MockClock."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests.smtp_wire import WireClient, make_context, session_over_memory
from tests.tls_certs import SERVER_NAME, CertFiles, issue
from trimail.config.model import Timeouts
from trimail.delivery.memory import MemoryHandler
from trimail.server.session import Session
from trimail.server.tls import Certificates

# Every test here runs under both deadline mechanisms (tests/server/conftest.py).
pytestmark = pytest.mark.usefixtures("deadline_mechanism")


@pytest.fixture
def certs(tmp_path: Path) -> CertFiles:
    return issue(tmp_path / "certs")


def tls_session(
    certs: CertFiles, *, implicit_tls: bool = False, timeouts: Timeouts | None = None
) -> tuple[Session, WireClient]:
    context = make_context(
        MemoryHandler(), certificates=Certificates(certs.cert, certs.key), timeouts=timeouts
    )
    return session_over_memory(context, implicit_tls=implicit_tls)


@pytest.mark.parametrize(
    "timeouts",
    [
        Timeouts(),
        # The 220 to STARTTLS leaves the next command's deadline (10 s) on the session's I/O
        # scope; the handshake must still get its own 30 s, not be cut off at 10.
        Timeouts(command=10, tls_handshake=30),
    ],
)
async def test_silence_after_starttls_ends_the_session_at_the_handshake_deadline(
    certs: CertFiles, autojump_clock: trio.testing.MockClock, timeouts: Timeouts
) -> None:
    session, client = tls_session(certs, timeouts=timeouts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        assert (await client.command("STARTTLS")).code == 220
        started = trio.current_time()
        # No 421 in plaintext: the client is supposed to be mid-handshake.
        assert await client.closed()
        assert trio.current_time() - started == 30
    assert session.end_reason == "no TLS handshake within 30s"


async def test_a_handshake_trickling_in_gets_no_more_than_the_deadline(
    certs: CertFiles, autojump_clock: trio.testing.MockClock
) -> None:
    session, client = tls_session(certs, timeouts=Timeouts(tls_handshake=5))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        assert (await client.command("STARTTLS")).code == 220
        started = trio.current_time()
        # The start of a TLS record header, one byte per second.
        for byte in b"\x16\x03\x01":
            await client.send(bytes([byte]))
            await trio.sleep(1)
        assert await client.closed()
        assert trio.current_time() - started == 5
    assert session.end_reason == "no TLS handshake within 5s"


async def test_implicit_tls_client_that_never_says_hello_is_dropped_silently(
    certs: CertFiles, autojump_clock: trio.testing.MockClock
) -> None:
    session, client = tls_session(certs, implicit_tls=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        # Not even a greeting: on implicit TLS the handshake comes first.
        assert await client.closed()
        assert trio.current_time() == 30
    assert session.end_reason == "no TLS handshake within 30s"


async def test_implicit_tls_session_greets_after_the_handshake(
    certs: CertFiles, autojump_clock: trio.testing.MockClock
) -> None:
    session, client = tls_session(certs, implicit_tls=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        tls = trio.SSLStream(client.stream, certs.client_context(), server_hostname=SERVER_NAME)
        await tls.do_handshake()
        secure = WireClient(tls)
        greeting = await secure.reply()
        assert (greeting.code, greeting.lines) == (220, ("mx.test ESMTP trimail",))
        ehlo = await secure.command("EHLO client.test")
        assert "STARTTLS" not in ehlo.lines
        assert (await secure.command("QUIT")).code == 221
        # A clean end: close_notify, not a bare TCP close (which raises BrokenResourceError).
        assert await tls.receive_some(100) == b""
    assert session.end_reason == "quit"
