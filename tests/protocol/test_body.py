"""The DATA decoder byte for byte: unstuffing, the terminator, limits and smuggling vectors."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trimail import _extensions
from trimail.protocol import body, replies
from trimail.protocol.body import _DOT_HOPS as DOT_HOPS
from trimail.protocol.body import BodyDecoder, BodyError, has_bare_newline_python
from trimail.protocol.events import (
    MailFromRequest,
    MessageComplete,
    MessageData,
    MessageRejected,
    RcptToRequest,
)
from trimail.protocol.limits import ProtocolLimits

from ..extensions import NOT_BUILT, require_built
from .support import check_against_reference, decode, driver, events_of, splits, unstuff

# -- unstuffing and the terminator ---------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "content"),
    [
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"Subject: hi\r\n\r\nHello.\r\n.\r\n", b"Subject: hi\r\n\r\nHello.\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b".a\r\n.\r\n", b"a\r\n"),
        (b". \r\n.\r\n", b" \r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
        (b"..\r\n..\r\n.\r\n", b".\r\n.\r\n"),
        (b"a.b\r\n.\r\n", b"a.b\r\n"),
        (b"a\r\n .\r\n.\r\n", b"a\r\n .\r\n"),
        (b"a..\r\n.\r\n", b"a..\r\n"),
        (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
        (b"..\r\n", None),
        (b"a\r\n.", None),
        (b"a\r\n.\r", None),
        (b"a\r\n..\r\n", None),
        (b"a\r\n.\r\n" + b"MAIL FROM:<x@example.org>\r\n", b"a\r\n"),
    ],
)
def test_unstuffing_and_terminator(wire: bytes, content: bytes | None) -> None:
    expected = decode([wire])
    if content is None:
        assert not expected.complete
    else:
        assert expected.complete
        assert expected.content == content
        assert expected.size == len(content)
        assert expected.error is None
    for pieces in splits(wire):
        assert decode(pieces).same_outcome() == expected.same_outcome(), pieces


def test_empty_message() -> None:
    decoder = BodyDecoder(1024)
    progress = decoder.feed(b".\r\n")
    assert (progress.chunks, progress.complete, progress.leftover) == ([], True, b"")
    assert (decoder.size, decoder.error) == (0, None)


@pytest.mark.parametrize(
    "after",
    [b"", b"QUIT\r\n", b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n", b".\r\n"],
)
def test_leftover_is_exactly_what_follows_the_terminator(after: bytes) -> None:
    wire = b"line one\r\n..line two\r\n.\r\n" + after
    for pieces in splits(wire):
        result = decode(pieces)
        assert result.complete
        assert result.content == b"line one\r\n.line two\r\n"
        assert result.after == after


def test_incomplete_input_keeps_only_what_is_undecided() -> None:
    decoder = BodyDecoder(1024)
    assert decoder.feed(b"abc\r").chunks == [b"abc"]
    assert decoder.feed(b"\n").chunks == [b"\r\n"]
    progress = decoder.feed(b".")
    assert (progress.chunks, progress.complete) == ([], False)
    progress = decoder.feed(b".x\r")
    assert (progress.chunks, progress.complete) == ([b".x"], False)
    progress = decoder.feed(b"\n.\r\nrest")
    assert (progress.chunks, progress.complete, progress.leftover) == ([b"\r\n"], True, b"rest")
    assert decoder.size == len(b"abc\r\n.x\r\n")


def test_long_lines_are_not_buffered() -> None:
    decoder = BodyDecoder(1 << 30)
    piece = b"x" * 65536
    for _ in range(16):
        progress = decoder.feed(piece)
        assert progress.chunks == [piece]
    assert decoder.feed(b"\r\n.\r\n").complete
    assert decoder.size == 16 * 65536 + 2


TERMINATOR_SPLITS = [
    b"Subject: split\r\n\r\nbody\r\n.\r\n",
    b"..\r\n...\r\n.x\r\n.\r\n",
    b"\r\n.\r\n",
    b"a\r\n\r\n.\r\n",
    b"a\r\r\n.\r\n",
    b"\r\r\n.\r\n",
    b"a\r\n.\r.\r\n.\r\n",
    b"a\r\n.\r\r\n.\r\nleft\r\n",
    b"x\r\n..\r\n.\r\n.\r\n",
]


@pytest.mark.parametrize("wire", TERMINATOR_SPLITS)
def test_terminator_split_at_every_boundary(wire: bytes) -> None:
    expected = decode([wire])
    assert expected.complete
    outcomes = {decode(pieces).same_outcome() for pieces in splits(wire)}
    assert outcomes == {expected.same_outcome()}


# -- the size limit -------------------------------------------------------------------------


def test_message_of_exactly_the_limit_is_accepted() -> None:
    content = b"0123456\r\n"  # 9 octets
    for pieces in splits(content + b".\r\n"):
        result = decode(pieces, max_size=9)
        assert (result.complete, result.error, result.content) == (True, None, content)


def test_stuffed_dots_do_not_count_towards_the_size() -> None:
    result = decode([b"..\r\n..\r\n.\r\n"], max_size=6)
    assert (result.error, result.size, result.content) == (None, 6, b".\r\n.\r\n")


def test_one_octet_over_the_limit_is_too_big() -> None:
    for pieces in splits(b"0123456789\r\n.\r\nNOOP\r\n"):
        result = decode(pieces, max_size=11)
        assert result.complete
        assert result.error is BodyError.TOO_BIG
        assert result.after == b"NOOP\r\n"
        assert result.size == 12
        assert len(result.content) <= 11
        assert b"0123456789\r\n".startswith(result.content)


def test_nothing_is_emitted_after_too_big() -> None:
    decoder = BodyDecoder(100)
    assert decoder.feed(b"a" * 100).chunks == [b"a" * 100]
    assert decoder.error is None
    for piece in (b"b", b"\r\n", b"..\r\n", b"c" * 1000, b"\r\n"):
        assert decoder.feed(piece).chunks == []
        assert decoder.error is BodyError.TOO_BIG
    progress = decoder.feed(b".\r\nafter")
    assert (progress.chunks, progress.complete, progress.leftover) == ([], True, b"after")
    assert decoder.error is BodyError.TOO_BIG


def test_a_feed_that_crosses_the_limit_emits_nothing() -> None:
    decoder = BodyDecoder(100)
    assert decoder.feed(b"a" * 99).chunks == [b"a" * 99]
    assert decoder.feed(b"bb").chunks == []
    assert decoder.error is BodyError.TOO_BIG


def test_error_kind_does_not_depend_on_chunking() -> None:
    wire = b"a" * 20 + b"\n" + b"\r\n.\r\n"
    errors = {decode(pieces, max_size=10).error for pieces in splits(wire)}
    assert len(errors) == 1


# -- smuggling vectors ------------------------------------------------------------------------

HEAD = b"Subject: smuggle\r\n\r\nhello"
SMUGGLED = b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nfake\r\n"
TAIL = b".\r\n"
AFTER = b"NOOP\r\n"

#: (vector, whether it contains a bare CR or LF)
VECTORS = [
    pytest.param(b"\n.\n", True, id="LF.LF"),
    pytest.param(b"\n.\r\n", True, id="LF.CRLF"),
    pytest.param(b"\r\n.\n", True, id="CRLF.LF"),
    pytest.param(b"\r.\r", True, id="CR.CR"),
    pytest.param(b"\r\n.\r", True, id="CRLF.CR"),
    pytest.param(b"\n.\r", True, id="LF.CR"),
    pytest.param(b"\r.\r\n", True, id="CR.CRLF"),
    pytest.param(b"\r.\n", True, id="CR.LF"),
    pytest.param(b"\r\r\n.\r\r\n", True, id="CRCRLF.CRCRLF"),
    pytest.param(b"\r", True, id="bare-CR"),
    pytest.param(b"\n", True, id="bare-LF"),
    pytest.param(b"\n\n.\n\n", True, id="LFLF.LFLF"),
    pytest.param(b"\r\n\x00.\r\n", False, id="CRLF-NUL.CRLF"),
    pytest.param(b"\r\n.\x00\r\n", False, id="CRLF.NUL-CRLF"),
    pytest.param(b"\x00\r\n\x00.\x00\r\n\x00", False, id="NULs-around"),
    pytest.param(b"\r\n..\r\n", False, id="CRLF..CRLF"),
    pytest.param(b"\r\n .\r\n", False, id="CRLF-SP.CRLF"),
    pytest.param(b"\r\n.\t\r\n", False, id="CRLF.TAB-CRLF"),
]


def smuggling_body(vector: bytes) -> bytes:
    return HEAD + vector + SMUGGLED + TAIL


@pytest.mark.parametrize(("vector", "bare"), VECTORS)
def test_smuggling_vector_does_not_end_the_message(vector: bytes, bare: bool) -> None:
    wire = smuggling_body(vector) + AFTER
    for pieces in splits(wire):
        result = decode(pieces)
        assert result.complete
        assert result.after == AFTER, pieces
        assert result.error is (BodyError.BARE_NEWLINE if bare else None)
        expected = unstuff(HEAD + vector + SMUGGLED)
        assert result.size == len(expected)
        if bare:
            assert expected.startswith(result.content)
            assert SMUGGLED not in result.content
        else:
            assert result.content == expected
            assert SMUGGLED in result.content
            assert result.content.endswith(SMUGGLED)


def test_real_terminator_after_a_bare_cr_ends_a_rejected_message() -> None:
    # "<CR><CR><LF>.<CR><LF>" holds a real terminator: the message ends there, rejected.
    wire = b"hello\r\r\n.\r\n" + SMUGGLED
    for pieces in splits(wire):
        result = decode(pieces)
        assert (result.complete, result.error, result.after) == (
            True,
            BodyError.BARE_NEWLINE,
            SMUGGLED,
        )


@pytest.mark.parametrize(("vector", "bare"), VECTORS)
@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_smuggling_through_the_connection(vector: bytes, bare: bool, bytewise: bool) -> None:
    drv = driver(ProtocolLimits(max_message_size=1024))
    drv.feed(b"EHLO client.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\n")
    drv.take_output()
    wire = b"DATA\r\n" + smuggling_body(vector) + AFTER
    pieces = [wire[i : i + 1] for i in range(len(wire))] if bytewise else [wire]
    events = drv.feed_all(pieces)
    out = drv.take_pairs()
    assert events_of(events, MailFromRequest) == []
    assert events_of(events, RcptToRequest) == []
    if bare:
        [rejected] = events_of(events, MessageRejected)
        assert rejected.reply == replies.BARE_NEWLINE_IN_DATA
        assert events_of(events, MessageComplete) == []
        assert out == [(354, None), (550, "5.6.0"), (250, "2.0.0")]
    else:
        [complete] = events_of(events, MessageComplete)
        data = b"".join(event.data for event in events_of(events, MessageData))
        assert complete.size == len(data)
        assert data.endswith(SMUGGLED)
        assert events_of(events, MessageRejected) == []
        assert out == [(354, None), (250, "2.0.0"), (250, "2.0.0")]
    assert drv.conn.errors == 0
    assert drv.ended is None


# -- the chunk-scanning shortcuts -------------------------------------------------------------


def count_bare_newlines(content: bytes) -> bool:
    """The plain definition: every CR and every LF is part of a CRLF pair, or not."""
    pairs = content.count(b"\r\n")
    return content.count(b"\r") != pairs or content.count(b"\n") != pairs


_NEWLINE_PIECES = st.sampled_from(
    [b"\r\n", b"\r\n", b"\r", b"\n", b"\n\r", b"\r\r\n", b"\r\n\n", b"x", b"x" * 40, b"x" * 200]
)


c_has_bare_newline: Callable[[bytes], bool] | None = None
with contextlib.suppress(ImportError):  # installed without a C compiler
    from trimail.protocol._speedups import has_bare_newline as c_has_bare_newline


def _c_check() -> Callable[[bytes], bool]:
    assert c_has_bare_newline is not None
    return c_has_bare_newline


#: Both versions of the check: the C module's (where it was built) and the pure-Python one.
CHECKS = [
    pytest.param(
        _c_check, id="c", marks=pytest.mark.skipif(c_has_bare_newline is None, reason=NOT_BUILT)
    ),
    pytest.param(lambda: has_bare_newline_python, id="python"),
]


def test_the_c_module_is_built_wherever_a_c_compiler_is() -> None:
    require_built(c_has_bare_newline is not None)


def test_the_decoder_uses_the_c_module_unless_it_is_switched_off() -> None:
    in_use = _extensions.ENABLED and c_has_bare_newline is not None
    assert body.ACCELERATED is in_use
    assert body.has_bare_newline is (c_has_bare_newline if in_use else has_bare_newline_python)


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=1000, deadline=None, database=None)
@given(content=st.lists(_NEWLINE_PIECES, max_size=120).map(b"".join))
def test_has_bare_newline_is_the_counting_definition(
    check: Callable[[], Callable[[bytes], bool]], content: bytes
) -> None:
    # Long lines take the replace() branch, short ones the count() branch; pieces of both
    # kinds push the number of CRs just under, at and over the replace() limit.
    assert check()(content) is count_bare_newlines(content)


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=500, deadline=None, database=None)
@given(content=st.binary(max_size=300))
def test_has_bare_newline_on_any_bytes(
    check: Callable[[], Callable[[bytes], bool]], content: bytes
) -> None:
    assert check()(content) is count_bare_newlines(content)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("line", [b"", b"a", b"x" * 30, b"x" * 31, b"x" * 78])
@pytest.mark.parametrize("flaw", [b"", b"\r", b"\n", b"\n\r"])
def test_has_bare_newline_on_both_sides_of_the_line_length_switch(
    check: Callable[[], Callable[[bytes], bool]], line: bytes, flaw: bytes
) -> None:
    # The C loop is vectorized: 500 lines put flaws in its vector body, 1 and 10 in its tail.
    has_bare_newline = check()
    for lines in (1, 10, 500):
        for where in (0, lines // 2, lines):
            parts = [line + b"\r\n"] * lines
            parts.insert(where, flaw)
            content = b"".join(parts)
            assert has_bare_newline(content) is count_bare_newlines(content), (line, flaw)


@pytest.mark.parametrize("check", CHECKS)
def test_has_bare_newline_at_every_offset_of_a_long_body(
    check: Callable[[], Callable[[bytes], bool]],
) -> None:
    # One flaw at each position across several vector widths, and at both ends.
    has_bare_newline = check()
    clean = b"ab\r\n" * 40
    assert has_bare_newline(clean) is False
    for flaw in (b"\r", b"\n"):
        for at in range(len(clean) + 1):
            content = clean[:at] + flaw + clean[at:]
            assert has_bare_newline(content) is count_bare_newlines(content), (flaw, at)


#: Bodies that take each path of ``feed``: many mid-line dots (past the memchr hop budget)
#: before a line-start dot, stuffed dots followed by the terminator or by a cut-short dot, a
#: dot right at a chunk start, and bare newlines among stuffed dots.
MID_LINE_DOTS = b"a." * (DOT_HOPS + 5)
SHORTCUT_BODIES = [
    MID_LINE_DOTS + b"\r\n.\r\n",
    MID_LINE_DOTS + b"\r\n..x" + MID_LINE_DOTS + b"\r\n.\r\nafter",
    b"x\r\n..a\r\n..b\r\n...\r\n.\r\n",
    b"..\r\n..\r\n..\r\n.\r\n..\r\n",
    b"a\r\n..b\r\n.c\r\n.",
    b"a\r\n.b\r\n.\r",
    b"a\r\n.b\r\n\r\n.\r\n",
    b".b\r\n.\n.\r\n.\r\n",
    b"a.\r\n.b\r.c\r\n.\r\nMAIL\r\n",
    b"." * 10 + b"\r\n" + b"." * 10 + b"\r\n.\r\n",
]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("wire", SHORTCUT_BODIES)
def test_shortcuts_at_every_split(
    check: Callable[[], Callable[[bytes], bool]], wire: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(body, "has_bare_newline", check())
    for max_size in (1 << 40, 40):
        for pieces in splits(wire):
            result = decode(pieces, max_size)
            check_against_reference(result, wire, max_size)


_DOTTY_PIECES = st.sampled_from(
    [b".", b"..", b"a.", b"\r\n", b"\r\n.", b"\r\n..", b"\r\n.\r\n", b"\r", b"\n", b"x" * 20]
)


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(_DOTTY_PIECES, max_size=150).map(b"".join), st.data())
def test_dot_heavy_bodies_match_the_reference(wire: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=6)))
    pieces = [wire[a:b] for a, b in itertools.pairwise([0, *cuts, len(wire)]) if a < b]
    for max_size in (1 << 40, 64):
        check_against_reference(decode(pieces, max_size), wire, max_size)
        check_against_reference(decode([wire] if wire else [], max_size), wire, max_size)
