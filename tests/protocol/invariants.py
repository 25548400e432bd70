"""Invariants of the sans-I/O core under abuse, checked against an independent session model.

Shared by ``test_abuse_properties.py`` and by the coverage-guided fuzz target in ``fuzz/``
(which imports this module; the tests never import from ``fuzz/``).

``run_session`` drives a ``ServerConnection`` the way any *legal* shell could: random chunking,
several feeds before a drain, random decisions (accept, refuse with 4xx/5xx, end the session),
STARTTLS handshakes that succeed or are abandoned, end of file, ``end_session`` at odd moments.
Because the driver only makes legal calls, any exception from the core is a bug.

Every round (an input, then ``next_event`` until ``NEED_DATA``, a handshake or the end) yields
an ordered transcript of replies, events, the driver's own calls and its sends (at ``NEED_SEND``,
which it must obey, and now and then of its own accord). ``SessionModel`` replays it against the
client's bytes, framed independently: one reply (or one decision) per command line in order,
message content re-derived by a slow per-line un-dot-stuffing, STARTTLS pipelining discarded
byte for byte, the error and junk-command limits, and the output budget (``NEED_SEND`` exactly
when the replies not yet taken reach ``max_pending_output`` in the command phase). Each check
that fails raises ``Violation`` with a ``kind`` so a fuzzing campaign can set a known,
already-reported kind aside and look for new ones.
"""

from __future__ import annotations

import enum
import functools
import random
import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TypeVar

import attrs

from trimail.protocol import replies
from trimail.protocol.addresses import Mailbox
from trimail.protocol.connection import ServerConnection
from trimail.protocol.envelope import Envelope, TlsInfo
from trimail.protocol.events import (
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
from trimail.protocol.limits import ProtocolLimits
from trimail.protocol.replies import Reply
from trimail.protocol.states import State

T = TypeVar("T")

HOSTNAME = "mx.test"
QUEUE_ID = "Q1"
TLS_INFO = TlsInfo(version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", bits=128)

#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and <CRLF>.
MAX_REPLY_LINE = 512

#: Every kind of violation; a campaign may pass some of them as ``ignore`` (known bugs).
KINDS = frozenset(
    {
        "exception",  # the core raised although the driver only made legal calls
        "reply-syntax",  # output that is not a sequence of well-formed reply lines
        "reply-too-long",  # a reply line over 512 octets (RFC 5321 §4.5.3.1.5)
        "reply-not-ascii",  # reply text outside HT/SP/printable ASCII (RFC 5321 §4.2)
        "reply-status",  # missing enhanced status code, or one of the wrong class
        "model",  # a reply or event that does not fit the command line it answers
        "error-limit",  # the session did not end after exactly max_errors errors
        "backpressure",  # NEED_SEND early, late or in DATA; unsent output over its bound
        "smuggling",  # message boundaries or content differ from the reference framing
        "starttls",  # bytes pipelined after an accepted STARTTLS were not discarded
        "memory",  # a buffer grew past its bound, or content was held back
        "after-close",  # output, events or a changed reason after SessionEnded
        "end-after-close",  # end_session() after SessionEnded still says something
    }
)


class Violation(AssertionError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind


@attrs.frozen
class Checks:
    """Which violation kinds to report; ``ignore`` holds known, already-reported ones."""

    ignore: frozenset[str] = frozenset()

    def fail(self, kind: str, message: str) -> None:
        assert kind in KINDS, kind
        if kind not in self.ignore:
            raise Violation(kind, message)

    def check(self, condition: bool, kind: str, message: str) -> None:
        if not condition:
            self.fail(kind, message)


STRICT = Checks()


# -- replies on the wire -------------------------------------------------------------------------

#: One reply line without its CRLF. (Only whole-string matching is used here: atheris's regex
#: hook, which the fuzz target enables, does not support a start position.)
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])([^\r\n]*)")
_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3}) ")
_TEXT = re.compile(rb"[\t\x20-\x7e]*")
#: Replies that carry no enhanced status code (RFC 2034 §4: greeting and HELO/EHLO; 354).
_NO_STATUS = frozenset({220, 250, 354})


@attrs.frozen
class WireReply:
    code: int
    status: str | None
    #: Text lines without the status prefix.
    lines: tuple[str, ...]
    #: Octets on the wire, every CRLF included (what the reply costs the output budget).
    size: int = attrs.field(default=0, eq=False)

    @property
    def pair(self) -> tuple[int, str | None]:
        return self.code, self.status

    def __str__(self) -> str:
        return f"{self.code} {self.status or '-'} {' | '.join(self.lines)}"


def parse_wire(data: bytes, checks: Checks = STRICT) -> list[WireReply]:
    """Split output into replies, checking the syntax of every line on the way."""
    found: list[WireReply] = []
    code: bytes | None = None
    texts: list[str] = []
    size = 0
    *lines, rest = data.split(b"\r\n")
    if rest:
        checks.fail("reply-syntax", f"output does not end with CRLF: {data!r}")
    for line in lines:
        match = _REPLY_LINE.fullmatch(line)
        if match is None:
            checks.fail("reply-syntax", f"malformed reply line {line!r} in {data!r}")
            return found
        line_code, separator, text = match.groups()
        checks.check(
            len(line) + 2 <= MAX_REPLY_LINE,
            "reply-too-long",
            f"reply line of {len(line) + 2} octets: {line[:80]!r}...",
        )
        checks.check(_TEXT.fullmatch(text) is not None, "reply-not-ascii", f"reply text {line!r}")
        if code is not None and line_code != code:
            checks.fail("reply-syntax", f"code changes inside a multi-line reply: {data!r}")
        code = line_code
        texts.append(text.decode("utf-8", errors="replace"))
        size += len(line) + 2
        if separator == b" ":
            found.append(_wire_reply(int(code), texts, size, checks))
            code, texts, size = None, [], 0
    if code is not None:
        checks.fail("reply-syntax", f"unterminated multi-line reply in {data!r}")
    return found


def _wire_reply(code: int, texts: list[str], size: int, checks: Checks) -> WireReply:
    statuses = [match[0] if (match := _STATUS.match(text)) else None for text in texts]
    status = statuses[0]
    if status is None or code == 354:
        checks.check(code in _NO_STATUS, "reply-status", f"{code} without a status: {texts}")
        return WireReply(code, None, tuple(texts), size)
    checks.check(
        all(each == status for each in statuses),
        "reply-status",
        f"status not repeated on every line: {texts}",
    )
    checks.check(
        status[0] == str(code)[0], "reply-status", f"{code} with status of another class: {status}"
    )
    return WireReply(code, status.strip(), tuple(text[len(status) :] for text in texts), size)


