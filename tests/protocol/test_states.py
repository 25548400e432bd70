"""The transition table, directly and through ServerConnection, and RSET/EHLO reset semantics."""

from __future__ import annotations

import pytest

from trimail.protocol import replies
from trimail.protocol.addresses import Mailbox
from trimail.protocol.commands import Data, Ehlo, Helo, Mail, Rcpt, StartTls
from trimail.protocol.connection import ServerConnection
from trimail.protocol.events import (
    NEED_DATA,
    EndReason,
    MailFromRequest,
    MessageComplete,
    MessageStarted,
    RcptToRequest,
    SessionEnded,
    TlsUpgradeRequested,
)
from trimail.protocol.replies import Reply
from trimail.protocol.states import (
    TRANSITIONS,
    OutOfSequence,
    SequencedCommand,
    State,
    after_reset,
    next_state,
)

from .support import Driver, driver, events_of

COMMANDS: list[SequencedCommand] = [Helo, Ehlo, Mail, Rcpt, Data, StartTls]
COMMAND_STATES = [State.CONNECTED, State.READY, State.MAIL, State.RCPT]

#: The whole table, written out independently of states.py.
EXPECTED: dict[tuple[State, SequencedCommand], State | Reply] = {
    (State.CONNECTED, Helo): State.READY,
    (State.CONNECTED, Ehlo): State.READY,
    (State.CONNECTED, Mail): replies.NEED_HELO,
    (State.CONNECTED, Rcpt): replies.NEED_HELO,
    (State.CONNECTED, Data): replies.NEED_HELO,
    (State.READY, Helo): State.READY,
    (State.READY, Ehlo): State.READY,
    (State.READY, Mail): State.MAIL,
    (State.READY, Rcpt): replies.NEED_MAIL,
    (State.READY, Data): replies.NEED_MAIL,
    (State.MAIL, Helo): State.READY,
    (State.MAIL, Ehlo): State.READY,
    (State.MAIL, Mail): replies.NESTED_MAIL,
    (State.MAIL, Rcpt): State.RCPT,
    (State.MAIL, Data): replies.NO_VALID_RECIPIENTS,
    (State.RCPT, Helo): State.READY,
    (State.RCPT, Ehlo): State.READY,
    (State.RCPT, Mail): replies.NESTED_MAIL,
    (State.RCPT, Rcpt): State.RCPT,
    (State.RCPT, Data): State.DATA,
    (State.CONNECTED, StartTls): State.TLS_HANDSHAKE,
    (State.READY, StartTls): State.TLS_HANDSHAKE,
    (State.MAIL, StartTls): replies.TLS_IN_TRANSACTION,
    (State.RCPT, StartTls): replies.TLS_IN_TRANSACTION,
}

LINES: dict[SequencedCommand, bytes] = {
    Helo: b"HELO again.example\r\n",
    Ehlo: b"EHLO again.example\r\n",
    Mail: b"MAIL FROM:<s@example.org>\r\n",
    Rcpt: b"RCPT TO:<r2@example.org>\r\n",
    Data: b"DATA\r\n",
    StartTls: b"STARTTLS\r\n",
}


def test_expected_table_covers_every_reachable_pair() -> None:
    assert set(EXPECTED) == {(state, command) for state in COMMAND_STATES for command in COMMANDS}
    assert {key: value for key, value in EXPECTED.items() if isinstance(value, State)} == (
        TRANSITIONS
    )


@pytest.mark.parametrize(("state", "command"), list(EXPECTED))
def test_next_state(state: State, command: SequencedCommand) -> None:
    expected = EXPECTED[state, command]
    if isinstance(expected, State):
        assert next_state(state, command) is expected
    else:
        with pytest.raises(OutOfSequence) as info:
            next_state(state, command)
        assert info.value.reply == expected


def test_out_of_sequence_replies_are_503_5_5_1_except_data_without_recipients() -> None:
    for (state, command), expected in EXPECTED.items():
        if isinstance(expected, Reply):
            wanted = (554, "5.5.1") if (state, command) == (State.MAIL, Data) else (503, "5.5.1")
            assert (expected.code, expected.status) == wanted


