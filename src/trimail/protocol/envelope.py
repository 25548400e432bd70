"""The envelope of one message: who said hello, who sends, who receives, with which options."""

from __future__ import annotations

import attrs

from .addresses import Mailbox
from .esmtp_params import BodyType, MailParams


@attrs.frozen(kw_only=True)
class TlsInfo:
    """The TLS session a message arrived over, as the I/O layer reported it."""

    #: e.g. "TLSv1.3"
    version: str
    #: e.g. "TLS_AES_256_GCM_SHA384"
    cipher: str
    #: secret bits of the cipher, e.g. 256
    bits: int


@attrs.frozen(kw_only=True)
class Envelope:
    #: The name the client gave in HELO/EHLO (unverified, for trace headers only).
    client_name: str
    #: True when the client greeted with EHLO (Received says "with ESMTP").
    extended: bool
    #: ``None`` is the null reverse path ``<>``.
    sender: Mailbox | None
    recipients: tuple[Mailbox, ...]
    params: MailParams
    #: The TLS session (STARTTLS or implicit TLS), or ``None`` for a plain connection.
    tls: TlsInfo | None = None

    @property
    def smtputf8(self) -> bool:
        return self.params.smtputf8

    @property
    def eight_bit(self) -> bool:
        return self.params.body is BodyType.EIGHT_BIT_MIME

    @property
    def reverse_path(self) -> str:
        """The sender as written in a Return-Path header: ``<>`` for the null sender."""
        return f"<{self.sender}>" if self.sender is not None else "<>"
