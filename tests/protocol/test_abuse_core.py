"""Early talkers, error limits counting refusals, and the soft-limit signal, in the core."""

from __future__ import annotations

from trimail.protocol import replies
from trimail.protocol.connection import ServerConnection
from trimail.protocol.events import NEED_DATA, NEED_SEND, EndReason, RcptToRequest, SessionEnded
from trimail.protocol.limits import ProtocolLimits

from .support import HOSTNAME, driver


def test_a_client_that_talks_before_the_greeting_gets_554_and_nothing_is_parsed() -> None:
    conn = ServerConnection(hostname=HOSTNAME)
    conn.receive_data(b"EHLO bot.example\r\nMAIL FROM:<spam@bot.example>\r\n")
    assert conn.next_event() == SessionEnded(EndReason.EARLY_TALKER)
    assert conn.data_to_send() == replies.EARLY_TALKER.to_bytes()
    assert conn.data_to_send() == b""


def test_a_client_that_waits_is_greeted_normally() -> None:
    conn = ServerConnection(hostname=HOSTNAME)
    conn.greet()
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b"220 mx.test ESMTP trimail\r\n250 2.0.0 OK\r\n"


def test_hanging_up_before_the_greeting_is_not_early_talking() -> None:
    conn = ServerConnection(hostname=HOSTNAME)
    conn.receive_data(b"")
    assert conn.next_event() == SessionEnded(EndReason.CLIENT_CLOSED)
    assert conn.data_to_send() == b""


def test_soft_error_limit_is_signalled_past_the_threshold() -> None:
    drv = driver(ProtocolLimits(soft_errors=2, max_errors=5))
    drv.feed(b"BOGUS\r\nBOGUS\r\n")
    assert not drv.conn.over_soft_error_limit
    drv.feed(b"BOGUS\r\n")
    assert drv.conn.over_soft_error_limit


def test_refused_recipients_count_towards_the_hard_limit() -> None:
    """A dictionary attack on RCPT ends like any other stream of errors (Postfix does too)."""
    drv = driver(ProtocolLimits(max_errors=3))
    drv.feed(b"EHLO harvester.example\r\nMAIL FROM:<a@example.org>\r\n")
    conn = drv.conn
    drv.take_output()
    for index in range(3):
        conn.receive_data(f"RCPT TO:<user{index}@example.org>\r\n".encode())
        assert isinstance(conn.next_event(), RcptToRequest)
        conn.refuse(replies.RELAY_DENIED)
    assert conn.next_event() == SessionEnded(EndReason.TOO_MANY_ERRORS)
    assert conn.data_to_send() == (
        replies.RELAY_DENIED.to_bytes() * 3 + replies.TOO_MANY_ERRORS.to_bytes()
    )


def test_replies_to_pipelined_commands_stop_at_the_output_budget() -> None:
    """A client that pipelines without reading gets no more than the budget queued."""
    conn = ServerConnection(hostname=HOSTNAME, limits=ProtocolLimits(max_pending_output=1024))
    conn.greet()
    conn.receive_data(b"HELP\r\n" * 1000)
    assert conn.next_event() is NEED_SEND
    first = conn.data_to_send()
    assert 1024 <= len(first) < 1024 + len(replies.HELP.to_bytes())
    replies_sent = first.count(b"214 ")
    while (event := conn.next_event()) is NEED_SEND:
        sent = conn.data_to_send()
        assert len(sent) < 1024 + len(replies.HELP.to_bytes())
        replies_sent += sent.count(b"214 ")
    # Past the junk limit (100) each HELP counts as an error; the session ends at the 20th.
    assert event == SessionEnded(EndReason.TOO_MANY_ERRORS)
    replies_sent += conn.data_to_send().count(b"214 ")
    assert replies_sent == 120


def test_junk_commands_beyond_the_limit_count_as_errors_until_a_message_is_accepted() -> None:
    drv = driver(ProtocolLimits(max_junk_commands=3, max_errors=100))
    drv.feed(b"NOOP\r\nRSET\r\nVRFY x\r\n")
    assert drv.conn.errors == 0
    drv.feed(b"HELP\r\nNOOP\r\n")
    assert drv.conn.errors == 2
    assert [code for code, _ in drv.take_pairs()][-2:] == [214, 250]  # still answered
    drv.feed(
        b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
        b"DATA\r\nhi\r\n.\r\n"
    )
    assert drv.conn.junk_commands == 0
    drv.feed(b"NOOP\r\n")
    assert drv.conn.errors == 2


def test_a_noop_loop_ends_at_the_error_limit() -> None:
    drv = driver(ProtocolLimits(max_junk_commands=100, max_errors=20))
    drv.feed(b"NOOP\r\n" * 200)
    assert drv.ended == SessionEnded(EndReason.TOO_MANY_ERRORS)
    assert drv.take_output().count(b"250 2.0.0 OK\r\n") == 120