@pytest.mark.parametrize("state", [State.DATA, State.CLOSED])
@pytest.mark.parametrize("command", COMMANDS)
def test_nothing_is_sequenced_during_data_or_after_close(
    state: State, command: SequencedCommand
) -> None:
    with pytest.raises(OutOfSequence) as info:
        next_state(state, command)
    assert (info.value.reply.code, info.value.reply.status) == (503, "5.5.1")


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.CONNECTED, State.CONNECTED),
        (State.READY, State.READY),
        (State.MAIL, State.READY),
        (State.RCPT, State.READY),
    ],
)
def test_after_reset(state: State, expected: State) -> None:
    assert after_reset(state) is expected


# -- the same table through ServerConnection ------------------------------------------------


def in_state(state: State) -> Driver:
    drv = driver(tls_available=True)
    setup = {
        State.CONNECTED: b"",
        State.READY: b"EHLO client.example\r\n",
        State.MAIL: b"EHLO client.example\r\nMAIL FROM:<s@example.org>\r\n",
        State.RCPT: (
            b"EHLO client.example\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\n"
        ),
    }[state]
    if setup:
        drv.feed(setup)
    assert drv.conn.state is state
    drv.take_output()
    return drv


@pytest.mark.parametrize(("state", "command"), list(EXPECTED))
def test_transition_through_the_connection(state: State, command: SequencedCommand) -> None:
    drv = in_state(state)
    errors_before = drv.conn.errors
    new_events = drv.feed(LINES[command])
    out = drv.take_pairs()
    expected = EXPECTED[state, command]
    if isinstance(expected, Reply):
        assert out == [(expected.code, expected.status)]
        assert drv.conn.state is state
        assert drv.conn.errors == errors_before + 1
        assert new_events == []
        return
    assert drv.conn.state is expected
    assert drv.conn.errors == errors_before
    if command in (Helo, Ehlo):
        assert [code for code, _ in out] == [250]
    elif command is Mail:
        assert out == [(250, "2.1.0")]
        assert len(events_of(new_events, MailFromRequest)) == 1
    elif command is Rcpt:
        assert out == [(250, "2.1.5")]
        assert len(events_of(new_events, RcptToRequest)) == 1
    elif command is StartTls:
        assert out == [(220, "2.0.0")]
        assert new_events == [TlsUpgradeRequested(discarded=0)]
    else:
        assert out == [(354, None)]
        assert len(events_of(new_events, MessageStarted)) == 1


@pytest.mark.parametrize("state", COMMAND_STATES)
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"NOOP\r\n", (250, "2.0.0")),
        (b"VRFY someone\r\n", (252, "2.5.2")),
        (b"HELP\r\n", (214, "2.0.0")),
        (b"EXPN list\r\n", (502, "5.5.1")),
    ],
)
def test_stateless_commands_keep_the_state(
    state: State, line: bytes, expected: tuple[int, str]
) -> None:
    drv = in_state(state)
    drv.feed(line)
    assert drv.take_pairs() == [expected]
    assert drv.conn.state is state


@pytest.mark.parametrize("state", COMMAND_STATES)
def test_quit_closes_in_every_state(state: State) -> None:
    drv = in_state(state)
    assert drv.feed(b"QUIT\r\n") == [SessionEnded(EndReason.QUIT)]
    assert drv.take_pairs() == [(221, "2.0.0")]
    assert drv.conn.state is State.CLOSED


@pytest.mark.parametrize("state", COMMAND_STATES)
def test_rset_in_every_state(state: State) -> None:
    drv = in_state(state)
    drv.feed(b"RSET\r\n")
    assert drv.take_pairs() == [(250, "2.0.0")]
    assert drv.conn.state is after_reset(state)
    assert drv.conn.errors == 0


# -- reset semantics ------------------------------------------------------------------------


def test_rset_before_helo_still_needs_helo() -> None:
    drv = in_state(State.CONNECTED)
    drv.feed(b"RSET\r\nMAIL FROM:<s@example.org>\r\n")
    assert drv.take_pairs() == [(250, "2.0.0"), (503, "5.5.1")]
    assert drv.conn.state is State.CONNECTED


