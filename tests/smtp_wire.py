"""Test helpers that speak raw SMTP over any Trio stream, reading whole replies."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import attrs
import trio
import trio.testing

from trimail.config.model import Timeouts
from trimail.handler import Handler
from trimail.peer import Peer
from trimail.protocol.limits import ProtocolLimits
from trimail.server.deadlines import DeadlineWatch
from trimail.server.session import Session, SessionContext
from trimail.server.tls import Certificates

_LAST_LINE = re.compile(rb"(?m)^\d{3} [^\r\n]*\r\n")


@attrs.frozen
class WireReply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class WireClient:
    """Sends raw bytes and reads replies; the buffer keeps bytes of replies not yet read."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = b""

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await trio.aclose_forcefully(self.stream)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> WireReply:
        while True:
            match = _LAST_LINE.search(self._buffer)
            if match:
                raw, self._buffer = self._buffer[: match.end()], self._buffer[match.end() :]
                lines = raw.decode("utf-8").split("\r\n")[:-1]
                return WireReply(int(lines[0][:3]), tuple(line[4:] for line in lines))
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(f"connection closed; unread bytes {self._buffer!r}")
            self._buffer += data

    async def command(self, line: str) -> WireReply:
        await self.send(line.encode("utf-8") + b"\r\n")
        return await self.reply()

    async def closed(self) -> bool:
        """True when the server closed the connection (after any unread replies)."""
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:
            return True
        return data == b"" and not self._buffer


async def start_transaction(client: WireClient) -> None:
    """Greeting, EHLO, MAIL, RCPT and DATA, each answered as a plain server answers them."""
    assert (await client.reply()).code == 220
    assert (await client.command("EHLO client.test")).code == 250
    assert (await client.command("MAIL FROM:<a@example.org>")).code == 250
    assert (await client.command("RCPT TO:<b@example.com>")).code == 250
    assert (await client.command("DATA")).code == 354


#: How contexts made by ``make_context`` keep deadlines: "watch", a DeadlineWatch task as a
#: server runs one, or "scope", each session's own Trio deadline. Set by the
#: ``deadline_mechanism`` fixture (tests/server/conftest.py).
deadline_mode = "scope"


def make_context(
    handler: Handler,
    *,
    limits: ProtocolLimits | None = None,
    timeouts: Timeouts | None = None,
    certificates: Certificates | None = None,
) -> SessionContext:
    return SessionContext(
        hostname="mx.test",
        limits=limits or ProtocolLimits(),
        timeouts=timeouts or Timeouts(),
        handler=handler,
        certificates=certificates,
        deadlines=_running_watch() if deadline_mode == "watch" else None,
    )


def _running_watch() -> DeadlineWatch:
    """A watch running for the rest of the test's Trio run (a system task, cancelled when
    the run ends), so a test needs no nursery of its own for it."""
    watch = DeadlineWatch()
    trio.lowlevel.spawn_system_task(watch.run)
    return watch


def session_over_memory(
    context: SessionContext, *, implicit_tls: bool = False, proxied: bool = False
) -> tuple[Session, WireClient]:
    session, client, _ = session_with_incoming(context, implicit_tls=implicit_tls, proxied=proxied)
    return session, client


def session_with_incoming(
    context: SessionContext, *, implicit_tls: bool = False, proxied: bool = False
) -> tuple[Session, WireClient, trio.testing.MemoryReceiveStream]:
    """Also the session's side of the client's bytes: ``put_data`` on it hands bytes over as
    a socket's readiness does (the session wakes with them, no other checkpoint first)."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    incoming = server_stream.receive_stream
    assert isinstance(incoming, trio.testing.MemoryReceiveStream)
    session = Session(
        server_stream,
        Peer("192.0.2.7", 40000),
        context,
        implicit_tls=implicit_tls,
        proxied=proxied,
    )
    return session, WireClient(client_stream), incoming


@contextlib.asynccontextmanager
async def clients() -> AsyncIterator[list[WireClient]]:
    """Connections opened in a test, all closed at the end however it ends."""
    opened: list[WireClient] = []
    try:
        yield opened
    finally:
        for client in opened:
            await trio.aclose_forcefully(client.stream)
