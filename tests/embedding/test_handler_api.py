"""The public embedding API, used only through ``import trimail`` and ``trimail.testing``.

Every hook is exercised with its accept, refuse and failure paths over real loopback sockets,
plus the graceful stop when the embedding application cancels the server's nursery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

import trimail
from trimail.testing import RunningServer

from .client import Client

BOUND = 20.0
MESSAGE = b"Subject: embedded\r\n\r\nHello from a test.\r\n"
LOOPBACK = trimail.ListenAddress("127.0.0.1", 0)


def config(**timeouts: float) -> trimail.ServerConfig:
    return trimail.ServerConfig(
        listen=(LOOPBACK,), hostname="embedded.test", timeouts=trimail.Timeouts(**timeouts)
    )


@asynccontextmanager
async def serving(
    handler: trimail.Handler, server_config: trimail.ServerConfig | None = None
) -> AsyncIterator[int]:
    """Run ``trimail.serve`` in a nursery and yield its port; cancel it afterwards."""
    async with trio.open_nursery() as nursery:
        addresses: list[trimail.ListenAddress] = await nursery.start(
            trimail.serve, server_config or config(), handler
        )
        assert addresses[0].host == "127.0.0.1" and addresses[0].port != 0
        yield addresses[0].port
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def connected(port: int) -> AsyncIterator[Client]:
    client = await Client.connect(port)
    try:
        yield client
    finally:
        await client.aclose()


@attrs.define
class Recorder(trimail.BaseHandler):
    """Records every hook call; each hook's answer can be set per test."""

    connect_reply: trimail.Reply | None = None
    mail_reply: trimail.Reply | None = None
    rcpt_refused: set[str] = attrs.Factory(set)
    calls: list[str] = attrs.Factory(list)
    delivered: list[tuple[trimail.Envelope, bytes, trimail.Peer]] = attrs.Factory(list)

    async def on_connect(self, peer: trimail.Peer) -> trimail.Reply | None:
        self.calls.append(f"connect {peer.host}")
        return self.connect_reply

    async def on_mail(
        self, session: trimail.SessionInfo, sender: trimail.Mailbox | None
    ) -> trimail.Reply | None:
        self.calls.append(f"mail {sender} helo={session.client_name}")
        return self.mail_reply

    async def on_rcpt(
        self, session: trimail.SessionInfo, recipient: trimail.Mailbox
    ) -> trimail.Reply | None:
        self.calls.append(f"rcpt {recipient} from={session.sender}")
        if str(recipient) in self.rcpt_refused:
            return trimail.Reply(550, "5.1.1", ("No such user",))
        return None

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        self.calls.append(f"deliver {message.queue_id}")
        self.delivered.append((envelope, await message.read(), message.peer))
        return f"stored-{message.queue_id}"


async def test_every_hook_is_called_in_order_and_250_follows_delivery() -> None:
    handler = Recorder(rcpt_refused={"nobody@example.org"})
    async with serving(handler) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            assert (await client.reply())[0] == 220
            code, text = await client.send_message(
                "alice@example.org", ["bob@example.org"], MESSAGE
            )
            assert code == 250
            assert (await client.command("MAIL FROM:<alice@example.org>"))[0] == 250
            refused = await client.command("RCPT TO:<nobody@example.org>")
            assert refused == (550, "5.1.1 No such user")
    [(envelope, content, peer)] = handler.delivered
    assert content == MESSAGE
    assert peer.host == "127.0.0.1"
    assert [str(recipient) for recipient in envelope.recipients] == ["bob@example.org"]
    queue_id = text.rsplit(" ", 1)[1]
    assert handler.calls == [
        "connect 127.0.0.1",
        "mail alice@example.org helo=client.test",
        "rcpt bob@example.org from=alice@example.org",
        f"deliver {queue_id}",
        "mail alice@example.org helo=client.test",
        "rcpt nobody@example.org from=alice@example.org",
    ]


async def test_on_connect_can_refuse_a_client() -> None:
    blocked = trimail.Reply(554, "5.7.1", ("Your network is not welcome here",))
    handler = Recorder(connect_reply=blocked)
    async with serving(handler) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            assert await client.reply() == (554, "5.7.1 Your network is not welcome here")
            assert await client.stream.receive_some(100) == b""


