#!/usr/bin/env python3
"""Coverage-guided fuzz target for trimail's sans-I/O SMTP core (atheris + libFuzzer).

One input is one SMTP session:

    byte 0     flags: 0x01 STARTTLS available, 0x02 --require-tls, 0x04 implicit TLS,
               0x08 output budget (max_pending_output) 4096 instead of 1024,
               0x30 junk-command limit 3/20/100/1, 0x38 all set = never greet (an early
               talker), 0x40 end of file at the end, 0x80 cut every piece again at random points
    byte 1     limits: bits 0-1 absurd line 512/600/1024/4096, bits 2-3 max recipients 1-4,
               bits 4-5 max errors 1/3/6/20, bits 6-7 max message size 1024/1100/2048/65536
    bytes 2-5  seed of the driver's choices (chunking, decisions, STARTTLS, EOF, end_session)
    the rest   what the client sends; every 0xF5 byte (never valid UTF-8) is a read boundary
               and is removed

``tests/protocol/invariants.py`` drives a ``ServerConnection`` with it and checks every
invariant there (well-formed replies, one answer per command line, error and junk-command
limits, NEED_SEND exactly at the output budget, no smuggling, STARTTLS pipelining discarded,
bounded buffers, silence after SessionEnded). Any exception is a crash.

    fuzz_connection.py [libFuzzer flags] WORK_CORPUS fuzz/corpus   fuzz (see fuzz/README.md)
    fuzz_connection.py --repro FILE...                             replay with a transcript
    fuzz_connection.py --minimize FILE                             shrink a crash to FILE.min
    fuzz_connection.py --make-corpus DIR                           (re)write the seed corpus

TRIMAIL_FUZZ_IGNORE=kind,kind sets known, already-reported violation kinds aside.
"""

from __future__ import annotations

import functools
import importlib
import os
import random
import sys
import traceback
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = 6
SPLIT = b"\xf5"


# -- a narrow typed shim over atheris (it ships no type information) ----------------------------


def _atheris() -> ModuleType:
    return importlib.import_module("atheris")


def atheris_instrument(packages: Sequence[str]) -> AbstractContextManager[object]:
    instrument: Callable[[Sequence[str]], AbstractContextManager[object]] = (
        _atheris().instrument_imports
    )
    return instrument(packages)


def atheris_enable_regex_hook() -> None:
    add: Callable[[str], None] = _atheris().enabled_hooks.add
    add("RegEx")


def atheris_fuzz(argv: list[str], test_one_input: Callable[[bytes], None]) -> None:
    setup: Callable[[list[str], Callable[[bytes], None]], list[str]] = _atheris().Setup
    fuzz: Callable[[], None] = _atheris().Fuzz
    setup(argv, test_one_input)
    fuzz()


def _fuzzing() -> bool:
    return __name__ == "__main__" and not {"--repro", "--minimize", "--make-corpus"} & set(
        sys.argv[1:]
    )


if _fuzzing():
    # The core must be imported under instrumentation (and after the regex hook, since it
    # compiles its patterns at import) so libFuzzer sees its branches; the harness is not.
    if os.environ.get("TRIMAIL_FUZZ_REGEX_HOOK", "1") == "1":
        atheris_enable_regex_hook()
    with atheris_instrument(["trimail"]):
        importlib.import_module("trimail.protocol.connection")

from tests.protocol.invariants import (  # noqa: E402
    KINDS,
    Checks,
    SessionConfig,
    Violation,
    run_session,
    split_randomly,
)

from trimail.protocol.limits import ProtocolLimits  # noqa: E402

# -- the input format ---------------------------------------------------------------------------


@functools.cache
def _limits(sizes: int, flags: int) -> ProtocolLimits:
    # Small limits, so a flood of a few kilobytes reaches NEED_SEND and the junk limit.
    return ProtocolLimits(
        absurd_line=(512, 600, 1024, 4096)[sizes & 3],
        max_recipients=1 + (sizes >> 2 & 3),
        max_errors=(1, 3, 6, 20)[sizes >> 4 & 3],
        max_message_size=(1024, 1100, 2048, 65536)[sizes >> 6 & 3],
        max_pending_output=(1024, 4096)[flags >> 3 & 1],
        max_junk_commands=(3, 20, 100, 1)[flags >> 4 & 3],
    )


def decode(data: bytes) -> tuple[SessionConfig, list[bytes], random.Random]:
    header = data[:HEADER].ljust(HEADER, b"\0")
    flags, sizes = header[0], header[1]
    rnd = random.Random(int.from_bytes(header[2:HEADER], "little"))
    config = SessionConfig(
        limits=_limits(sizes, flags & 0x38),
        tls_available=bool(flags & 0x01),
        require_tls=bool(flags & 0x02),
        implicit_tls=bool(flags & 0x04),
        greet=flags & 0x38 != 0x38,
        eof_at_end=bool(flags & 0x40),
    )
    pieces: list[bytes] = []
    for part in data[HEADER:].split(SPLIT):
        pieces.extend(split_randomly(part, rnd) if flags & 0x80 else [part])
    return config, pieces, rnd


