"""One command line in, one typed ``Command`` out, or a ``CommandError`` carrying the reply.

Verbs are case-insensitive (RFC 5321 §2.4). ``MAIL FROM:`` tolerates one run of spaces after
the colon, as every deployed receiver does; everything else follows the RFC grammar.

The MAIL and RCPT lines nearly every client sends (``MAIL FROM:<a@example.org> SIZE=1234``,
``RCPT TO:<b@example.com>``) are taken with one regex match (``_PLAIN_MAIL``, ``_PLAIN_RCPT``)
whose every match the general path would parse to the same command; everything else, and every
error, goes through the general path. ``tests/protocol/test_command_parser.py`` compares both.
"""

from __future__ import annotations

import re

from . import replies
from .addresses import (
    PLAIN_PATH,
    AddressError,
    NonAsciiAddressError,
    parse_forward_path,
    parse_reverse_path,
    plain_mailbox,
)
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
from .esmtp_params import MailParams, ParameterError, parse_mail_params, parse_rcpt_params
from .replies import Reply


class CommandError(ValueError):
    """The line is not a valid command; ``reply`` is exactly what to answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


# A path is <...> where quoted strings may hold spaces and '>' (RFC 5321 Quoted-string).
_PATH_AND_PARAMS = re.compile(r'(?P<path><(?:[^<>"\\\s]|"(?:[^"\\]|\\.)*")*>)(?P<rest>.*)', re.S)
_HELO_NAME = re.compile(r"\S+")

# The common forms of MAIL's and RCPT's argument (after "MAIL " / "RCPT "). re.ASCII keeps
# IGNORECASE from folding non-ASCII letters onto ASCII ones (the long s onto S), as the
# general path does by upper-casing only ASCII.
_PLAIN_MAIL = re.compile(
    f"FROM: *{PLAIN_PATH}(?: SIZE=(?P<size>[0-9]{{1,20}}))?", re.IGNORECASE | re.ASCII
)
_PLAIN_RCPT = re.compile(f"TO: *{PLAIN_PATH}", re.IGNORECASE | re.ASCII)
_NO_PARAMS = MailParams()
# Commands without fields are immutable values: one instance each serves every line.
_DATA, _STARTTLS, _RSET, _QUIT, _NOOP = Data(), StartTls(), Rset(), Quit(), Noop()


def _path_and_params(argument: str, keyword: str, usage: str) -> tuple[str, list[str]]:
    prefix = argument[: len(keyword)]
    if not prefix.isascii() or prefix.upper() != keyword:
        raise CommandError(replies.syntax_error(usage))
    match = _PATH_AND_PARAMS.fullmatch(argument[len(keyword) :].lstrip(" "))
    if match is None:
        raise CommandError(replies.syntax_error(usage))
    rest = match["rest"]
    if rest and not rest.startswith(" "):
        raise CommandError(replies.syntax_error(usage))
    return match["path"], rest.split()


def _parse_plain_mail(argument: str) -> Mail | None:
    """The common form of MAIL's argument, or ``None`` for the general path to decide."""
    plain = _PLAIN_MAIL.fullmatch(argument)
    if plain is None:
        return None
    sender = plain_mailbox(plain["local"], plain["domain"])
    if sender is None:
        return None
    size = plain["size"]
    return Mail(sender, _NO_PARAMS if size is None else MailParams(size=int(size)))


def _parse_plain_rcpt(argument: str) -> Rcpt | None:
    """The common form of RCPT's argument, or ``None`` for the general path to decide. An
    ASCII address needs no SMTPUTF8, so the transaction's ``smtputf8`` does not matter."""
    plain = _PLAIN_RCPT.fullmatch(argument)
    if plain is None:
        return None
    recipient = plain_mailbox(plain["local"], plain["domain"])
    return None if recipient is None else Rcpt(recipient)


def _parse_mail(argument: str) -> Mail:
    path, tokens = _path_and_params(argument, "FROM:", "MAIL FROM:<address> [parameters]")
    try:
        params = parse_mail_params(tokens)
    except ParameterError as exc:
        raise CommandError(exc.reply) from None
    try:
        sender = parse_reverse_path(path, utf8=params.smtputf8)
    except NonAsciiAddressError:
        raise CommandError(replies.NON_ASCII_ADDRESS) from None
    except AddressError as exc:
        raise CommandError(replies.bad_sender_address(str(exc))) from None
    return Mail(sender, params)


def _parse_rcpt(argument: str, smtputf8: bool) -> Rcpt:
    path, tokens = _path_and_params(argument, "TO:", "RCPT TO:<address>")
    try:
        recipient = parse_forward_path(path, utf8=smtputf8)
    except NonAsciiAddressError:
        raise CommandError(replies.NON_ASCII_ADDRESS) from None
    except AddressError as exc:
        raise CommandError(replies.bad_recipient_address(str(exc))) from None
    try:
        parse_rcpt_params(tokens)
    except ParameterError as exc:
        raise CommandError(exc.reply) from None
    return Rcpt(recipient)


def _no_argument(argument: str, command: Command, usage: str) -> Command:
    if argument.strip(" "):
        raise CommandError(replies.syntax_error(usage))
    return command


def _helo_name(argument: str, verb: str) -> str:
    name = argument.strip(" ")
    if not _HELO_NAME.fullmatch(name):
        raise CommandError(replies.syntax_error(f"{verb} hostname"))
    return name


def parse_command(line: bytes, *, smtputf8: bool) -> Command:
    """Parse one line without its <CRLF>.

    ``smtputf8`` says whether the current transaction's MAIL asked for SMTPUTF8, which decides
    whether RCPT may carry a UTF-8 address.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(replies.INVALID_UTF8) from None
    if not text.isprintable():
        raise CommandError(replies.syntax_error("control characters are not allowed"))
    verb, _, argument = text.partition(" ")
    if verb.isascii():
        # str.upper() folds some non-ASCII letters onto ASCII (dotless i -> I, long s -> S); a
        # verb that is not ASCII stays as it is and so matches nothing.
        verb = verb.upper()
    match verb:  # a transaction's verbs first: the cases are compared in order
        case "MAIL":
            return _parse_plain_mail(argument) or _parse_mail(argument)
        case "RCPT":
            return _parse_plain_rcpt(argument) or _parse_rcpt(argument, smtputf8)
        case "DATA":
            return _no_argument(argument, _DATA, "DATA")
        case "EHLO":
            return Ehlo(_helo_name(argument, verb))
        case "HELO":
            return Helo(_helo_name(argument, verb))
        case "STARTTLS":
            return _no_argument(argument, _STARTTLS, "STARTTLS")
        case "RSET":
            return _no_argument(argument, _RSET, "RSET")
        case "QUIT":
            return _no_argument(argument, _QUIT, "QUIT")
        case "NOOP":
            return _NOOP
        case "VRFY":
            return Vrfy(argument)
        case "EXPN":
            return Expn(argument)
        case "HELP":
            return Help(argument)
        case _:
            raise CommandError(replies.UNKNOWN_COMMAND)
