"""The command-phase receive buffer: linear line search with a hard cap on line length.

Like h11's ReceiveBuffer it remembers how far it has already searched for LF, so a line that
arrives one byte at a time costs linear time overall. A line longer than the command limit is
never kept: its bytes are dropped as they arrive and only their count is remembered, so a
client sending megabytes without a newline costs at most one limit's worth of memory.
"""

from __future__ import annotations

import enum

import attrs

_CR = 0x0D


class LineStatus(enum.Enum):
    OK = "ok"
    #: The line ended in a bare LF (no CR before it): refused so no CR/LF ambiguity exists.
    BARE_LF = "bare-lf"
    #: The line was longer than the limit; its content was discarded.
    TOO_LONG = "too-long"


@attrs.define  # not frozen: a frozen instance costs ~3x as much to make
class Line:
    status: LineStatus
    #: The line without its terminator; empty when the line was discarded.
    content: bytes
    #: Octets the whole line took on the wire, terminator included (also when discarded), so
    #: the caller's verdict on an absurd line does not depend on how it was segmented.
    length: int


class ReceiveBuffer:
    """Lines are taken by moving a start offset, not by deleting them from the front: the
    bytes already taken are dropped once, when no complete line is left (usually all of
    them: a clear, not a move), or at the next ``feed``. A line costs one copy this way;
    deleting each line from the front moved the rest of the buffer every time and copied the
    line twice (a pipelined MAIL, RCPT, DATA: 7.4 against 9.1 µs)."""

    def __init__(self, max_line: int) -> None:
        self._data = bytearray()
        #: Where the bytes not yet taken begin.
        self._start = 0
        #: Where the search for the next LF goes on (no LF between ``_start`` and here).
        self._searched = 0
        self._max_line = max_line
        #: Octets dropped from the current over-long line so far (0 when not discarding).
        self.discarded = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def feed(self, data: bytes) -> None:
        if self._start:  # fed with lines still unread (the session reads them all first)
            self._drop_taken()
        self._data += data
        if self.discarded or len(self._data) > self._max_line:
            self._drop_overflow()

    def _drop_taken(self) -> None:
        """Forget the bytes of the lines already taken (all of them, usually: a clear)."""
        del self._data[: self._start]
        self._searched -= self._start
        self._start = 0

    def _drop_overflow(self) -> None:
        newline = self._data.find(b"\n", self._searched)
        if newline == -1 and (self.discarded or len(self._data) > self._max_line):
            self.discarded += len(self._data)
            self._data.clear()
            self._searched = 0

    def next_line(self) -> Line | None:
        """The next complete line, or None when more bytes are needed."""
        data = self._data
        newline = data.find(b"\n", self._searched)
        if newline == -1:
            if self._start:  # nothing complete left: drop what was taken (a session may idle)
                self._drop_taken()
            self._searched = len(data)
            return None
        start = self._start
        length = self.discarded + newline + 1 - start
        self.discarded = 0
        self._start = self._searched = newline + 1
        if length > self._max_line:
            return Line(LineStatus.TOO_LONG, b"", length)
        if newline == start or data[newline - 1] != _CR:
            return Line(LineStatus.BARE_LF, b"", length)
        return Line(LineStatus.OK, bytes(data[start : newline - 1]), length)

    def take_all(self) -> bytes:
        """Everything not yet parsed: bytes pipelined after DATA go to the body decoder, bytes
        pipelined after STARTTLS are dropped."""
        rest = bytes(self._data[self._start :])
        self._data.clear()
        self._start = 0
        self._searched = 0
        self.discarded = 0
        return rest
