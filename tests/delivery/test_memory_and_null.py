"""MemoryBackend keeps what was committed; DiscardBackend keeps nothing but still answers."""

from __future__ import annotations

from trimail.delivery.memory import MemoryBackend, StoredMessage
from trimail.delivery.null import DiscardBackend

from .messages import TRACE, make_envelope, make_message


async def test_memory_backend_stores_content_and_trace_headers_separately() -> None:
    backend = MemoryBackend()
    await backend.prepare()
    message = make_message(queue_id="Q1")
    spool = backend.begin(message)
    await spool.write(b"Subject: hi\r\n\r\n")
    await spool.write(b"8-bit \xff\xfe\r\n")
    receipt = await spool.commit()
    assert receipt == "Q1"
    assert backend.messages == [
        StoredMessage(
            queue_id="Q1",
            envelope=make_envelope(),
            trace_headers=TRACE,
            content=b"Subject: hi\r\n\r\n8-bit \xff\xfe\r\n",
        )
    ]
    assert backend.messages[0].data == TRACE + b"Subject: hi\r\n\r\n8-bit \xff\xfe\r\n"


async def test_memory_backend_keeps_messages_in_commit_order() -> None:
    backend = MemoryBackend()
    first, second = backend.begin(make_message("Q1")), backend.begin(make_message("Q2"))
    await first.write(b"one\r\n")
    await second.write(b"two\r\n")
    await second.commit()
    await first.commit()
    assert [(stored.queue_id, stored.content) for stored in backend.messages] == [
        ("Q2", b"two\r\n"),
        ("Q1", b"one\r\n"),
    ]


async def test_memory_backend_abort_stores_nothing() -> None:
    backend = MemoryBackend()
    spool = backend.begin(make_message())
    await spool.write(b"never stored\r\n")
    await spool.abort()
    await spool.abort()  # safe to call twice
    assert backend.messages == []


async def test_discard_backend_commit_returns_the_queue_id() -> None:
    backend = DiscardBackend()
    await backend.prepare()
    spool = backend.begin(make_message(queue_id="18A2B3C4D5E6F0001"))
    await spool.write(b"dropped\r\n")
    assert await spool.commit() == "18A2B3C4D5E6F0001"


async def test_discard_backend_abort_is_harmless() -> None:
    spool = DiscardBackend().begin(make_message(queue_id="Q9"))
    await spool.write(b"dropped\r\n")
    await spool.abort()
    await spool.abort()
    # A spool that was aborted is simply gone; a fresh one still works.
    assert await DiscardBackend().begin(make_message(queue_id="Q10")).commit() == "Q10"
