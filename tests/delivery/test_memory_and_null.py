"""MemoryHandler keeps what was delivered and lets a test wait for it without sleeping;
DiscardHandler keeps nothing but still answers with a receipt."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trimail.delivery.memory import MemoryHandler, StoredMessage
from trimail.delivery.null import DiscardHandler
from trimail.peer import Peer

from .messages import (
    CAROL,
    PEER,
    TRACE,
    MessageFactory,
    large_chunks,
    make_envelope,
)


async def deliver(handler: MemoryHandler, spool: MessageFactory, queue_id: str) -> None:
    message = await spool.small([queue_id.encode() + b"\r\n"], queue_id=queue_id)
    assert await handler.deliver(make_envelope(), message) == queue_id


def queue_ids(handler: MemoryHandler) -> list[str]:
    return [stored.queue_id for stored in handler.messages]


# -- MemoryHandler ------------------------------------------------------------------------------


async def test_memory_handler_stores_content_trace_envelope_and_peer(
    spool: MessageFactory,
) -> None:
    handler = MemoryHandler()
    await handler.prepare()
    peer = Peer("2001:db8::7", 40000)
    envelope = make_envelope(recipients=(CAROL,), smtputf8=True)
    message = await spool.build([b"Subject: hi\r\n\r\n", b"8-bit \xff\xfe\r\n"], peer=peer)
    message_id = message.queue_id
    assert await handler.deliver(envelope, message) == message_id
    content = b"Subject: hi\r\n\r\n8-bit \xff\xfe\r\n"
    assert handler.messages == [
        StoredMessage(
            queue_id=message_id,
            envelope=envelope,
            peer=peer,
            trace_headers=TRACE,
            content=content,
        )
    ]
    assert handler.messages[0].data == TRACE + content


async def test_memory_handler_reads_a_spooled_message(spool: MessageFactory) -> None:
    handler = MemoryHandler()
    message = await spool.large(large_chunks())
    await handler.deliver(make_envelope(), message)
    [stored] = handler.messages
    assert stored.content == b"".join(large_chunks())
    assert stored.peer == PEER
    # The content is a copy: the session discarding the spool afterwards loses nothing.
    await message.discard()
    assert stored.content == b"".join(large_chunks())


async def test_memory_handler_keeps_messages_in_delivery_order(spool: MessageFactory) -> None:
    handler = MemoryHandler()
    first = await spool.small([b"one\r\n"], queue_id="Q1")
    second = await spool.small([b"two\r\n"], queue_id="Q2")
    await handler.deliver(make_envelope(), second)
    await handler.deliver(make_envelope(), first)
    assert [(stored.queue_id, stored.content) for stored in handler.messages] == [
        ("Q2", b"two\r\n"),
        ("Q1", b"one\r\n"),
    ]


async def test_wait_for_returns_a_delivered_message_at_once(
    spool: MessageFactory, autojump_clock: trio.testing.MockClock
) -> None:
    handler = MemoryHandler()
    await deliver(handler, spool, "Q1")
    start = trio.current_time()
    stored = await handler.wait_for(timeout=10)
    assert stored.queue_id == "Q1"
    assert trio.current_time() == start  # the autojump clock would have moved had it waited


async def test_wait_for_applies_the_predicate_to_delivered_messages(
    spool: MessageFactory, autojump_clock: trio.testing.MockClock
) -> None:
    handler = MemoryHandler()
    for queue_id in ("Q1", "Q2", "Q3", "Q22"):
        await deliver(handler, spool, queue_id)
    start = trio.current_time()
    # The first match in delivery order.
    assert (await handler.wait_for(lambda m: "2" in m.queue_id, timeout=10)).queue_id == "Q2"
    assert (await handler.wait_for(lambda m: m.content == b"Q3\r\n")).queue_id == "Q3"
    assert trio.current_time() == start


async def test_wait_for_waits_for_a_future_message(
    spool: MessageFactory, autojump_clock: trio.testing.MockClock
) -> None:
    handler = MemoryHandler()
    await deliver(handler, spool, "OLD")
    found: list[StoredMessage] = []

    async def waiter() -> None:
        # The timeout only turns a lost wake-up into a failure (in no wall time, by the
        # autojump clock) instead of a hang.
        found.append(await handler.wait_for(lambda m: m.queue_id.startswith("WANTED"), timeout=60))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert found == []  # nothing matches yet: it waits
        await deliver(handler, spool, "OTHER")
        await trio.testing.wait_all_tasks_blocked()
        assert found == []  # a delivery that does not match keeps it waiting
        await deliver(handler, spool, "WANTED1")
        await deliver(handler, spool, "WANTED2")
    assert [stored.queue_id for stored in found] == ["WANTED1"]
    assert queue_ids(handler) == ["OLD", "OTHER", "WANTED1", "WANTED2"]


async def test_wait_for_a_message_delivered_from_another_task(
    spool: MessageFactory, autojump_clock: trio.testing.MockClock
) -> None:
    handler = MemoryHandler()

    async def sender(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.testing.wait_all_tasks_blocked()  # until the test waits
        await deliver(handler, spool, "Q7")

    async with trio.open_nursery() as nursery:
        await nursery.start(sender)
        stored = await handler.wait_for(timeout=60)
    assert stored.queue_id == "Q7"


async def test_every_waiter_wakes(
    spool: MessageFactory, autojump_clock: trio.testing.MockClock
) -> None:
    handler = MemoryHandler()
    found: list[str] = []

    async def waiter() -> None:
        found.append((await handler.wait_for(timeout=60)).queue_id)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        await deliver(handler, spool, "Q1")
    assert found == ["Q1", "Q1", "Q1"]


async def test_wait_for_times_out(
    spool: MessageFactory, autojump_clock: trio.testing.MockClock
) -> None:
    handler = MemoryHandler()
    await deliver(handler, spool, "Q1")
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await handler.wait_for(lambda m: m.queue_id == "never", timeout=5)
    assert trio.current_time() - start == 5


async def test_wait_for_times_out_with_no_messages_at_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handler = MemoryHandler()
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await handler.wait_for(timeout=30)
    assert trio.current_time() - start == 30


# -- DiscardHandler -----------------------------------------------------------------------------


async def test_discard_handler_returns_the_queue_id_and_keeps_nothing(
    spool: MessageFactory,
) -> None:
    handler = DiscardHandler()
    await handler.prepare()
    for message in (
        await spool.small([b"dropped\r\n"], queue_id="18A2B3C4D5E6F0001"),
        await spool.large(large_chunks(), queue_id="18A2B3C4D5E6F0002"),
    ):
        assert await handler.deliver(make_envelope(), message) == message.queue_id
    assert vars(handler) == {}  # no state at all, so nothing stored
