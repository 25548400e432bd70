"""Shared helpers for the sans-I/O core tests: drive a ServerConnection and read its replies."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

import attrs

from trimail.protocol.body import BodyDecoder, BodyError
from trimail.protocol.connection import ServerConnection
from trimail.protocol.events import (
    NEED_DATA,
    Event,
    MailFromRequest,
    MessageComplete,
    NeedData,
    RcptToRequest,
    SessionEnded,
    TlsUpgradeRequested,
)
from trimail.protocol.limits import ProtocolLimits

HOSTNAME = "mx.test"

T = TypeVar("T")

#: Any number of reply lines as trimail writes them: code, separator, text, CRLF.
_REPLY_STREAM = re.compile(rb"(?:[2-5]\d\d[ -][^\r\n]*\r\n)*")


@attrs.frozen
class WireReply:
    """A reply parsed back from the wire: code, enhanced status (or None) and text lines."""

    code: int
    status: str | None
    lines: tuple[str, ...]

    @property
    def pair(self) -> tuple[int, str | None]:
        return self.code, self.status


def parse_replies(data: bytes) -> list[WireReply]:
    """Split the server's output into replies, checking the line syntax on the way."""
    assert _REPLY_STREAM.fullmatch(data), data
    replies: list[WireReply] = []
    code: int | None = None
    lines: list[str] = []
    for raw in data.split(b"\r\n")[:-1]:
        line_code = int(raw[:3])
        assert code is None or code == line_code, data
        code = line_code
        lines.append(raw[4:].decode("utf-8"))
        if raw[3:4] == b" ":
            replies.append(_wire_reply(code, lines))
            code, lines = None, []
    assert code is None, f"unterminated multi-line reply in {data!r}"
    return replies


def _wire_reply(code: int, lines: list[str]) -> WireReply:
    match = re.match(r"([245]\.\d{1,3}\.\d{1,3}) ", lines[-1])
    if match is None or code == 354:
        return WireReply(code, None, tuple(lines))
    status = match[1]
    return WireReply(code, status, tuple(line.removeprefix(f"{status} ") for line in lines))


def pairs(data: bytes) -> list[tuple[int, str | None]]:
    """(code, enhanced status) for every reply in ``data``."""
    return [reply.pair for reply in parse_replies(data)]


def new_connection(
    limits: ProtocolLimits | None = None,
    *,
    greet: bool = True,
    tls_available: bool = False,
    require_tls: bool = False,
) -> ServerConnection:
    conn = ServerConnection(
        hostname=HOSTNAME, limits=limits, tls_available=tls_available, require_tls=require_tls
    )
    if greet:
        conn.greet()
    return conn


@attrs.define
class Driver:
    """Feeds bytes and answers every decision the way an accepting shell would."""

    conn: ServerConnection
    queue_id: str = "Q"
    events: list[Event] = attrs.Factory(list)
    output: bytearray = attrs.Factory(bytearray)

    @property
    def ended(self) -> SessionEnded | None:
        last = self.events[-1] if self.events else None
        return last if isinstance(last, SessionEnded) else None

    def feed(self, data: bytes) -> list[Event]:
        """Feed ``data`` (``b""`` is end of file) and drain events; return the new ones."""
        self.conn.receive_data(data)
        return self.drain()

    def feed_all(self, chunks: Iterable[bytes]) -> list[Event]:
        new: list[Event] = []
        for chunk in chunks:
            new += self.feed(chunk)
            if self.ended is not None:
                break
        return new

    def drain(self) -> list[Event]:
        new: list[Event] = []
        while True:
            event = self.conn.next_event()
            if isinstance(event, NeedData):
                if event is NEED_DATA:
                    break
                self.output += self.conn.data_to_send()  # NEED_SEND: send, then go on
                continue
            new.append(event)
            self.events.append(event)
            match event:
                case MailFromRequest() | RcptToRequest():
                    self.conn.accept()
                case MessageComplete():
                    self.conn.accept_message(self.queue_id)
                case SessionEnded() | TlsUpgradeRequested():
                    # The handshake is the shell's job; a test calls tls_started() itself.
                    break
                case _:
                    pass
        self.output += self.conn.data_to_send()
        return new

    def take_output(self) -> bytes:
        out = bytes(self.output)
        self.output.clear()
        return out

    def take_pairs(self) -> list[tuple[int, str | None]]:
        return pairs(self.take_output())


