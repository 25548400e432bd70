"""STARTTLS in the core (RFC 3207): offer, refusals, the reset, and injection byte for byte."""

from __future__ import annotations

import pytest

from trimail.protocol.connection import LocalProtocolError, ServerConnection
from trimail.protocol.envelope import TlsInfo
from trimail.protocol.events import MessageStarted, TlsUpgradeRequested
from trimail.protocol.states import State

from .support import HOSTNAME, Driver, driver, events_of

TLS = TlsInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", bits=256)
EHLO_WITHOUT_STARTTLS = (
    b"250-mx.test Hello client.example\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 26214400\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250-8BITMIME\r\n"
    b"250 SMTPUTF8\r\n"
)
EHLO_WITH_STARTTLS = EHLO_WITHOUT_STARTTLS.replace(
    b"250-SIZE 26214400\r\n", b"250-SIZE 26214400\r\n250-STARTTLS\r\n"
)
READY = b"220 2.0.0 Ready to start TLS\r\n"
#: What an attacker in the middle appends to the client's plaintext STARTTLS (CVE-2011-0411).
INJECTED = (
    b"MAIL FROM:<attacker@evil.example>\r\n"
    b"RCPT TO:<victim@example.org>\r\n"
    b"DATA\r\nSubject: injected\r\n\r\nhi\r\n.\r\n"
    b"RSET\r\nNOOP\r\nQUIT\r\n"
)


def tls_driver(*, require_tls: bool = False) -> Driver:
    drv = driver(tls_available=True, require_tls=require_tls)
    drv.take_output()
    return drv


def test_starttls_is_offered_only_when_the_shell_can_do_it() -> None:
    plain = driver()
    plain.take_output()
    plain.feed(b"EHLO client.example\r\n")
    assert plain.take_output() == EHLO_WITHOUT_STARTTLS
    offering = tls_driver()
    offering.feed(b"EHLO client.example\r\n")
    assert offering.take_output() == EHLO_WITH_STARTTLS


def test_starttls_without_a_certificate_is_454_and_counts_as_an_error() -> None:
    drv = driver()
    drv.take_output()
    drv.feed(b"EHLO client.example\r\nSTARTTLS\r\n")
    assert drv.take_pairs()[-1] == (454, "4.7.0")
    # Counted, so repeating it cannot keep a session alive forever.
    assert drv.conn.errors == 1
    assert drv.conn.state is State.READY


def test_starttls_with_an_argument_is_501() -> None:
    drv = tls_driver()
    drv.feed(b"EHLO client.example\r\nSTARTTLS now\r\n")
    assert drv.take_pairs()[-1] == (501, "5.5.4")
    assert drv.conn.state is State.READY


