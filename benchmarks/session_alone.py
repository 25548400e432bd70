"""CPU per message of one trimail ``Session`` on its own: no sockets, no client, no other task.

The stream hands the session pre-built reads (EHLO, then per message one read with
MAIL+RCPT+DATA pipelined and one with the whole body, then QUIT) and takes its replies; both
are checkpoints, as Trio's socket calls are. What remains is trimail's own Python per message
(parsing, state, deadlines, the message object, the discard delivery, the log line) plus
Trio's scheduling for four checkpoints: the part of a server's CPU per message that
``floor.py`` does not pay. Being one task in one process, it moves much less from run to run
than a load test does, so it can tell apart changes of a few microseconds (run it a few times,
interleaved, and compare the minimums).

``--server floor`` and ``--server floor-validating`` run ``floor.py``'s session (plain, or with
trimail's parser and decoder) over the same scripted stream: the same four checkpoints per
message with nothing of trimail's machinery, the budget a trimail session is read against.

Run: ``python benchmarks/session_alone.py [--messages N] [--size BYTES] [--no-log]
[--server trimail|floor|floor-validating] [--read-size BYTES]`` (``--read-size 65536``: a
large message arrives in socket-sized reads, each with its own per-read work). Log lines go
to stderr as ``trimail serve`` writes them; send stderr to ``/dev/null`` or a file.
``instructions.py`` runs this under valgrind to count instructions per message, which do not
move with the machine's speed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import floor  # a sibling script, as run.py imports its own
import trio

from trimail.config.model import Timeouts
from trimail.delivery.null import DiscardHandler
from trimail.log_format import configure_server_logging
from trimail.peer import Peer
from trimail.protocol.limits import ProtocolLimits
from trimail.server.deadlines import DeadlineWatch
from trimail.server.session import Session, SessionContext

COMMANDS = b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<sink@example.com>\r\nDATA\r\n"
LINE = b"x" * 76 + b"\r\n"


def body(size: int) -> bytes:
    """About ``size`` octets of message in 78-octet lines, with the terminator."""
    return b"Subject: bench\r\n\r\n" + LINE * max(1, (size - 18) // len(LINE)) + b".\r\n"


class ScriptedStream(trio.abc.Stream):
    """The client side of a whole session, as reads the session receives."""

    def __init__(self, messages: int, message: bytes, read_size: int | None = None) -> None:
        """``read_size``: hand the message out in reads of at most this many octets, as a
        socket would (None: the whole message in one read)."""
        size = read_size or len(message)
        self._pieces = [message[start : start + size] for start in range(0, len(message), size)]
        self._pending = [b"EHLO bench.test\r\n"]
        self._messages_left = messages
        self._quit_sent = False
        self.sends = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self._pending:
            if self._messages_left:
                self._messages_left -= 1
                self._pending = [COMMANDS, *self._pieces]
            elif not self._quit_sent:
                self._quit_sent = True
                self._pending = [b"QUIT\r\n"]
            else:
                return b""
        return self._pending.pop(0)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.sends += 1

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def measure_floor(
    messages: int, size: int, *, validate: bool, read_size: int | None = None
) -> float:
    """CPU seconds per message of ``floor.py``'s session over the same scripted stream."""
    stream = ScriptedStream(messages, body(size), read_size)
    session = floor.FloorSession(validate=validate)
    started = time.process_time()
    await stream.send_all(floor.GREETING)
    while not session.closed and (data := await stream.receive_some(floor.RECEIVE_SIZE)):
        if replies := session.feed(data):
            await stream.send_all(replies)
    elapsed = time.process_time() - started
    if session.messages != messages:
        raise SystemExit(f"only {session.messages} of {messages} messages accepted")
    return float(elapsed / messages)


async def measure(messages: int, size: int, read_size: int | None = None) -> float:
    """CPU seconds per message of one session delivering ``messages`` to the discard handler."""
    watch = DeadlineWatch()  # as a server runs it: one watch task over every session
    context = SessionContext(
        hostname="mx.bench.test",
        limits=ProtocolLimits(),
        timeouts=Timeouts(),
        handler=DiscardHandler(),
        deadlines=watch,
    )
    stream = ScriptedStream(messages, body(size), read_size)
    session = Session(stream, Peer("192.0.2.1", 25), context)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        started = time.process_time()
        await session.run()
        elapsed = time.process_time() - started
        nursery.cancel_scope.cancel()
    if session.messages_accepted != messages:
        raise SystemExit(f"only {session.messages_accepted} of {messages} messages accepted")
    return elapsed / messages


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument(
        "--no-log", action="store_true", help="log at WARNING (no line per message)"
    )
    parser.add_argument(
        "--server", choices=("trimail", "floor", "floor-validating"), default="trimail"
    )
    parser.add_argument(
        "--read-size", type=int, default=None, help="octets per read of a message (a socket's)"
    )
    args = parser.parse_args(argv)
    configure_server_logging(sys.stderr)  # as trimail serve does: one cheap line per message
    if args.no_log:
        logging.getLogger().setLevel(logging.WARNING)
    if args.server == "trimail":
        per_message = trio.run(measure, args.messages, args.size, args.read_size)
    else:
        validate = args.server == "floor-validating"
        per_message = trio.run(
            lambda: measure_floor(
                args.messages, args.size, validate=validate, read_size=args.read_size
            )
        )
    print(f"{per_message * 1e6:.1f} µs of CPU per message ({args.messages} x {args.size} B)")


if __name__ == "__main__":
    main()