def driver(
    limits: ProtocolLimits | None = None,
    *,
    greet: bool = True,
    tls_available: bool = False,
    require_tls: bool = False,
) -> Driver:
    drv = Driver(
        new_connection(limits, greet=greet, tls_available=tls_available, require_tls=require_tls)
    )
    drv.output += drv.conn.data_to_send()
    return drv


def events_of(events: Iterable[object], kind: type[T]) -> list[T]:
    return [event for event in events if isinstance(event, kind)]


def splits(data: bytes) -> Iterable[list[bytes]]:
    """``data`` whole, split in two at every index, and byte by byte."""
    yield [data]
    for index in range(1, len(data)):
        yield [data[:index], data[index:]]
    yield [data[index : index + 1] for index in range(len(data))]


@attrs.frozen
class Decoded:
    """Everything a BodyDecoder produced for one input, however it was chunked."""

    chunks: tuple[bytes, ...]
    complete: bool
    #: The decoder's leftover plus any chunks that were never fed (they follow the terminator).
    after: bytes
    error: BodyError | None
    size: int

    @property
    def content(self) -> bytes:
        return b"".join(self.chunks)

    def same_outcome(self) -> tuple[bytes | None, bool, bytes, BodyError | None, int]:
        """The chunking-independent part: content, completion, what follows, error, size.

        The content of a rejected message is left out: what was emitted before the decoder saw
        the problem depends on the chunking, and the shell throws it away anyway.
        """
        content = self.content if self.error is None else None
        return content, self.complete, self.after, self.error, self.size


def unstuff(wire: bytes) -> bytes:
    """Reference unstuffing of message content (without its terminator)."""
    return (b"\r\n" + wire).replace(b"\r\n.", b"\r\n")[2:]


def decode(pieces: Iterable[bytes], max_size: int = 1 << 40) -> Decoded:
    """Feed ``pieces`` one by one, checking the per-feed invariants on the way."""
    decoder = BodyDecoder(max_size)
    chunks: list[bytes] = []
    queue = list(pieces)
    for index, piece in enumerate(queue):
        had_error = decoder.error is not None
        progress = decoder.feed(piece)
        assert all(progress.chunks), "no empty MessageData"
        if decoder.error is not None:
            assert progress.chunks == [], "nothing is emitted once the message is rejected"
        assert not had_error or decoder.error is not None, "an error never goes away"
        chunks += progress.chunks
        if progress.complete:
            after = progress.leftover + b"".join(queue[index + 1 :])
            return Decoded(tuple(chunks), True, after, decoder.error, decoder.size)
        assert progress.leftover == b""
    return Decoded(tuple(chunks), False, b"", decoder.error, decoder.size)


def reference(data: bytes, max_size: int) -> tuple[bool, bytes, bytes, bool, bool]:
    """(complete, content, after, bare newline, too big), computed the slow obvious way."""
    view = b"\r\n" + data
    end = view.find(b"\r\n.\r\n")
    if end == -1:
        return False, b"", b"", False, False
    content = unstuff(data[:end])
    crlf = content.count(b"\r\n")
    bare = content.count(b"\r") != crlf or content.count(b"\n") != crlf
    return True, content, view[end + 5 :], bare, len(content) > max_size


def check_against_reference(result: Decoded, data: bytes, max_size: int) -> None:
    complete, content, after, bare, too_big = reference(data, max_size)
    assert result.complete is complete
    if not complete:
        assert result.after == b""
        if result.error is None:
            assert unstuff(data).startswith(result.content)
        return
    assert result.after == after
    assert result.size == len(content)
    assert (result.error is not None) is (bare or too_big)
    if result.error is None:
        assert result.content == content
    else:
        assert content.startswith(result.content)
        if not too_big:
            assert result.error is BodyError.BARE_NEWLINE
        if not bare:
            assert result.error is BodyError.TOO_BIG
