"""SMTP replies and the catalogue of every reply trimail sends.

Reply text lives here and nowhere else, so the wire vocabulary can be reviewed in one screen.
Enhanced status codes follow RFC 3463 / RFC 5248. Per RFC 2034 §4 the greeting and the
positive EHLO/HELO response carry no enhanced code; the 354 intermediate reply carries none
either (as Postfix does); every other reply has one.
"""

from __future__ import annotations

import functools

import attrs


def _check_code(_instance: object, _attribute: object, value: int) -> None:
    if not 200 <= value <= 599:
        raise ValueError(f"SMTP reply code must be 200..599, got {value}")


@attrs.frozen
class Reply:
    """One SMTP reply: a three-digit code, an optional enhanced status and text lines."""

    code: int = attrs.field(validator=_check_code)
    status: str | None
    lines: tuple[str, ...]

    @property
    def is_error(self) -> bool:
        return self.code >= 400

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    def to_bytes(self) -> bytes:
        """Render with continuation lines (``250-``) and the status repeated on each line."""
        return self._wire

    @functools.cached_property
    def _wire(self) -> bytes:
        """Rendered on the first ``to_bytes`` and then reused: most replies are module
        constants sent over and over, and a reply is immutable. A cached property (kept in a
        slot by attrs), not a field, so it stays out of ``fields``, ``asdict``, ``==`` and
        ``repr``."""
        prefix = f"{self.status} " if self.status else ""
        lines = self.lines or ("",)
        last = len(lines) - 1
        out = []
        for index, line in enumerate(lines):
            separator = " " if index == last else "-"
            out.append(f"{self.code}{separator}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8")


def _r(code: int, status: str | None, *lines: str) -> Reply:
    return Reply(code, status, lines)


