"""What the core tells the I/O shell. Events marked *decision* wait for ``accept``/``refuse``."""

from __future__ import annotations

import enum

import attrs

from .addresses import Mailbox
from .envelope import Envelope
from .esmtp_params import MailParams
from .replies import Reply


@attrs.frozen
class MailFromRequest:
    """Decision: a syntactically valid MAIL in the right state. ``accept()`` answers 250."""

    sender: Mailbox | None
    params: MailParams


@attrs.frozen
class RcptToRequest:
    """Decision: a syntactically valid RCPT within the recipient limit."""

    recipient: Mailbox


@attrs.frozen
class MessageStarted:
    """354 was queued; message content follows as ``MessageData`` events."""

    envelope: Envelope


@attrs.frozen
class MessageData:
    """A piece of unstuffed message content, in order."""

    data: bytes


@attrs.frozen
class MessageComplete:
    """Decision: the terminator arrived and the content is valid. ``accept_message(id)``."""

    envelope: Envelope
    size: int


@attrs.frozen
class MessageRejected:
    """The content broke a rule (size, bare newline); the reply is already queued."""

    envelope: Envelope
    reply: Reply


@attrs.frozen
class TlsUpgradeRequested:
    """STARTTLS was accepted and its 220 queued: flush, run the TLS handshake, then call
    ``tls_started``. Bytes the client pipelined after STARTTLS were dropped (RFC 3207 §5,
    CVE-2011-0411); ``discarded`` says how many, for the log."""

    discarded: int


class EndReason(enum.Enum):
    QUIT = "quit"
    CLIENT_CLOSED = "client closed"
    TOO_MANY_ERRORS = "too many errors"
    LINE_TOO_LONG = "line too long"
    EARLY_TALKER = "client spoke before the greeting"
    ENDED_BY_SERVER = "ended by server"


@attrs.frozen
class SessionEnded:
    """Nothing more will be read: flush ``data_to_send()`` and close."""

    reason: EndReason


class NeedData(enum.Enum):
    """Sentinels: the core cannot go on until the shell does its part."""

    #: Send ``data_to_send()``, then feed more bytes with ``receive_data``.
    NEED_DATA = "need-data"
    #: Replies are piling up (a client pipelining faster than it reads them): send
    #: ``data_to_send()`` and call ``next_event`` again. Input waits unparsed meanwhile, so a
    #: client that never reads cannot make the server queue replies without bound.
    NEED_SEND = "need-send"


NEED_DATA = NeedData.NEED_DATA
NEED_SEND = NeedData.NEED_SEND

Event = (
    MailFromRequest
    | RcptToRequest
    | MessageStarted
    | MessageData
    | MessageComplete
    | MessageRejected
    | TlsUpgradeRequested
    | SessionEnded
)
