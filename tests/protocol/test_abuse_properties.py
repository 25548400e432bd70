"""Abuse properties: mangled commands and hostile bodies, fed in random pieces with random
decisions, against the invariants in ``invariants.py`` (the fuzz target in ``fuzz/`` checks the
same ones, coverage-guided and for much longer).

``test_properties.py`` already covers an accepting driver over SMTP fragments and the DATA
decoder alone; here the driver also refuses, ends sessions, runs STARTTLS and stops reading,
the commands come from a grammar of valid and broken ESMTP, and every reply is matched to the
command line it answers. The tests at the end pin down the bugs the fuzzer found.
"""

from __future__ import annotations

import itertools
import os
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimail.protocol import replies
from trimail.protocol.connection import ServerConnection
from trimail.protocol.events import (
    NEED_DATA,
    EndReason,
    MailFromRequest,
    MessageComplete,
    MessageData,
    MessageRejected,
    MessageStarted,
    RcptToRequest,
    SessionEnded,
    TlsUpgradeRequested,
)
from trimail.protocol.limits import ProtocolLimits

from .invariants import (
    HOSTNAME,
    MAX_REPLY_LINE,
    TLS_INFO,
    Checks,
    SessionConfig,
    parse_wire,
    reference_message,
    run_session,
)
from .support import Driver, events_of, new_connection

