"""Micro-benchmarks of trimail's hot path, without sockets: where a session's CPU goes.

The end-to-end runner says how fast trimail is next to its peers; these say which part of the
sans-I/O core costs what, so a profile-driven change can be judged in seconds rather than by a
noisy end-to-end run:

- ``parse_command`` on the lines a typical transaction sends (EHLO, MAIL with SIZE, RCPT,
  DATA, QUIT), one row per line;
- a ``ServerConnection`` command round: a new connection greets, gets EHLO, MAIL and RCPT
  pipelined in one read, answers both decisions and hands out its replies;
- ``BodyDecoder`` on 1 KiB, 100 KiB and 10 MiB bodies of 78-character lines, fed in 64 KiB
  chunks as a socket would, up to and including the terminator.

Timing uses ``timeit`` with the garbage collector enabled (a server runs with it on): each row
runs enough iterations for about 0.2 s, ``--repeat`` times, and reports the median.

Run: ``python benchmarks/micro.py [--quick] [--json]`` with trimail importable (the dev venv).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from trimail.protocol.body import BodyDecoder
from trimail.protocol.command_parser import parse_command
from trimail.protocol.connection import ServerConnection
from trimail.protocol.events import NEED_DATA, MailFromRequest, RcptToRequest

CHUNK = 64 * 1024
LINES = (
    ("EHLO", b"EHLO client.example.org"),
    ("MAIL FROM SIZE", b"MAIL FROM:<alice@example.org> SIZE=1024"),
    ("RCPT TO", b"RCPT TO:<bob@example.com>"),
    ("DATA", b"DATA"),
    ("QUIT", b"QUIT"),
)
ROUND = b"".join(line + b"\r\n" for _, line in LINES[:3])
BODY_SIZES = (("1 KiB", 1024), ("100 KiB", 100 * 1024), ("10 MiB", 10 * 1024 * 1024))
MAX_MESSAGE = 64 * 1024 * 1024


@dataclass(frozen=True)
class MicroResult:
    name: str
    ops_per_second: float
    microseconds_per_op: float
    #: For the decoder: body megabytes (10**6 bytes) per second; None elsewhere.
    megabytes_per_second: float | None = None


def measure(function: Callable[[], object], repeat: int) -> float:
    """Median seconds per call of ``function``, over ``repeat`` runs of ~0.2 s each."""
    timer = timeit.Timer(function, setup="import gc; gc.enable()")
    number, _ = timer.autorange()
    return statistics.median(time / number for time in timer.repeat(repeat=repeat, number=number))


def parse_rows(repeat: int) -> list[MicroResult]:
    rows = []
    for name, line in LINES:
        seconds = measure(functools.partial(parse_command, line, smtputf8=False), repeat)
        rows.append(MicroResult(f"parse_command {name}", 1 / seconds, seconds * 1e6))
    return rows


def command_round() -> None:
    """Greet, then EHLO + MAIL + RCPT in one read; accept both decisions; take the replies."""
    connection = ServerConnection(hostname="bench.test")
    connection.greet()
    connection.receive_data(ROUND)
    while (event := connection.next_event()) is not NEED_DATA:
        if isinstance(event, MailFromRequest | RcptToRequest):
            connection.accept()
    replies = connection.data_to_send()
    assert replies.count(b"\r\n250 2.1.5") == 1, replies


def round_row(repeat: int) -> MicroResult:
    command_round()  # fails loudly if the core's replies changed shape
    seconds = measure(command_round, repeat)
    return MicroResult("ServerConnection EHLO+MAIL+RCPT", 1 / seconds, seconds * 1e6)


def body_chunks(size: int) -> list[bytes]:
    """A ``size``-byte body of 78-character lines plus its terminator, in 64 KiB chunks."""
    line = b"X" * 78 + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    body = body[: body.rfind(b"\r\n") + 2] if len(body) > 2 else b"\r\n"
    wire = body + b".\r\n"
    return [wire[start : start + CHUNK] for start in range(0, len(wire), CHUNK)]


def decode(chunks: Sequence[bytes]) -> int:
    decoder = BodyDecoder(MAX_MESSAGE)
    for chunk in chunks:
        progress = decoder.feed(chunk)
        if progress.complete:
            return decoder.size
    raise AssertionError("the terminator was not found")


def body_rows(repeat: int) -> list[MicroResult]:
    rows = []
    for name, size in BODY_SIZES:
        chunks = body_chunks(size)
        body = decode(chunks)
        seconds = measure(functools.partial(decode, chunks), repeat)
        rows.append(
            MicroResult(f"BodyDecoder {name}", 1 / seconds, seconds * 1e6, body / seconds / 1e6)
        )
    return rows


def run(repeat: int) -> list[MicroResult]:
    return [*parse_rows(repeat), round_row(repeat), *body_rows(repeat)]


def render(results: Sequence[MicroResult]) -> str:
    lines = [f"{'micro-benchmark':<36}{'ops/s':>14}{'µs/op':>12}{'MB/s':>10}"]
    for result in results:
        rate = result.megabytes_per_second
        lines.append(
            f"{result.name:<36}{result.ops_per_second:>14,.0f}{result.microseconds_per_op:>12.2f}"
            f"{'' if rate is None else f'{rate:,.0f}':>10}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trimail hot-path micro-benchmarks.")
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 5")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    args = parser.parse_args(argv)
    results = run(3 if args.quick else 5)
    if args.json:
        print(json.dumps([asdict(result) for result in results]))
    else:
        print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
