"""Message: small content stays in memory, large content spills to a private file; either way
the handler reads back exactly the bytes written, and discard() leaves nothing behind."""

from __future__ import annotations

import errno
import os
import stat
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import trimail.delivery.message as message_module
from trimail.delivery.message import Message
from trimail.delivery.null import DiscardHandler
from trimail.protocol.body import BodyDecoder
from trimail.protocol.envelope import Envelope
from trimail.protocol.esmtp_params import MailParams

from .messages import PEER, QUEUE_ID, SPILL_THRESHOLD, TRACE, MessageFactory, large_chunks


def spool_files(spool: MessageFactory) -> list[str]:
    return sorted(os.listdir(spool.spool_directory))


def held_in_memory(message: Message) -> int:
    """Bytes of content the message holds in memory right now.

    Private access on purpose: no public API reveals how much of a message sits in memory, and
    bounding that (by the spill threshold) is the whole point of spilling.
    """
    return message._in_memory


def spooled_file(message: Message) -> Path | None:
    """``message.spooled_file``, read afresh (mypy would keep an earlier narrowing to None)."""
    return message.spooled_file


async def collect(message: Message) -> list[bytes]:
    return [chunk async for chunk in message.chunks()]


async def test_small_message_stays_in_memory(spool: MessageFactory) -> None:
    chunks = [b"Subject: hi\r\n\r\n", b"8-bit \xff\xfe NUL \x00\r\n", b"", b"end\r\n"]
    message = spool.new()
    for chunk in chunks:
        await message.write(chunk)
    await message.seal()
    assert message.spooled_file is None
    assert spool_files(spool) == []
    assert b"".join(await collect(message)) == b"".join(chunks)
    assert await message.read() == b"".join(chunks)
    assert message.size == sum(map(len, chunks))


async def test_the_message_keeps_what_the_session_gave_it(spool: MessageFactory) -> None:
    message = await spool.build([b"body\r\n"], queue_id="Q42", trace=b"X-Trace: 1\r\n")
    assert message.queue_id == "Q42"
    assert message.peer == PEER
    assert message.trace_headers == b"X-Trace: 1\r\n"
    # The trace headers are the handler's to prepend: they are neither content nor size.
    assert await message.read() == b"body\r\n"
    assert message.size == len(b"body\r\n")


async def test_empty_message(spool: MessageFactory) -> None:
    message = await spool.build()
    assert message.size == 0
    assert message.spooled_file is None
    assert await collect(message) == []
    assert await message.read() == b""


async def test_content_just_below_the_threshold_stays_in_memory(spool: MessageFactory) -> None:
    message = spool.new()
    await message.write(b"a" * (SPILL_THRESHOLD - 1))
    assert message.spooled_file is None
    await message.seal()
    assert message.spooled_file is None
    assert spool_files(spool) == []


@pytest.mark.parametrize(
    "sizes",
    [
        [SPILL_THRESHOLD - 1, 1, 5],  # the second write reaches the threshold, the third not
        [SPILL_THRESHOLD, SPILL_THRESHOLD - 1, 1],  # spilled already: each refill reaches it
        [10, 20, 0, SPILL_THRESHOLD * 2],
    ],
)
async def test_write_in_memory_takes_exactly_the_writes_that_need_no_checkpoint(
    spool: MessageFactory, sizes: list[int]
) -> None:
    # The session appends content with write_in_memory (no coroutine) and awaits write only
    # when that declines: the content must come out the same, spilled exactly when write alone
    # would spill it.
    message, plain = spool.new(), spool.new()
    for index, size in enumerate(sizes):
        data = bytes([65 + index]) * size
        await plain.write(data)
        reaches_disk = size > 0 and held_in_memory(message) + size >= SPILL_THRESHOLD
        if message.write_in_memory(data):
            assert not reaches_disk
        else:
            assert reaches_disk
            await message.write(data)
    assert message.size == plain.size == sum(sizes)
    assert (message.spooled_file is not None) == (sum(sizes) >= SPILL_THRESHOLD)
    assert await message.read() == await plain.read()
    await message.discard()
    await plain.discard()


async def test_reaching_the_threshold_spills_to_a_private_file(spool: MessageFactory) -> None:
    message = spool.new()
    await message.write(b"a" * (SPILL_THRESHOLD - 1))
    assert message.spooled_file is None
    await message.write(b"b")  # exactly the threshold now
    path = spooled_file(message)
    assert path is not None
    assert path.parent == spool.spool_directory
    assert spool_files(spool) == [path.name]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == b"a" * (SPILL_THRESHOLD - 1) + b"b"
    assert held_in_memory(message) == 0


