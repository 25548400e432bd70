"""Decisions on MAIL and RCPT that the shell can take at once, handed to the core up front.

Without a screen every valid MAIL and RCPT becomes a decision event, and the core stops until
the shell answers it: an event object, a trip through the shell's event loop and an ``accept``
call per command. Most decisions need no awaiting at all (a rate-limit counter, the list of
accepted domains), so a shell can give the core a ``Screen`` that answers synchronously: the
core applies ``ACCEPT`` or a refusal on the spot, exactly as ``accept()`` or ``refuse()`` would,
and only ``ASK`` (a handler hook that must be awaited) turns the command into an event. The
core stays free of I/O: a screen must not block, and the core never learns why it answered.
"""

from __future__ import annotations

import enum
from typing import Literal, Protocol

from .addresses import Mailbox
from .esmtp_params import MailParams
from .replies import Reply


class Screened(enum.Enum):
    #: Accept the command now, as ``accept()`` would.
    ACCEPT = "accept"
    #: Undecided: emit the decision event and wait for ``accept()`` or ``refuse()``.
    ASK = "ask"


ACCEPT = Screened.ACCEPT
ASK = Screened.ASK

#: A screen's answer: ``ACCEPT``, ``ASK``, or an error ``Reply`` to refuse with (the refusal
#: counts towards the error limits, as ``refuse()`` does).
Verdict = Reply | Literal[Screened.ACCEPT, Screened.ASK]


class Screen(Protocol):
    def screen_sender(self, sender: Mailbox | None, params: MailParams) -> Verdict:
        """A MAIL that is valid and in sequence."""
        ...

    def screen_recipient(self, recipient: Mailbox) -> Verdict:
        """A RCPT that is valid, in sequence and within the recipient limit."""
        ...


class _AskEverything:
    """The screen of a shell that gave none: every MAIL and RCPT becomes a decision event."""

    def screen_sender(self, sender: Mailbox | None, params: MailParams) -> Verdict:
        return ASK

    def screen_recipient(self, recipient: Mailbox) -> Verdict:
        return ASK


ASK_EVERYTHING: Screen = _AskEverything()
