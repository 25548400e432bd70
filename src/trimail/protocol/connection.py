"""ServerConnection: the whole server side of one SMTP session, without any I/O.

The shell feeds bytes with ``receive_data`` (``b""`` for end of file), pulls events with
``next_event`` until it returns ``NEED_DATA`` (or ``NEED_SEND``: send, then ask again),
answers decision events with ``accept``,
``accept_message`` or ``refuse``, and writes whatever ``data_to_send`` returns. Replies to
pipelined commands accumulate in order, so the shell writes them in one ``send_all`` when it
runs out of input (RFC 2920 §3.2: flush before blocking on a read).
"""

from __future__ import annotations

from collections import deque

import attrs

from . import replies
from .addresses import Mailbox
from .body import BodyDecoder, BodyError
from .command_parser import CommandError, parse_command
from .commands import (
    Command,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Vrfy,
)
from .envelope import Envelope, TlsInfo
from .esmtp_params import MailParams
from .events import (
    NEED_DATA,
    NEED_SEND,
    EndReason,
    Event,
    MailFromRequest,
    MessageComplete,
    MessageData,
    MessageRejected,
    MessageStarted,
    NeedData,
    RcptToRequest,
    SessionEnded,
    TlsUpgradeRequested,
)
from .limits import ProtocolLimits
from .receive_buffer import LineStatus, ReceiveBuffer
from .replies import Reply
from .screening import ACCEPT, ASK, ASK_EVERYTHING, Screen, Verdict
from .states import OutOfSequence, State, after_reset, next_state


class LocalProtocolError(RuntimeError):
    """The shell used the connection wrongly (e.g. ``accept`` with no decision pending)."""


@attrs.define
class _Transaction:
    sender: Mailbox | None
    params: MailParams
    recipients: list[Mailbox] = attrs.Factory(list)


Pending = MailFromRequest | RcptToRequest | MessageComplete
#: The events that wait for a decision, as a tuple: ``isinstance`` checks a tuple faster than
#: the ``Pending`` union.
_PENDING_TYPES = (MailFromRequest, RcptToRequest, MessageComplete)
#: Limits are frozen, so every connection built without its own shares one default instance.
_DEFAULT_LIMITS = ProtocolLimits()