async def test_on_mail_can_refuse_a_sender() -> None:
    handler = Recorder(mail_reply=trimail.Reply(553, "5.7.1", ("Sender not allowed",)))
    async with serving(handler) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            await client.reply()
            code, text = await client.send_message("spam@example.net", ["b@example.org"], MESSAGE)
            assert (code, text) == (553, "5.7.1 Sender not allowed")
    assert handler.delivered == []


class Refusing(trimail.BaseHandler):
    """``deliver`` refuses with whatever the test wants, or raises."""

    def __init__(self, outcome: trimail.Reply | Exception) -> None:
        self.outcome = outcome

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def deliver_once(
    handler: trimail.Handler, server_config: trimail.ServerConfig | None = None
) -> tuple[int, str]:
    async with serving(handler, server_config) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            await client.reply()
            outcome = await client.send_message("a@example.org", ["b@example.org"], MESSAGE)
            # The session goes on after a refused message.
            assert (await client.command("NOOP"))[0] == 250
            return outcome


async def test_deliver_can_refuse_with_a_reply() -> None:
    spam = trimail.Reply(554, "5.7.1", ("Message looks like spam",))
    assert await deliver_once(Refusing(spam)) == (554, "5.7.1 Message looks like spam")


async def test_a_delivery_error_is_451_so_the_client_retries() -> None:
    outcome = await deliver_once(Refusing(trimail.DeliveryError("database is down")))
    assert outcome[0] == 451 and outcome[1].startswith("4.3.0")


async def test_a_bug_in_a_hook_is_a_temporary_failure_not_a_crash() -> None:
    outcome = await deliver_once(Refusing(RuntimeError("a bug in the application")))
    assert outcome[0] == 451
    # A non-error Reply is a bug too: the server must not say 250 without a receipt.
    outcome = await deliver_once(Refusing(trimail.Reply(250, "2.0.0", ("fine",))))
    assert outcome[0] == 451


class Hanging(trimail.BaseHandler):
    async def on_rcpt(
        self, session: trimail.SessionInfo, recipient: trimail.Mailbox
    ) -> trimail.Reply | None:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        return message.queue_id


async def test_a_hook_that_hangs_is_cut_off_after_the_handler_timeout() -> None:
    async with serving(Hanging(), config(handler=0.2)) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            await client.reply()
            code, text = await client.send_message("a@example.org", ["b@example.org"], MESSAGE)
            assert (code, text[:5]) == (451, "4.3.0")


class ExplodingConnect(trimail.BaseHandler):
    async def on_connect(self, peer: trimail.Peer) -> trimail.Reply | None:
        raise RuntimeError("a bug in on_connect")


async def test_a_bug_in_on_connect_is_421_and_the_server_keeps_serving() -> None:
    async with serving(ExplodingConnect()) as port:
        for _ in range(2):
            async with connected(port) as client:
                with trio.fail_after(BOUND):
                    code, text = await client.reply()
                    assert (code, text[:5]) == (421, "4.3.0")


class SpoolInspector(trimail.BaseHandler):
    def __init__(self) -> None:
        self.seen: list[tuple[int, bool, int]] = []

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        total = 0
        largest = 0
        async for chunk in message.chunks():
            total += len(chunk)
            largest = max(largest, len(chunk))
        self.seen.append((total, message.spooled_file is not None, largest))
        return message.queue_id


async def test_a_large_message_reaches_deliver_as_a_spooled_file_in_pieces() -> None:
    handler = SpoolInspector()
    line = b"x" * 998 + b"\r\n"
    content = b"Subject: big\r\n\r\n" + line * 3000  # about 3 MB
    async with serving(handler) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            await client.reply()
            code, _ = await client.send_message("a@example.org", ["b@example.org"], content)
            assert code == 250
    [(total, spooled, largest)] = handler.seen
    assert total == len(content)
    assert spooled
    assert largest < len(content)


