"""Reading SMTP replies on the load generator's hot path.

A reply is one or more CRLF lines; every line but the last has ``-`` as its 4th byte, the
last has a space (or ends after the code). So a reply is found by scanning for CRLF and
looking at one byte per line: no regex, no decoding, no per-line objects. The code is taken
from the last line's first three bytes. The buffer is compacted only when more bytes are
needed, so a pipelined batch of replies that arrived in one segment costs one receive.

``received_at`` is the clock reading right after the receive that completed the reply, so
replies that arrive together share a timestamp (what the client could observe).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

#: A reply longer than this is a broken or hostile server, not a slow one.
MAX_REPLY_BYTES = 64 * 1024
RECEIVE_SIZE = 65536

_SPACE = 0x20
_DASH = 0x2D
_ZERO = 0x30


class ReplyError(Exception):
    """The server sent something that is not an SMTP reply; the session is unusable."""


class ConnectionClosedError(Exception):
    """The server closed the connection before a whole reply arrived."""


class ReplyReader:
    """Whole replies from a stream, with the time each one became complete."""

    __slots__ = ("_buffer", "_clock", "_position", "_stream", "received_at")

    def __init__(self, stream: trio.abc.ReceiveStream, clock: Callable[[], int]) -> None:
        self._stream = stream
        self._clock = clock
        self._buffer = bytearray()
        self._position = 0
        self.received_at = 0

    @property
    def pending(self) -> int:
        """Bytes received beyond the replies read so far (must be 0 before a TLS handshake)."""
        return len(self._buffer) - self._position

    async def reply(self) -> int:
        """The next reply's code."""
        while True:
            end = self._find_reply_end()
            if end >= 0:
                return self._take_code(end)
            await self._receive()

    async def reply_lines(self) -> tuple[int, list[bytes]]:
        """The next reply's code and the text of each line (EHLO: not on the hot path)."""
        while True:
            end = self._find_reply_end()
            if end >= 0:
                raw = bytes(self._buffer[self._position : end])
                code = self._take_code(end)
                return code, [line[4:] for line in raw.split(b"\r\n")[:-1]]
            await self._receive()

    def _find_reply_end(self) -> int:
        """The index just past the reply's last CRLF, or -1 if it is not all here yet."""
        buffer = self._buffer
        position = self._position
        while True:
            end = buffer.find(b"\r\n", position)
            if end < 0:
                return -1
            length = end - position
            if length < 3:
                raise ReplyError(f"short reply line {bytes(buffer[position : end + 2])!r}")
            if length == 3 or buffer[position + 3] == _SPACE:
                return end + 2
            if buffer[position + 3] != _DASH:
                raise ReplyError(f"malformed reply line {bytes(buffer[position : end + 2])!r}")
            position = end + 2

    def _take_code(self, end: int) -> int:
        """Consume the reply ending at ``end`` and return the code of its last line."""
        buffer = self._buffer
        # The last line starts after the previous CRLF (or at the reply's start).
        crlf = buffer.rfind(b"\r\n", self._position, end - 2)
        line_start = crlf + 2 if crlf >= 0 else self._position
        first, second, third = buffer[line_start], buffer[line_start + 1], buffer[line_start + 2]
        if not (0x32 <= first <= 0x35 and _ZERO <= second <= 0x39 and _ZERO <= third <= 0x39):
            raise ReplyError(f"bad reply code {bytes(buffer[line_start:end])!r}")
        self._position = end
        return (first - _ZERO) * 100 + (second - _ZERO) * 10 + (third - _ZERO)

    async def _receive(self) -> None:
        if self._position:
            del self._buffer[: self._position]
            self._position = 0
        if len(self._buffer) > MAX_REPLY_BYTES:
            raise ReplyError(f"reply longer than {MAX_REPLY_BYTES} bytes")
        data = await self._stream.receive_some(RECEIVE_SIZE)
        if not data:
            raise ConnectionClosedError("connection closed by the server")
        self.received_at = self._clock()
        self._buffer += data