# -- positive -------------------------------------------------------------------------------
OK = _r(250, "2.0.0", "OK")
SENDER_OK = _r(250, "2.1.0", "OK")
RECIPIENT_OK = _r(250, "2.1.5", "OK")
START_MAIL_INPUT = _r(354, None, "End data with <CR><LF>.<CR><LF>")
BYE = _r(221, "2.0.0", "Bye")
CANNOT_VRFY = _r(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
READY_FOR_TLS = _r(220, "2.0.0", "Ready to start TLS")
HELP = _r(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
    "See RFC 5321",
)


@functools.lru_cache(maxsize=16)
def greeting(hostname: str) -> Reply:
    """One Reply per server name (the server's own setting, never client input), so the
    greeting every connection starts with is rendered once."""
    return _r(220, None, f"{hostname} ESMTP trimail")


#: The most of a client's own text a reply repeats back.
ECHO_LIMIT = 64


def echo(text: str) -> str:
    """Client text made fit to repeat in a reply: RFC 5321 §4.2 allows only printable US-ASCII
    in reply text, and §4.5.3.1.5 caps a reply line at 512 octets, so anything else becomes
    "?" and long text is cut."""
    safe = text[: ECHO_LIMIT + 1]
    # Printable ASCII is exactly " " to "~"; only text with something else needs the char loop.
    if not (safe.isascii() and safe.isprintable()):
        safe = "".join(char if " " <= char <= "~" else "?" for char in safe)
    return safe if len(safe) <= ECHO_LIMIT else safe[:ECHO_LIMIT] + "..."


def helo_ok(hostname: str, client_name: str) -> Reply:
    return _r(250, None, f"{hostname} Hello {echo(client_name)}")


def ehlo_ok(hostname: str, client_name: str, extensions: tuple[str, ...]) -> Reply:
    return Reply(250, None, (f"{hostname} Hello {echo(client_name)}", *extensions))


def queued(queue_id: str) -> Reply:
    return _r(250, "2.0.0", f"OK: queued as {queue_id}")


def queued_wire(queue_id: str) -> bytes:
    """``queued(queue_id).to_bytes()`` without building the Reply: one per message, on the
    hot path, where the object and its rendering cost ~3% of a session's instructions."""
    return f"250 2.0.0 OK: queued as {queue_id}\r\n".encode()


# -- syntax and sequence errors (these count towards the per-session error limit) -----------
UNKNOWN_COMMAND = _r(500, "5.5.2", "Error: command not recognized")
BARE_NEWLINE_IN_COMMAND = _r(500, "5.5.2", "Error: command line must end with <CR><LF>")
INVALID_UTF8 = _r(500, "5.5.2", "Error: command is not valid UTF-8")
LINE_TOO_LONG = _r(500, "5.5.6", "Error: line too long")
EXPN_REFUSED = _r(502, "5.5.1", "Error: EXPN not supported")
NEED_HELO = _r(503, "5.5.1", "Error: send HELO/EHLO first")
NESTED_MAIL = _r(503, "5.5.1", "Error: nested MAIL command")
NEED_MAIL = _r(503, "5.5.1", "Error: need MAIL command")
NEED_RCPT = _r(503, "5.5.1", "Error: need RCPT command")
TLS_ALREADY_ACTIVE = _r(503, "5.5.1", "Error: TLS already active")
TLS_IN_TRANSACTION = _r(503, "5.5.1", "Error: MAIL transaction in progress")
NO_VALID_RECIPIENTS = _r(554, "5.5.1", "Error: no valid recipients")
UNKNOWN_PARAMETER = _r(555, "5.5.4", "Error: unsupported MAIL/RCPT parameter")
NON_ASCII_ADDRESS = _r(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")
MESSAGE_TOO_BIG = _r(552, "5.3.4", "Error: message size exceeds fixed limit")
TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Error: too many recipients")
BARE_NEWLINE_IN_DATA = _r(
    550, "5.6.0", "Error: bare <CR> or <LF> in message data (RFC 5321 section 2.3.8)"
)


def syntax_error(usage: str) -> Reply:
    return _r(501, "5.5.4", f"Syntax: {usage}")


# The reasons below may quote the client (an address literal, a parameter), so they are echoed.
def bad_sender_address(reason: str) -> Reply:
    return _r(501, "5.1.7", f"Bad sender address syntax: {echo(reason)}")


def bad_recipient_address(reason: str) -> Reply:
    return _r(501, "5.1.3", f"Bad recipient address syntax: {echo(reason)}")


def bad_parameter(reason: str) -> Reply:
    return _r(501, "5.5.4", f"Error: {echo(reason)}")


# -- TLS policy (RFC 3207 §4) -----------------------------------------------------------------
TLS_NOT_AVAILABLE = _r(454, "4.7.0", "TLS not available")
TLS_REQUIRED = _r(530, "5.7.0", "Must issue a STARTTLS command first")

# -- abuse policy (Postfix anvil, postscreen, smtpd_relay_restrictions) ----------------------
TOO_MANY_CONNECTIONS = _r(421, "4.7.0", "Error: too many connections, try again later")
TOO_MANY_CONNECTIONS_FROM_YOU = _r(421, "4.7.0", "Error: too many connections from your address")
CONNECTION_RATE_EXCEEDED = _r(
    421, "4.7.0", "Error: too many connections from your address, slow down"
)
MESSAGE_RATE_EXCEEDED = _r(450, "4.7.1", "Error: too many messages from your address, slow down")
EARLY_TALKER = _r(554, "5.5.0", "Error: SMTP protocol violation: client spoke before the greeting")
RELAY_DENIED = _r(550, "5.7.1", "Error: relay access denied")

# -- the session ends -----------------------------------------------------------------------
TOO_MANY_ERRORS = _r(421, "4.7.0", "Error: too many errors, closing connection")
LINE_ABSURDLY_LONG = _r(421, "4.7.0", "Error: line too long, closing connection")
TIMEOUT = _r(421, "4.4.2", "Error: timeout exceeded, closing connection")
SHUTTING_DOWN = _r(421, "4.3.2", "Service shutting down, closing connection")
INTERNAL_ERROR = _r(421, "4.3.0", "Error: internal server error, closing connection")

# -- delivery --------------------------------------------------------------------------------
LOCAL_ERROR = _r(451, "4.3.0", "Error: local error in processing, try again later")