class SlowDelivery(trimail.BaseHandler):
    """Delivery that is still running when the application stops the server."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.stored: list[bytes] = []

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        self.started.set()
        await trio.sleep(0.2)
        self.stored.append(await message.read())
        return message.queue_id


async def test_cancelling_the_nursery_stops_gracefully() -> None:
    handler = SlowDelivery()
    replies: list[tuple[int, str]] = []
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as outer:
            server_scope = trio.CancelScope()

            async def run_server(*, task_status: trio.TaskStatus[int]) -> None:
                with server_scope:
                    async with trio.open_nursery() as nursery:
                        addresses: list[trimail.ListenAddress] = await nursery.start(
                            trimail.serve, config(), handler
                        )
                        task_status.started(addresses[0].port)

            port: int = await outer.start(run_server)
            async with connected(port) as busy, connected(port) as idle:
                await busy.reply()
                await idle.reply()
                assert (await idle.command("EHLO idle.test"))[0] == 250
                async with trio.open_nursery() as clients:

                    async def send() -> None:
                        replies.append(
                            await busy.send_message("a@example.org", ["b@example.org"], MESSAGE)
                        )

                    clients.start_soon(send)
                    await handler.started.wait()
                    server_scope.cancel()  # the application shuts down mid-delivery
                idle_reply = await idle.reply()
                busy_after = await busy.reply()
            # No new connection is accepted once the server has stopped.
            try:
                late = await Client.connect(port)
            except OSError:
                pass
            else:
                await late.aclose()
                raise AssertionError("the listener is still open")
    assert handler.stored == [MESSAGE]
    assert replies[0][0] == 250  # the message in flight finished and was acknowledged
    assert idle_reply[0] == 421 and idle_reply[1].startswith("4.3.2")
    assert busy_after[0] == 421


async def test_the_pytest_fixture_inbox_waits_for_mail(trimail_server: RunningServer) -> None:
    async with connected(trimail_server.port) as client:
        with trio.fail_after(BOUND):
            assert (await client.reply())[0] == 220
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    client.send_message, "a@example.org", ["carol@example.org"], MESSAGE
                )
                stored = await trimail_server.inbox.wait_for(
                    lambda message: "carol@example.org" in map(str, message.envelope.recipients),
                    timeout=BOUND,
                )
    assert stored.content == MESSAGE
    assert b"by trimail.test (trimail)" in stored.trace_headers


def test_help_shows_the_serve_docstring() -> None:
    assert trimail.serve.__doc__ is not None
    assert "nursery.start(trimail.serve, config, handler)" in trimail.serve.__doc__
    assert set(trimail.__all__) >= {"serve", "Handler", "ServerConfig", "Reply", "BaseHandler"}


def test_built_in_handlers_satisfy_the_protocol(tmp_path: Path) -> None:
    # Type-checked by mypy --strict: each built-in is a Handler.
    handlers: list[trimail.Handler] = [
        trimail.MemoryHandler(),
        trimail.DiscardHandler(),
        trimail.MaildirHandler(tmp_path),
    ]
    assert all(isinstance(handler, trimail.BaseHandler) for handler in handlers)


class FinishingLate(trimail.BaseHandler):
    """Stores the message in a step it cannot interrupt, past the handler timeout."""

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def deliver(
        self, envelope: trimail.Envelope, message: trimail.Message
    ) -> trimail.Receipt | trimail.Reply:
        with trio.CancelScope(shield=True):  # like a worker thread: it runs to the end
            await trio.sleep(LATE_BY)
        self.stored.append(message.queue_id)
        return message.queue_id


LATE_BY = 0.3


async def test_a_delivery_that_finishes_after_its_deadline_is_still_250() -> None:
    """Stored is stored: a 451 here would make the client send the message again. Both a
    message in memory and one spooled to a file (whose clean-up awaits a thread) count."""
    handler = FinishingLate()
    big = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 2000  # spooled: past 1 MiB
    async with serving(handler, config(handler=LATE_BY / 3)) as port, connected(port) as client:
        with trio.fail_after(BOUND):
            await client.reply()
            for content in (MESSAGE, big):
                code, text = await client.send_message("a@example.org", ["b@example.org"], content)
                assert code == 250, text
                assert handler.stored[-1] in text
    assert len(handler.stored) == 2