def encode(flags: int, sizes: int, seed: int, pieces: Sequence[bytes]) -> bytes:
    assert not any(SPLIT in piece for piece in pieces)
    return bytes([flags, sizes]) + seed.to_bytes(4, "little") + SPLIT.join(pieces)


def _checks() -> Checks:
    names = os.environ.get("TRIMAIL_FUZZ_IGNORE", "")
    ignore = frozenset(name.strip() for name in names.split(",") if name.strip())
    unknown = ignore - KINDS
    if unknown:
        raise SystemExit(f"TRIMAIL_FUZZ_IGNORE: unknown kinds {sorted(unknown)}")
    return Checks(ignore=ignore)


CHECKS = _checks()


def test_one_input(data: bytes) -> None:
    config, pieces, rnd = decode(data)
    run_session(config, pieces, rnd, CHECKS)


# -- the seed corpus ----------------------------------------------------------------------------

TLS, REQUIRE_TLS, IMPLICIT_TLS, NO_GREETING, EOF, RECHUNK = 0x01, 0x02, 0x04, 0x38, 0x40, 0x80
#: Output budget 4096 (else 1024); junk-command limit 3 (none of these), 20, 100 or 1.
BUDGET_4096, JUNK_20, JUNK_100, JUNK_1 = 0x08, 0x10, 0x20, 0x30
#: absurd line 600, 2 recipients, 6 errors, 1024-octet messages
SMALL = 1 | 1 << 2 | 2 << 4 | 0 << 6
#: absurd line 4096, 4 recipients, 20 errors, 65536-octet messages
ROOMY = 3 | 3 << 2 | 3 << 4 | 3 << 6

HELLO = b"EHLO client.example\r\n"
ENVELOPE = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
TRANSACTION = HELLO + ENVELOPE + b"DATA\r\n"

SEEDS: dict[str, bytes] = {
    "transaction": encode(
        EOF, ROOMY, 1, [TRANSACTION + b"Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n"]
    ),
    "pipelining": encode(
        RECHUNK | EOF,
        SMALL,
        2,
        [
            TRANSACTION + b"one\r\n.\r\nMAIL FROM:<> SIZE=20 BODY=8BITMIME\r\n"
            b"RCPT TO:<Postmaster>\r\nRCPT TO:<c@example.org>\r\nRCPT TO:<d@example.org>\r\n"
            b"DATA\r\n..two\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nEXPN x\r\nHELP\r\nQUIT\r\n"
        ],
    ),
    "smuggle-lf": encode(
        0,
        ROOMY,
        3,
        [
            TRANSACTION + b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@evil.example>\r\n"
            b"RCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n",
            b"NOOP\r\n",
        ],
    ),
    "smuggle-cr": encode(
        EOF,
        ROOMY,
        4,
        [
            TRANSACTION + b"hi\r.\rMAIL FROM:<e@evil.example>\r\n\r\n.\nRCPT TO:<v@example.org>"
            b"\n.\r\nDATA\r\n",
            b"x\r\n",
            b".",
            b"\r\n",
            b"QUIT\r\n",
        ],
    ),
    "terminator-split": encode(
        0,
        SMALL,
        5,
        [TRANSACTION + b"a\r", b"\n", b".", b".x\r", b"\n.", b"\r", b"\nNOOP\r\n"],
    ),
    "starttls-injection": encode(
        TLS,
        SMALL,
        6,
        [
            HELLO + b"STARTTLS\r\n" + ENVELOPE + b"DATA\r\ninjected\r\n.\r\nQUIT\r\n",
            HELLO + b"STARTTLS\r\n" + TRANSACTION + b"real\r\n.\r\nQUIT\r\n",
        ],
    ),
    "starttls-split": encode(
        TLS | REQUIRE_TLS,
        SMALL,
        7,
        [b"STARTTLS\r\nNO", b"OP\r\n" + HELLO + ENVELOPE, b"DATA\r\n.\r\n"],
    ),
    "long-lines": encode(
        RECHUNK,
        SMALL,
        8,
        [
            b"EHLO " + b"a" * 505 + b"\r\nEHLO " + b"b" * 506 + b"\r\n" + b"x" * 700 + b"\r\n",
            b"NOOP\r\n" + b"y" * 5000,
        ],
    ),
    "size-limit": encode(
        EOF,
        SMALL,
        9,
        [
            HELLO + b"MAIL FROM:<a@example.org> SIZE=5000\r\n" + ENVELOPE + b"DATA\r\n"
            b"" + b"z" * 1100 + b"\r\n.\r\n" + ENVELOPE + b"DATA\r\n" + b"w" * 1020 + b"\r\n.\r\n"
        ],
    ),
    "errors": encode(
        0,
        SMALL,
        10,
        [
            b"BOGUS\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
            b"HELO\r\nEHLO\r\nDATA x\r\nQUIT now\r\nMAIL TO:<x>\r\nNOOP\r\n"
        ],
    ),
    "early-talker": encode(NO_GREETING, SMALL, 11, [HELLO]),
    "implicit-tls": encode(
        IMPLICIT_TLS | TLS | REQUIRE_TLS,
        SMALL,
        12,
        [HELLO + b"STARTTLS\r\n" + TRANSACTION + b".\r\n"],
    ),
    "smtputf8": encode(
        RECHUNK,
        ROOMY,
        13,
        [
            HELLO
            + "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\n".encode()
            + "RCPT TO:<\u7528\u6237@\u4f8b\u5b50.example>\r\n".encode()
            + b'RCPT TO:<"quoted name"@[192.0.2.1]>\r\nRCPT TO:<x@[IPv6:2001:db8::1]>\r\n'
            b"RCPT TO:<\xff\xfe@example.org>\r\nDATA\r\n\x00\xff\r\n.\r\n"
        ],
    ),
    # A client that pipelines without reading: NEED_SEND at the 1024-octet budget, over and
    # over, also while replies to decisions pile up and across a message.
    "backpressure": encode(
        JUNK_100 | EOF,
        ROOMY,
        39,
        [
            HELLO
            + b"HELP\r\n" * 30
            + b"MAIL FROM:<a@example.org>\r\nRSET\r\n" * 30
            + ENVELOPE
            + b"RCPT TO:<c@example.org>\r\n" * 3
            + b"DATA\r\nbody\r\n.\r\n"
            + b"VRFY x\r\n" * 20
            + HELLO * 10
            + b"QUIT\r\n"
        ],
    ),
    # NOOP, RSET, VRFY and HELP past the junk limit (3) are errors, until a message is accepted.
    "junk": encode(
        RECHUNK,
        ROOMY,
        15,
        [
            HELLO + b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\n" + TRANSACTION[len(HELLO) :],
            b"hi\r\n.\r\n" + b"NOOP\r\n" * 30 + b"QUIT\r\n",
        ],
    ),
    # Replies that are errors now: 454 (no TLS), 552 (SIZE too big), 452 (too many recipients).
    "counted-refusals": encode(
        JUNK_1,
        SMALL,
        16,
        [
            HELLO
            + b"STARTTLS\r\nMAIL FROM:<a@example.org> SIZE=999999\r\n"
            + ENVELOPE
            + b"RCPT TO:<c@example.org>\r\n" * 3
            + b"NOOP\r\nNOOP\r\n"
        ],
    ),
}