# -- the transcript ------------------------------------------------------------------------------


class Decision(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    END_SESSION = "end-session"


@attrs.frozen
class Decided:
    """The driver answered ``request``; ``replies`` is exactly what that call queued."""

    request: MailFromRequest | RcptToRequest | MessageComplete
    decision: Decision
    reply: Reply | None
    replies: tuple[WireReply, ...]


@attrs.frozen
class EndCalled:
    """The driver called ``end_session(reply)`` outside a decision."""

    reply: Reply
    replies: tuple[WireReply, ...]


@attrs.frozen
class Flushed:
    """The driver took ``data_to_send()`` of its own accord (not at a ``NEED_SEND``)."""


#: ``NEED_SEND`` appears in the transcript where the core returned it; the driver always takes
#: ``data_to_send()`` right then, so it also marks a send. ``NEED_DATA`` ends a round.
Item = WireReply | Event | NeedData | Decided | EndCalled | Flushed


class Stop(enum.Enum):
    NEED_DATA = "need-data"
    HANDSHAKE = "handshake"
    ENDED = "ended"


#: Refusals the driver picks from; none of them is a reply the core itself ever sends.
REFUSALS = (
    Reply(450, "4.7.1", ("driver: try again later",)),
    Reply(451, "4.3.0", ("driver: local trouble",)),
    Reply(421, "4.7.0", ("driver: refused but not ending",)),
    Reply(550, "5.7.1", ("driver: refused",)),
    Reply(553, "5.1.8", ("driver: bad address",)),
    Reply(554, "5.7.0", ("driver: policy",)),
)
END_REPLIES = (
    Reply(421, "4.4.2", ("driver: timeout",)),
    Reply(421, "4.3.2", ("driver: shutting down",)),
)


# -- the output budget ---------------------------------------------------------------------------


def _size(reply: Reply) -> int:
    return len(reply.to_bytes())


@functools.cache
def reply_allowance(limits: ProtocolLimits) -> int:
    """The most output one step of the core can queue after its last budget check: the "one
    reply's worth" that the replies not yet taken may exceed ``max_pending_output`` by.

    The core checks the budget before each command line it parses (and before it ends at end
    of file or asks for data), so the queue is below the budget when a step starts; a step then
    adds the answer to one command, which is the largest of

    * the EHLO reply: every extension, the client's name echoed at its longest;
    * an error reply (one line, at most ``MAX_REPLY_LINE`` octets, which ``reply-too-long``
      enforces) or HELP past the junk limit, either followed by the 421 of the error limit;
    * a decision on MAIL or RCPT (the driver's refusal, then that 421; or ``end_session``);
    * DATA, which checks no budget until the message is over: the 354, then the one reply that
      ends the message (the queue id, the driver's refusal or ending, 550 5.6.0 or 552 5.3.4).
    """
    close = _size(replies.TOO_MANY_ERRORS)
    extensions = ServerConnection(hostname=HOSTNAME, limits=limits, tls_available=True).extensions
    ehlo = _size(replies.ehlo_ok(HOSTNAME, "x" * MAX_REPLY_LINE, extensions))
    driver = max(_size(reply) for reply in (*REFUSALS, *END_REPLIES))
    command = max(ehlo, MAX_REPLY_LINE + close, _size(replies.HELP) + close, driver + close)
    message_end = max(
        _size(replies.queued(QUEUE_ID)),
        _size(replies.BARE_NEWLINE_IN_DATA),
        _size(replies.MESSAGE_TOO_BIG),
        driver,
    )
    return max(command, _size(replies.START_MAIL_INPUT) + message_end)


# -- the reference body --------------------------------------------------------------------------


def _pair(reply: Reply) -> tuple[int, str | None]:
    return reply.code, reply.status


def _unstuff(line: bytes) -> bytes:
    return line[1:] if line.startswith(b".") else line


@attrs.frozen
class ReferenceMessage:
    """The DATA content up to the first line that is exactly ".", found line by line."""

    #: The lines between DATA and the terminator, still dot-stuffed, without their CRLF.
    lines: tuple[bytes, ...]
    #: Whatever follows the terminator: commands again.
    after: bytes

    @property
    def content(self) -> bytes:
        return b"".join(_unstuff(line) + b"\r\n" for line in self.lines)

    @property
    def bare_newline(self) -> bool:
        """A CR or LF that is not part of a CRLF (the lines were split at CRLF)."""
        return any(b"\r" in line or b"\n" in line for line in self.lines)


def reference_message(raw: bytes) -> ReferenceMessage | None:
    """Split ``raw`` (the bytes after the DATA line) into lines ended by CRLF; the message ends
    at the first line that is a single dot. None while that line has not arrived."""
    lines: list[bytes] = []
    pos = 0
    while True:
        end = raw.find(b"\r\n", pos)
        if end == -1:
            return None
        line = raw[pos:end]
        pos = end + 2
        if line == b".":
            return ReferenceMessage(tuple(lines), raw[pos:])
        lines.append(line)


def reference_prefix(raw: bytes) -> bytes:
    """The unstuffed content of a message that has not ended yet, as far as it has arrived."""
    *complete, partial = raw.split(b"\r\n")
    return b"".join(_unstuff(line) + b"\r\n" for line in complete) + _unstuff(partial)


# -- the model ------------------------------------------------------------------------------------


class Phase(enum.Enum):
    COMMAND = "command"
    DATA = "data"
    HANDSHAKE = "handshake"
    CLOSED = "closed"


class Smtp(enum.Enum):
    """The model's own session state (the phase is separate)."""

    CONNECTED = "connected"
    READY = "ready"
    MAIL = "mail"
    RCPT = "rcpt"


@attrs.frozen(kw_only=True)
class SessionConfig:
    limits: ProtocolLimits
    tls_available: bool = False
    require_tls: bool = False
    implicit_tls: bool = False
    greet: bool = True
    eof_at_end: bool = False


#: Syntax errors: allowed for any line that is not one of the canonical forms below. Every
#: syntax or sequence error counts towards max_errors, and so do 454 (STARTTLS without TLS),
#: 552 (MAIL with SIZE over the limit), 452 (RCPT past max_recipients) and NOOP, RSET, VRFY and
#: HELP past max_junk_commands (each still with its normal reply).
_SYNTAX_CODES = frozenset({500, 501, 553, 555})

_ADDRESS = rb"[a-z0-9]{1,20}@[a-z0-9]{1,20}(?:\.[a-z0-9]{1,10}){0,3}"
#: Lines every server must understand exactly; syntax errors for these are bugs.
_CANONICAL_HELO = re.compile(rb"(?i)(?:HELO|EHLO) ([a-z0-9][a-z0-9.\-]{0,60})")
_CANONICAL_MAIL = re.compile(
    rb"(?i)MAIL FROM:<(" + _ADDRESS + rb")?>(?: SIZE=([0-9]{1,7}))?(?: BODY=(?:7BIT|8BITMIME))?"
)
_CANONICAL_RCPT = re.compile(rb"(?i)RCPT TO:<(" + _ADDRESS + rb")>")
_BARE = {verb: re.compile(rb"(?i)" + verb.encode() + rb" *") for verb in ("DATA", "STARTTLS")}
_BARE.update({verb: re.compile(rb"(?i)" + verb.encode() + rb" *") for verb in ("RSET", "QUIT")})


_STATES = {
    Smtp.CONNECTED: State.CONNECTED,
    Smtp.READY: State.READY,
    Smtp.MAIL: State.MAIL,
    Smtp.RCPT: State.RCPT,
}


def _verb(content: bytes) -> str:
    verb = content.partition(b" ")[0]
    return verb.decode("ascii").upper() if verb.isascii() else "?"


class SessionModel:
    """Replays a session's transcript, round by round, against the client's bytes."""

    def __init__(self, config: SessionConfig, checks: Checks = STRICT) -> None:
        self.config = config
        self.limits = config.limits
        self.checks = checks
        self.phase = Phase.COMMAND
        self.smtp = Smtp.CONNECTED
        self.tls = config.implicit_tls
        self.greeted = False
        self.early_talker = False
        self.eof = False
        self.errors = 0
        #: NOOP/RSET/VRFY/HELP answered since the session began or a message was accepted.
        self.junk = 0
        #: Octets of replies queued and not yet taken by the driver, and the budget for them.
        self.unsent = 0
        self.budget = config.limits.max_pending_output
        self.allowance = reply_allowance(config.limits)
        #: For tests: how often NEED_SEND came, and the most output that was ever unsent.
        self.need_sends = 0
        self.most_unsent = 0
        self.client_name: str | None = None
        self.sender: Mailbox | None = None
        self.recipients: list[Mailbox] = []
        #: Command bytes received and not yet matched to an answer.
        self.inbox = bytearray()
        #: DATA phase: the raw bytes after the DATA line, and the content emitted so far.
        self.body = bytearray()
        self.emitted = bytearray()
        self.envelope: Envelope | None = None
        self.end_reason: EndReason | None = None
        self.ended: SessionEnded | None = None
        self.messages = 0
        self._items: deque[Item] = deque()
        self._last_line = b""

    # -- inputs ---------------------------------------------------------------------------------

    def greet(self, items: Sequence[Item]) -> None:
        self._items = deque(items)
        reply = self._reply("the greeting")
        self._expect(reply.pair == (220, None), f"greeting {reply}")
        self._expect(reply.lines == (f"{HOSTNAME} ESMTP trimail",), f"greeting {reply}")
        self.greeted = True
        self._done()

    def feed(self, data: bytes) -> None:
        assert data
        assert not self.eof, "the driver never reads after end of file"
        if self.phase is Phase.CLOSED:
            return
        if not self.greeted:
            self.early_talker = True
        elif self.phase is Phase.DATA:
            self.body += data
        else:
            self.inbox += data

    def end_of_file(self) -> None:
        self.eof = True

    def tls_started(self) -> None:
        assert self.phase is Phase.HANDSHAKE
        self.phase = Phase.COMMAND
        self.tls = True
        self.smtp = Smtp.CONNECTED
        self.client_name = None
        self._reset_transaction()

    # -- replaying one round --------------------------------------------------------------------

    def round(self, items: Sequence[Item], stop: Stop) -> None:
        self._items = deque(items)
        self._run()
        if stop is Stop.ENDED:
            self._expect(self.ended is not None, "the core ended the session, the model did not")
        elif stop is Stop.HANDSHAKE:
            self._expect(self.phase is Phase.HANDSHAKE, "a TLS handshake the model did not expect")
        else:
            self._expect(
                self.phase in (Phase.COMMAND, Phase.DATA), f"NEED_DATA in phase {self.phase}"
            )
            if self.phase is Phase.COMMAND:
                self._expect(
                    b"\n" not in self.inbox,
                    f"a complete line was not answered: {self._peek_line()!r}",
                )
            else:
                self.checks.check(
                    reference_message(bytes(self.body)) is None,
                    "smuggling",
                    f"the core waits for more DATA after the terminator: {bytes(self.body)!r}",
                )
        self._done()
        self.unsent = 0  # the driver sends whatever is queued at every stop

    def _done(self) -> None:
        head = self._head()
        if head is not None:
            self.checks.fail("model", f"unexpected {head!r} after line {self._last_line!r}")
            self._items.clear()

    def _run(self) -> None:
        while True:
            if self.phase is Phase.CLOSED:
                self._session_ended()
                return
            head = self._head()
            if isinstance(head, EndCalled):
                self._pop()
                self._ended_by_server(head.reply, head.replies)
                continue
            if self.phase is Phase.HANDSHAKE:
                return
            if not self.greeted:
                if self.early_talker:
                    reply = self._reply("bytes before the greeting")
                    self._expect(reply.pair == (554, "5.5.0"), f"early talker got {reply}")
                    self._close(EndReason.EARLY_TALKER)
                    continue
                if self.eof:
                    self._close(EndReason.CLIENT_CLOSED)
                    continue
                return
            progressed = self._body_step() if self.phase is Phase.DATA else self._command_step()
            if not progressed:
                return

    # -- command phase ------------------------------------------------------------------------

    def _command_step(self) -> bool:
        head = self._head()
        # Whatever the core does next in the command phase (parse a line, end at end of file,
        # ask for data), it first checks the output budget: at or over it, it says NEED_SEND,
        # which _head() has just consumed (and the driver's send emptied the queue).
        self.checks.check(
            self.unsent < self.budget,
            "backpressure",
            f"{self.unsent} octets unsent (budget {self.budget}) and the core went on with "
            f"{self._peek_line()!r} (eof={self.eof}) instead of returning NEED_SEND",
        )
        newline = self.inbox.find(b"\n")
        first = newline + 1 if newline != -1 else len(self.inbox)
        if (
            isinstance(head, WireReply)
            and head.pair == (421, "4.7.0")
            and first > self.limits.absurd_line
        ):
            # The core may give up on an absurd line before its end arrives.
            self._pop()
            self._last_line = bytes(self.inbox[:80])
            self._close(EndReason.LINE_TOO_LONG)
            return True
        if newline == -1:
            if self.eof:
                self._close(EndReason.CLIENT_CLOSED)
                return True
            return False
        line = bytes(self.inbox[:first])
        del self.inbox[:first]
        self._last_line = line
        self._line(line)
        return True

    def _line(self, line: bytes) -> None:
        limits = self.limits
        if len(line) > limits.absurd_line:
            reply = self._reply("an absurdly long line")
            self._expect(reply.pair == (421, "4.7.0"), f"absurd line got {reply}")
            self._close(EndReason.LINE_TOO_LONG)
            return
        if len(line) > limits.max_command_line:
            reply = self._reply("a long line")
            self._expect(reply.pair == (500, "5.5.6"), f"{len(line)}-octet line got {reply}")
            self._counted_error()
            return
        if not line.endswith(b"\r\n"):
            reply = self._reply("a line ending in a bare LF")
            self._expect(reply.pair == (500, "5.5.2"), f"bare LF line got {reply}")
            self._counted_error()
            return
        content = line[:-2]
        head = self._head()
        if isinstance(head, MailFromRequest | RcptToRequest):
            self._pop()
            self._request(content, head)
            return
        self._command_reply(content, self._reply(f"line {line!r}"))

    def _command_reply(self, content: bytes, reply: WireReply) -> None:
        verb = _verb(content)
        code, status = reply.pair
        state = self.smtp
        legal_mail = state is Smtp.READY
        tls_ok = self.tls or not self.config.require_tls
        if code in _SYNTAX_CODES and status is not None and status.startswith("5.5."):
            # Syntax errors: fine for anything but the canonical forms every server must know.
            self._expect(not self._canonical(content), f"canonical {content!r} got {reply}")
            self._counted_error()
            return
        match verb:
            case "HELO" | "EHLO":
                self._hello(content, verb, reply)
            case "MAIL":
                canonical = _CANONICAL_MAIL.fullmatch(content)
                if reply.pair == (503, "5.5.1"):
                    self._expect(not legal_mail, f"MAIL in {state} got {reply}")
                    self._counted_error()
                elif reply.pair == (530, "5.7.0"):
                    self._expect(legal_mail and not tls_ok, f"MAIL got {reply}")
                    self._counted_error()
                elif reply.pair == (552, "5.3.4"):
                    self._expect(legal_mail and tls_ok, f"MAIL in {state} got {reply}")
                    size = canonical[2] if canonical else None
                    self._expect(
                        canonical is None
                        or (size is not None and int(size) > self.limits.max_message_size),
                        f"{content!r} got {reply}",
                    )
                    self._counted_error()
                elif reply.code in _SYNTAX_CODES:
                    self._expect(canonical is None, f"{content!r} got {reply}")
                    self._counted_error()
                else:
                    self.checks.fail("model", f"{content!r} in {state} got {reply}")
                if canonical is not None and legal_mail and tls_ok:
                    size = canonical[2]
                    self._expect(
                        size is not None and int(size) > self.limits.max_message_size,
                        f"{content!r} in {state} got {reply}, not a decision",
                    )
            case "RCPT":
                legal_rcpt = state in (Smtp.MAIL, Smtp.RCPT)
                full = len(self.recipients) >= self.limits.max_recipients
                if reply.pair == (503, "5.5.1"):
                    self._expect(not legal_rcpt, f"RCPT in {state} got {reply}")
                    self._counted_error()
                elif reply.pair == (452, "4.5.3"):
                    self._expect(legal_rcpt and full, f"RCPT got {reply}")
                    self._counted_error()
                elif reply.code in _SYNTAX_CODES:
                    self._expect(_CANONICAL_RCPT.fullmatch(content) is None, f"{content!r}")
                    self._counted_error()
                else:
                    self.checks.fail("model", f"{content!r} in {state} got {reply}")
                if _CANONICAL_RCPT.fullmatch(content) and legal_rcpt:
                    self._expect(full, f"{content!r} in {state} got {reply}, not a decision")
            case "DATA":
                self._data(content, reply)
            case "STARTTLS":
                self._starttls(content, reply)
            case "RSET":
                self._expect(
                    _BARE["RSET"].fullmatch(content) is not None and reply.pair == (250, "2.0.0"),
                    f"{content!r} got {reply}",
                )
                self.smtp = Smtp.CONNECTED if state is Smtp.CONNECTED else Smtp.READY
                self._reset_transaction()
                self._junk()
            case "QUIT":
                self._expect(
                    _BARE["QUIT"].fullmatch(content) is not None and reply.pair == (221, "2.0.0"),
                    f"{content!r} got {reply}",
                )
                self._close(EndReason.QUIT)
            case "NOOP":
                self._expect(reply.pair == (250, "2.0.0"), f"{content!r} got {reply}")
                self._junk()
            case "VRFY":
                self._expect(reply.pair == (252, "2.5.2"), f"{content!r} got {reply}")
                self._junk()
            case "HELP":
                self._expect(reply.pair == (214, "2.0.0"), f"{content!r} got {reply}")
                self._junk()
            case "EXPN":
                self._expect(reply.pair == (502, "5.5.1"), f"{content!r} got {reply}")
                self._counted_error()
            case _:
                self.checks.fail("model", f"unknown command {content!r} got {reply}")

    def _canonical(self, content: bytes) -> bool:
        return (
            _CANONICAL_HELO.fullmatch(content) is not None
            or _CANONICAL_MAIL.fullmatch(content) is not None
            or _CANONICAL_RCPT.fullmatch(content) is not None
            or any(pattern.fullmatch(content) for pattern in _BARE.values())
            or content.upper() in (b"NOOP", b"HELP", b"VRFY X", b"EXPN X")
        )

    def _hello(self, content: bytes, verb: str, reply: WireReply) -> None:
        self._expect(reply.pair == (250, None), f"{content!r} got {reply}")
        name = content[len(verb) + 1 :].strip(b" ").decode("utf-8", errors="replace")
        greeting = reply.lines[0]
        self._expect(greeting.startswith(f"{HOSTNAME} Hello "), f"{content!r} got {greeting!r}")
        if _CANONICAL_HELO.fullmatch(content):
            # A short, plain name is repeated as it is (longer or odd ones may be shortened).
            self._expect(greeting == f"{HOSTNAME} Hello {name}", f"{content!r} got {greeting!r}")
        extensions = reply.lines[1:]
        if verb == "HELO":
            self._expect(not extensions, f"HELO got extensions {extensions}")
        else:
            offered = self.config.tls_available and not self.tls
            self._expect(
                ("STARTTLS" in extensions) is offered,
                f"STARTTLS offered={'STARTTLS' in extensions} with tls={self.tls}",
            )
            self._expect(
                f"SIZE {self.limits.max_message_size}" in extensions, f"EHLO said {extensions}"
            )
        self.client_name = name
        self.smtp = Smtp.READY
        self._reset_transaction()

    def _data(self, content: bytes, reply: WireReply) -> None:
        if _BARE["DATA"].fullmatch(content) is None:
            self._expect(reply.pair == (501, "5.5.4"), f"{content!r} got {reply}")
            self._counted_error()
            return
        match self.smtp:
            case Smtp.RCPT:
                self._expect(reply.pair == (354, None), f"DATA with recipients got {reply}")
                started = self._event(MessageStarted, "after 354")
                self._check_envelope(started.envelope)
                self.envelope = started.envelope
                self.phase = Phase.DATA
                self.body = bytearray(self.inbox)
                self.inbox.clear()
                self.emitted.clear()
            case Smtp.MAIL:
                self._expect(reply.pair == (554, "5.5.1"), f"DATA without recipients got {reply}")
                self._counted_error()
            case _:
                self._expect(reply.pair == (503, "5.5.1"), f"DATA in {self.smtp} got {reply}")
                self._counted_error()

    def _starttls(self, content: bytes, reply: WireReply) -> None:
        if _BARE["STARTTLS"].fullmatch(content) is None:
            self._expect(reply.pair == (501, "5.5.4"), f"{content!r} got {reply}")
            self._counted_error()
            return
        if self.tls:
            self._expect(reply.pair == (503, "5.5.1"), f"STARTTLS under TLS got {reply}")
            self._counted_error()
        elif not self.config.tls_available:
            self._expect(reply.pair == (454, "4.7.0"), f"STARTTLS without TLS got {reply}")
            self._counted_error()
        elif self.smtp in (Smtp.MAIL, Smtp.RCPT):
            self._expect(reply.pair == (503, "5.5.1"), f"STARTTLS in {self.smtp} got {reply}")
            self._counted_error()
        else:
            self._expect(reply.pair == (220, "2.0.0"), f"STARTTLS got {reply}")
            upgrade = self._event(TlsUpgradeRequested, "after 220 to STARTTLS")
            pipelined = bytes(self.inbox)
            self.checks.check(
                upgrade.discarded == len(pipelined),
                "starttls",
                f"discarded={upgrade.discarded} but {len(pipelined)} bytes followed STARTTLS",
            )
            self.inbox.clear()
            self.phase = Phase.HANDSHAKE

    def _request(self, content: bytes, request: MailFromRequest | RcptToRequest) -> None:
        state = self.smtp
        if isinstance(request, MailFromRequest):
            self._expect(_verb(content) == "MAIL", f"{content!r} became {request}")
            self._expect(state is Smtp.READY, f"MAIL decision in {state}")
            self._expect(self.tls or not self.config.require_tls, "MAIL decision without TLS")
            size = request.params.size
            self._expect(size is None or size <= self.limits.max_message_size, f"{request}")
            canonical = _CANONICAL_MAIL.fullmatch(content)
            if canonical is not None:
                address = canonical[1].decode() if canonical[1] else None
                sender = str(request.sender) if request.sender is not None else None
                self._expect(sender == address, f"{content!r} became {request}")
        else:
            self._expect(_verb(content) == "RCPT", f"{content!r} became {request}")
            self._expect(state in (Smtp.MAIL, Smtp.RCPT), f"RCPT decision in {state}")
            self._expect(
                len(self.recipients) < self.limits.max_recipients,
                f"RCPT decision with {len(self.recipients)} recipients",
            )
            canonical = _CANONICAL_RCPT.fullmatch(content)
            if canonical is not None:
                self._expect(str(request.recipient) == canonical[1].decode(), f"{request}")
        decided = self._decided(request)
        match decided.decision:
            case Decision.ACCEPT:
                if isinstance(request, MailFromRequest):
                    self._expect_replies(decided, [(250, "2.1.0")])
                    self.smtp = Smtp.MAIL
                    self.sender = request.sender
                    self.recipients = []
                else:
                    self._expect_replies(decided, [(250, "2.1.5")])
                    self.smtp = Smtp.RCPT
                    self.recipients.append(request.recipient)
            case Decision.REFUSE:
                assert decided.reply is not None
                # A refused MAIL or RCPT counts as an error (Postfix does the same).
                self.errors += 1
                if self.errors >= self.limits.max_errors:
                    self._expect_replies(decided, [_pair(decided.reply), (421, "4.7.0")])
                    self._close(EndReason.TOO_MANY_ERRORS)
                else:
                    self._expect_replies(decided, [_pair(decided.reply)])
            case Decision.END_SESSION:
                assert decided.reply is not None
                self._ended_by_server(decided.reply, decided.replies)

    # -- DATA phase ---------------------------------------------------------------------------

    def _body_step(self) -> bool:
        """Consume what the core said about the message so far; True when the model moved on."""
        raw = bytes(self.body)
        message = reference_message(raw)
        expected: tuple[int, str] | None = None
        if message is not None and message.bare_newline:
            expected = (550, "5.6.0")
        elif message is not None and len(message.content) > self.limits.max_message_size:
            expected = (552, "5.3.4")
        rejection_seen = False
        while (head := self._head()) is not None:
            if isinstance(head, EndCalled):
                return True
            if isinstance(head, MessageData):
                self._pop()
                self._message_data(head, raw, message)
                continue
            if message is None:
                if isinstance(head, SessionEnded) and self.eof:
                    break
                self.checks.fail(
                    "smuggling",
                    f"{head!r} before the terminator; DATA so far {raw!r}",
                )
                return False
            self._pop()
            if isinstance(head, WireReply):
                self.checks.check(
                    expected is not None and head.pair == expected and not rejection_seen,
                    "smuggling",
                    f"{head} at the end of {message.lines!r}",
                )
                rejection_seen = True
                continue
            if isinstance(head, MessageRejected):
                self.checks.check(
                    expected is not None and rejection_seen and _pair(head.reply) == expected,
                    "smuggling",
                    f"{head.reply} rejects {message.lines!r} (reference: {expected})",
                )
                self._end_of_message(message)
                return True
            if isinstance(head, MessageComplete):
                self._message_complete(head, message, expected)
                return True
            self.checks.fail("model", f"{head!r} during DATA")
            return False
        if message is not None:
            self.checks.fail(
                "smuggling", f"the terminator arrived but the message did not end: {raw!r}"
            )
            return False
        if self.eof:
            self._close(EndReason.CLIENT_CLOSED)
            return True
        return False

    def _message_data(
        self, data: MessageData, raw: bytes, message: ReferenceMessage | None
    ) -> None:
        self.checks.check(bool(data.data), "model", "an empty MessageData")
        self.emitted += data.data
        whole = message.content if message is not None else reference_prefix(raw)
        self.checks.check(
            whole.startswith(self.emitted),
            "smuggling",
            f"MessageData {bytes(self.emitted)!r} is not the unstuffed DATA {whole!r}",
        )
        self.checks.check(
            len(self.emitted) <= self.limits.max_message_size,
            "memory",
            f"{len(self.emitted)} octets of content emitted past the size limit",
        )

    def _message_complete(
        self, complete: MessageComplete, message: ReferenceMessage, expected: tuple[int, str] | None
    ) -> None:
        content = message.content
        self.checks.check(
            expected is None, "smuggling", f"MessageComplete for {message.lines!r} ({expected})"
        )
        self.checks.check(
            bytes(self.emitted) == content,
            "smuggling",
            f"content {bytes(self.emitted)!r} != reference {content!r}",
        )
        self.checks.check(complete.size == len(content), "smuggling", f"size {complete.size}")
        self._expect(complete.envelope == self.envelope, f"envelope changed: {complete.envelope}")
        decided = self._decided(complete)
        match decided.decision:
            case Decision.ACCEPT:
                self._expect_replies(decided, [(250, "2.0.0")])
                if decided.replies:
                    self._expect(
                        decided.replies[0].lines == (f"OK: queued as {QUEUE_ID}",),
                        f"{decided.replies[0]}",
                    )
                self.messages += 1
                self.junk = 0  # a client that delivers mail is not idling
                self._end_of_message(message)
            case Decision.REFUSE:
                assert decided.reply is not None
                self._expect_replies(decided, [_pair(decided.reply)])
                self._end_of_message(message)
            case Decision.END_SESSION:
                assert decided.reply is not None
                self._ended_by_server(decided.reply, decided.replies)

    def _end_of_message(self, message: ReferenceMessage) -> None:
        self.phase = Phase.COMMAND
        self.smtp = Smtp.READY
        self._reset_transaction()
        self.inbox = bytearray(message.after)
        self.body.clear()
        self.emitted.clear()

    def _check_envelope(self, envelope: Envelope) -> None:
        expected = Envelope(
            client_name=envelope.client_name,
            extended=envelope.extended,
            sender=self.sender,
            recipients=tuple(self.recipients),
            params=envelope.params,
            tls=TLS_INFO if self.tls else None,
        )
        self._expect(envelope == expected, f"envelope {envelope} != {expected}")
        self._expect(envelope.client_name == self.client_name, f"client name in {envelope}")

    # -- endings and errors -------------------------------------------------------------------

    def _counted_error(self) -> None:
        self.errors += 1
        if self.errors >= self.limits.max_errors:
            head = self._head()
            self.checks.check(
                isinstance(head, WireReply) and head.pair == (421, "4.7.0"),
                "error-limit",
                f"error {self.errors} of {self.limits.max_errors} was followed by {head!r}",
            )
            if isinstance(head, WireReply):
                self._pop()
            self._close(EndReason.TOO_MANY_ERRORS)

    def _junk(self) -> None:
        """NOOP, RSET, VRFY or HELP was answered normally; past the limit it is also an error
        (Postfix smtpd_junk_command_limit), until a message is accepted."""
        self.junk += 1
        if self.junk > self.limits.max_junk_commands:
            self._counted_error()

    def _ended_by_server(self, reply: Reply, replies: Sequence[WireReply]) -> None:
        self._expect(
            [each.pair for each in replies] == [_pair(reply)], f"end_session said {replies}"
        )
        self._close(EndReason.ENDED_BY_SERVER)

    def _close(self, reason: EndReason) -> None:
        self.phase = Phase.CLOSED
        self.end_reason = reason

    def _session_ended(self) -> None:
        if self.ended is not None:
            return
        head = self._pop()
        assert self.end_reason is not None
        self._expect(
            head == SessionEnded(self.end_reason),
            f"expected SessionEnded({self.end_reason}), got {head!r}",
        )
        if isinstance(head, SessionEnded):
            self.ended = head

    def _reset_transaction(self) -> None:
        self.sender = None
        self.recipients = []

    # -- reading the transcript ---------------------------------------------------------------

    def _expect(self, condition: bool, message: str) -> None:
        self.checks.check(condition, "model", f"{message} (after line {self._last_line!r})")

    def _head(self) -> Item | None:
        """The next item of the transcript after the driver's sends at its head, which empty
        the output queue (a ``NEED_SEND`` is checked first: only in the command phase, only
        with the budget reached)."""
        while self._items:
            head = self._items[0]
            if head is NEED_SEND:
                self.need_sends += 1
                self.checks.check(
                    self.phase is Phase.COMMAND and self.unsent >= self.budget,
                    "backpressure",
                    f"NEED_SEND in phase {self.phase} with {self.unsent} octets unsent "
                    f"(budget {self.budget})",
                )
            elif not isinstance(head, Flushed):
                return head
            self._items.popleft()
            self.unsent = 0
        return None

    def _pop(self) -> Item | None:
        """Take the next item; the replies in it join the output not yet sent."""
        head = self._head()
        if head is None:
            return None
        self._items.popleft()
        match head:
            case WireReply():
                self._queued(head.size)
            case Decided(replies=said) | EndCalled(replies=said):
                self._queued(sum(reply.size for reply in said))
            case _:
                pass
        return head

    def _queued(self, size: int) -> None:
        self.unsent += size
        self.most_unsent = max(self.most_unsent, self.unsent)
        self.checks.check(
            self.unsent <= self.budget + self.allowance,
            "backpressure",
            f"{self.unsent} octets unsent: over the budget {self.budget} plus one reply's "
            f"worth ({self.allowance})",
        )

    def _reply(self, what: str) -> WireReply:
        head = self._pop()
        if not isinstance(head, WireReply):
            raise Violation("model", f"expected a reply to {what}, got {head!r}")
        return head

    def _event(self, kind: type[T], what: str) -> T:
        head = self._pop()
        if not isinstance(head, kind):
            raise Violation("model", f"expected {kind.__name__} {what}, got {head!r}")
        return head

    def _decided(self, request: MailFromRequest | RcptToRequest | MessageComplete) -> Decided:
        decided = self._event(Decided, f"for {request!r}")
        assert decided.request == request
        return decided

    def _expect_replies(self, decided: Decided, pairs: list[tuple[int, str | None]]) -> None:
        got = [reply.pair for reply in decided.replies]
        self._expect(got == pairs, f"{decided.decision} of {decided.request!r} said {got}")

    def _peek_line(self) -> bytes:
        return bytes(self.inbox[: self.inbox.find(b"\n") + 1][:200])


# -- the driver -----------------------------------------------------------------------------------


@attrs.define
class SessionReport:
    """What a session came to, for tests that want more than 'no violation'."""

    model: SessionModel
    conn: ServerConnection
    stop: Stop
    rounds: int
    transcript: list[str]


#: How often the driver sends (takes ``data_to_send()``) after an event when nothing obliges it
#: to: never, as trimail's ``Session`` (which sends only at NEED_SEND, NEED_DATA, STARTTLS and
#: the end, so replies to decisions pile up too), now and then, or after every event.
SEND_RATES = (0.0, 0.0, 0.3, 1.0)
#: At NEED_SEND the client may not be reading at all: the send times out and the shell ends the
#: session (Session._farewell), with the client's later commands still unparsed.
SEND_TIMEOUT = 0.02


class _Driver:
    def __init__(
        self,
        config: SessionConfig,
        rnd: random.Random,
        checks: Checks,
        trace: bool,
        send_rate: float | None,
    ) -> None:
        self.config = config
        self.rnd = rnd
        self.checks = checks
        self.send_rate = rnd.choice(SEND_RATES) if send_rate is None else send_rate
        #: The core's queue as far as ``said`` has read it, and those bytes (not sent yet).
        self._seen = 0
        self._unsent = bytearray()
        self.conn = ServerConnection(
            hostname=HOSTNAME,
            limits=config.limits,
            tls_available=config.tls_available,
            tls=TLS_INFO if config.implicit_tls else None,
            require_tls=config.require_tls,
        )
        self.model = SessionModel(config, checks)
        self.trace: list[str] | None = [] if trace else None
        self.rounds = 0

    def note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.append(text)

    def said(self) -> list[WireReply]:
        """The replies the call just made queued, in order, without sending them.

        A shell sends only now and then (``send``), yet the transcript must place every reply
        where it was queued, so this reads the core's private queue; ``send`` checks that
        ``data_to_send()`` then returns exactly the bytes read here."""
        queue = self.conn._outgoing
        data = b"".join(queue[self._seen :])
        self._seen = len(queue)
        if not data:
            return []
        self.note(f"  <- {data!r}")
        self._unsent += data
        return parse_wire(data, self.checks)

    def send(self) -> None:
        """Take ``data_to_send()``: never more than the budget plus one reply's worth."""
        data = self.conn.data_to_send()
        if data != self._unsent:
            raise AssertionError(
                f"harness: data_to_send() returned {data[:200]!r}, not the queued replies "
                f"{bytes(self._unsent[:200])!r}"
            )
        self._seen = 0
        self._unsent.clear()
        if not data:
            return
        self.note(f"  sent {len(data)} octets")
        limits = self.config.limits
        allowance = reply_allowance(limits)
        self.checks.check(
            len(data) <= limits.max_pending_output + allowance,
            "backpressure",
            f"{len(data)} octets were waiting to be sent: more than the budget "
            f"{limits.max_pending_output} plus one reply's worth ({allowance})",
        )

    def drain(self, items: list[Item]) -> Stop:
        conn, rnd = self.conn, self.rnd
        while True:
            event = conn.next_event()
            items.extend(self.said())
            if isinstance(event, NeedData):
                if event is NEED_DATA:
                    self.send()  # RFC 2920 §3.2: flush before blocking on a read
                    return Stop.NEED_DATA
                # NEED_SEND: the core parses nothing more until the queue is taken.
                self.note("  NEED_SEND")
                items.append(event)
                self.send()
                if rnd.random() < SEND_TIMEOUT:
                    reply = END_REPLIES[0]
                    self.note(f"  send timed out: end_session({reply.code})")
                    conn.end_session(reply)
                    items.append(EndCalled(reply, tuple(self.said())))
                continue
            self.note(f"  event {event!r}")
            items.append(event)
            match event:
                case MailFromRequest() | RcptToRequest() | MessageComplete():
                    items.append(self.decide(event))
                case TlsUpgradeRequested():
                    self.send()  # the 220 goes out before the handshake
                    return Stop.HANDSHAKE
                case SessionEnded():
                    self.send()
                    return Stop.ENDED
                case MessageStarted() | MessageData() if rnd.random() < 0.01:
                    # A shell whose spool failed may give up in the middle of a message.
                    reply = rnd.choice(END_REPLIES)
                    self.note(f"  end_session({reply.code})")
                    conn.end_session(reply)
                    items.append(EndCalled(reply, tuple(self.said())))
                case _:
                    pass
            if self.send_rate and rnd.random() < self.send_rate:
                self.send()
                items.append(Flushed())

    def decide(self, request: MailFromRequest | RcptToRequest | MessageComplete) -> Decided:
        conn, roll = self.conn, self.rnd.random()
        reply: Reply | None = None
        if roll < 0.75:
            decision = Decision.ACCEPT
            if isinstance(request, MessageComplete):
                conn.accept_message(QUEUE_ID)
            else:
                conn.accept()
        elif roll < 0.96:
            decision, reply = Decision.REFUSE, self.rnd.choice(REFUSALS)
            conn.refuse(reply)
        else:
            decision, reply = Decision.END_SESSION, self.rnd.choice(END_REPLIES)
            conn.end_session(reply)
        self.note(f"  {decision.value} {reply.code if reply else ''}")
        return Decided(request, decision, reply, tuple(self.said()))

    def round(self, inputs: Sequence[bytes | None], *, end: Reply | None = None) -> Stop:
        """Feed ``inputs`` (None is end of file) without draining in between, then drain."""
        self.rounds += 1
        conn, model = self.conn, self.model
        items: list[Item] = []
        fed = 0
        if end is not None:
            self.note(f"end_session({end.code})")
            conn.end_session(end)
            items.append(EndCalled(end, tuple(self.said())))
        for data in inputs:
            self.note(f"-> {data!r}" if data is not None else "-> EOF")
            if data is None:
                conn.receive_data(b"")
                model.end_of_file()
            else:
                conn.receive_data(data)
                model.feed(data)
                fed += len(data)
        stop = self.drain(items)
        model.round(items, stop)
        if stop is Stop.NEED_DATA:
            self.check_state(fed)
        return stop

    def handshake(self) -> Stop:
        self.rounds += 1
        self.note("tls_started()")
        self.conn.tls_started(TLS_INFO)
        self.model.tls_started()
        items: list[Item] = []
        stop = self.drain(items)
        self.model.round(items, stop)
        return stop

    def check_state(self, fed: int) -> None:
        """At NEED_DATA: buffers are bounded and the core agrees with the model."""
        conn, limits = self.conn, self.config.limits
        buffered = len(conn._buffer)
        self.checks.check(
            buffered <= limits.max_command_line + fed,
            "memory",
            f"{buffered} octets buffered after a round of {fed}",
        )
        self.checks.check(not conn._body_input, "memory", "DATA input left unprocessed")
        decoder = conn._decoder
        if decoder is not None:
            self.checks.check(len(decoder._carry) <= 2, "memory", f"carry {decoder._carry!r}")
        self.checks.check(not conn._events, "memory", "events left behind at NEED_DATA")
        # The core's own view agrees with the model's.
        model = self.model
        self.checks.check(
            conn.awaiting_command is (model.phase is Phase.COMMAND),
            "model",
            f"awaiting_command={conn.awaiting_command} in phase {model.phase}",
        )
        self.checks.check(
            conn.errors == model.errors,
            "error-limit",
            f"{conn.errors} errors, model {model.errors}",
        )
        self.checks.check(
            conn.junk_commands == model.junk,
            "error-limit",
            f"{conn.junk_commands} junk commands, model {model.junk}",
        )
        self.checks.check(
            conn.over_soft_error_limit is (model.errors > limits.soft_errors),
            "error-limit",
            f"over_soft_error_limit={conn.over_soft_error_limit} with {model.errors} errors",
        )
        expected = State.DATA if model.phase is Phase.DATA else _STATES[model.smtp]
        self.checks.check(
            conn.state is expected, "model", f"state {conn.state}, model {model.smtp}/{model.phase}"
        )

    def after_close(self) -> None:
        """Once SessionEnded was returned, the connection is inert."""
        conn, checks = self.conn, self.checks
        ended = self.model.ended
        checks.check(conn.state is State.CLOSED, "after-close", f"state {conn.state}")
        conn.receive_data(b"NOOP\r\nQUIT\r\n")
        conn.receive_data(b"")
        checks.check(conn.next_event() == ended, "after-close", "a different SessionEnded")
        checks.check(conn.data_to_send() == b"", "after-close", "output after SessionEnded")
        # A shell's farewell path (timeout or cancellation while flushing the last reply) may
        # call end_session() again; the session is over, so that must say nothing.
        conn.end_session(self.rnd.choice(END_REPLIES))
        late = conn.data_to_send()
        checks.check(
            late == b"", "end-after-close", f"end_session() after SessionEnded said {late!r}"
        )
        again = conn.next_event()
        checks.check(again == ended, "end-after-close", f"{ended} became {again}")


def run_session(
    config: SessionConfig,
    pieces: Iterable[bytes],
    rnd: random.Random,
    checks: Checks = STRICT,
    *,
    trace: bool = False,
    send_rate: float | None = None,
) -> SessionReport:
    """Play one session: ``pieces`` are the client's bytes as they arrive (none empty).
    ``send_rate``: how often the driver sends after an event without being told to (by default
    one of ``SEND_RATES``, drawn from ``rnd``)."""
    drv = _Driver(config, rnd, checks, trace, send_rate)
    try:
        return _play(drv, [piece for piece in pieces if piece])
    except Violation as exc:
        if drv.trace is not None:
            exc.add_note("\n".join(drv.trace[-60:]))
        raise
    except Exception as exc:
        if drv.trace is not None:
            exc.add_note("\n".join(drv.trace[-60:]))
        if "exception" in checks.ignore:
            return SessionReport(drv.model, drv.conn, Stop.ENDED, drv.rounds, drv.trace or [])
        raise


def _play(drv: _Driver, pieces: list[bytes]) -> SessionReport:
    conn, rnd, config = drv.conn, drv.rnd, drv.config
    if config.greet:
        conn.greet()
        drv.model.greet(drv.said())  # sent with the replies of the first round
    queue = deque(pieces)
    stop = Stop.NEED_DATA
    while stop is not Stop.ENDED:
        if stop is Stop.HANDSHAKE:
            if rnd.random() < 0.9:
                stop = drv.handshake()
            else:
                stop = drv.round([], end=rnd.choice(END_REPLIES))
            continue
        if not queue:
            if not config.eof_at_end:
                break
            stop = drv.round([None])
            continue
        roll = rnd.random()
        if roll < 0.85:
            stop = drv.round([queue.popleft()])
        elif roll < 0.95:
            # Several reads before the shell drains: the core must cope with any backlog.
            count = min(len(queue), rnd.randint(2, 4))
            stop = drv.round([queue.popleft() for _ in range(count)])
        elif roll < 0.97:
            stop = drv.round([queue.popleft(), None])
        elif roll < 0.98:
            stop = drv.round([], end=rnd.choice(END_REPLIES))
        else:
            stop = drv.round([queue.popleft()])
    if stop is Stop.ENDED:
        drv.after_close()
    return SessionReport(drv.model, conn, stop, drv.rounds, drv.trace or [])


def split_randomly(data: bytes, rnd: random.Random) -> list[bytes]:
    """Cut ``data`` into pieces of mostly small, sometimes large sizes."""
    pieces: list[bytes] = []
    pos = 0
    while pos < len(data):
        roll = rnd.random()
        if roll < 0.5:
            size = rnd.randint(1, 8)
        elif roll < 0.85:
            size = rnd.randint(9, 120)
        else:
            size = rnd.randint(121, 5000)
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces
