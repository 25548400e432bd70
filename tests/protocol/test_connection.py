"""Whole sessions through ServerConnection: bytes in, events and reply bytes out."""

from __future__ import annotations

import string

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trimail.protocol import replies
from trimail.protocol.addresses import Mailbox
from trimail.protocol.connection import LocalProtocolError, ServerConnection
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
)
from trimail.protocol.limits import ProtocolLimits
from trimail.protocol.replies import Reply
from trimail.protocol.states import State

from .support import HOSTNAME, Driver, driver, events_of, new_connection, pairs, parse_replies

EHLO = b"EHLO client.example\r\n"
ENVELOPE = b"MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\n"


def ready(limits: ProtocolLimits | None = None) -> Driver:
    drv = driver(limits)
    drv.feed(EHLO)
    drv.take_output()
    return drv


def awaiting_command(conn: ServerConnection) -> bool:
    return conn.awaiting_command


def in_rcpt(limits: ProtocolLimits | None = None) -> Driver:
    drv = ready(limits)
    drv.feed(ENVELOPE)
    drv.take_output()
    assert drv.conn.state is State.RCPT
    return drv


# -- greeting and EHLO ----------------------------------------------------------------------


def test_greeting() -> None:
    conn = ServerConnection(hostname="mx.example.net")
    nothing_at_first = not conn.has_data_to_send
    assert conn.data_to_send() == b""
    conn.greet()
    queued = conn.has_data_to_send
    assert conn.data_to_send() == b"220 mx.example.net ESMTP trimail\r\n"
    assert (nothing_at_first, queued, conn.has_data_to_send) == (True, True, False)
    assert conn.data_to_send() == b""
    assert conn.state is State.CONNECTED


def test_ehlo_advertises_the_extensions() -> None:
    drv = driver(ProtocolLimits(max_message_size=1048576))
    drv.take_output()
    drv.feed(b"EHLO client.example\r\n")
    assert drv.take_output() == (
        b"250-mx.test Hello client.example\r\n"
        b"250-PIPELINING\r\n"
        b"250-SIZE 1048576\r\n"
        b"250-ENHANCEDSTATUSCODES\r\n"
        b"250-8BITMIME\r\n"
        b"250 SMTPUTF8\r\n"
    )
    assert drv.conn.extended
    assert drv.conn.client_name == "client.example"
    assert drv.conn.state is State.READY


def test_default_size_is_advertised() -> None:
    drv = ready()
    assert f"SIZE {ProtocolLimits().max_message_size}" in drv.conn.extensions
    assert ProtocolLimits().max_message_size == 25 * 1024 * 1024


def test_helo_gets_a_single_line() -> None:
    drv = driver()
    drv.take_output()
    drv.feed(b"HELO client.example\r\n")
    assert drv.take_output() == b"250 mx.test Hello client.example\r\n"
    assert not drv.conn.extended


# -- a whole transaction --------------------------------------------------------------------


def test_pipelined_transaction_in_one_chunk_is_answered_in_order() -> None:
    drv = driver()
    drv.queue_id = "QID123"
    events = drv.feed(
        b"EHLO client.example\r\n"
        b"MAIL FROM:<s@example.org> SIZE=100 BODY=8BITMIME\r\n"
        b"RCPT TO:<r1@example.org>\r\n"
        b"RCPT TO:<r2@example.org>\r\n"
        b"DATA\r\n"
        b"Subject: hi\r\n\r\n..dot\r\n.\r\n"
        b"QUIT\r\n"
    )
    assert [type(event) for event in events if not isinstance(event, MessageData)] == [
        MailFromRequest,
        RcptToRequest,
        RcptToRequest,
        MessageStarted,
        MessageComplete,
        SessionEnded,
    ]
    assert events_of(events, MessageData)
    out = parse_replies(drv.take_output())
    assert [reply.pair for reply in out] == [
        (220, None),
        (250, None),
        (250, "2.1.0"),
        (250, "2.1.5"),
        (250, "2.1.5"),
        (354, None),
        (250, "2.0.0"),
        (221, "2.0.0"),
    ]
    assert out[-2].lines == ("OK: queued as QID123",)
    [started] = events_of(events, MessageStarted)
    envelope = started.envelope
    assert envelope.client_name == "client.example"
    assert envelope.extended
    assert envelope.sender == Mailbox("s", "example.org")
    assert envelope.recipients == (Mailbox("r1", "example.org"), Mailbox("r2", "example.org"))
    assert envelope.params.size == 100
    assert envelope.eight_bit
    assert not envelope.smtputf8
    content = b"".join(event.data for event in events_of(events, MessageData))
    assert content == b"Subject: hi\r\n\r\n.dot\r\n"
    [complete] = events_of(events, MessageComplete)
    assert complete.envelope == envelope
    assert complete.size == len(content)
    assert events[-1] == SessionEnded(EndReason.QUIT)