class ServerConnection:
    def __init__(
        self,
        *,
        hostname: str,
        limits: ProtocolLimits | None = None,
        tls_available: bool = False,
        tls: TlsInfo | None = None,
        require_tls: bool = False,
        screen: Screen | None = None,
    ) -> None:
        """``tls_available``: the shell can run a handshake, so STARTTLS is offered.
        ``tls``: the connection is already encrypted (implicit TLS, RFC 8314).
        ``require_tls``: MAIL is refused (530 5.7.0) until the connection is encrypted.
        ``screen``: decides MAIL and RCPT on the spot where it can (see ``screening``);
        without one, each becomes a decision event."""
        self.hostname = hostname
        self.limits = limits or _DEFAULT_LIMITS
        self.tls_available = tls_available
        self.tls = tls
        self.require_tls = require_tls
        self._screen = screen or ASK_EVERYTHING
        self.state = State.CONNECTED
        self.client_name: str | None = None
        self.extended = False
        self.errors = 0
        #: NOOP/RSET/VRFY/HELP since the last accepted message (Postfix's junk commands).
        self.junk_commands = 0
        self._buffer = ReceiveBuffer(self.limits.max_command_line)
        self._body_input: list[bytes] = []
        self._decoder: BodyDecoder | None = None
        self._transaction: _Transaction | None = None
        self._envelope: Envelope | None = None
        self._pending: Pending | None = None
        self._events: deque[Event] = deque()
        self._outgoing: list[bytes] = []
        self._outgoing_size = 0
        self._eof = False
        self._greeted = False
        self._end_reason: EndReason | None = None

    # -- what the shell calls -----------------------------------------------------------------

    @property
    def extensions(self) -> tuple[str, ...]:
        """The EHLO keywords, in the order Postfix lists them."""
        starttls = ("STARTTLS",) if self.tls_available and self.tls is None else ()
        return (
            "PIPELINING",
            f"SIZE {self.limits.max_message_size}",
            *starttls,
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "SMTPUTF8",
        )

    @property
    def awaiting_command(self) -> bool:
        """True between transactions' commands: no DATA in flight and no decision pending."""
        return (
            self.state not in (State.DATA, State.TLS_HANDSHAKE)
            and self._pending is None
            and not self._events
        )

    def greet(self) -> None:
        self._greeted = True
        self._queue(replies.greeting(self.hostname))

    @property
    def over_soft_error_limit(self) -> bool:
        """Past the soft limit, the shell delays each error reply (a tarpit for this client)."""
        return self.errors > self.limits.soft_errors

    def receive_data(self, data: bytes) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.TLS_HANDSHAKE:
            raise LocalProtocolError("bytes after STARTTLS belong to the TLS layer")
        if data and not self._greeted:
            # An SMTP client waits for the 220; one that talks first is a bot (Postfix
            # postscreen's pregreet test). Its bytes are never parsed.
            self._queue(replies.EARLY_TALKER)
            self._end(EndReason.EARLY_TALKER)
            return
        if not data:
            self._eof = True
        elif self._decoder is not None:
            self._body_input.append(data)
        else:
            self._buffer.feed(data)

    def next_event(self) -> Event | NeedData:
        if self._pending is not None:
            raise LocalProtocolError(f"answer {type(self._pending).__name__} first")
        if self.state is State.TLS_HANDSHAKE and not self._events:
            raise LocalProtocolError("call tls_started() once the TLS handshake is done")
        while not self._events:
            if self.state is State.CLOSED:
                assert self._end_reason is not None
                return SessionEnded(self._end_reason)
            if self._decoder is None and self._outgoing_size >= self.limits.max_pending_output:
                return NEED_SEND
            progressed = (
                self._process_body() if self._decoder is not None else self._process_command()
            )
            if not progressed:
                if self._eof:
                    self._end(EndReason.CLIENT_CLOSED)
                    continue
                return NEED_DATA
        event = self._events.popleft()
        if isinstance(event, _PENDING_TYPES):
            self._pending = event
        return event

    def accept(self) -> None:
        """Accept the pending MAIL or RCPT with the standard 250."""
        if isinstance(self._pending, MessageComplete):
            # Checked before taking the decision, so accept_message() still works after this.
            raise LocalProtocolError("use accept_message(queue_id) for a message")
        match self._take_pending():
            case MailFromRequest(sender=sender, params=params):
                self._accept_mail(sender, params)
            case RcptToRequest(recipient=recipient):
                self._accept_rcpt(recipient)

    def accept_message(self, queue_id: str) -> None:
        """The message is stored durably: answer 250 with its queue id."""
        if not isinstance(self._pending, MessageComplete):
            raise LocalProtocolError("no message is waiting for a decision")
        self._take_pending()
        self.junk_commands = 0  # a client that delivers mail is not idling
        self._queue_wire(replies.queued_wire(queue_id))
        self._end_transaction()

    def refuse(self, reply: Reply) -> None:
        """Refuse the pending MAIL, RCPT or message with ``reply``; the state is unchanged
        (or, for a message, the transaction ends as RFC 5321 §4.1.1.4 requires). A refused
        MAIL or RCPT counts towards the error limits."""
        if not reply.is_error:
            raise LocalProtocolError("refuse() needs a 4xx or 5xx reply")
        if isinstance(self._take_pending(), MessageComplete):
            self._finish_transaction(reply)
        else:
            # A refused MAIL or RCPT counts as an error, as in Postfix: a client harvesting
            # addresses with RCPT is slowed down and then disconnected.
            self._error(reply)

    def tls_started(self, info: TlsInfo) -> None:
        """The handshake after STARTTLS succeeded: start over as if just connected (RFC 3207
        §4.2: forget the EHLO; the client must greet again, now without STARTTLS offered)."""
        if self.state is not State.TLS_HANDSHAKE:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self.tls = info
        self.state = State.CONNECTED
        self.client_name = None
        self.extended = False
        self._transaction = None

    def end_session(self, reply: Reply) -> None:
        """Say ``reply`` (a 421 for timeouts and shutdown) and stop reading; after the session
        already ended (e.g. QUIT was answered) there is nothing more to say."""
        if self.state is State.CLOSED:
            return
        self._pending = None
        self._events.clear()
        self._queue(reply)
        self._end(EndReason.ENDED_BY_SERVER)

    @property
    def has_data_to_send(self) -> bool:
        """Replies are queued (``data_to_send`` would not be empty)."""
        return self._outgoing_size > 0

    def data_to_send(self) -> bytes:
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        self._outgoing_size = 0
        return out

    # -- command phase ------------------------------------------------------------------------

    def _process_command(self) -> bool:
        if self._buffer.discarded > self.limits.absurd_line:
            self._queue(replies.LINE_ABSURDLY_LONG)
            self._end(EndReason.LINE_TOO_LONG)
            return True
        line = self._buffer.next_line()
        if line is None:
            return False
        match line.status:  # the common case first: each case is a comparison
            case LineStatus.OK:
                smtputf8 = self._transaction is not None and self._transaction.params.smtputf8
                try:
                    command = parse_command(line.content, smtputf8=smtputf8)
                except CommandError as exc:
                    self._error(exc.reply)
                else:
                    self._dispatch(command)
            case LineStatus.TOO_LONG if line.length > self.limits.absurd_line:
                self._queue(replies.LINE_ABSURDLY_LONG)
                self._end(EndReason.LINE_TOO_LONG)
            case LineStatus.TOO_LONG:
                self._error(replies.LINE_TOO_LONG)
            case LineStatus.BARE_LF:
                self._error(replies.BARE_NEWLINE_IN_COMMAND)
        return True

    def _dispatch(self, command: Command) -> None:
        match command:  # a transaction's commands first: each case is an isinstance check
            case Mail(sender=sender, params=params):
                if not self._sequenced(command):
                    return
                if self.require_tls and self.tls is None:
                    self._error(replies.TLS_REQUIRED)
                    return
                if params.size is not None and params.size > self.limits.max_message_size:
                    self._error(replies.MESSAGE_TOO_BIG)
                    return
                verdict = self._screen.screen_sender(sender, params)
                if verdict is ACCEPT:
                    self._accept_mail(sender, params)
                elif self._asked(verdict):
                    self._events.append(MailFromRequest(sender, params))
            case Rcpt(recipient=recipient):
                if not self._sequenced(command):
                    return
                assert self._transaction is not None
                if len(self._transaction.recipients) >= self.limits.max_recipients:
                    self._error(replies.TOO_MANY_RECIPIENTS)
                    return
                verdict = self._screen.screen_recipient(recipient)
                if verdict is ACCEPT:
                    self._accept_rcpt(recipient)
                elif self._asked(verdict):
                    self._events.append(RcptToRequest(recipient))
            case Data():
                if self._sequenced(command):
                    self._start_data()
            case Helo(client_name=name) | Ehlo(client_name=name):
                if self._sequenced(command):
                    self._transaction = None
                    self.client_name = name
                    self.extended = isinstance(command, Ehlo)
                    self.state = State.READY
                    self._queue(
                        replies.ehlo_ok(self.hostname, name, self.extensions)
                        if self.extended
                        else replies.helo_ok(self.hostname, name)
                    )
            case StartTls():
                self._start_tls(command)
            case Rset():
                self._transaction = None
                self.state = after_reset(self.state)
                self._junk(replies.OK)
            case Noop():
                self._junk(replies.OK)
            case Vrfy():
                self._junk(replies.CANNOT_VRFY)
            case Expn():
                self._error(replies.EXPN_REFUSED)
            case Help():
                self._junk(replies.HELP)
            case Quit():
                self._queue(replies.BYE)
                self._end(EndReason.QUIT)

    def _accept_mail(self, sender: Mailbox | None, params: MailParams) -> None:
        self._transaction = _Transaction(sender, params)
        self.state = State.MAIL
        self._queue(replies.SENDER_OK)

    def _accept_rcpt(self, recipient: Mailbox) -> None:
        assert self._transaction is not None
        self._transaction.recipients.append(recipient)
        self.state = State.RCPT
        self._queue(replies.RECIPIENT_OK)

    def _asked(self, verdict: Verdict) -> bool:
        """True for ASK (the command becomes a decision event); a refusal is counted here, as
        one given with ``refuse()`` is."""
        if verdict is ASK:
            return True
        if not isinstance(verdict, Reply) or not verdict.is_error:
            raise LocalProtocolError(f"a screen answered {verdict!r}, not ACCEPT, ASK or an error")
        self._error(verdict)
        return False

    def _start_tls(self, command: StartTls) -> None:
        if self.tls is not None:
            self._error(replies.TLS_ALREADY_ACTIVE)
        elif not self.tls_available:
            self._error(replies.TLS_NOT_AVAILABLE)
        elif self._sequenced(command):
            # Whatever the client sent after STARTTLS was sent in plaintext and must never be
            # read as a command of the encrypted session (CVE-2011-0411, CVE-2024-34083).
            discarded = len(self._buffer.take_all())
            self.state = State.TLS_HANDSHAKE
            self._queue(replies.READY_FOR_TLS)
            self._events.append(TlsUpgradeRequested(discarded))

    def _sequenced(self, command: Helo | Ehlo | Mail | Rcpt | Data | StartTls) -> bool:
        """True when ``command`` is legal now; otherwise the 503/554 is already queued."""
        try:
            next_state(self.state, type(command))
        except OutOfSequence as exc:
            self._error(exc.reply)
            return False
        return True

    # -- DATA phase ---------------------------------------------------------------------------

    def _start_data(self) -> None:
        transaction = self._transaction
        assert transaction is not None and self.client_name is not None
        self._envelope = Envelope(
            client_name=self.client_name,
            extended=self.extended,
            sender=transaction.sender,
            recipients=tuple(transaction.recipients),
            params=transaction.params,
            tls=self.tls,
        )
        self.state = State.DATA
        self._decoder = BodyDecoder(self.limits.max_message_size)
        self._queue(replies.START_MAIL_INPUT)
        self._events.append(MessageStarted(self._envelope))
        pipelined = self._buffer.take_all()
        if pipelined:
            self._body_input.append(pipelined)

    def _process_body(self) -> bool:
        if not self._body_input:
            return False
        decoder, envelope = self._decoder, self._envelope
        assert decoder is not None and envelope is not None
        data = self._body_input[0] if len(self._body_input) == 1 else b"".join(self._body_input)
        self._body_input.clear()
        progress = decoder.feed(data)
        for chunk in progress.chunks:
            self._events.append(MessageData(chunk))
        if not progress.complete:
            return True
        self._decoder = None
        self._buffer.feed(progress.leftover)
        match decoder.error:
            case None:
                self._events.append(MessageComplete(envelope, decoder.size))
                # The state stays DATA until the shell decides, so nothing more is parsed.
            case BodyError.TOO_BIG:
                self._reject_message(envelope, replies.MESSAGE_TOO_BIG)
            case BodyError.BARE_NEWLINE:
                self._reject_message(envelope, replies.BARE_NEWLINE_IN_DATA)
        return True

    def _reject_message(self, envelope: Envelope, reply: Reply) -> None:
        self._events.append(MessageRejected(envelope, reply))
        self._finish_transaction(reply)

    def _finish_transaction(self, reply: Reply) -> None:
        self._queue(reply)
        self._end_transaction()

    def _end_transaction(self) -> None:
        self._transaction = None
        self._envelope = None
        self.state = State.READY

    # -- helpers ------------------------------------------------------------------------------

    def _take_pending(self) -> Pending:
        pending = self._pending
        if pending is None:
            raise LocalProtocolError("no decision is pending")
        self._pending = None
        return pending

    def _queue(self, reply: Reply) -> None:
        self._queue_wire(reply.to_bytes())

    def _queue_wire(self, data: bytes) -> None:
        self._outgoing.append(data)
        self._outgoing_size += len(data)

    def _junk(self, reply: Reply) -> None:
        """A command that does not move a transaction on: free up to a limit, then an error."""
        self.junk_commands += 1
        if self.junk_commands > self.limits.max_junk_commands:
            self._error(reply)
        else:
            self._queue(reply)

    def _error(self, reply: Reply) -> None:
        """Queue a protocol error; past the limit, end the session (Postfix hard_error_limit)."""
        self._queue(reply)
        self.errors += 1
        if self.errors >= self.limits.max_errors:
            self._queue(replies.TOO_MANY_ERRORS)
            self._end(EndReason.TOO_MANY_ERRORS)

    def _end(self, reason: EndReason) -> None:
        self.state = State.CLOSED
        self._end_reason = reason
        self._body_input.clear()
        self._decoder = None
