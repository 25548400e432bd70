"""An event's work (a hook, a delivery, a spool write) is never cut short by the client's
deadline, even when it outlasts that deadline or overruns its own limit.

A read or a reply leaves its deadline on the session's I/O scope, and the session lifts it
only before events whose handling can reach a checkpoint. These pin the cases a review of that
scheme found: an uninterruptible delivery or hook that overruns ``timeouts.handler`` (a Maildir
batch stuck in fsync, a ``to_thread`` call) must still answer normally, not 421 (for a stored
message, a 421 means the client sends it again), and a hook's own timeout wins over a client
deadline that falls at the same moment. Autojumping MockClock throughout.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from tests.smtp_wire import (
    WireClient,
    make_context,
    session_over_memory,
    session_with_incoming,
    start_transaction,
)
from trimail.config.model import Timeouts
from trimail.delivery.memory import MemoryHandler
from trimail.delivery.message import Message
from trimail.handler import Receipt, SessionInfo
from trimail.protocol.addresses import Mailbox
from trimail.protocol.envelope import Envelope
from trimail.protocol.replies import Reply

# Every test here runs under both deadline mechanisms (tests/server/conftest.py).
pytestmark = pytest.mark.usefixtures("deadline_mechanism")

LINE = b"x" * 998 + b"\r\n"


async def take(seconds: float, *, uninterruptible: bool) -> None:
    """Work of ``seconds``; ``uninterruptible`` work runs to its end even past a deadline (a
    Maildir batch stuck in fsync, a ``to_thread`` call), so it can overrun the handler limit."""
    with trio.CancelScope(shield=uninterruptible):
        await trio.sleep(seconds)


class SlowDelivery(MemoryHandler):
    """Takes ``seconds`` to store each message (an LMTP hand-off or a scan, say)."""

    def __init__(self, seconds: float, *, uninterruptible: bool = False) -> None:
        super().__init__()
        self.seconds, self.uninterruptible = seconds, uninterruptible

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        await take(self.seconds, uninterruptible=self.uninterruptible)
        return await super().deliver(envelope, message)


class SlowRcptHook(MemoryHandler):
    """Takes ``seconds`` to decide each recipient (a policy lookup, say)."""

    def __init__(self, seconds: float, *, uninterruptible: bool = False) -> None:
        super().__init__()
        self.seconds, self.uninterruptible = seconds, uninterruptible

    async def on_rcpt(self, session: SessionInfo, recipient: Mailbox) -> Reply | None:
        await take(self.seconds, uninterruptible=self.uninterruptible)
        return None


class HungRcptHook(MemoryHandler):
    async def on_rcpt(self, session: SessionInfo, recipient: Mailbox) -> Reply | None:
        await trio.sleep_forever()


@pytest.mark.parametrize(
    ("timeouts", "delivery_seconds"),
    [
        (Timeouts(), 200),  # defaults: past the 180 s data deadline of the last read
        (Timeouts(data=61, handler=60), 62),  # a deadline just over the handler limit
    ],
)
async def test_a_delivery_that_overruns_its_limit_is_still_answered_250(
    autojump_clock: trio.testing.MockClock, timeouts: Timeouts, delivery_seconds: float
) -> None:
    handler = SlowDelivery(delivery_seconds, uninterruptible=True)
    session, client = session_over_memory(make_context(handler, timeouts=timeouts))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        reply = await client.command("Subject: hi\r\n\r\nbody\r\n.")
        assert reply.code == 250
        assert (await client.command("QUIT")).code == 221
    assert len(handler.messages) == 1


class SlowFirstDelivery(MemoryHandler):
    """Takes ``seconds`` (interruptibly) to store the first message, no time for the others."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds, self.calls = seconds, 0

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        self.calls += 1
        if self.calls == 1:
            await trio.sleep(self.seconds)
        return await super().deliver(envelope, message)


