"""A screen decides MAIL and RCPT as they are parsed; the wire must not tell it from events.

Every test compares a connection with a screen against one without, whose shell answers the
decision events with the same rule: replies, states, envelopes and error counts must match.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trimail.protocol import replies
from trimail.protocol.addresses import Mailbox
from trimail.protocol.connection import LocalProtocolError, ServerConnection
from trimail.protocol.esmtp_params import MailParams
from trimail.protocol.events import (
    NEED_DATA,
    Event,
    MailFromRequest,
    MessageComplete,
    MessageStarted,
    NeedData,
    RcptToRequest,
    SessionEnded,
)
from trimail.protocol.limits import ProtocolLimits
from trimail.protocol.replies import Reply
from trimail.protocol.screening import ACCEPT, ASK, Verdict

from .support import HOSTNAME

#: A rule: the refusal for an address (``None``: accept). ``None`` stands for the null sender.
Rule = Callable[[Mailbox | None], Reply | None]


def accept_all(_address: Mailbox | None) -> Reply | None:
    return None


def refuse_example_com(address: Mailbox | None) -> Reply | None:
    if address is not None and address.domain == "example.com":
        return replies.RELAY_DENIED
    return None


@attrs.define
class RuleScreen:
    """Answers with ``rule`` at once, or ASK for everything when ``ask`` is set."""

    rule: Rule
    ask: bool = False
    asked: list[str] = attrs.Factory(list)

    def screen_sender(self, sender: Mailbox | None, params: MailParams) -> Verdict:
        self.asked.append(f"MAIL {sender}")
        return self._verdict(sender)

    def screen_recipient(self, recipient: Mailbox) -> Verdict:
        self.asked.append(f"RCPT {recipient}")
        return self._verdict(recipient)

    def _verdict(self, address: Mailbox | None) -> Verdict:
        if self.ask:
            return ASK
        refusal = self.rule(address)
        return ACCEPT if refusal is None else refusal


def converse(
    conn: ServerConnection, chunks: list[bytes], rule: Rule
) -> tuple[bytes, list[Event], int]:
    """Feed ``chunks``, answering decision events with ``rule``; the wire, events, errors."""
    conn.greet()
    wire = bytearray(conn.data_to_send())
    events: list[Event] = []
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, NeedData):  # NEED_SEND: send, then go on
                wire += conn.data_to_send()
                continue
            events.append(event)
            match event:
                case MailFromRequest(sender=address) | RcptToRequest(recipient=address):
                    refusal = rule(address)
                    if refusal is None:
                        conn.accept()
                    else:
                        conn.refuse(refusal)
                case MessageComplete():
                    conn.accept_message("Q")
                case SessionEnded():
                    break
        wire += conn.data_to_send()
        if events and isinstance(events[-1], SessionEnded):
            break
    return bytes(wire), events, conn.errors


def without_decisions(events: list[Event]) -> list[Event]:
    return [e for e in events if not isinstance(e, MailFromRequest | RcptToRequest)]


SESSION = (
    b"EHLO client.example\r\n"
    b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c@example.com>\r\n"
    b"RCPT TO:<d@example.org>\r\nDATA\r\nSubject: one\r\n\r\nbody\r\n.\r\n"
    b"MAIL FROM:<>\r\nRCPT TO:<e@example.com>\r\nDATA\r\n"  # no valid recipient: 554
    b"RSET\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<f@example.org>\r\n"
    b"MAIL FROM:<a@example.org>\r\n"  # nested MAIL: 503, sequence errors are the core's
    b"DATA\r\nSubject: two\r\n\r\n.\r\nQUIT\r\n"
)


@pytest.mark.parametrize("rule", [accept_all, refuse_example_com])
def test_a_screened_session_says_exactly_what_an_answering_shell_says(rule: Rule) -> None:
    screen = RuleScreen(rule)
    screened = converse(ServerConnection(hostname=HOSTNAME, screen=screen), [SESSION], rule)
    asked = converse(ServerConnection(hostname=HOSTNAME), [SESSION], rule)
    assert screened[0] == asked[0]
    assert screened[2] == asked[2]
    assert screened[1] == without_decisions(asked[1])
    assert not any(isinstance(e, MailFromRequest | RcptToRequest) for e in screened[1])
    assert screen.asked[:3] == ["MAIL a@example.org", "RCPT b@example.org", "RCPT c@example.com"]


@given(cuts=st.lists(st.integers(min_value=1, max_value=len(SESSION) - 1), max_size=6))
def test_any_split_of_the_input_gives_the_same_wire(cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(SESSION)]
    chunks = [SESSION[a:b] for a, b in itertools.pairwise(bounds)]
    screen = RuleScreen(refuse_example_com)
    screened = converse(
        ServerConnection(hostname=HOSTNAME, screen=screen), chunks, refuse_example_com
    )
    whole = converse(ServerConnection(hostname=HOSTNAME), [SESSION], refuse_example_com)
    assert screened[0] == whole[0]


def test_ask_turns_the_command_into_the_usual_decision_event() -> None:
    screen = RuleScreen(accept_all, ask=True)
    wire, events, _ = converse(
        ServerConnection(hostname=HOSTNAME, screen=screen), [SESSION], accept_all
    )
    plain_wire, plain_events, _ = converse(
        ServerConnection(hostname=HOSTNAME), [SESSION], accept_all
    )
    assert (wire, events) == (plain_wire, plain_events)
    assert any(isinstance(e, MailFromRequest) for e in events)


def test_a_screened_message_carries_the_screened_envelope() -> None:
    screen = RuleScreen(refuse_example_com)
    _, events, _ = converse(
        ServerConnection(hostname=HOSTNAME, screen=screen), [SESSION], refuse_example_com
    )
    started = [e.envelope for e in events if isinstance(e, MessageStarted)]
    assert [str(r) for r in started[0].recipients] == ["b@example.org", "d@example.org"]


def test_screened_refusals_count_towards_the_hard_error_limit() -> None:
    limits = ProtocolLimits(soft_errors=1, max_errors=3)
    rcpts = b"".join(b"RCPT TO:<x%d@example.com>\r\n" % i for i in range(5))
    chunks = [b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n" + rcpts]
    conn = ServerConnection(hostname=HOSTNAME, limits=limits, screen=RuleScreen(refuse_example_com))
    wire, events, errors = converse(conn, chunks, refuse_example_com)
    assert errors == 3
    assert isinstance(events[-1], SessionEnded)
    assert wire.count(replies.RELAY_DENIED.to_bytes()) == 3
    assert wire.endswith(replies.TOO_MANY_ERRORS.to_bytes())


def test_a_screen_answering_a_success_reply_is_a_shell_bug() -> None:
    def success(_address: Mailbox | None) -> Reply | None:
        return replies.OK

    conn = ServerConnection(hostname=HOSTNAME, screen=RuleScreen(success))
    conn.greet()
    conn.receive_data(b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n")
    with pytest.raises(LocalProtocolError, match="screen answered"):
        while conn.next_event() is not NEED_DATA:
            pass