def test_rset_aborts_the_transaction() -> None:
    drv = in_state(State.RCPT)
    drv.feed(b"RSET\r\nRCPT TO:<x@example.org>\r\nDATA\r\n")
    assert drv.take_pairs() == [(250, "2.0.0"), (503, "5.5.1"), (503, "5.5.1")]
    assert drv.conn.state is State.READY


def test_a_new_transaction_after_rset_starts_empty() -> None:
    drv = in_state(State.RCPT)
    events = drv.feed(
        b"RSET\r\nMAIL FROM:<new@example.org> BODY=8BITMIME\r\n"
        b"RCPT TO:<only@example.org>\r\nDATA\r\nhi\r\n.\r\n"
    )
    [started] = events_of(events, MessageStarted)
    assert started.envelope.sender == Mailbox("new", "example.org")
    assert started.envelope.recipients == (Mailbox("only", "example.org"),)
    assert started.envelope.eight_bit
    assert len(events_of(events, MessageComplete)) == 1


@pytest.mark.parametrize("verb", [b"EHLO", b"HELO"])
def test_helo_or_ehlo_mid_transaction_resets_it(verb: bytes) -> None:
    drv = in_state(State.RCPT)
    drv.feed(verb + b" other.example\r\nDATA\r\n")
    replies_ = drv.take_pairs()
    assert replies_[-1] == (503, "5.5.1")
    assert replies_[0][0] == 250
    assert drv.conn.state is State.READY
    assert drv.conn.client_name == "other.example"
    assert drv.conn.extended is (verb == b"EHLO")


def test_the_envelope_records_the_latest_greeting() -> None:
    drv = in_state(State.READY)
    events = drv.feed(
        b"HELO plain.example\r\nMAIL FROM:<>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n.\r\n"
    )
    [started] = events_of(events, MessageStarted)
    assert started.envelope.client_name == "plain.example"
    assert not started.envelope.extended
    assert started.envelope.sender is None
    assert started.envelope.reverse_path == "<>"


def test_rset_forgets_smtputf8() -> None:
    drv = in_state(State.READY)
    drv.feed(
        b"MAIL FROM:<s@example.org> SMTPUTF8\r\n"
        + "RCPT TO:<j\u00f6rg@example.org>\r\n".encode()
        + b"RSET\r\nMAIL FROM:<s@example.org>\r\n"
        + "RCPT TO:<j\u00f6rg@example.org>\r\n".encode()
    )
    assert drv.take_pairs() == [
        (250, "2.1.0"),
        (250, "2.1.5"),
        (250, "2.0.0"),
        (250, "2.1.0"),
        (553, "5.6.7"),
    ]


def test_refused_mail_leaves_the_state_ready() -> None:
    conn = in_state(State.READY).conn
    conn.receive_data(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\n")
    assert isinstance(conn.next_event(), MailFromRequest)
    conn.refuse(Reply(550, "5.7.1", ("sender refused",)))
    assert conn.state is State.READY
    assert_next_is_need_data(conn)
    assert (
        conn.data_to_send() == b"550 5.7.1 sender refused\r\n503 5.5.1 Error: need MAIL command\r\n"
    )


def test_refused_rcpt_leaves_the_state_mail_and_data_gets_554() -> None:
    conn = in_state(State.MAIL).conn
    conn.receive_data(b"RCPT TO:<r@example.org>\r\nDATA\r\n")
    assert isinstance(conn.next_event(), RcptToRequest)
    conn.refuse(Reply(550, "5.1.1", ("no such user",)))
    assert conn.state is State.MAIL
    assert_next_is_need_data(conn)
    assert conn.data_to_send() == (
        b"550 5.1.1 no such user\r\n554 5.5.1 Error: no valid recipients\r\n"
    )
    assert conn.state is State.MAIL


def assert_next_is_need_data(conn: ServerConnection) -> None:
    assert conn.next_event() is NEED_DATA