#: CI runs 200 examples per property; TRIMAIL_ABUSE_EXAMPLES=20000 soaks them locally.
SETTINGS = settings(
    max_examples=int(os.environ.get("TRIMAIL_ABUSE_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Violation kinds of known, reported and not yet fixed bugs (none at the moment: everything the
#: fuzzer found is fixed and has a regression test at the end of this file).
KNOWN_BUGS = Checks(ignore=frozenset())

# -- a grammar of valid and mangled ESMTP ----------------------------------------------------------

CRLF = b"\r\n"
VERBS = [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT", b"VRFY"]
VERBS += [b"EXPN", b"HELP", b"STARTTLS"]

#: A verb as sent: as is, in another case, or broken in the ways real abuse breaks it.
verb = st.sampled_from(VERBS).flatmap(
    lambda word: st.sampled_from(
        [
            word,
            word.lower(),
            word.capitalize(),
            word + b"X",
            word[:-1],
            b" " + word,
            word.replace(b"I", "\u0131".encode()),  # dotless i: upper() would fold it to I
            word.replace(b"A", b"\x00A"),
        ]
    )
)

junk = st.binary(max_size=12)
atom = st.from_regex(rb"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}", fullmatch=True)
domain_name = st.lists(
    st.from_regex(rb"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True), min_size=1, max_size=4
).map(b".".join)
domain = st.one_of(
    domain_name,
    st.sampled_from(
        [
            b"[192.0.2.1]",
            b"[IPv6:2001:db8::1]",
            b"[IPv6:fe80::1%eth0]",
            b"[999.1.1.1]",
            b"[tag:whatever]",
            b"[]",
            "b\u00fccher.example".encode(),
            b"-bad-.example",
            b"a..b",
        ]
    ),
    junk,
)
local_part = st.one_of(
    atom,
    st.sampled_from(
        [
            b'"quoted name"',
            b'"with \\" quote"',
            b'"a>b"',
            b'"unterminated',
            b"a.b",
            b".a",
            b"a.",
            b"Postmaster",
            "j\u00f6rg".encode(),
            "\u7528\u6237".encode(),
            b"x" * 70,
        ]
    ),
    junk,
)
address = st.one_of(
    st.tuples(local_part, domain).map(lambda parts: parts[0] + b"@" + parts[1]),
    st.sampled_from([b"", b"Postmaster", b"@relay.example:a@example.org", b"a@", b"@b"]),
    junk,
)
path = st.one_of(
    address.map(lambda text: b"<" + text + b">"),
    address,  # no angle brackets
    address.map(lambda text: b"<" + text),
    st.just(b"<" + b"a" * 250 + b"@example.org>"),
)
param = st.one_of(
    st.from_regex(rb"SIZE=[0-9]{1,25}", fullmatch=True),
    st.sampled_from(
        [
            b"SIZE",
            b"SIZE=",
            b"SIZE=-1",
            b"SIZE=1e3",
            b"size=100",
            b"BODY=7BIT",
            b"BODY=8bitmime",
            b"BODY=BINARYMIME",
            b"BODY=",
            "BODY=8B\u0131TMIME".encode(),
            b"SMTPUTF8",
            b"SMTPUTF8=yes",
            b"X-FOO=bar",
            b"=",
            b"-X",
            b"SIZE=1 SIZE=2",
        ]
    ),
    junk,
)
params = st.lists(param, max_size=3).map(lambda items: b"".join(b" " + item for item in items))

mail = st.tuples(
    st.sampled_from([b"MAIL FROM:", b"mail from:", b"MAIL FROM: ", b"MAIL FROM:  ", b"MAIL TO:"]),
    path,
    params,
).map(b"".join)
rcpt = st.tuples(
    st.sampled_from([b"RCPT TO:", b"rcpt to:", b"RCPT TO: ", b"RCPT FROM:"]), path, params
).map(b"".join)
hello = st.tuples(
    st.sampled_from([b"EHLO ", b"HELO ", b"ehlo ", b"EHLO", b"HELO  "]),
    st.one_of(domain_name, st.sampled_from([b"[192.0.2.1]", b"", b"a b"]), junk),
).map(b"".join)
other = st.tuples(
    verb, st.sampled_from([b"", b" ", b"  ", b" x", b"\t"]), st.one_of(st.just(b""), junk)
).map(b"".join)
#: Well-formed enough to reach the state machine most of the time.
sane = st.sampled_from(
    [
        b"EHLO client.example",
        b"HELO client.example",
        b"MAIL FROM:<a@example.org>",
        b"MAIL FROM:<> SIZE=100",
        b"RCPT TO:<b@example.org>",
        b"RCPT TO:<c@example.org>",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"STARTTLS",
        b"QUIT",
    ]
)
command = st.one_of(sane, sane, sane, mail, rcpt, hello, other)

#: A line ending: mostly CRLF, sometimes the ones smugglers and broken clients use.
ending = st.sampled_from([CRLF, CRLF, CRLF, CRLF, b"\n", b"\r", b"\r\r\n", b""])
command_line = st.one_of(
    st.tuples(command, ending).map(b"".join),
    st.tuples(command, st.just(CRLF)).map(b"".join),
    st.tuples(sane, st.just(CRLF)).map(b"".join),
    st.integers(400, 700).map(lambda size: b"NOOP " + b"x" * size + CRLF),
)

body_line = st.one_of(
    st.binary(max_size=20).map(lambda text: text.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from(
        [b"", b".", b"..", b"...", b".x", b". ", b"\x00", b"MAIL FROM:<evil@evil.example>"]
    ),
    st.integers(100, 1200).map(lambda size: b"L" * size),
    st.just(b"plain text"),
)
body_ending = st.sampled_from([CRLF] * 12 + [b"\n", b"\r", b"\r\r\n", b"\n\r"])
#: Fake terminators that other parsers have accepted (CVE-2023-51764 and friends).
fake_terminator = st.sampled_from(
    [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b".\n", b"\r\n.\r", b"\r\n..\r\n"]
)
clean_body = st.lists(st.tuples(body_line, st.just(CRLF)).map(b"".join), max_size=8).map(b"".join)
body = st.lists(
    st.one_of(
        st.tuples(body_line, body_ending).map(b"".join),
        st.tuples(body_line, body_ending).map(b"".join),
        fake_terminator,
    ),
    max_size=10,
).map(b"".join)
message = st.tuples(
    st.one_of(clean_body, body), st.sampled_from([b"\r\n.\r\n", b".\r\n", b".\r\n", b""])
).map(b"".join)
transaction = st.tuples(
    st.sampled_from([b"", b"EHLO client.example\r\n"]),
    st.just(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"),
    message,
).map(b"".join)

unit = st.one_of(
    transaction,
    command_line,
    command_line,
    st.sampled_from([b"STARTTLS\r\n", b"RSET\r\n", b"EHLO again.example\r\n"]),
)
#: A session: mostly a greeting first, at least one transaction among stray commands.
session_bytes = st.tuples(
    st.sampled_from(
        [b"EHLO client.example\r\n"] * 3
        + [b"EHLO client.example\r\nSTARTTLS\r\n", b"HELO client.example\r\n", b""]
    ),
    st.lists(unit, max_size=4).map(b"".join),
    transaction,
    st.lists(unit, max_size=6).map(b"".join),
).map(b"".join)

limits = st.builds(
    ProtocolLimits,
    absurd_line=st.sampled_from([512, 600, 2048, 2048]),
    max_recipients=st.integers(1, 3),
    max_errors=st.sampled_from([1, 3, 20, 20, 20]),
    max_message_size=st.sampled_from([1024, 1500, 1 << 16]),
)
configs = st.builds(
    SessionConfig,
    limits=limits,
    tls_available=st.booleans(),
    require_tls=st.sampled_from([False, False, False, True]),
    implicit_tls=st.sampled_from([False, False, False, True]),
    greet=st.sampled_from([True] * 19 + [False]),
    eof_at_end=st.booleans(),
)


@st.composite
def pieces_of(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at a few random points (shrinks towards fewer, larger pieces)."""
    if not data:
        return []
    cuts = draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=16))
    points = sorted({0, len(data), *(cut for cut in cuts if 0 < cut < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- the properties --------------------------------------------------------------------------------


@SETTINGS
@given(configs, session_bytes.flatmap(pieces_of), st.randoms(use_true_random=True))
def test_abusive_sessions_keep_every_invariant(
    config: SessionConfig, pieces: list[bytes], rnd: random.Random
) -> None:
    """Random sessions, pieces and decisions: every invariant in ``invariants.py`` holds."""
    run_session(config, pieces, rnd, KNOWN_BUGS)


@SETTINGS
@given(
    body,
    st.lists(command_line, max_size=4).map(b"".join),
    st.data(),
)
def test_fake_terminators_never_end_a_message(
    content: bytes, after: bytes, data: st.DataObject
) -> None:
    """Whatever hides in the content, the message ends at the reference terminator and the
    bytes before it never become commands or a second message."""
    wire = b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    wire += content + b"\r\n.\r\n" + after
    drv = Driver(new_connection(ProtocolLimits(max_message_size=1 << 20)))
    drv.drain()
    drv.feed_all(data.draw(pieces_of(wire)))
    reference = reference_message(content + b"\r\n.\r\n" + after)
    assert reference is not None
    started = events_of(drv.events, MessageStarted)[0]
    index = drv.events.index(started)
    # The first event that ends the message comes before any command of the next one.
    ends = [
        event
        for event in drv.events[index:]
        if isinstance(event, MessageComplete | MessageRejected | SessionEnded)
    ]
    assert ends, drv.events
    first_end = drv.events.index(ends[0])
    between = drv.events[index + 1 : first_end]
    pieces = events_of(between, MessageData)
    assert len(pieces) == len(between), between
    if isinstance(ends[0], MessageComplete):
        assert not reference.bare_newline
        assert b"".join(event.data for event in pieces) == reference.content
        assert ends[0].size == len(reference.content)
    else:
        assert isinstance(ends[0], MessageRejected)
        assert reference.bare_newline


tail = st.lists(st.one_of(command_line, transaction, st.binary(max_size=40)), max_size=6).map(
    b"".join
)


@SETTINGS
@given(tail, st.sampled_from([b"", b"EHLO client.example\r\n"]))
def test_nothing_pipelined_after_starttls_is_ever_answered(injected: bytes, before: bytes) -> None:
    """CVE-2011-0411: bytes that arrive with STARTTLS are dropped, however they look; the
    encrypted session starts from an empty buffer, with no error counted and no old EHLO."""
    conn = ServerConnection(hostname=HOSTNAME, tls_available=True)
    conn.greet()
    conn.data_to_send()
    conn.receive_data(before + b"STARTTLS\r\n" + injected)
    assert conn.next_event() == TlsUpgradeRequested(discarded=len(injected))
    said = parse_wire(conn.data_to_send(), KNOWN_BUGS)
    assert [reply.pair for reply in said] == [(250, None)] * bool(before) + [(220, "2.0.0")]
    conn.tls_started(TLS_INFO)
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b""
    conn.receive_data(b"MAIL FROM:<a@example.org>\r\nEHLO client.example\r\n")
    assert conn.next_event() is NEED_DATA
    [need_helo, ehlo] = parse_wire(conn.data_to_send())
    assert need_helo.pair == (503, "5.5.1")
    assert ehlo.pair == (250, None)
    assert "STARTTLS" not in ehlo.lines
    assert conn.errors == 1


# -- what the fuzzer found ---------------------------------------------------------------------
# Each of these failed against the tree the fuzzer first ran on (reproducers in fuzz/crashes/);
# all were fixed in src/ (replies.echo, end_session on CLOSED) while the campaign ran, so they
# stay as plain regression tests.


def _output_of(*lines: bytes) -> list[bytes]:
    conn = ServerConnection(hostname=HOSTNAME)
    conn.greet()
    conn.receive_data(b"".join(line + CRLF for line in lines))
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, MailFromRequest | RcptToRequest):
            conn.accept()
    return conn.data_to_send().split(CRLF)[:-1]


def test_ehlo_reply_lines_fit_in_512_octets() -> None:
    """Found: the EHLO reply echoed the client's name verbatim, so a 505-character name (a
    legal 512-octet command line) made a 525-octet reply line, over RFC 5321 §4.5.3.1.5's
    512 (fuzz/crashes/reply-too-long-ehlo)."""
    lines = _output_of(b"EHLO " + b"a" * 505, b"HELO " + b"b" * 505)
    assert max(len(line) + 2 for line in lines) <= MAX_REPLY_LINE


def test_malformed_parameter_reply_fits_in_512_octets() -> None:
    """Found: "Error: malformed parameter '<token>'" echoed up to ~500 client characters, a
    537-octet 501 line (fuzz/crashes/reply-too-long-parameter)."""
    lines = _output_of(b"EHLO c", b"MAIL FROM:<> _" + b"x" * 495)
    assert lines[-1].startswith(b"501 5.5.4 ")
    assert max(len(line) + 2 for line in lines) <= MAX_REPLY_LINE


@pytest.mark.parametrize(
    "lines",
    [
        ["EHLO b\u00fccher.example"],
        ["EHLO c", "MAIL FROM:<> \u00e9"],
        ["EHLO c", "MAIL FROM:<a@[\u00e9]> SMTPUTF8"],
        ["EHLO c", "MAIL FROM:<a@b.example> SMTPUTF8", "RCPT TO:<a@[1.2.3.\u00e9]>"],
    ],
    ids=["ehlo-name", "mail-parameter", "sender-literal", "recipient-literal"],
)
def test_reply_text_is_printable_ascii(lines: list[str]) -> None:
    """Found: client text was echoed unescaped, so UTF-8 reached the wire in the EHLO line and
    in 'malformed parameter' and 'invalid address literal' replies; RFC 5321 §4.2 reply text
    is HT, SP and printable US-ASCII only (fuzz/crashes/reply-not-ascii)."""
    output = _output_of(*(line.encode() for line in lines))
    assert all(re.fullmatch(rb"[\t\x20-\x7e]*", line) for line in output), output
    parse_wire(b"".join(line + CRLF for line in output))  # and every other reply rule


def test_end_session_after_the_session_ended_says_nothing() -> None:
    """Found: end_session() after SessionEnded (QUIT answered 221) queued a second reply (421)
    and rewrote the end reason to ENDED_BY_SERVER; Session._farewell calls it when the last
    flush times out or is cancelled (fuzz/crashes/end-after-close)."""
    conn = ServerConnection(hostname=HOSTNAME)
    conn.greet()
    conn.receive_data(b"QUIT\r\n")
    assert conn.next_event() == SessionEnded(EndReason.QUIT)
    assert conn.data_to_send().endswith(b"221 2.0.0 Bye\r\n")
    conn.end_session(replies.TIMEOUT)
    assert conn.data_to_send() == b""
    assert conn.next_event() == SessionEnded(EndReason.QUIT)
