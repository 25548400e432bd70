"""The DATA decoder: dot-unstuffing, a strict <CRLF>.<CRLF> terminator, bare CR/LF detection.

This is the hot path, so each ``feed`` works on the whole chunk with C-level ``bytes`` methods
and a bounded number of Python steps: it never loops per byte, per line or per stuffed dot in
Python. A chunk with no stuffed dot, nothing carried over from the previous chunk and no lone
CR at its end (the common case) is not copied at all: it is handed out as the message data.

Smuggling (CVE-2023-51764 and its family, aiosmtpd CVE-2024-27305) needs two parsers to
disagree about where a message ends. Here the message ends only at <CR><LF>.<CR><LF>, where
the first <CR><LF> may be the one that ended the DATA command. Any bare CR or bare LF anywhere in
the content marks the message as rejected (550 5.6.0, Postfix's
``smtpd_forbid_bare_newline = reject``), but reading continues to the real terminator so the
bytes after a fake ``<LF>.<LF>`` can never become commands or a second message.

Where the time goes (CPython 3.11, 64 KiB of 80-octet lines): ``bytes.find`` of one byte is
``memchr``, about 1 µs; ``find`` or ``count`` of a two- or three-byte pattern is a skip loop
that moves a few bytes per step, 40-90 µs, and ``count`` of one byte is a plain loop, ~30 µs.
So the first line-start dot is looked for by hopping from "." to "." with ``memchr`` (base64
holds no dots at all). Bare newlines are found by a small optional C module in one vectorized
pass, or, installed without a compiler, with single-byte ``replace`` calls (which use
``memchr``) whenever lines are long enough for that to pay (see ``has_bare_newline_python``).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable

import attrs

from .. import _extensions

_CRLF = b"\r\n"
_LINE_START_DOT = b"\r\n."
_DOT_LINE = b"\r\n.\r\n"
#: Mid-line dots one ``feed`` hops over with ``memchr`` before it searches for "<CRLF>."
#: instead: text with a dot in every sentence then costs one plain search plus at most this
#: many Python steps.
_DOT_HOPS = 32
#: ``has_bare_newline`` uses ``replace`` (its cost grows with the number of lines) while the
#: lines are at least about this long on average, and ``count`` (its cost grows with the bytes)
#: for shorter ones; the measured break-even is about 20 octets.
_LONG_LINE = 32


class BodyError(enum.Enum):
    TOO_BIG = "too-big"
    BARE_NEWLINE = "bare-newline"


@attrs.define  # not frozen: a frozen instance costs ~3x as much to make
class BodyProgress:
    """What one ``feed`` produced."""

    #: Unstuffed content, in order; empty once the message is already rejected.
    chunks: list[bytes]
    #: True when the terminator was seen; ``leftover`` then holds the bytes after it.
    complete: bool
    leftover: bytes


def has_bare_newline_python(content: bytes) -> bool:
    """True when ``content`` holds a CR that does not start a CRLF or an LF that does not end one.

    The pure-Python version, used when trimail was installed without its C module (see
    ``has_bare_newline``).

    Deleting every CR and writing every LF back as CRLF gives ``content`` back exactly when
    each CR and each LF belongs to a CRLF pair (every CR of the result comes from an LF and sits
    right in front of it). Both replacements jump from match to match with ``memchr``: cheap per
    byte, but some 10 ns per line, which an attacker's body of empty lines would turn into a
    slowdown. So each replacement stops after ``limit`` matches (one per ``_LONG_LINE`` octets,
    which bounds its cost to about that of one ``count``):

    - if the CRs reach the limit, the lines are short: compare the counts of CR, LF and CRLF,
      whose cost does not depend on the bytes;
    - otherwise every CR is gone, and if the LFs go past the limit the result holds more CRs
      than ``content`` does, so it differs, as it must: there are more LFs than CRs.
    """
    limit = len(content) // _LONG_LINE + 1
    without_cr = content.replace(b"\r", b"", limit)
    if len(content) - len(without_cr) < limit:
        return without_cr.replace(b"\n", _CRLF, limit) != content
    pairs = content.count(_CRLF)
    return content.count(b"\n") != pairs or content.count(b"\r") != pairs


_accelerated: Callable[[bytes], bool] | None = None
if _extensions.ENABLED:
    with contextlib.suppress(ImportError):  # installed without a C compiler
        from ._speedups import has_bare_newline as _accelerated

#: Whether the C module is in use (built, and not switched off: see trimail._extensions). It
#: answers exactly as ``has_bare_newline_python`` does, in one vectorized pass whose cost
#: depends on the length only: ~4 µs per 100 KiB against ~64 for the Python version and ~300
#: for a body of empty lines (the check was 18% of the server's time at 100 KiB messages).
ACCELERATED = _accelerated is not None
#: True when ``content`` holds a CR that does not start a CRLF or an LF that does not end one.
has_bare_newline: Callable[[bytes], bool] = _accelerated or has_bare_newline_python


class BodyDecoder:
    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        #: Bytes not yet decided (a lone trailing CR, or a line-start dot and what follows it).
        self._carry = b""
        #: True when the decided content so far ends a line (or nothing was decided yet), so a
        #: "." at the start of the carry or of the next chunk is at the start of a line.
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
        buf = self._carry + data if self._carry else data
        dot = self._first_line_start_dot(buf)
        if dot == -1:
            # No line-start dot: decide everything except a trailing CR, whose LF may follow.
            return self._incomplete(buf, len(buf) - 1 if buf.endswith(b"\r") else len(buf))
        if len(buf) - dot < 3:
            # Need the two bytes after the dot to know whether this is the terminator.
            return self._incomplete(buf, dot)
        if buf.startswith(_CRLF, dot + 1):
            return self._complete(buf, dot)
        # ``dot`` is stuffed. Every later line-start dot is too, up to the terminator or up to
        # one that the end of ``buf`` cuts short: find those two directly rather than dot by dot.
        terminator = buf.find(_DOT_LINE, dot + 1)
        if terminator != -1:
            return self._complete(buf, terminator + 2, first_stuffed=dot)
        for undecided in (len(buf) - 2, len(buf) - 1):
            if undecided - 2 > dot and buf.startswith(_LINE_START_DOT, undecided - 2):
                return self._incomplete(buf, undecided, first_stuffed=dot)
        end = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        return self._incomplete(buf, end, first_stuffed=dot)

    def _first_line_start_dot(self, buf: bytes) -> int:
        """The index of the first "." in ``buf`` that starts a line, or -1.

        A dot starts a line when CRLF precedes it in ``buf``, or when it is the first byte and
        the content decided before ``buf`` ended a line (decided content never ends in a lone
        CR: a trailing CR is always carried into the next ``buf``).
        """
        if self._at_line_start and buf.startswith(b"."):
            return 0
        search = 0
        for _ in range(_DOT_HOPS):
            dot = buf.find(b".", search)
            if dot == -1 or (dot >= 2 and buf.startswith(_CRLF, dot - 2)):
                return dot
            search = dot + 1
        hit = buf.find(_LINE_START_DOT, max(search - 2, 0))
        return -1 if hit == -1 else hit + 2

    def _incomplete(
        self, buf: bytes, end: int, *, first_stuffed: int | None = None
    ) -> BodyProgress:
        """Decide ``buf[:end]`` and carry the rest into the next ``feed``."""
        chunks = self._decide(buf, end, first_stuffed)
        self._carry = buf[end:]
        if self._carry.startswith(b"."):
            self._at_line_start = True
        elif end:
            self._at_line_start = buf.endswith(_CRLF, 0, end)
        return BodyProgress(chunks, complete=False, leftover=b"")

    def _complete(self, buf: bytes, dot: int, *, first_stuffed: int | None = None) -> BodyProgress:
        """The terminator's dot is ``buf[dot]``: decide what precedes it, hand back what follows."""
        chunks = self._decide(buf, dot, first_stuffed)
        self._carry = b""
        return BodyProgress(chunks, complete=True, leftover=buf[dot + 3 :])

    def _decide(self, buf: bytes, end: int, first_stuffed: int | None) -> list[bytes]:
        """Take ``buf[:end]`` as content, unstuffed: count it, check it, and return it in pieces
        (``[]`` once the message is rejected).

        ``first_stuffed`` is the index of the first line-start dot to drop, if any; every other
        line-start dot after it in ``buf[:end]`` is stuffed too and goes with one ``replace``.
        A dropped dot follows a CRLF, so it never separates a CR from an LF: checking the range
        with its dots for bare newlines is the same as checking the unstuffed content.
        """
        if not end:
            return []
        decided = buf[:end]  # the very same object when the whole buffer is decided
        if not self._bare_newline and has_bare_newline(decided):
            self._bare_newline = True
        if first_stuffed is not None:
            pieces = [
                buf[:first_stuffed],
                buf[first_stuffed + 1 : end].replace(_LINE_START_DOT, _CRLF),
            ]
            self.size += len(pieces[0]) + len(pieces[1])
        else:
            pieces = [decided]
            self.size += end
        if self.size > self._max_size:
            self._too_big = True
        if self._bare_newline or self._too_big:
            return []
        return [piece for piece in pieces if piece]