class SlowFirstDeliveryInANursery(SlowFirstDelivery):
    """Does its slow first delivery in a nursery (posting to two backends at once, say), so a
    cancel reaches the session as a group of Cancelled."""

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        self.calls += 1
        if self.calls == 1:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep, self.seconds)
        return await MemoryHandler.deliver(self, envelope, message)


async def _next_message_and_idle_timeout(client: WireClient) -> None:
    """After a delivery overran its limit, the session goes on as before: the next message is
    250, and its read deadlines still hold (an idle client is cut off after 300 s)."""
    for line in ("MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>"):
        assert (await client.command(line)).code == 250
    assert (await client.command("DATA")).code == 354
    assert (await client.command("Subject: again\r\n\r\nbody\r\n.")).code == 250
    idle_since = trio.current_time()
    reply = await client.reply()
    assert (reply.code, reply.lines[0][:5]) == (421, "4.4.2")
    assert trio.current_time() - idle_since == 300


@pytest.mark.parametrize(
    "slow_first", [pytest.param("plain", id="plain"), pytest.param("nursery", id="in-a-nursery")]
)
async def test_a_delivery_cut_off_by_its_limit_is_451_and_the_session_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, slow_first: str
) -> None:
    # The limit cancels the session's own scope (no scope per message): the session must
    # answer 451 and carry on in a fresh scope, deadlines and all. Found in review: a handler
    # working in a nursery raises a group of Cancelled, which was left unanswered, and the
    # next command crashed the session.
    handler = SlowFirstDelivery(120) if slow_first == "plain" else SlowFirstDeliveryInANursery(120)
    session, client = session_over_memory(make_context(handler, timeouts=Timeouts(handler=60)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        started = trio.current_time()
        reply = await client.command("Subject: hi\r\n\r\nbody\r\n.")
        assert (reply.code, reply.lines[0][:5]) == (451, "4.3.0")
        assert trio.current_time() - started == 60
        await _next_message_and_idle_timeout(client)
    assert len(handler.messages) == 1
    assert session.end_reason == "timeout"
    assert "delivery took longer than 60s" in caplog.text


async def test_a_session_goes_on_after_a_delivery_that_finished_past_its_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handler = SlowDelivery(62, uninterruptible=True)
    session, client = session_over_memory(make_context(handler, timeouts=Timeouts(handler=60)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        assert (await client.command("Subject: hi\r\n\r\nbody\r\n.")).code == 250
        handler.seconds = 0
        await _next_message_and_idle_timeout(client)
    assert len(handler.messages) == 2


@contextlib.asynccontextmanager
async def cancellable_from_outside(
    handler: MemoryHandler,
) -> AsyncIterator[tuple[WireClient, trio.CancelScope]]:
    """A session run inside a scope of the test's: cancelling that scope is a cancel from
    outside, as the server's forced shutdown after the grace period is."""
    session, client = session_over_memory(make_context(handler))
    outside = trio.CancelScope()

    async def run_session() -> None:
        with outside:
            await session.run()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_session)
        yield client, outside


async def test_a_cancel_from_outside_during_a_delivery_still_sends_its_250_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A forced shutdown (the server cancels its sessions after the grace period) waits for a
    delivery under way, and the stored message's 250 goes out ahead of the 421: found in
    review, the send after the delivery raised the cancel with the 250 already taken from the
    core, so the client saw only the 421 and would send the stored message again."""
    handler = SlowDelivery(10)
    async with cancellable_from_outside(handler) as (client, outside):
        await start_transaction(client)
        await client.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n")
        await trio.sleep(5)  # the delivery is half done
        outside.cancel()
        assert (await client.reply()).code == 250
        reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (421, "4.3.2")
    assert len(handler.messages) == 1
    assert trio.current_time() >= 10


async def test_a_slow_but_legal_client_gets_250_for_a_delivery_that_overruns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Default timeouts. The body arrives over 530 s (fast enough for the minimum rate), so the
    # DATA phase's deadline is its start + 600 s, 70 s after the end: more than the handler's
    # 60 s, less than the 75 s the delivery takes.
    handler = SlowDelivery(75, uninterruptible=True)
    session, client = session_over_memory(make_context(handler))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        started = trio.current_time()
        for at in (0, 170, 340, 510):
            await trio.sleep(started + at - trio.current_time())
            await client.send(LINE * 100)
        await trio.sleep(started + 530 - trio.current_time())
        assert (await client.command(".")).code == 250
    assert len(handler.messages) == 1


async def test_a_hook_that_overruns_its_limit_is_still_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The RCPT hook takes 310 s, past the 300 s command deadline of the last reply.
    session, client = session_over_memory(make_context(SlowRcptHook(310, uninterruptible=True)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        for line in ("EHLO client.test", "MAIL FROM:<a@example.org>"):
            assert (await client.command(line)).code == 250
        assert (await client.command("RCPT TO:<b@example.com>")).code == 250
        assert (await client.command("QUIT")).code == 221


async def test_a_hook_timeout_at_the_moment_of_the_client_deadline_is_the_hooks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # RCPT comes 240 s after the last reply: its hook's 60 s limit ends exactly when the
    # command deadline would. The hook's failure (451) is the answer, not a 421 timeout.
    session, client = session_over_memory(make_context(HungRcptHook()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        for line in ("EHLO client.test", "MAIL FROM:<a@example.org>"):
            assert (await client.command(line)).code == 250
        await trio.sleep(240)
        reply = await client.command("RCPT TO:<b@example.com>")
        assert (reply.code, reply.lines[0][:5]) == (451, "4.3.0")
        nursery.cancel_scope.cancel()


async def test_a_slow_spool_write_does_not_count_against_the_client(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # data=5 s, handler=1 s; spilling the first MiB to the spool file takes 6 s (a slow disk).
    # The worker-thread calls are made inline (a shielded sleep stands for the slow write), so
    # the autojumping clock moves only by the simulated time.
    spills = 0

    async def slow_first_spill(self: Message) -> None:
        nonlocal spills
        data = self._take_from_memory()
        if not data:
            return
        spills += 1
        if spills == 1:
            with trio.CancelScope(shield=True):
                await trio.sleep(6)
        self._append(data)

    async def inline_discard(self: Message) -> None:
        self._pieces, self._in_memory = [], 0
        self._remove()

    monkeypatch.setattr(Message, "_flush", slow_first_spill)
    monkeypatch.setattr(Message, "discard", inline_discard)

    class SizesOnly(MemoryHandler):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
            self.sizes.append(message.size)
            return message.queue_id

    handler = SizesOnly()
    timeouts = Timeouts(handler=1, data=5)
    session, client = session_over_memory(make_context(handler, timeouts=timeouts))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        await client.send(LINE * 1100)  # over 1 MiB: spilled to a file
        assert (await client.command(".")).code == 250
    assert spills >= 1
    assert handler.sizes == [len(LINE) * 1100]


async def test_a_slow_hook_after_a_slow_client_has_its_own_time_not_the_clients(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The client used 9 of its 10 s for RCPT; the hook then takes 5 s, well within its own
    limit: the client's command deadline must not cut the hook short."""
    context = make_context(SlowRcptHook(5), timeouts=Timeouts(command=10, handler=60))
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        assert (await client.command("EHLO client.test")).code == 250
        assert (await client.command("MAIL FROM:<a@example.org>")).code == 250
        await trio.sleep(9)
        start = trio.current_time()
        assert (await client.command("RCPT TO:<b@example.com>")).code == 250
        assert trio.current_time() - start == 5
        assert (await client.command("QUIT")).code == 221
    assert session.end_reason == "quit"


async def test_a_slow_delivery_after_the_last_data_read_still_gets_its_250(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The delivery (6 s) is within the handler's limit (60 s) but outlives the last DATA
    read's deadline (5 s): the stored message must be answered 250, not 421 (a duplicate
    on retry). Found by review of the deadline-in-place change."""
    handler = SlowDelivery(6)
    context = make_context(handler, timeouts=Timeouts(data=5, handler=60))
    session, client = session_over_memory(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        for line in ("EHLO client.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>"):
            assert (await client.command(line)).code == 250
        assert (await client.command("DATA")).code == 354
        start = trio.current_time()
        assert (await client.command("Subject: hi\r\n\r\nbody\r\n.")).code == 250
        assert trio.current_time() - start == 6
        assert len(handler.messages) == 1
        assert (await client.command("QUIT")).code == 221


async def _last_bytes_at_the_deadline() -> tuple[int, int]:
    """One session whose last DATA bytes arrive exactly at its read deadline: the reply code
    (0: closed without one) and how many messages were stored."""
    handler = MemoryHandler()
    context = make_context(handler, timeouts=Timeouts(data=5, data_min_rate=0))
    session, client, incoming = session_with_incoming(context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        await start_transaction(client)
        await client.send(b"Subject: hi\r\n\r\nbody\r\n")
        await trio.sleep(5)  # now the session's DATA read deadline
        incoming.put_data(b".\r\n")  # not send_all, which checkpoints twice first
        try:
            code = (await client.reply()).code
        except EOFError:
            code = 0
        nursery.cancel_scope.cancel()
    return code, len(handler.messages)


async def test_bytes_that_meet_the_deadline_are_stored_only_with_a_250(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Found in review: the watch, running after the session's read completed but before the
    # session did, cancelled the session for good; the message was then stored and answered
    # 421, so the client would send it again. Trio orders a batch's tasks at random, so the
    # race is tried many times; a stored message must always be answered 250 and vice versa.
    outcomes = [await _last_bytes_at_the_deadline() for _ in range(24)]
    assert all((code == 250) == (stored == 1) for code, stored in outcomes), outcomes


async def test_a_stop_that_meets_a_whole_pipelined_transaction_stores_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The stop comes after the read returned the client's bytes but before the session ran:
    # it must win before the session acts on them, not strike after a stored message.
    handler = MemoryHandler()
    session, client, incoming = session_with_incoming(make_context(handler))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await client.reply()).code == 220
        assert (await client.command("EHLO client.test")).code == 250
        await trio.testing.wait_all_tasks_blocked()  # the session waits for its next command
        incoming.put_data(
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
            b"Subject: hi\r\n\r\nbody\r\n.\r\n"
        )
        session.request_stop()  # no checkpoint since put_data: the session has not run yet
        reply = await client.reply()
        assert (reply.code, reply.lines[0][:5]) == (421, "4.3.2")
    assert handler.messages == []
    assert session.end_reason == "shutdown"


class MailHookHeldOnTheSecondMail(MemoryHandler):
    """Answers the second MAIL's hook only once ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()
        self.mails = 0

    async def on_mail(self, session: SessionInfo, sender: Mailbox | None) -> Reply | None:
        self.mails += 1
        if self.mails == 2:
            await self.release.wait()
        return None


async def test_a_cancel_that_arrives_as_a_hook_returns_still_lets_the_250_out_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Found in review: a cancel from outside that arrives while the session is waking up from
    a hook (for a MAIL pipelined after the message's dot) is left pending past the hook and
    struck at the send, with the stored message's 250 already taken from the core."""
    handler = MailHookHeldOnTheSecondMail()
    async with cancellable_from_outside(handler) as (client, outside):
        await start_transaction(client)
        await client.send(b"Subject: hi\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@example.org>\r\n")
        await trio.testing.wait_all_tasks_blocked()  # the second MAIL's hook is waiting
        handler.release.set()  # the session is rescheduled...
        outside.cancel()  # ...and the cancel finds it runnable, so it stays pending
        replies = [await client.reply() for _ in range(3)]
        codes = [(reply.code, reply.lines[0][:5]) for reply in replies]
        assert codes == [(250, "2.0.0"), (250, "2.1.0"), (421, "4.3.2")]
    assert len(handler.messages) == 1
