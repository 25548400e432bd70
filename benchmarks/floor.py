"""The floor: the cheapest SMTP responder on Trio's own streams, the reference the targets name.

It answers every command with a fixed reply, validates nothing (but see ``--validate``) and
stores nothing, so what it costs per message is Trio's own cost (accept, one task per
connection, ``receive_some`` and ``send_all``) plus the two scans no correct SMTP server can skip:

- the end of DATA is found by scanning for ``<CRLF>.<CRLF>`` across chunk boundaries (a
  terminator split over two reads still ends the message; the CRLF of the DATA line counts as
  the first CRLF, so an empty body ``DATA<CRLF>.<CRLF>`` ends too);
- commands are split at CRLF and answered in order; replies to pipelined commands (RFC 2920)
  go out together, in one write, when the input read so far is used up.

A benchmark that puts a real server next to this one measures how much the real server's
parsing, policy and storage cost on top of the event loop. For a server on ``trio.SocketStream``
the gap to the floor is what optimising it could win, and nothing on that stream goes faster.
A leaner socket layer can (``--lean-socket`` below).

``--validate`` adds the checks a correct receiver cannot skip, with trimail's own code and
nothing else: every command line goes through trimail's ``parse_command`` (a line it refuses
gets a 500) and the body through trimail's ``BodyDecoder`` (dot-unstuffing, the strict
terminator, the bare CR/LF check, the size limit; a body it rejects gets a 550). No state
machine, policy, log line, trace header or delivery: the gap between the two floors is what
validation alone costs on top of Trio, which no arrangement of trimail's other work can win
back.

``--lean-socket`` reads and writes through trimail's ``LeanSocketStream`` (the session's socket
layer) instead of ``trio.SocketStream``. The floor the performance targets name is the plain one,
on Trio's own stream; this one shows what the same socket layer gives a server that does
nothing else, so a ratio won by trimail's socket layer alone is not mistaken for a smaller gap.

Run: ``python benchmarks/floor.py --port N [--validate] [--lean-socket]`` (0 picks a free
port). It prints ``listening on 127.0.0.1:PORT`` once it accepts connections and runs until
killed.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

from trimail.protocol.body import BodyDecoder
from trimail.protocol.command_parser import CommandError, parse_command
from trimail.protocol.commands import Data, Ehlo, Helo, Quit
from trimail.server.streams import LeanSocketStream

TERMINATOR = b"\r\n.\r\n"
#: Longest partial terminator kept between reads: four bytes of ``<CRLF>.<CR>``.
_TAIL = len(TERMINATOR) - 1
#: A command line longer than this closes the connection (memory stays bounded).
MAX_LINE = 64 * 1024
RECEIVE_SIZE = 64 * 1024

GREETING = b"220 floor.bench.test ESMTP floor\r\n"
EHLO_REPLY = (
    b"250-floor.bench.test\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 104857600\r\n"
    b"250-8BITMIME\r\n"
    b"250 ENHANCEDSTATUSCODES\r\n"
)
HELO_REPLY = b"250 floor.bench.test\r\n"
OK_REPLY = b"250 2.0.0 Ok\r\n"
DATA_REPLY = b"354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED_REPLY = b"250 2.0.0 Ok: queued as FLOOR\r\n"
BYE_REPLY = b"221 2.0.0 Bye\r\n"
BAD_COMMAND_REPLY = b"500 5.5.2 Error: bad syntax\r\n"
REJECTED_REPLY = b"550 5.6.0 Error: message rejected\r\n"
#: The verb of a refused line: longer than the four bytes the plain path reads, so never one.
_REFUSED = b"REFUSED"
#: The message size limit of the validating floor's decoder (trimail's default).
MAX_MESSAGE = 100 * 1024 * 1024


class FloorSession:
    """The sans-I/O core of one connection: bytes in, the replies they earn out.

    Kept apart from the socket loop so a test can feed it every chunking of a session.
    """

    def __init__(self, *, validate: bool = False) -> None:
        """``validate``: parse commands and decode bodies with trimail's own code."""
        self.closed = False
        self.messages = 0
        self.rejected = 0
        self._validate = validate
        self._decoder: BodyDecoder | None = None
        self._in_body = False
        self._buffer = bytearray()
        #: The last bytes of the body read so far (at most ``_TAIL``), where a terminator
        #: split by TCP may have started.
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        """All replies ``data`` completes, in order (``b""`` when it completes none)."""
        out: list[bytes] = []
        while data and not self.closed:
            data = self._body(data, out) if self._in_body else self._commands(data, out)
        return b"".join(out)

    def _commands(self, data: bytes, out: list[bytes]) -> bytes:
        """Answer whole lines; return the bytes after a DATA line (body), else ``b""``."""
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\r\n", start)) != -1:
            if self._validate:
                verb = self._parsed_verb(bytes(buffer[start:end]))
            else:
                verb = bytes(buffer[start : start + 4]).upper()
            start = end + 2
            if verb == b"DATA":
                out.append(DATA_REPLY)
                self._in_body = True
                if self._validate:
                    self._decoder = BodyDecoder(MAX_MESSAGE)
                self._tail = b"\r\n"  # the DATA line's CRLF starts the first body line
                rest = bytes(buffer[start:])
                buffer.clear()
                return rest
            if verb == b"QUIT":
                out.append(BYE_REPLY)
                self.closed = True
                buffer.clear()
                return b""
            out.append(
                EHLO_REPLY
                if verb == b"EHLO"
                else HELO_REPLY
                if verb == b"HELO"
                else BAD_COMMAND_REPLY
                if verb == _REFUSED
                else OK_REPLY
            )
        del buffer[:start]
        if len(buffer) > MAX_LINE:
            self.closed = True
        return b""

    @staticmethod
    def _parsed_verb(line: bytes) -> bytes:
        """The verb of a line trimail's parser accepts, as the fixed-reply path spells it;
        ``_REFUSED`` for a line it refuses."""
        try:
            command = parse_command(line, smtputf8=False)
        except CommandError:
            return _REFUSED
        match command:
            case Data():
                return b"DATA"
            case Quit():
                return b"QUIT"
            case Ehlo():
                return b"EHLO"
            case Helo():
                return b"HELO"
        return b"OK"

    def _body(self, data: bytes, out: list[bytes]) -> bytes:
        """Skip body bytes; at the terminator answer 250 and return what follows it."""
        if self._decoder is not None:
            return self._decoded_body(self._decoder, data, out)
        tail = self._tail
        # A terminator that starts in the tail ends within the first four bytes of ``data``;
        # one that starts in ``data`` is found by ``data.find`` without copying ``data``.
        hit = (tail + data[:_TAIL]).find(TERMINATOR)
        if 0 <= hit < len(tail):
            end = hit + len(TERMINATOR) - len(tail)
        else:
            found = data.find(TERMINATOR)
            if found == -1:
                self._tail = (tail + data)[-_TAIL:] if len(data) < _TAIL else data[-_TAIL:]
                return b""
            end = found + len(TERMINATOR)
        out.append(QUEUED_REPLY)
        self.messages += 1
        self._in_body = False
        self._tail = b""
        return data[end:]

    def _decoded_body(self, decoder: BodyDecoder, data: bytes, out: list[bytes]) -> bytes:
        """The body through trimail's decoder; its content is dropped, its verdict answered."""
        progress = decoder.feed(data)
        if not progress.complete:
            return b""
        if decoder.error is None:
            out.append(QUEUED_REPLY)
            self.messages += 1
        else:
            out.append(REJECTED_REPLY)
            self.rejected += 1
        self._in_body = False
        self._decoder = None
        return progress.leftover


