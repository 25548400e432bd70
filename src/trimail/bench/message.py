"""The bytes a bench session sends, built once per run so the hot path only writes them.

The message is exactly ``--size`` bytes (headers and body, CRLF line endings, before
dot-stuffing), so MB/s is the size times the messages delivered. It is dot-stuffed once here
(RFC 5321 §4.5.2) and carries its ``CRLF.CRLF`` terminator, so sending it is one write.
"""

from __future__ import annotations

_SUBJECT = "trimail bench"
#: Filler body lines: 76 visible characters and CRLF, well under RFC 5322's 998 limit.
_LINE = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 3)[:76] + b"\r\n"
TERMINATOR = b".\r\n"


def _headers(mail_from: str, rcpt_to: str, subject: str) -> bytes:
    sender = mail_from or "MAILER-DAEMON"
    return f"From: <{sender}>\r\nTo: <{rcpt_to}>\r\nSubject: {subject}\r\n\r\n".encode("ascii")


def header_size(mail_from: str, rcpt_to: str) -> int:
    """The smallest message: the headers and the blank line, with an empty body."""
    return len(_headers(mail_from, rcpt_to, _SUBJECT))


def build_message(size: int, mail_from: str, rcpt_to: str) -> bytes:
    """A message of exactly ``size`` bytes whose every line ends in CRLF."""
    headers = _headers(mail_from, rcpt_to, _SUBJECT)
    if size < len(headers):
        raise ValueError(f"size {size} is below the headers' {len(headers)} bytes")
    if size - len(headers) == 1:
        # One byte cannot be a CRLF line: lengthen the subject instead.
        headers = _headers(mail_from, rcpt_to, _SUBJECT + ".")
    remaining = size - len(headers)
    full, rest = divmod(remaining, len(_LINE))
    body = _LINE * full
    if rest == 1:
        # A lone byte cannot be a CRLF line: split the last full line (78) into 76 + 3.
        body = body[: -len(_LINE)] + _LINE[:74] + b"\r\n" + b"x\r\n"
    elif rest:
        body += _LINE[: rest - 2] + b"\r\n"
    message = headers + body
    assert len(message) == size
    return message


def dot_stuff(message: bytes) -> bytes:
    """Transparency (RFC 5321 §4.5.2) plus the terminator: what goes on the wire after 354.

    ``message`` must end in CRLF (build_message's always does).
    """
    if not message.endswith(b"\r\n") and message:
        raise ValueError("message must end in CRLF")
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + TERMINATOR


def recipient_addresses(rcpt_to: str, count: int) -> tuple[str, ...]:
    """``count`` distinct recipients: the address, then ``local+2@domain``, ``local+3@...``.

    Distinct because a server may fold duplicates. A quoted local part, or a bare Postmaster,
    is repeated as given instead (a ``+`` cannot be put inside it without re-quoting).
    """
    local, at, domain = rcpt_to.rpartition("@")
    if count == 1 or not at or local.startswith('"'):
        return (rcpt_to,) * count
    return (rcpt_to, *(f"{local}+{number}@{domain}" for number in range(2, count + 1)))
