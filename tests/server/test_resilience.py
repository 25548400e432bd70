"""The server outlives its failures: accept() out of file descriptors, a session that raises."""

from __future__ import annotations

import errno

import pytest
import trio

import trimail.server.serve as serve_module
import trimail.server.session as session_module
from tests.server.running import running_server
from tests.smtp_wire import WireClient
from trimail.config.model import ServerConfig
from trimail.delivery.memory import MemoryHandler
from trimail.protocol.envelope import Envelope
from trimail.server.serve import Server
from trimail.server.streams import LeanSocketStream

BOUND = 10


async def test_accept_loop_backs_off_on_emfile_and_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    real_accept = listener.accept
    failures = [OSError(errno.EMFILE, "Too many open files")] * 3

    async def flaky_accept() -> trio.SocketStream:
        if failures:
            raise failures.pop()
        return await real_accept()

    monkeypatch.setattr(listener, "accept", flaky_accept)
    server = Server(ServerConfig(), MemoryHandler(), hostname="mx.test")
    port = listener.socket.getsockname()[1]
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server._accept_loop, listener, nursery, False)
            client = WireClient(await trio.open_tcp_stream("127.0.0.1", port))
            assert (await client.reply()).code == 220
            assert failures == []
            assert (await client.command("QUIT")).code == 221
            await client.stream.aclose()
            nursery.cancel_scope.cancel()
    await listener.aclose()


_start_message = session_module.Session._start_message


def _exploding_start_message(session: session_module.Session, envelope: Envelope) -> None:
    """Stands in for a bug inside the session: raises for one sender, works for others."""
    if envelope.sender is not None and envelope.sender.local_part == "boom":
        raise RuntimeError("a bug in the session")
    _start_message(session, envelope)


async def test_a_session_that_raises_does_not_stop_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module.Session, "_start_message", _exploding_start_message)
    backend = MemoryHandler()
    with trio.fail_after(BOUND):
        async with running_server(backend) as (_, address):
            doomed = WireClient(await trio.open_tcp_stream("127.0.0.1", address.port))
            assert (await doomed.reply()).code == 220
            await doomed.send(
                b"HELO c\r\nMAIL FROM:<boom@x.example>\r\nRCPT TO:<a@b.example>\r\nDATA\r\n"
            )
            assert [(await doomed.reply()).code for _ in range(4)] == [250, 250, 250, 354]
            farewell = await doomed.reply()
            assert (farewell.code, farewell.lines[0][:5]) == (421, "4.3.0")
            assert await doomed.closed()
            await doomed.stream.aclose()

            healthy = WireClient(await trio.open_tcp_stream("127.0.0.1", address.port))
            assert (await healthy.reply()).code == 220
            await healthy.send(
                b"HELO c\r\nMAIL FROM:<ok@x.example>\r\nRCPT TO:<a@b.example>\r\nDATA\r\n"
            )
            assert [(await healthy.reply()).code for _ in range(4)] == [250, 250, 250, 354]
            await healthy.send(b"fine\r\n.\r\n")
            assert (await healthy.reply()).code == 250
            await healthy.stream.aclose()
    assert len(backend.messages) == 1


async def test_a_connection_whose_socket_cannot_be_taken_over_does_not_stop_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_stream = LeanSocketStream
    failures = [OSError(errno.ENOMEM, "Cannot allocate memory")]

    def flaky_stream(accepted: trio.SocketStream) -> LeanSocketStream:
        if failures:
            raise failures.pop()
        return real_stream(accepted)

    monkeypatch.setattr(serve_module, "LeanSocketStream", flaky_stream)
    with trio.fail_after(BOUND):
        async with running_server(MemoryHandler()) as (server, address):
            doomed = WireClient(await trio.open_tcp_stream("127.0.0.1", address.port))
            assert await doomed.closed()  # closed at once, no greeting
            await doomed.stream.aclose()
            assert server.admission.sessions == 0  # its admission was given back
            healthy = WireClient(await trio.open_tcp_stream("127.0.0.1", address.port))
            assert (await healthy.reply()).code == 220
            assert (await healthy.command("QUIT")).code == 221
            await healthy.stream.aclose()
    assert failures == []
    assert "could not start" in caplog.text