def test_starttls_inside_a_transaction_is_503() -> None:
    drv = tls_driver()
    drv.feed(b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nSTARTTLS\r\n")
    assert drv.take_pairs()[-1] == (503, "5.5.1")
    assert drv.conn.state is State.MAIL


def test_accepted_starttls_says_220_and_waits_for_the_handshake() -> None:
    drv = tls_driver()
    events = drv.feed(b"EHLO client.example\r\nSTARTTLS\r\n")
    assert events == [TlsUpgradeRequested(discarded=0)]
    assert drv.take_output() == EHLO_WITH_STARTTLS + READY
    assert drv.conn.state is State.TLS_HANDSHAKE
    assert not drv.conn.awaiting_command
    with pytest.raises(LocalProtocolError):
        drv.conn.next_event()
    with pytest.raises(LocalProtocolError):
        drv.conn.receive_data(b"EHLO too-early\r\n")


def test_starttls_before_ehlo_is_allowed() -> None:
    drv = tls_driver()
    assert drv.feed(b"STARTTLS\r\n") == [TlsUpgradeRequested(discarded=0)]
    assert drv.take_output() == READY


def test_after_the_handshake_the_session_starts_over() -> None:
    drv = tls_driver()
    drv.feed(b"EHLO client.example\r\nSTARTTLS\r\n")
    drv.take_output()
    drv.conn.tls_started(TLS)
    assert drv.conn.state is State.CONNECTED
    assert drv.conn.client_name is None
    # RFC 3207 §4.2: the EHLO from before TLS is forgotten.
    drv.feed(b"MAIL FROM:<a@example.org>\r\n")
    assert drv.take_pairs() == [(503, "5.5.1")]
    drv.feed(b"EHLO client.example\r\n")
    assert drv.take_output() == EHLO_WITHOUT_STARTTLS


def test_starttls_twice_is_503() -> None:
    drv = tls_driver()
    drv.feed(b"EHLO client.example\r\nSTARTTLS\r\n")
    drv.conn.tls_started(TLS)
    drv.take_output()
    drv.feed(b"EHLO client.example\r\nSTARTTLS\r\n")
    assert drv.take_pairs()[-1] == (503, "5.5.1")
    assert drv.conn.errors == 1
    assert drv.conn.state is State.READY


def test_implicit_tls_connection_never_offers_starttls() -> None:
    conn = ServerConnection(hostname=HOSTNAME, tls_available=True, tls=TLS)
    conn.greet()
    assert conn.data_to_send().startswith(b"220 ")
    drv = Driver(conn)
    drv.feed(b"EHLO client.example\r\n")
    assert drv.take_output() == EHLO_WITHOUT_STARTTLS
    drv.feed(b"STARTTLS\r\n")
    assert drv.take_pairs() == [(503, "5.5.1")]


def test_tls_started_without_starttls_is_a_shell_bug() -> None:
    drv = tls_driver()
    with pytest.raises(LocalProtocolError):
        drv.conn.tls_started(TLS)


# -- injection ---------------------------------------------------------------------------------


def test_commands_pipelined_after_starttls_are_discarded_byte_for_byte() -> None:
    drv = tls_driver()
    events = drv.feed(b"EHLO client.example\r\nSTARTTLS\r\n" + INJECTED)
    assert events == [TlsUpgradeRequested(discarded=len(INJECTED))]
    # Nothing was answered for the injected commands: only EHLO's reply and the 220.
    assert drv.take_output() == EHLO_WITH_STARTTLS + READY
    drv.conn.tls_started(TLS)
    # The first bytes read through TLS are parsed from a clean buffer.
    events = drv.feed(b"EHLO client.example\r\n")
    assert events == []
    assert drv.take_output() == EHLO_WITHOUT_STARTTLS
    assert drv.conn.state is State.READY


@pytest.mark.parametrize(
    "tail",
    [
        b"M",  # an incomplete line
        b"RSET",  # a command missing only its CRLF
        b"\r\n",  # an empty line
        b"X" * 5000,  # longer than a command line, no newline
        b"QUIT\n",  # bare LF
    ],
)
def test_any_tail_after_starttls_is_discarded(tail: bytes) -> None:
    drv = tls_driver()
    assert drv.feed(b"STARTTLS\r\n" + tail) == [TlsUpgradeRequested(discarded=len(tail))]
    assert drv.take_output() == READY
    drv.conn.tls_started(TLS)
    drv.feed(b"NOOP\r\n")
    assert drv.take_pairs() == [(250, "2.0.0")]
    assert drv.conn.errors == 0


def test_injection_cannot_complete_a_line_started_before_starttls() -> None:
    # "NO" arrives with STARTTLS; "OP\r\n" arrives through TLS: no NOOP may be seen.
    drv = tls_driver()
    assert drv.feed(b"STARTTLS\r\nNO") == [TlsUpgradeRequested(discarded=2)]
    drv.take_output()
    drv.conn.tls_started(TLS)
    drv.feed(b"OP\r\n")
    assert drv.take_pairs() == [(500, "5.5.2")]


# -- --require-tls -----------------------------------------------------------------------------


def test_require_tls_refuses_mail_before_starttls_with_530() -> None:
    drv = tls_driver(require_tls=True)
    drv.feed(b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n")
    assert drv.take_pairs()[-1] == (530, "5.7.0")
    assert drv.conn.state is State.READY
    drv.feed(b"STARTTLS\r\n")
    drv.conn.tls_started(TLS)
    drv.take_output()
    events = drv.feed(
        b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"DATA\r\nhi\r\n.\r\n"
    )
    assert [code for code, _ in drv.take_pairs()] == [250, 250, 250, 354, 250]
    (started,) = events_of(events, MessageStarted)
    assert started.envelope.tls == TLS


def test_plain_message_envelope_has_no_tls() -> None:
    drv = tls_driver()
    events = drv.feed(
        b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"DATA\r\nhi\r\n.\r\n"
    )
    (started,) = events_of(events, MessageStarted)
    assert started.envelope.tls is None