def make_corpus(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS.items():
        (directory / name).write_bytes(data)
        print(f"{directory / name}: {len(data)} bytes")


def repro(paths: Sequence[str]) -> int:
    failed = 0
    for path in paths:
        data = Path(path).read_bytes()
        config, pieces, rnd = decode(data)
        print(f"== {path}: {len(data)} bytes, {config}")
        try:
            report = run_session(config, pieces, rnd, CHECKS, trace=True)
        except Exception:
            failed += 1
            traceback.print_exc()
        else:
            print("\n".join(report.transcript))
            print(f"== ok: {report.rounds} rounds, {report.model.messages} message(s) accepted")
    return 1 if failed else 0


def failure(data: bytes) -> str | None:
    """The violation kind (or exception type) ``data`` fails with, or None."""
    config, pieces, rnd = decode(data)
    try:
        run_session(config, pieces, rnd, CHECKS)
    except Violation as exc:
        return exc.kind
    except Exception as exc:
        return type(exc).__name__
    return None


def minimize(path: str) -> int:
    """Delta debugging on the client bytes (the header stays): drop ever smaller spans as long
    as the input still fails the same way. Writes PATH.min."""
    data = Path(path).read_bytes()
    kind = failure(data)
    if kind is None:
        print(f"{path} does not fail")
        return 1
    header, stream = data[:HEADER], data[HEADER:]
    span = max(1, len(stream) // 2)
    while True:
        start, shrunk = 0, False
        while start < len(stream):
            candidate = stream[:start] + stream[start + span :]
            if failure(header + candidate) == kind:
                stream, shrunk = candidate, True
            else:
                start += span
        if not shrunk:
            if span == 1:
                break
            span //= 2
    out = Path(f"{path}.min")
    out.write_bytes(header + stream)
    print(f"{out}: {len(data)} -> {HEADER + len(stream)} bytes, still [{kind}]: {stream!r}")
    return 0


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--repro"]:
        return repro(argv[2:])
    if argv[1:2] == ["--minimize"] and len(argv) == 3:
        return minimize(argv[2])
    if argv[1:2] == ["--make-corpus"]:
        make_corpus(Path(argv[2]) if len(argv) > 2 else Path(__file__).parent / "corpus")
        return 0
    atheris_fuzz(argv, test_one_input)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
