"""Property tests: the core never crashes, always speaks valid replies, and is chunking-blind."""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimail.protocol.events import MessageComplete, MessageData, SessionEnded
from trimail.protocol.limits import ProtocolLimits

from .support import (
    Driver,
    check_against_reference,
    decode,
    new_connection,
    parse_replies,
)

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

REPLY_LINE = re.compile(rb"[2-5]\d\d[ -].*\r\n")

#: Fragments that steer random input into every phase of a session.
SMTP_FRAGMENTS = [
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"MAIL FROM:<> SIZE=100 SMTPUTF8\r\n",
    b"MAIL FROM:<a@example.org> SIZE=99999999\r\n",
    b"RCPT TO:<b@example.org>\r\n",
    "RCPT TO:<j\u00f6rg@example.org>\r\n".encode(),
    b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"EXPN x\r\n",
    b"HELP\r\n",
    b"QUIT\r\n",
    b"\r\n.\r\n",
    b".\r\n",
    b"..",
    b".",
    b"\r\n",
    b"\r",
    b"\n",
    b"\x00",
    b"\xff",
    b"x" * 300,
    b"y" * 700,
    b"z" * 1100,
]

TRANSACTION = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"

_fragment = st.sampled_from(SMTP_FRAGMENTS)
_terminator = st.sampled_from([b"\r\n.\r\n", b".\r\n"])
#: Mostly well-formed fragments, some noise, often starting inside a transaction.
smtp_bytes = st.tuples(
    st.sampled_from([b"", b"EHLO c\r\n", TRANSACTION]),
    st.lists(
        st.one_of(_fragment, _fragment, _fragment, _terminator, st.binary(max_size=24)), max_size=40
    ),
).map(lambda parts: parts[0] + b"".join(parts[1]))

limits_strategy = st.builds(
    ProtocolLimits,
    absurd_line=st.sampled_from([512, 1024, 2048]),
    max_recipients=st.integers(1, 3),
    max_message_size=st.sampled_from([1024, 4096]),
    max_errors=st.sampled_from([1, 3, 25, 25]),
)


@st.composite
def chunked(draw: st.DrawFn, data_strategy: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    """Some bytes and one way of splitting them into non-empty pieces."""
    data = draw(data_strategy)
    if not data:
        return data, []
    cuts = draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12))
    points = sorted({0, len(data), *(cut for cut in cuts if 0 < cut < len(data))})
    return data, [data[a:b] for a, b in itertools.pairwise(points)]


# -- (a) the connection never crashes and always answers with valid reply lines ------------


@SETTINGS
@given(chunked(smtp_bytes), limits_strategy, st.booleans())
def test_arbitrary_input_never_breaks_the_connection(
    case: tuple[bytes, list[bytes]], limits: ProtocolLimits, eof: bool
) -> None:
    data, pieces = case
    drv = Driver(new_connection(limits))

    drv.drain()
    for piece in [*pieces, b""] if eof else pieces:
        if drv.ended is not None:
            break
        drv.feed(piece)
        if drv.ended is None:
            assert len(drv.conn._buffer) <= limits.max_command_line + len(piece)
    out = drv.take_output()
    lines = out.splitlines(keepends=True)
    assert lines, "at least the greeting"
    for line in lines:
        assert REPLY_LINE.fullmatch(line), line
    replies = parse_replies(out)
    assert replies[0].code == 220
    assert drv.conn.errors <= limits.max_errors
    queued = [reply for reply in replies if reply.lines == ("OK: queued as Q",)]
    assert len(queued) == sum(isinstance(event, MessageComplete) for event in drv.events)
    ends = [event for event in drv.events if isinstance(event, SessionEnded)]
    assert len(ends) <= 1
    if eof:
        assert len(ends) == 1
    if ends:
        assert drv.events[-1] == ends[0]
        drv.conn.receive_data(data)
        assert drv.conn.next_event() == ends[0]
        assert drv.conn.data_to_send() == b""


# -- (b) dot-stuffing round trip ----------------------------------------------------------

text_line = st.one_of(
    st.binary(max_size=30).map(lambda line: line.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"", b".", b"..", b"...", b".x", b". ", b"MAIL FROM:<e@x.y>"]),
)


def stuff(lines: list[bytes]) -> bytes:
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


@st.composite
def stuffed_messages(draw: st.DrawFn) -> tuple[bytes, bytes, list[bytes]]:
    lines = draw(st.lists(text_line, max_size=20))
    message = b"".join(line + b"\r\n" for line in lines)
    after = draw(st.sampled_from([b"", b"QUIT\r\n", b"\r\n.\r\n", b"..."]))
    _, pieces = draw(chunked(st.just(stuff(lines) + b".\r\n" + after)))
    return message, after, pieces


@SETTINGS
@given(stuffed_messages())
def test_dot_stuffing_round_trip(case: tuple[bytes, bytes, list[bytes]]) -> None:
    message, after, pieces = case
    result = decode(pieces)
    assert result.complete
    assert result.error is None
    assert result.content == message
    assert result.size == len(message)
    assert result.after == after


@SETTINGS
@given(stuffed_messages())
def test_dot_stuffing_round_trip_through_the_connection(
    case: tuple[bytes, bytes, list[bytes]],
) -> None:
    message, _, pieces = case
    drv = Driver(new_connection(ProtocolLimits(max_message_size=1 << 20)))
    drv.feed(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    drv.feed_all(pieces)
    [complete] = [event for event in drv.events if isinstance(event, MessageComplete)]
    data = b"".join(event.data for event in drv.events if isinstance(event, MessageData))
    assert data == message
    assert complete.size == len(message)


# -- (c) the decoder does not care how its input is chunked ---------------------------------

body_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"\r\n.", b"\r\n.\r\n", b"a", b"\x00"]),
        st.binary(max_size=8),
    ),
    max_size=40,
).map(b"".join)


@SETTINGS
@given(body_bytes, st.data())
def test_decoder_is_independent_of_chunking(data: bytes, draw: st.DataObject) -> None:
    _, pieces = draw.draw(chunked(st.just(data)))
    whole = decode([data] if data else [])
    split = decode(pieces)
    bytewise = decode([data[i : i + 1] for i in range(len(data))])
    assert split.same_outcome() == whole.same_outcome()
    assert bytewise.same_outcome() == whole.same_outcome()
    assert split.chunks == tuple(chunk for chunk in split.chunks if chunk)
    for result in (whole, split, bytewise):
        check_against_reference(result, data, 1 << 40)


@SETTINGS
@given(body_bytes, st.data(), st.integers(0, 64))
def test_decoder_with_a_size_limit(data: bytes, draw: st.DataObject, max_size: int) -> None:
    _, pieces = draw.draw(chunked(st.just(data)))
    for result in (decode([data] if data else [], max_size), decode(pieces, max_size)):
        check_against_reference(result, data, max_size)
        assert len(result.content) <= max_size
