"""Session states and the ONE table of legal transitions.

Every command that changes or depends on the session state is looked up here; a command with
no row for the current state is out of sequence and gets the 503 5.5.1 reply stored in the
table. Commands that are legal in every state (NOOP, VRFY, HELP, EXPN, QUIT, RSET) are not in
the table at all. Transitions happen only when a command succeeds: a refused RCPT leaves the
state where it was.
"""

from __future__ import annotations

import enum

from . import replies
from .commands import Data, Ehlo, Helo, Mail, Rcpt, StartTls
from .replies import Reply


class State(enum.Enum):
    #: Connected, greeting sent, no HELO/EHLO yet.
    CONNECTED = "connected"
    #: HELO/EHLO done, no transaction open.
    READY = "ready"
    #: MAIL accepted, no recipient yet.
    MAIL = "mail"
    #: At least one RCPT accepted.
    RCPT = "rcpt"
    #: 354 sent; bytes are message content until <CRLF>.<CRLF>.
    DATA = "data"
    #: 220 to STARTTLS sent; the shell owns the connection until its TLS handshake is done.
    TLS_HANDSHAKE = "tls-handshake"
    #: QUIT answered or the session was ended; nothing more is read.
    CLOSED = "closed"


SequencedCommand = type[Helo] | type[Ehlo] | type[Mail] | type[Rcpt] | type[Data] | type[StartTls]

_GREETING_DONE = (State.READY, State.MAIL, State.RCPT)

#: (state, command type) -> state after the command succeeds.
TRANSITIONS: dict[tuple[State, SequencedCommand], State] = {
    **{(state, Helo): State.READY for state in (State.CONNECTED, *_GREETING_DONE)},
    **{(state, Ehlo): State.READY for state in (State.CONNECTED, *_GREETING_DONE)},
    (State.READY, Mail): State.MAIL,
    (State.MAIL, Rcpt): State.RCPT,
    (State.RCPT, Rcpt): State.RCPT,
    (State.RCPT, Data): State.DATA,
    # RFC 3207 §4.2: after the handshake the session starts over, as if just connected.
    (State.CONNECTED, StartTls): State.TLS_HANDSHAKE,
    (State.READY, StartTls): State.TLS_HANDSHAKE,
}

#: The reply for each out-of-sequence (state, command) pair; the default is NEED_HELO.
_OUT_OF_SEQUENCE: dict[tuple[State, SequencedCommand], Reply] = {
    (State.MAIL, Mail): replies.NESTED_MAIL,
    (State.RCPT, Mail): replies.NESTED_MAIL,
    (State.READY, Rcpt): replies.NEED_MAIL,
    (State.READY, Data): replies.NEED_MAIL,
    # RFC 2920 §3.1: with pipelining, DATA after only failed RCPTs gets 554, not 503.
    (State.MAIL, Data): replies.NO_VALID_RECIPIENTS,
    (State.MAIL, StartTls): replies.TLS_IN_TRANSACTION,
    (State.RCPT, StartTls): replies.TLS_IN_TRANSACTION,
}


class OutOfSequence(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


def next_state(state: State, command: SequencedCommand) -> State:
    """The state after ``command`` succeeds, or ``OutOfSequence`` with the reply to send."""
    try:
        return TRANSITIONS[state, command]
    except KeyError:
        raise OutOfSequence(_OUT_OF_SEQUENCE.get((state, command), replies.NEED_HELO)) from None


def after_reset(state: State) -> State:
    """RSET (RFC 5321 §4.1.1.5) and a new EHLO abort the transaction but keep the greeting."""
    return State.CONNECTED if state is State.CONNECTED else State.READY
