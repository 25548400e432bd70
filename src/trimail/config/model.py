"""Frozen attrs configuration: every option of ``trimail serve``, with its default."""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path

import attrs
from attrs import validators as v

from ..protocol.limits import ProtocolLimits


@attrs.frozen
class ListenAddress:
    host: str
    port: int = attrs.field(validator=[v.ge(0), v.le(65535)])

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """``HOST:PORT`` or ``[IPv6]:PORT``."""
        if text.startswith("["):
            host, bracket, port = text[1:].partition("]:")
            if not bracket:
                raise ValueError(f"expected [IPv6]:PORT such as [::1]:2525, got {text!r}")
            ipaddress.IPv6Address(host)
        else:
            host, colon, port = text.rpartition(":")
            if not colon or not host or ":" in host:
                raise ValueError(f"expected HOST:PORT such as 127.0.0.1:2525, got {text!r}")
        if not port.isdigit():
            raise ValueError(f"expected a numeric port, got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class DeliveryKind(enum.Enum):
    MAILDIR = "maildir"
    DISCARD = "discard"


class LineEndings(enum.Enum):
    #: The message exactly as received: lossless, what DKIM signed (Dovecot: mail_save_crlf).
    CRLF = "crlf"
    #: Unix newlines, for tools that read Maildir files as plain text.
    LF = "lf"


@attrs.frozen(kw_only=True)
class DeliveryConfig:
    backend: DeliveryKind = DeliveryKind.MAILDIR
    maildir: Path = Path("maildir")
    line_endings: LineEndings = LineEndings.CRLF


@attrs.frozen(kw_only=True)
class Timeouts:
    """RFC 5321 §4.5.3.2 server timeouts, in seconds."""

    #: §4.5.3.2.7: 5 minutes for one complete command line, counted from our last reply.
    command: float = attrs.field(default=300.0, validator=v.gt(0))
    #: §4.5.3.2.5 (3 minutes per data block): the longest wait for the next bytes in DATA.
    data: float = attrs.field(default=180.0, validator=v.gt(0))
    #: Postfix smtpd_min_data_rate: once ``data`` seconds have passed, the average body rate
    #: must stay at or above this many bytes per second.
    data_min_rate: float = attrs.field(default=500.0, validator=v.ge(0))
    #: The longest a whole DATA phase may take (§4.5.3.2.6 gives 10 minutes for its end).
    data_total: float = attrs.field(default=600.0, validator=v.gt(0))
    #: On SIGTERM/SIGINT, how long a transaction in DATA may take to finish.
    shutdown_grace: float = attrs.field(default=10.0, validator=v.ge(0))
    #: A whole TLS handshake (after STARTTLS, or before the greeting on implicit TLS).
    tls_handshake: float = attrs.field(default=30.0, validator=v.gt(0))


@attrs.frozen(kw_only=True)
class TlsConfig:
    """Certificate and policy for STARTTLS (RFC 3207) and implicit TLS (RFC 8314)."""

    #: PEM certificate chain; without it STARTTLS is not offered (454 4.7.0 if asked).
    cert: Path | None = None
    #: PEM private key; None means the key is in the ``cert`` file.
    key: Path | None = None
    #: Refuse MAIL (530 5.7.0) until the session is encrypted: for submission servers.
    require: bool = False

    def __attrs_post_init__(self) -> None:
        if self.cert is None and self.key is not None:
            raise ValueError("'cert' is needed when a key is given; add the certificate file")
        if self.cert is None and self.require:
            raise ValueError("'cert' is needed to require TLS; add a certificate and key")


@attrs.frozen(kw_only=True)
class ServerConfig:
    #: Plain listeners (STARTTLS offered when a certificate is configured).
    listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 2525),)
    #: Implicit TLS listeners (RFC 8314, port 465): the handshake comes before the greeting.
    listen_tls: tuple[ListenAddress, ...] = ()
    #: The name in the greeting and Received headers; None means the machine's FQDN.
    hostname: str | None = None
    delivery: DeliveryConfig = attrs.Factory(DeliveryConfig)
    limits: ProtocolLimits = attrs.Factory(ProtocolLimits)
    timeouts: Timeouts = attrs.Factory(Timeouts)
    tls: TlsConfig = attrs.Factory(TlsConfig)

    def __attrs_post_init__(self) -> None:
        if not self.listen and not self.listen_tls:
            raise ValueError("'listen' needs at least one HOST:PORT address")
        if self.listen_tls and self.tls.cert is None:
            raise ValueError("'listen_tls' needs a certificate; set tls.cert (--tls-cert)")