def test_same_session_fed_byte_by_byte() -> None:
    wire = (
        EHLO + ENVELOPE + b"DATA\r\nline\r\n.\r\n" + b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\n"
        b"DATA\r\n.\r\nQUIT\r\n"
    )
    whole = driver()
    whole_events = whole.feed(wire)
    bytewise = driver()
    bytewise_events: list[object] = []
    for index in range(len(wire)):
        bytewise_events += bytewise.feed(wire[index : index + 1])
    assert whole.take_output() == bytewise.take_output()
    assert [e for e in whole_events if not isinstance(e, MessageData)] == [
        e for e in bytewise_events if not isinstance(e, MessageData)
    ]
    assert len(events_of(whole_events, MessageComplete)) == 2


def test_commands_after_the_terminator_wait_for_the_decision() -> None:
    conn = in_rcpt().conn
    conn.receive_data(b"DATA\r\nbody\r\n.\r\nMAIL FROM:<next@example.org>\r\nRCPT TO:<x@y.z>\r\n")
    assert isinstance(conn.next_event(), MessageStarted)
    assert conn.next_event() == MessageData(b"body\r\n")
    complete = conn.next_event()
    assert isinstance(complete, MessageComplete)
    assert not awaiting_command(conn)
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    # Bytes arriving while the decision is pending are commands, not content.
    conn.receive_data(b"NOOP\r\n")
    assert conn.data_to_send() == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    conn.accept_message("Q1")
    assert conn.state is State.READY
    mail = conn.next_event()
    assert isinstance(mail, MailFromRequest)
    assert mail.sender == Mailbox("next", "example.org")
    conn.accept()
    assert isinstance(conn.next_event(), RcptToRequest)
    conn.accept()
    assert conn.next_event() is NEED_DATA
    assert awaiting_command(conn)
    assert pairs(conn.data_to_send()) == [
        (250, "2.0.0"),
        (250, "2.1.0"),
        (250, "2.1.5"),
        (250, "2.0.0"),
    ]


def test_data_arriving_in_pieces_after_data_command() -> None:
    drv = in_rcpt()
    drv.feed(b"DATA\r\n")
    assert drv.take_pairs() == [(354, None)]
    assert drv.conn.state is State.DATA
    assert drv.feed(b"part one ") == [MessageData(b"part one ")]
    assert drv.feed(b"part two\r") == [MessageData(b"part two")]
    events = drv.feed(b"\n.\r\n")
    assert events[0] == MessageData(b"\r\n")
    assert isinstance(events[1], MessageComplete)
    assert events[1].size == len(b"part one part two\r\n")
    assert drv.take_pairs() == [(250, "2.0.0")]


# -- limits ---------------------------------------------------------------------------------


def test_size_parameter_over_the_limit_is_552() -> None:
    drv = ready(ProtocolLimits(max_message_size=2048))
    events = drv.feed(b"MAIL FROM:<s@example.org> SIZE=2049\r\nRCPT TO:<r@example.org>\r\n")
    assert events == []
    assert drv.take_pairs() == [(552, "5.3.4"), (503, "5.5.1")]
    assert drv.conn.state is State.READY
    events = drv.feed(b"MAIL FROM:<s@example.org> SIZE=2048\r\n")
    assert len(events_of(events, MailFromRequest)) == 1
    assert drv.take_pairs() == [(250, "2.1.0")]


def test_oversized_body_is_read_to_the_end_then_552() -> None:
    limit = 1024
    drv = in_rcpt(ProtocolLimits(max_message_size=limit))
    body = b"".join(b"%04d %s\r\n" % (n, b"x" * 60) for n in range(40))
    assert len(body) > limit
    events = drv.feed_all(
        [b"DATA\r\n", body[:500], body[500:], b".\r\nMAIL FROM:<s@example.org>\r\n"]
    )
    [rejected] = events_of(events, MessageRejected)
    assert rejected.reply == replies.MESSAGE_TOO_BIG
    assert events_of(events, MessageComplete) == []
    emitted = b"".join(event.data for event in events_of(events, MessageData))
    assert len(emitted) <= limit
    assert body.startswith(emitted)
    assert len(events_of(events, MailFromRequest)) == 1
    assert drv.take_pairs() == [(354, None), (552, "5.3.4"), (250, "2.1.0")]
    assert drv.conn.state is State.MAIL
    assert drv.conn.errors == 0