async def test_spilled_message_reads_back_exactly_after_seal(spool: MessageFactory) -> None:
    # Lines of varied length and every byte value, so misordering or loss cannot hide.
    chunks = [bytes(range(256)) * (number % 7) + b"%d\r\n" % number for number in range(200)]
    expected = b"".join(chunks)
    message = spool.new()
    for chunk in chunks:
        await message.write(chunk)
    await message.seal()
    path = message.spooled_file
    assert path is not None
    assert path.read_bytes() == expected  # seal() wrote out the buffered tail
    assert held_in_memory(message) == 0
    assert b"".join(await collect(message)) == expected
    assert await message.read() == expected
    assert message.size == len(expected)
    # Reading does not consume: a second reader sees it all again.
    assert await message.read() == expected


async def test_spilled_message_larger_than_one_read_chunk(
    spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_module, "READ_CHUNK", 1000)
    expected = b"".join(large_chunks(100))  # 10 100 bytes: ten full reads and a short one
    message = await spool.large(large_chunks(100))
    pieces = await collect(message)
    assert [len(piece) for piece in pieces] == [1000] * 10 + [100]
    assert b"".join(pieces) == expected


@pytest.mark.parametrize("chunk_size", [1, 100, 1023, 1024, 1025, 5000])
async def test_memory_held_is_bounded_by_the_threshold(
    spool: MessageFactory, chunk_size: int
) -> None:
    """After every write, less than one threshold of content stays in memory, and memory
    plus the file always hold every byte written so far."""
    content = bytes(number % 251 for number in range(6 * SPILL_THRESHOLD + 17))
    message = spool.new()
    for start in range(0, len(content), chunk_size):
        await message.write(content[start : start + chunk_size])
        assert held_in_memory(message) < SPILL_THRESHOLD
        on_disk = message.spooled_file.stat().st_size if message.spooled_file else 0
        assert (
            on_disk + held_in_memory(message)
            == message.size
            == start + len(content[start : start + chunk_size])
        )
    await message.seal()
    assert await message.read() == content


async def test_memory_held_before_spilling_is_bounded_for_tiny_chunks(
    spool: MessageFactory,
) -> None:
    threshold = 64 * 1024
    message = Message(
        queue_id=QUEUE_ID,
        peer=PEER,
        trace_headers=TRACE,
        spool_directory=spool.spool_directory,
        spill_threshold=threshold,
    )
    decoder = BodyDecoder(max_size=10 * threshold)
    # What a client sending lines of ".." produces: 4 KiB reads, each decoded into 1024
    # distinct 3-byte chunks (".\r\n"), each handed to Message.write as the session does.
    reads = 20  # 60 KiB of content: still below the threshold
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(reads):
            for chunk in decoder.feed(b"..\r\n" * 1024).chunks:
                await message.write(chunk)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert message.size == reads * 1024 * 3
    assert message.spooled_file is None
    assert held <= 2 * threshold, f"{held} bytes held for {message.size} bytes of content"


async def test_discard_removes_the_spool_file_and_is_safe_twice(spool: MessageFactory) -> None:
    message = await spool.large(large_chunks())
    path = message.spooled_file
    assert path is not None
    assert path.exists()
    await message.discard()
    assert not path.exists()
    assert message.spooled_file is None
    assert spool_files(spool) == []
    await message.discard()
    assert spool_files(spool) == []


async def test_discard_of_a_message_in_memory(spool: MessageFactory) -> None:
    message = await spool.small([b"body\r\n"])
    await message.discard()
    await message.discard()
    assert await message.read() == b""
    assert spool_files(spool) == []


async def test_discard_closes_the_spool_file_descriptor(spool: MessageFactory) -> None:
    message = await spool.large(large_chunks())
    # Private access: the descriptor is not exposed, and leaking one per large message would
    # exhaust a long-running server.
    fd = message._fd
    assert fd is not None
    os.fstat(fd)
    await message.discard()
    with pytest.raises(OSError) as caught:
        os.fstat(fd)
    assert caught.value.errno == errno.EBADF


