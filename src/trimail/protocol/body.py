"""The DATA decoder: dot-unstuffing, a strict <CRLF>.<CRLF> terminator, bare CR/LF detection.

This is the hot path, so it works on whole chunks with ``bytes.find`` and ``bytes.count`` and
never loops per byte or per line in Python; a chunk is copied once into the output slices.

Smuggling (CVE-2023-51764 and its family, aiosmtpd CVE-2024-27305) needs two parsers to
disagree about where a message ends. Here the message ends only at <CR><LF>.<CR><LF>, where
the first <CR><LF> may be the one that ended the DATA command. Any bare CR or bare LF anywhere in
the content marks the message as rejected (550 5.6.0, Postfix's
``smtpd_forbid_bare_newline = reject``), but reading continues to the real terminator so the
bytes after a fake ``<LF>.<LF>`` can never become commands or a second message.
"""

from __future__ import annotations

import enum

import attrs

_CRLF = b"\r\n"
_LINE_START_DOT = b"\r\n."


class BodyError(enum.Enum):
    TOO_BIG = "too-big"
    BARE_NEWLINE = "bare-newline"


@attrs.frozen
class BodyProgress:
    """What one ``feed`` produced."""

    #: Unstuffed content, in order; empty once the message is already rejected.
    chunks: list[bytes]
    #: True when the terminator was seen; ``leftover`` then holds the bytes after it.
    complete: bool
    leftover: bytes


class BodyDecoder:
    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        #: Bytes not yet decided (a lone trailing CR, or a line-start dot and what follows it).
        self._carry = b""
        #: True when the decided content so far ends a line (or nothing was decided yet), so a
        #: "." at the start of the carry is at the start of a line.
        self._at_line_start = True
        self.size = 0
        self._too_big = False
        self._bare_newline = False

    @property
    def error(self) -> BodyError | None:
        """Why the message is rejected, if it is.

        Both conditions are tracked over the whole body and a bare newline always wins, so the
        answer never depends on how TCP happened to split the body into chunks.
        """
        if self._bare_newline:
            return BodyError.BARE_NEWLINE
        if self._too_big:
            return BodyError.TOO_BIG
        return None

    def feed(self, data: bytes) -> BodyProgress:
        # A virtual CRLF in front of a line start lets one search pattern find both the
        # terminator and stuffed dots, including at the very start of the body.
        prefix = _CRLF if self._at_line_start else b""
        buf = prefix + self._carry + data
        start = len(prefix)  # first byte not yet decided
        out: list[bytes] = []
        search = 0
        while True:
            hit = buf.find(_LINE_START_DOT, search)
            if hit == -1:
                break
            dot = hit + 2
            if len(buf) - dot < 3:
                # Need the two bytes after the dot to know whether this is the terminator.
                self._decide(buf, start, dot, out)
                self._carry = buf[dot:]
                self._at_line_start = True
                return BodyProgress(self._accepted(out), complete=False, leftover=b"")
            if buf[dot + 1 : dot + 3] == _CRLF:
                self._decide(buf, start, dot, out)
                self._carry = b""
                return BodyProgress(self._accepted(out), complete=True, leftover=buf[dot + 3 :])
            # A stuffed dot: keep the line up to the dot, drop the dot itself.
            self._decide(buf, start, dot, out)
            start = dot + 1
            search = dot + 1
        # No more line-start dots: decide everything except a trailing CR, whose LF may follow.
        end = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        self._decide(buf, start, end, out)
        self._carry = buf[end:]
        self._at_line_start = buf.endswith(_CRLF, 0, end)
        return BodyProgress(self._accepted(out), complete=False, leftover=b"")

    def _decide(self, buf: bytes, start: int, end: int, out: list[bytes]) -> None:
        if end <= start:
            return
        crlf = buf.count(_CRLF, start, end)
        if buf.count(b"\n", start, end) != crlf or buf.count(b"\r", start, end) != crlf:
            self._bare_newline = True
        self.size += end - start
        if self.size > self._max_size:
            self._too_big = True
        if not (self._bare_newline or self._too_big):
            out.append(buf[start:end])

    def _accepted(self, out: list[bytes]) -> list[bytes]:
        return out if not (self._bare_newline or self._too_big) else []