async def serve_client(stream: trio.abc.Stream, *, validate: bool = False) -> None:
    """One connection: greet, then read, answer everything the read completed, repeat."""
    session = FloorSession(validate=validate)
    async with stream:
        try:
            await stream.send_all(GREETING)
            while not session.closed:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    return
                replies = session.feed(bytes(data))
                if replies:
                    await stream.send_all(replies)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return


async def serve_lean_client(accepted: trio.SocketStream, *, validate: bool = False) -> None:
    """``serve_client`` on trimail's socket layer (``--lean-socket``)."""
    await serve_client(LeanSocketStream(accepted), validate=validate)


def client_handler(
    *, validate: bool, lean_socket: bool
) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """What ``serve`` runs for each accepted connection."""
    client = serve_lean_client if lean_socket else serve_client
    return functools.partial(client, validate=validate)


async def serve(port: int, validate: bool = False, lean_socket: bool = False) -> None:
    """Listen on 127.0.0.1 only, announce the bound port, serve until cancelled."""
    handler = client_handler(validate=validate, lean_socket=lean_socket)
    async with trio.open_nursery() as nursery:
        serve_tcp = functools.partial(trio.serve_tcp, handler, port, host="127.0.0.1")
        listeners = await nursery.start(serve_tcp)
        bound = listeners[0].socket.getsockname()[1]
        print(f"listening on 127.0.0.1:{bound}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trio SMTP floor: fixed replies, no storage.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument(
        "--validate", action="store_true", help="parse and decode with trimail's own code"
    )
    parser.add_argument(
        "--lean-socket", action="store_true", help="trimail's LeanSocketStream, not trio's"
    )
    args = parser.parse_args(argv)
    port = args.port
    assert isinstance(port, int)
    try:
        trio.run(serve, port, bool(args.validate), bool(args.lean_socket))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
