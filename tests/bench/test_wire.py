"""The reply reader and the message bytes: what the hot path relies on."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from trimail.bench.message import (
    build_message,
    dot_stuff,
    header_size,
    recipient_addresses,
)
from trimail.bench.replies import ConnectionClosedError, ReplyError, ReplyReader

REPLIES = (
    b"220 mx.test ESMTP\r\n"
    b"250-mx.test Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    b"250 2.1.0 OK\r\n"
    b"451 4.3.0 later\r\n"
    b"354\r\n"
)


async def read_all(chunks: list[bytes], count: int) -> list[int]:
    send, receive = trio.testing.memory_stream_one_way_pair()
    ticks = itertools.count(1)
    reader = ReplyReader(receive, lambda: next(ticks))
    for chunk in chunks:
        await send.send_all(chunk)
    await send.aclose()
    return [await reader.reply() for _ in range(count)]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000])
async def test_replies_are_found_however_the_bytes_are_split(size: int) -> None:
    chunks = [REPLIES[i : i + size] for i in range(0, len(REPLIES), size)]
    assert await read_all(chunks, 5) == [220, 250, 250, 451, 354]


async def test_multiline_reply_lines_are_returned_for_ehlo() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = ReplyReader(receive, lambda: 42)
    await send.send_all(REPLIES[19:])
    code, lines = await reader.reply_lines()
    assert code == 250
    assert lines == [b"mx.test Hello", b"PIPELINING", b"SIZE 1000"]
    assert reader.received_at == 42
    assert reader.pending == len(REPLIES) - 19 - len(
        b"250-mx.test Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"
    )


async def test_replies_that_arrive_together_share_a_timestamp() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    ticks = itertools.count(1)
    reader = ReplyReader(receive, lambda: next(ticks))
    await send.send_all(b"250 a\r\n250 b\r\n")
    assert await reader.reply() == 250
    first = reader.received_at
    assert await reader.reply() == 250
    assert reader.received_at == first
    await send.send_all(b"250 c\r\n")
    assert await reader.reply() == 250
    assert reader.received_at > first


@pytest.mark.parametrize(
    "garbage",
    [b"HTTP/1.1 400 Bad\r\n", b"25\r\n", b"250x\r\n", b"099 no\r\n", b"650 no\r\n"],
)
async def test_what_is_not_a_reply_is_an_error(garbage: bytes) -> None:
    with pytest.raises(ReplyError):
        await read_all([garbage], 1)


async def test_eof_mid_reply_is_a_closed_connection() -> None:
    with pytest.raises(ConnectionClosedError):
        await read_all([b"250-partial\r\n250 "], 1)


async def test_an_endless_reply_is_cut_off() -> None:
    with pytest.raises(ReplyError):
        await read_all([b"250-" + b"x" * 100 + b"\r\n"] * 1000, 1)


def test_message_has_exactly_the_size_asked_and_only_crlf_lines() -> None:
    smallest = header_size("a@example.org", "b@example.com")
    for size in range(smallest, smallest + 200):
        message = build_message(size, "a@example.org", "b@example.com")
        assert len(message) == size
        assert message.endswith(b"\r\n")
        assert b"\n" not in message.replace(b"\r\n", b"")
        assert b"\r" not in message.replace(b"\r\n", b"")
    with pytest.raises(ValueError, match="below"):
        build_message(smallest - 1, "a@example.org", "b@example.com")


def test_dot_stuffing_and_terminator() -> None:
    assert dot_stuff(b".a\r\nb\r\n.\r\n..c\r\n") == b"..a\r\nb\r\n..\r\n...c\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"
    with pytest.raises(ValueError, match="CRLF"):
        dot_stuff(b"no newline")


def test_recipients_are_distinct() -> None:
    assert recipient_addresses("bob@example.com", 1) == ("bob@example.com",)
    assert recipient_addresses("bob@example.com", 3) == (
        "bob@example.com",
        "bob+2@example.com",
        "bob+3@example.com",
    )
    assert recipient_addresses('"a b"@example.com', 2) == ('"a b"@example.com',) * 2
