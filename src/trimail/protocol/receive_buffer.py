"""The command-phase receive buffer: linear line search with a hard cap on line length.

Like h11's ReceiveBuffer it remembers how far it has already searched for LF, so a line that
arrives one byte at a time costs linear time overall. A line longer than the command limit is
never kept: its bytes are dropped as they arrive and only their count is remembered, so a
client sending megabytes without a newline costs at most one limit's worth of memory.
"""

from __future__ import annotations

import enum

import attrs


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
    def __init__(self, max_line: int) -> None:
        self._data = bytearray()
        self._searched = 0
        self._max_line = max_line
        #: Octets dropped from the current over-long line so far (0 when not discarding).
        self.discarded = 0

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes) -> None:
        self._data += data
        if self.discarded or len(self._data) > self._max_line:
            self._drop_overflow()

    def _drop_overflow(self) -> None:
        newline = self._data.find(b"\n", self._searched)
        if newline == -1 and (self.discarded or len(self._data) > self._max_line):
            self.discarded += len(self._data)
            self._data.clear()
            self._searched = 0

    def next_line(self) -> Line | None:
        """The next complete line, or None when more bytes are needed."""
        newline = self._data.find(b"\n", self._searched)
        if newline == -1:
            self._searched = len(self._data)
            return None
        length = self.discarded + newline + 1
        self.discarded = 0
        self._searched = 0
        if length > self._max_line:
            del self._data[: newline + 1]
            return Line(LineStatus.TOO_LONG, b"", length)
        line = bytes(self._data[:newline])
        del self._data[: newline + 1]
        if not line.endswith(b"\r"):
            return Line(LineStatus.BARE_LF, b"", length)
        return Line(LineStatus.OK, line[:-1], length)

    def take_all(self) -> bytes:
        """Everything not yet parsed: bytes pipelined after DATA go to the body decoder, bytes
        pipelined after STARTTLS are dropped."""
        rest = bytes(self._data)
        self._data.clear()
        self._searched = 0
        self.discarded = 0
        return rest