def test_body_of_exactly_the_limit_is_accepted() -> None:
    drv = in_rcpt(ProtocolLimits(max_message_size=1024))
    body = b"y" * 1022 + b"\r\n"
    events = drv.feed(b"DATA\r\n" + body + b".\r\n")
    [complete] = events_of(events, MessageComplete)
    assert complete.size == 1024
    assert drv.take_pairs() == [(354, None), (250, "2.0.0")]


def test_recipient_limit_is_452() -> None:
    drv = ready(ProtocolLimits(max_recipients=2))
    events = drv.feed(
        b"MAIL FROM:<s@example.org>\r\n"
        b"RCPT TO:<r1@example.org>\r\nRCPT TO:<r2@example.org>\r\nRCPT TO:<r3@example.org>\r\n"
        b"DATA\r\n"
    )
    assert drv.take_pairs() == [
        (250, "2.1.0"),
        (250, "2.1.5"),
        (250, "2.1.5"),
        (452, "4.5.3"),
        (354, None),
    ]
    assert len(events_of(events, RcptToRequest)) == 2
    [started] = events_of(events, MessageStarted)
    assert len(started.envelope.recipients) == 2
    # Each refusal counts, so a client cannot ask for recipient after recipient forever.
    assert drv.conn.errors == 1


def test_refused_recipients_do_not_count_towards_the_limit() -> None:
    conn = new_connection(ProtocolLimits(max_recipients=1))
    conn.receive_data(
        EHLO + b"MAIL FROM:<>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
    )
    assert isinstance(conn.next_event(), MailFromRequest)
    conn.accept()
    assert conn.next_event() == RcptToRequest(Mailbox("a", "example.org"))
    conn.refuse(Reply(550, "5.1.1", ("unknown user",)))
    assert conn.next_event() == RcptToRequest(Mailbox("b", "example.org"))
    conn.accept()
    assert conn.next_event() is NEED_DATA
    assert pairs(conn.data_to_send())[-3:] == [(250, "2.1.0"), (550, "5.1.1"), (250, "2.1.5")]


