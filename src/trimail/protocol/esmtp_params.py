"""Typed ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 Mail-parameters).

MAIL understands SIZE (RFC 1870), BODY (RFC 6152) and SMTPUTF8 (RFC 6531). RCPT takes none
yet. Anything else is refused with 555 5.5.4, as RFC 5321 §4.1.1.11 asks for parameters that
were not advertised.
"""

from __future__ import annotations

import enum
import re

import attrs

from . import replies
from .replies import Reply


class ParameterError(ValueError):
    """A parameter is unknown, repeated or malformed; carries the reply to send."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.text)
        self.reply = reply


class BodyType(enum.Enum):
    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"


@attrs.frozen(kw_only=True)
class MailParams:
    size: int | None = None
    body: BodyType | None = None
    smtputf8: bool = False


_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_SIZE_VALUE = re.compile(r"[0-9]{1,20}")


def _split(tokens: list[str]) -> dict[str, str | None]:
    parsed: dict[str, str | None] = {}
    for token in tokens:
        keyword, equals, value = token.partition("=")
        if not _KEYWORD.fullmatch(keyword):
            raise ParameterError(replies.bad_parameter(f"malformed parameter {token!r}"))
        key = keyword.upper()
        if key in parsed:
            raise ParameterError(replies.bad_parameter(f"duplicate parameter {key}"))
        parsed[key] = value if equals else None
    return parsed


def _body_type(value: str | None) -> BodyType:
    # Only ASCII is upper-cased: str.upper() maps the dotless i onto I.
    if value is not None and value.isascii():
        try:
            return BodyType(value.upper())
        except ValueError:
            pass
    raise ParameterError(replies.bad_parameter("BODY must be 7BIT or 8BITMIME"))


def parse_mail_params(tokens: list[str]) -> MailParams:
    size: int | None = None
    body: BodyType | None = None
    smtputf8 = False
    for key, value in _split(tokens).items():
        match key:
            case "SIZE":
                if value is None or not _SIZE_VALUE.fullmatch(value):
                    raise ParameterError(replies.bad_parameter("SIZE needs a number"))
                size = int(value)
            case "BODY":
                body = _body_type(value)
            case "SMTPUTF8":
                if value is not None:
                    raise ParameterError(replies.bad_parameter("SMTPUTF8 takes no value"))
                smtputf8 = True
            case _:
                raise ParameterError(replies.UNKNOWN_PARAMETER)
    return MailParams(size=size, body=body, smtputf8=smtputf8)


def parse_rcpt_params(tokens: list[str]) -> None:
    if tokens:
        _split(tokens)  # a malformed token is a 501, a well-formed unknown one a 555
        raise ParameterError(replies.UNKNOWN_PARAMETER)
