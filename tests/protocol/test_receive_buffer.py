"""ReceiveBuffer against a plain model: however the bytes are segmented, the lines (status,
content, length), the bytes left for ``take_all`` and the memory held are those of splitting
the whole stream at each LF, with lines over the limit discarded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trimail.protocol.receive_buffer import Line, LineStatus, ReceiveBuffer

MAX_LINE = 16


def model_lines(stream: bytes) -> tuple[list[Line], bytes]:
    """Every complete line of ``stream``, and the bytes after the last LF."""
    lines = []
    *complete, rest = stream.split(b"\n")
    for raw in complete:
        length = len(raw) + 1
        if length > MAX_LINE:
            lines.append(Line(LineStatus.TOO_LONG, b"", length))
        elif not raw.endswith(b"\r"):
            lines.append(Line(LineStatus.BARE_LF, b"", length))
        else:
            lines.append(Line(LineStatus.OK, raw[:-1], length))
    return lines, rest


pieces = st.lists(st.sampled_from([b"a", b"MAIL", b"\r", b"\n", b"\r\n", b"x" * 20]), max_size=30)
streams = pieces.map(b"".join)


@given(streams, st.lists(st.integers(min_value=1, max_value=40), min_size=1))
def test_any_segmentation_gives_the_model_lines(stream: bytes, cuts: list[int]) -> None:
    buffer = ReceiveBuffer(MAX_LINE)
    got: list[Line] = []
    position, index = 0, 0
    while position < len(stream):
        size = cuts[index % len(cuts)]
        buffer.feed(stream[position : position + size])
        position += size
        index += 1
        while (line := buffer.next_line()) is not None:
            got.append(line)
        # Never more than one line's limit (and one segment) of unread bytes held, and nothing
        # of the lines already taken (a session may sit idle for minutes after them).
        assert len(buffer) <= MAX_LINE + size
        assert len(buffer._data) == len(buffer)
    lines, rest = model_lines(stream)
    assert got == lines
    if len(rest) < MAX_LINE and not buffer.discarded:
        assert buffer.take_all() == rest
    else:  # the unfinished line is over the limit: its bytes were dropped as they came
        assert buffer.discarded + len(buffer.take_all()) == len(rest)


def test_take_all_after_some_lines_gives_only_what_is_left() -> None:
    buffer = ReceiveBuffer(MAX_LINE)
    buffer.feed(b"MAIL\r\nDATA\r\nbody")
    assert buffer.next_line() == Line(LineStatus.OK, b"MAIL", 6)
    assert buffer.next_line() == Line(LineStatus.OK, b"DATA", 6)
    assert buffer.next_line() is None
    assert len(buffer) == 4
    assert buffer.take_all() == b"body"
    assert len(buffer) == 0
    buffer.feed(b"QUIT\r\n")
    assert buffer.next_line() == Line(LineStatus.OK, b"QUIT", 6)