def _disk_full(fd: int, data: bytes | memoryview) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_failed_first_spill_raises_and_discard_cleans_up(
    spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = spool.new()
    monkeypatch.setattr("trimail.delivery.message.os.write", _disk_full)
    with pytest.raises(OSError, match="No space left") as caught:
        for chunk in large_chunks():
            await message.write(chunk)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert len(spool_files(spool)) == 1  # created, then the write failed
    await message.discard()
    assert spool_files(spool) == []
    await message.discard()
    assert spool_files(spool) == []


async def test_failed_later_spill_after_a_short_write_then_discard(
    spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up midway: the file already holds a spill and half of the next."""
    message = spool.new()
    for chunk in large_chunks(11):  # one spill of 1111 bytes
        await message.write(chunk)
    assert message.spooled_file is not None
    real_write = os.write
    calls = 0

    def fills_up(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, data[: len(data) // 2])  # a short write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("trimail.delivery.message.os.write", fills_up)
    with pytest.raises(OSError, match="No space left"):
        for chunk in large_chunks(20):
            await message.write(chunk)
    monkeypatch.undo()
    assert calls == 2
    await message.discard()
    assert spool_files(spool) == []
    await message.discard()


async def test_failed_seal_then_discard(
    spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = spool.new()
    for chunk in large_chunks(15):  # a spill, then 404 bytes still in memory
        await message.write(chunk)
    assert held_in_memory(message) > 0
    monkeypatch.setattr("trimail.delivery.message.os.write", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        await message.seal()
    monkeypatch.undo()
    await message.discard()
    assert spool_files(spool) == []


async def test_missing_spool_directory_fails_the_write(tmp_path: Path) -> None:
    message = Message(
        queue_id=QUEUE_ID,
        peer=PEER,
        trace_headers=TRACE,
        spool_directory=tmp_path / "gone",
        spill_threshold=SPILL_THRESHOLD,
    )
    with pytest.raises(FileNotFoundError):
        await message.write(b"x" * SPILL_THRESHOLD)
    assert message.spooled_file is None
    await message.discard()  # nothing to remove, and no error
    assert not (tmp_path / "gone").exists()


def test_trace_headers_given_as_a_function_are_rendered_once_on_first_use() -> None:
    renders: list[int] = []

    def render() -> bytes:
        renders.append(1)
        return TRACE

    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=render)
    assert renders == []  # a handler that never asks (discard) never pays for them
    assert message.trace_headers == TRACE
    assert message.trace_headers == TRACE
    assert renders == [1]


async def test_the_discard_handler_never_renders_trace_headers() -> None:
    def render() -> bytes:
        raise AssertionError("rendered")

    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=render)
    await message.write(b"body\r\n")
    await message.seal()
    envelope = Envelope(
        client_name="c.test", extended=True, sender=None, recipients=(), params=MailParams()
    )
    assert await DiscardHandler().deliver(envelope, message) == QUEUE_ID


def test_a_handler_may_put_its_own_lines_in_front_of_the_trace_headers() -> None:
    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=lambda: TRACE)
    message.trace_headers = b"X-Scanned: yes\r\n" + message.trace_headers
    assert message.trace_headers == b"X-Scanned: yes\r\n" + TRACE


@given(
    st.lists(
        st.one_of(st.binary(max_size=100), st.binary(min_size=2000, max_size=3000)), max_size=30
    )
)
@example([b"small", b"x" * 2100, b"again small", b"y" * 2048, b""])
async def test_content_comes_back_in_order_however_it_was_pieced(pieces: list[bytes]) -> None:
    # Pieces of 2048 octets or more are kept as given, shorter ones gathered in buffers; the
    # order must survive every mix of the two.
    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=TRACE)
    for piece in pieces:
        await message.write(piece)
    whole = b"".join(pieces)
    assert message.size == len(whole)
    assert await message.read() == whole
    assert b"".join(await collect(message)) == whole


async def test_a_large_piece_is_kept_as_given_not_copied() -> None:
    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=TRACE)
    piece = b"x" * 64 * 1024
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await message.write(piece)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1024, f"{held} bytes allocated to keep a 64 KiB piece"
    assert await message.read() == piece


async def test_a_message_in_memory_is_handed_out_in_one_chunk() -> None:
    # A handler that writes each chunk somewhere (examples/custom_spool.py) pays per chunk.
    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=TRACE)
    for index in range(700):  # ~1 MiB arriving as 1448-octet reads, below the threshold
        await message.write(bytes([index % 256]) * 1448)
    assert len(await collect(message)) == 1


async def test_alternating_tiny_and_kept_pieces_cost_little_over_their_content() -> None:
    # The worst case for the pieces kept by reference: each tiny piece after one of them
    # starts a new buffer, and the kept pieces are as short as kept pieces get. (Pieces built
    # at run time: a constant expression would be one shared object tracemalloc never sees.)
    kept = message_module._SMALL_PIECE
    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=TRACE)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(400):
            await message.write(bytes([65 + index % 26]))
            await message.write(bytes([66]) * kept)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= 1.08 * message.size, f"{held} bytes held for {message.size} of content"


async def test_an_empty_write_adds_nothing() -> None:
    message = Message(queue_id=QUEUE_ID, peer=PEER, trace_headers=TRACE)
    await message.write(b"")
    assert (message.size, await collect(message)) == (0, [])
