"""Typed SMTP commands: frozen values and the closed ``Command`` union the core dispatches on."""

from __future__ import annotations

import attrs

from .addresses import Mailbox
from .esmtp_params import MailParams


@attrs.frozen
class Helo:
    client_name: str


@attrs.frozen
class Ehlo:
    client_name: str


@attrs.frozen
class Mail:
    #: ``None`` is the null reverse path ``<>`` used by bounces.
    sender: Mailbox | None
    params: MailParams


@attrs.frozen
class Rcpt:
    recipient: Mailbox


@attrs.frozen
class Data:
    pass


@attrs.frozen
class StartTls:
    """RFC 3207: the client asks to turn this connection into a TLS one."""


@attrs.frozen
class Rset:
    pass


@attrs.frozen
class Noop:
    pass


@attrs.frozen
class Quit:
    pass


@attrs.frozen
class Vrfy:
    argument: str


@attrs.frozen
class Expn:
    argument: str


@attrs.frozen
class Help:
    argument: str


Command = Helo | Ehlo | Mail | Rcpt | Data | StartTls | Rset | Noop | Quit | Vrfy | Expn | Help