def test_error_limit_ends_the_session_with_421() -> None:
    drv = driver(ProtocolLimits(max_errors=3))
    drv.take_output()
    events = drv.feed(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert events == [SessionEnded(EndReason.TOO_MANY_ERRORS)]
    assert drv.take_pairs() == [(500, "5.5.2"), (500, "5.5.2"), (500, "5.5.2"), (421, "4.7.0")]
    assert drv.conn.state is State.CLOSED
    assert drv.conn.errors == 3


def test_every_kind_of_error_counts_and_the_default_limit_is_20() -> None:
    errors = [
        b"FOO\r\n",  # unknown command
        b"MAIL FROM:<s@example.org>\r\n",  # before HELO
        b"NOOP\n",  # bare LF
        b"NOOP " + b"x" * 600 + b"\r\n",  # too long
        b"EXPN list\r\n",
        b"\xff\r\n",  # invalid UTF-8
        b"NOOP\x00\r\n",  # control character
        b"DATA now\r\n",  # argument where none is allowed
        b"EHLO\r\n",  # missing argument
        b"RCPT TO:<r@example.org>\r\n",  # before HELO
    ]
    drv = driver()
    drv.take_output()
    for line in errors * 2:
        assert drv.ended is None
        drv.feed(b"NOOP\r\nVRFY x\r\nHELP\r\n" + line)  # successes do not reset the count
    assert drv.events == [SessionEnded(EndReason.TOO_MANY_ERRORS)]
    out = drv.take_pairs()
    assert out[-1] == (421, "4.7.0")
    assert sum(code >= 500 for code, _ in out) == 20


def test_line_too_long_is_500_and_the_next_command_works() -> None:
    drv = ready()
    drv.feed(b"NOOP " + b"x" * 600 + b"\r\nNOOP\r\n")
    assert drv.take_pairs() == [(500, "5.5.6"), (250, "2.0.0")]
    assert drv.ended is None


def test_command_line_of_512_octets_is_accepted_513_is_not() -> None:
    drv = ready()
    limit = ProtocolLimits().max_command_line
    line = b"NOOP " + b"x" * (limit - 7) + b"\r\n"
    assert len(line) == limit
    drv.feed(line)
    assert drv.take_pairs() == [(250, "2.0.0")]
    drv.feed(b"NOOP " + b"x" * (limit - 6) + b"\r\n")
    assert drv.take_pairs() == [(500, "5.5.6")]


def test_long_line_fed_in_pieces_is_one_error() -> None:
    drv = ready()
    events = drv.feed_all([b"MAIL FROM:<", *([b"a" * 100] * 10), b"@example.org>\r\n", b"NOOP\r\n"])
    assert events == []
    assert drv.take_pairs() == [(500, "5.5.6"), (250, "2.0.0")]
    assert drv.conn.errors == 1


@pytest.mark.parametrize("piece_size", [1, 7, 100, 511, 512, 513, 4096])
def test_absurdly_long_line_ends_the_session_with_bounded_memory(piece_size: int) -> None:
    limits = ProtocolLimits(absurd_line=8192)
    drv = driver(limits)
    drv.take_output()
    fed = 0
    while drv.ended is None:
        assert fed <= limits.absurd_line + 2 * piece_size, "the session should have ended"
        drv.feed(b"A" * piece_size)
        fed += piece_size
        assert len(drv.conn._buffer) <= limits.max_command_line + piece_size
    assert drv.events == [SessionEnded(EndReason.LINE_TOO_LONG)]
    assert drv.take_pairs() == [(421, "4.7.0")]
    assert fed > limits.absurd_line
    drv.feed(b"\r\nNOOP\r\n")
    assert drv.take_output() == b""
    assert drv.conn.next_event() == SessionEnded(EndReason.LINE_TOO_LONG)


def test_absurdly_long_line_with_default_limits() -> None:
    limits = ProtocolLimits()
    drv = ready()
    for _ in range(limits.absurd_line // 4096 + 1):
        drv.feed(b"B" * 4096)
        assert len(drv.conn._buffer) <= limits.max_command_line + 4096
    assert drv.events[-1] == SessionEnded(EndReason.LINE_TOO_LONG)
    assert drv.take_output() == replies.LINE_ABSURDLY_LONG.to_bytes()


def test_absurdly_long_line_in_one_piece_ends_the_session() -> None:
    drv = ready()
    drv.feed(b"A" * (ProtocolLimits().absurd_line + 1000) + b"\r\nNOOP\r\n")
    assert drv.ended == SessionEnded(EndReason.LINE_TOO_LONG)


def test_bare_lf_on_a_command_line_is_refused() -> None:
    drv = ready()
    events = drv.feed(b"MAIL FROM:<s@example.org>\nNOOP\r\n")
    assert events == []
    out = parse_replies(drv.take_output())
    assert [reply.pair for reply in out] == [(500, "5.5.2"), (250, "2.0.0")]
    assert out[0] == parse_replies(replies.BARE_NEWLINE_IN_COMMAND.to_bytes())[0]
    assert drv.conn.state is State.READY


def test_bare_cr_inside_a_command_line_is_refused() -> None:
    drv = ready()
    events = drv.feed(b"MAIL FROM:<s@example.org>\rRCPT TO:<r@example.org>\r\n")
    assert events == []
    assert drv.take_pairs() == [(501, "5.5.4")]


# -- the stateless commands -----------------------------------------------------------------


def test_vrfy_expn_help_noop() -> None:
    drv = driver()
    drv.take_output()
    drv.feed(b"VRFY root\r\nEXPN staff\r\nHELP\r\nNOOP\r\nnoop with argument\r\n")
    assert drv.take_output() == (
        b"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
        b"502 5.5.1 Error: EXPN not supported\r\n"
        b"214-2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP\r\n"
        b"214 2.0.0 See RFC 5321\r\n"
        b"250 2.0.0 OK\r\n"
        b"250 2.0.0 OK\r\n"
    )
    assert drv.conn.errors == 1  # EXPN


def test_quit() -> None:
    drv = ready()
    events = drv.feed(b"QUIT\r\nNOOP\r\n")
    assert events == [SessionEnded(EndReason.QUIT)]
    assert drv.take_output() == b"221 2.0.0 Bye\r\n"
    assert drv.conn.state is State.CLOSED
    drv.conn.receive_data(b"NOOP\r\n")
    drv.conn.receive_data(b"")
    assert drv.conn.next_event() == SessionEnded(EndReason.QUIT)
    assert drv.conn.next_event() == SessionEnded(EndReason.QUIT)
    assert drv.conn.data_to_send() == b""


# -- end of file ----------------------------------------------------------------------------


def test_eof_mid_data_ends_without_a_message() -> None:
    drv = in_rcpt()
    events = drv.feed(b"DATA\r\npartial body\r\n.")
    assert events_of(events, MessageStarted)
    events = drv.feed(b"")
    assert events == [SessionEnded(EndReason.CLIENT_CLOSED)]
    assert events_of(drv.events, MessageComplete) == []
    assert events_of(drv.events, MessageRejected) == []
    assert drv.take_pairs() == [(354, None)]


def test_eof_after_complete_lines_answers_them_first() -> None:
    drv = ready()
    events = drv.feed_all([b"NOOP\r\nRSET\r\nNOOP", b""])
    assert events == [SessionEnded(EndReason.CLIENT_CLOSED)]
    assert drv.take_pairs() == [(250, "2.0.0"), (250, "2.0.0")]


def test_eof_with_a_whole_message_still_delivers_it() -> None:
    conn = in_rcpt().conn
    conn.receive_data(b"DATA\r\nhello\r\n.\r\n")
    conn.receive_data(b"")
    assert isinstance(conn.next_event(), MessageStarted)
    assert isinstance(conn.next_event(), MessageData)
    assert isinstance(conn.next_event(), MessageComplete)
    conn.accept_message("Q9")
    assert conn.next_event() == SessionEnded(EndReason.CLIENT_CLOSED)
    assert conn.data_to_send().endswith(b"250 2.0.0 OK: queued as Q9\r\n")


# -- refusing decisions -----------------------------------------------------------------------


def test_refuse_mail() -> None:
    conn = ready().conn
    conn.receive_data(b"MAIL FROM:<spam@example.org>\r\n")
    assert isinstance(conn.next_event(), MailFromRequest)
    conn.refuse(Reply(550, "5.7.1", ("Sender rejected",)))
    assert conn.state is State.READY
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b"550 5.7.1 Sender rejected\r\n"


def test_refuse_rcpt_with_a_temporary_error() -> None:
    conn = in_rcpt().conn
    conn.receive_data(b"RCPT TO:<later@example.org>\r\n")
    assert isinstance(conn.next_event(), RcptToRequest)
    conn.refuse(Reply(450, "4.2.1", ("Mailbox busy",)))
    assert conn.state is State.RCPT
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b"450 4.2.1 Mailbox busy\r\n"


def test_refuse_message_ends_the_transaction() -> None:
    drv = in_rcpt()
    conn = drv.conn
    conn.receive_data(b"DATA\r\nspam\r\n.\r\nRCPT TO:<r@example.org>\r\n")
    while not isinstance(event := conn.next_event(), MessageComplete):
        assert event is not NEED_DATA
    conn.refuse(replies.LOCAL_ERROR)
    assert conn.state is State.READY
    assert conn.next_event() is NEED_DATA
    assert pairs(conn.data_to_send()) == [(354, None), (451, "4.3.0"), (503, "5.5.1")]


def test_refuse_needs_an_error_reply_and_keeps_the_decision() -> None:
    conn = ready().conn
    conn.receive_data(b"MAIL FROM:<s@example.org>\r\n")
    assert isinstance(conn.next_event(), MailFromRequest)
    with pytest.raises(LocalProtocolError):
        conn.refuse(replies.OK)
    conn.accept()
    assert conn.data_to_send() == b"250 2.1.0 OK\r\n"


# -- misuse -----------------------------------------------------------------------------------


def test_accept_without_a_decision() -> None:
    conn = ready().conn
    with pytest.raises(LocalProtocolError):
        conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.refuse(replies.LOCAL_ERROR)
    with pytest.raises(LocalProtocolError):
        conn.accept_message("Q")
    assert conn.data_to_send() == b""


def test_next_event_before_answering_a_decision() -> None:
    conn = ready().conn
    conn.receive_data(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\n")
    assert isinstance(conn.next_event(), MailFromRequest)
    with pytest.raises(LocalProtocolError, match="MailFromRequest"):
        conn.next_event()
    conn.accept()
    assert isinstance(conn.next_event(), RcptToRequest)


def test_accept_message_for_a_mail_decision_keeps_the_decision() -> None:
    conn = ready().conn
    conn.receive_data(b"MAIL FROM:<s@example.org>\r\n")
    assert isinstance(conn.next_event(), MailFromRequest)
    with pytest.raises(LocalProtocolError):
        conn.accept_message("Q")
    conn.accept()
    assert conn.state is State.MAIL


def test_accept_for_a_message_raises() -> None:
    conn = in_rcpt().conn
    conn.receive_data(b"DATA\r\nx\r\n.\r\n")
    while not isinstance(conn.next_event(), MessageComplete):
        pass
    with pytest.raises(LocalProtocolError, match="accept_message"):
        conn.accept()


def test_accept_for_a_message_keeps_the_decision() -> None:
    conn = in_rcpt().conn
    conn.receive_data(b"DATA\r\nx\r\n.\r\n")
    while not isinstance(conn.next_event(), MessageComplete):
        pass
    with pytest.raises(LocalProtocolError):
        conn.accept()
    conn.accept_message("Q")
    assert conn.state is State.READY


def test_end_session_drops_the_pending_decision() -> None:
    conn = ready().conn
    conn.receive_data(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\n")
    assert isinstance(conn.next_event(), MailFromRequest)
    conn.end_session(replies.TIMEOUT)
    assert conn.data_to_send() == b"421 4.4.2 Error: timeout exceeded, closing connection\r\n"
    assert conn.next_event() == SessionEnded(EndReason.ENDED_BY_SERVER)
    with pytest.raises(LocalProtocolError):
        conn.accept()
    conn.receive_data(b"NOOP\r\n")
    assert conn.next_event() == SessionEnded(EndReason.ENDED_BY_SERVER)
    assert conn.data_to_send() == b""


def test_end_session_mid_data() -> None:
    drv = in_rcpt()
    drv.feed(b"DATA\r\nsome content\r\n")
    drv.conn.end_session(replies.SHUTTING_DOWN)
    drv.feed(b".\r\n")
    assert events_of(drv.events, MessageComplete) == []
    assert drv.events[-1] == SessionEnded(EndReason.ENDED_BY_SERVER)
    assert drv.take_pairs() == [(354, None), (421, "4.3.2")]


# -- replies ----------------------------------------------------------------------------------


def test_reply_rendering() -> None:
    assert Reply(250, None, ()).to_bytes() == b"250 \r\n"
    assert Reply(250, "2.0.0", ("a", "b")).to_bytes() == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"
    assert Reply(550, "5.7.1", ("no",)).is_error
    assert not replies.OK.is_error
    with pytest.raises(ValueError, match=r"200\.\.599"):
        Reply(600, None, ("x",))
    with pytest.raises(ValueError, match=r"200\.\.599"):
        Reply(199, None, ("x",))


def test_every_catalogued_reply_is_well_formed() -> None:
    catalogue = [value for value in vars(replies).values() if isinstance(value, Reply)]
    catalogue += [
        replies.greeting(HOSTNAME),
        replies.helo_ok(HOSTNAME, "c"),
        replies.ehlo_ok(HOSTNAME, "c", ("X",)),
        replies.queued("Q"),
        replies.syntax_error("X"),
        replies.bad_sender_address("x"),
        replies.bad_recipient_address("x"),
        replies.bad_parameter("x"),
    ]
    assert len(catalogue) > 30
    for reply in catalogue:
        [parsed] = parse_replies(reply.to_bytes())
        assert parsed.code == reply.code
        assert parsed.status == reply.status
        if reply.status is not None:
            assert reply.status[0] == str(reply.code)[0]


def test_reply_bytes_are_rendered_once_and_do_not_change_equality() -> None:
    reply = Reply(250, "2.0.0", ("a", "b"))
    assert reply.to_bytes() is reply.to_bytes()
    assert reply == Reply(250, "2.0.0", ("a", "b"))
    assert hash(reply) == hash(Reply(250, "2.0.0", ("a", "b")))
    assert repr(reply) == "Reply(code=250, status='2.0.0', lines=('a', 'b'))"
    # The cache is no field of this public class: it never shows in its attrs description.
    assert [field.name for field in attrs.fields(Reply)] == ["code", "status", "lines"]
    assert attrs.asdict(reply) == {"code": 250, "status": "2.0.0", "lines": ("a", "b")}


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(max_size=80) | st.text(string.printable, max_size=80))
def test_echo_keeps_printable_ascii_and_replaces_the_rest(text: str) -> None:
    # The plain per-character definition that echo's printable-ASCII shortcut must agree with.
    safe = "".join(char if " " <= char <= "~" else "?" for char in text[: replies.ECHO_LIMIT + 1])
    expected = safe if len(safe) <= replies.ECHO_LIMIT else safe[: replies.ECHO_LIMIT] + "..."
    assert replies.echo(text) == expected
