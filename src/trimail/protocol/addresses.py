"""The path grammar of RFC 5321 §4.1.2, extended for UTF-8 by RFC 6531 §3.3.

Addresses are parsed into a typed ``Mailbox`` and kept as data: nothing here ever builds a
shell command or a template from them. UTF-8 is accepted only when the caller says the
transaction is SMTPUTF8; otherwise a non-ASCII address is refused with its own error so the
server can answer 553 5.6.7 as RFC 6531 §3.6.2 asks.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

#: RFC 5321 §4.5.3.1.1-3: local part 64 octets, domain 255 octets, path 256 octets.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256


class AddressError(ValueError):
    """The text is not a valid RFC 5321 path."""


class NonAsciiAddressError(AddressError):
    """The path holds UTF-8 but the transaction did not ask for SMTPUTF8."""


@attrs.frozen
class Mailbox:
    """A forward or reverse path. ``domain`` is empty only for the bare ``<Postmaster>``."""

    local_part: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part


# RFC 5321 §4.1.2 character classes; RFC 6531 adds UTF8-non-ascii to atext and qtext.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_UTF8 = "\u0080-\U0010ffff"


def _local_part_pattern(utf8: bool) -> str:
    extra = _UTF8 if utf8 else ""
    atom = f"[{_ATEXT}{extra}]+"
    dot_string = f"{atom}(?:\\.{atom})*"
    qtext = f"[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e{extra}]"
    quoted = f'"(?:{qtext}|\\\\[\\x20-\\x7e])*"'
    return f"(?:{dot_string}|{quoted})"


def _domain_pattern(utf8: bool) -> str:
    extra = _UTF8 if utf8 else ""
    let_dig = f"[A-Za-z0-9{extra}]"
    sub_domain = f"{let_dig}(?:[A-Za-z0-9\\-{extra}]*{let_dig})?"
    return f"{sub_domain}(?:\\.{sub_domain})*"


def _compile(utf8: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    domain = _domain_pattern(utf8)
    literal = r"\[[^\[\]\\\s]+\]"
    mailbox = re.compile(f"(?P<local>{_local_part_pattern(utf8)})@(?P<domain>{domain}|{literal})")
    route = re.compile(f"@{domain}(?:,@{domain})*:")
    return mailbox, route


_ASCII_MAILBOX, _ASCII_ROUTE = _compile(utf8=False)
_UTF8_MAILBOX, _UTF8_ROUTE = _compile(utf8=True)
_POSTMASTER = "postmaster"

_ASCII_ATOM = f"[{_ATEXT}]+"
#: The path nearly every client sends, as a regex fragment: ``<local@domain>`` with an ASCII
#: dot-atom local part and an ASCII domain name; no quoting, address literal or source route.
#: It is built from the same pieces as the full grammar, so whatever it matches the full parser
#: accepts with the same two groups, except that only ``plain_mailbox`` checks the lengths.
#: ``command_parser`` matches it together with the verb, so a common MAIL or RCPT line costs
#: one regex match; anything it does not match goes through ``parse_reverse_path`` /
#: ``parse_forward_path`` as before.
PLAIN_PATH = (
    f"<(?P<local>{_ASCII_ATOM}(?:\\.{_ASCII_ATOM})*)@(?P<domain>{_domain_pattern(utf8=False)})>"
)


def plain_mailbox(local: str, domain: str) -> Mailbox | None:
    """The mailbox a ``PLAIN_PATH`` match stands for, or ``None`` when it breaks a length limit
    (the full parser then says which one). The text is ASCII: characters are octets."""
    if (
        len(local) > MAX_LOCAL_PART
        or len(domain) > MAX_DOMAIN
        or len(local) + len(domain) + 3 > MAX_PATH  # "<", "@" and ">"
    ):
        return None
    return Mailbox(local, domain)


def _check_address_literal(literal: str) -> None:
    inner = literal[1:-1]
    if "%" in inner:
        # ipaddress accepts RFC 4007 zone ids ("fe80::1%eth0"); RFC 5321's IPv6-addr does not.
        raise AddressError(f"invalid address literal {literal}")
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        elif ":" in inner:
            # RFC 5321 General-address-literal: a registered tag; none are registered but IPv6.
            raise AddressError(f"unsupported address literal {literal}")
        else:
            ipaddress.IPv4Address(inner)
    except ValueError as exc:
        raise AddressError(f"invalid address literal {literal}") from exc


def parse_reverse_path(text: str, *, utf8: bool) -> Mailbox | None:
    """Parse MAIL's ``<...>``; ``None`` is the null reverse path ``<>`` (bounces use it).

    Source routes (``<@a,@b:user@c>``) are accepted and ignored (RFC 5321 §4.1.1.3, App. C).
    """
    return _parse_path(text, utf8=utf8, reverse=True)


def parse_forward_path(text: str, *, utf8: bool) -> Mailbox:
    """Parse RCPT's ``<...>``; the bare ``<Postmaster>`` is accepted (RFC 5321 §4.1.1.3)."""
    mailbox = _parse_path(text, utf8=utf8, reverse=False)
    assert mailbox is not None  # only a reverse path may be null
    return mailbox


def _parse_path(text: str, *, utf8: bool, reverse: bool) -> Mailbox | None:
    if len(text.encode("utf-8")) > MAX_PATH:
        raise AddressError("path too long")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError("address must be enclosed in <>")
    inner = text[1:-1]
    if not inner:
        if reverse:
            return None
        raise AddressError("null address not allowed here")
    if not inner.isascii() and not utf8:
        raise NonAsciiAddressError("non-ASCII address without SMTPUTF8")
    mailbox_re, route_re = (_UTF8_MAILBOX, _UTF8_ROUTE) if utf8 else (_ASCII_MAILBOX, _ASCII_ROUTE)
    if inner.startswith("@"):
        route = route_re.match(inner)
        if route is None:
            raise AddressError("malformed source route")
        inner = inner[route.end() :]
    if inner.lower() == _POSTMASTER and not reverse:
        # Only a forward path may omit the domain; a sender is <> or a full mailbox.
        return Mailbox(inner, "")
    match = mailbox_re.fullmatch(inner)
    if match is None:
        raise AddressError("malformed address")
    local, domain = match["local"], match["domain"]
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError("local part too long")
    if len(domain.encode("utf-8")) > MAX_DOMAIN:
        raise AddressError("domain too long")
    if domain.startswith("["):
        _check_address_literal(domain)
    return Mailbox(local, domain)
